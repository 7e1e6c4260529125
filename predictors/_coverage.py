"""Calibration figures: do a predictor's intervals hold the truth as often as they claim?

Every figure comes from configs the scored predictor never saw, its calibration included: the predictor is
trained (model selection, fit and interval calibration) on the rest, then asked for intervals on the held-out
configs. Two designs:

- a random hold-out (devices with hundreds of configs);
- leave-one-group-out (the paper's devices, 6-12 configs): every named variant and every ablation its own group
  (leave-one-variant-out, ``variant_groups(..., per_variant=True)``; or the B1 ablations as one group), so each
  fold scores an extrapolation the way a search meets one (train without B3 and score it; without B1-mhsa and
  score it; ...).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ._base import PredictorError
from ._interval import PredictionInterval, check_coverage
from ._metrics import mape
from ._train import TrainingData, train

COVERAGES = (0.8, 0.9, 0.95)


def variant_groups(names: Sequence[str | None], hashes: Sequence[str], per_variant: bool = False) -> list[str]:
    """The group of each config for leave-one-group-out: ablations of a variant ("B1-mhsa", "B1-unfused", ...)
    form one group ("B1 ablations"); every other config is a group of its own. ``per_variant``: every named
    variant and every ablation a group of its own (leave-one-variant-out)."""
    out = []
    for name, h in zip(names, hashes):
        if per_variant:
            out.append(name or h[:12])
        elif name and "-" in name:
            out.append(f"{name.split('-')[0]} ablations")
        else:
            out.append(name or h[:12])
    return out


@dataclasses.dataclass
class CoverageReport:
    """Per nominal coverage: the share of held-out truths inside their interval and the median relative width
    (interval width over the central value)."""

    method: str
    model: str
    n: int
    coverage: dict[float, float]
    median_relative_width: dict[float, float]
    intervals_method: str  # how the scored predictors built their intervals (conformal / Student-t)
    # The same for the held-out configs inside the training domain of the predictor they were scored by (None: none).
    n_in_domain: int = 0
    coverage_in_domain: dict[float, float | None] = dataclasses.field(default_factory=dict)
    median_relative_width_in_domain: dict[float, float | None] = dataclasses.field(default_factory=dict)
    mape: float | None = None  # error of the held-out central predictions (%)
    # Per nominal coverage and held-out config: inside its interval, relative width, in domain (to pool reports).
    details: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)

    def rows(self) -> list[dict]:
        return [{"nominal": c, "empirical": self.coverage[c], "median_relative_width": self.median_relative_width[c],
                 "empirical_in_domain": self.coverage_in_domain.get(c),
                 "median_relative_width_in_domain": self.median_relative_width_in_domain.get(c),
                 **self._out_of_domain(c)}
                for c in self.coverage]

    def _out_of_domain(self, c: float) -> dict:
        # The held-out configs outside the training domain of the predictor they were scored by (None: none, or a
        # report without per-config details).
        if c not in self.details:
            return {}
        hits, rel, inside = self.details[c]
        out = ~np.asarray(inside, bool)
        return {"empirical_out_of_domain": float(np.mean(hits[out])) if out.any() else None,
                "median_relative_width_out_of_domain": float(np.median(rel[out])) if out.any() else None}

    def to_dict(self) -> dict:
        return {"method": self.method, "model": self.model, "n": self.n, "n_in_domain": self.n_in_domain, "mape": self.mape,
                "intervals": self.intervals_method, "rows": self.rows()}

    def line(self) -> str:
        pct = lambda v, f: "-" if v is None else f"{v * 100:{f}} %"  # noqa: E731
        cov = " / ".join(pct(self.coverage[c], ".0f") for c in self.coverage)
        wid = " / ".join(pct(self.median_relative_width[c], ".1f") for c in self.coverage)
        wid_in = " / ".join(pct(self.median_relative_width_in_domain.get(c), ".1f") for c in self.coverage)
        nominal = " / ".join(f"{c:g}" for c in self.coverage)
        return (f"intervals ({self.model}, {self.intervals_method}; {self.method}, {self.n} configs): coverage at "
                f"{nominal}: {cov}; median relative width {wid} (in domain, {self.n_in_domain} configs: {wid_in})")


def interval_coverage(data: TrainingData, model: str, *, holdout: np.ndarray | None = None,
                      groups: Sequence[str] | None = None, coverages: Sequence[float] = COVERAGES,
                      progress: Callable | None = None, source=None) -> CoverageReport:
    """Empirical coverage of ``model``'s intervals (model type as for :func:`predictors.train`) on held-out
    configs of ``data``: a random ``holdout`` mask, or leave-one-group-out over ``groups`` (one label per
    config). ``source``: passed on to :func:`predictors.train` (transfer, shared); a callable gets the held-out
    config hashes of each fold and returns the source to use for it (a cross-device profile without them)."""
    coverages = [check_coverage(c) for c in coverages]
    if (holdout is None) == (groups is None):
        raise PredictorError("interval coverage: give a hold-out mask or groups, not both")
    if holdout is not None:
        folds = [np.asarray(holdout, bool)]
        method = f"random hold-out of {int(folds[0].sum())}"
    else:
        labels = np.asarray(list(groups))
        folds = [labels == g for g in dict.fromkeys(labels)]
        method = f"leave-one-group-out over {len(folds)} groups"
    truth, parts, how = [], {c: [] for c in coverages}, set()
    for test in progress(folds) if progress else folds:
        if test.all() or not test.any():
            raise PredictorError("interval coverage: every fold needs configs on both sides")
        src = source([c.hash for c, t in zip(data.configs, test) if t]) if callable(source) else source
        pred, _ = train(data.subset(~test), model, source=src)
        how.add(pred.calibration.method)
        X = data.X[: data.n_configs][test]
        truth.append(data.values[test])
        for c in coverages:
            parts[c].append(pred.predict_interval_features(X, c))  # no stored measurements: they are held out
    t = np.concatenate(truth)
    cov, width, cov_in, width_in, details = {}, {}, {}, {}, {}
    for c in coverages:
        iv = _concat(parts[c])
        inside = np.asarray(iv.in_domain, bool)
        details[c] = (iv.contains(t), iv.relative_width, inside)
        cov[c] = float(np.mean(iv.contains(t)))
        width[c] = float(np.median(iv.relative_width))
        cov_in[c] = float(np.mean(iv.contains(t)[inside])) if inside.any() else None
        width_in[c] = float(np.median(iv.relative_width[inside])) if inside.any() else None
    n_in = int(np.asarray(_concat(parts[coverages[0]]).in_domain, bool).sum())
    value = _concat(parts[coverages[0]]).value
    return CoverageReport(method, model, len(t), cov, width, " and ".join(sorted(how)), n_in, cov_in, width_in,
                          mape(t, value), details)


def pooled(reports: Sequence[CoverageReport], model: str, method: str) -> CoverageReport:
    """One report over the held-out configs of several (devices' leave-one-variant-out): coverage and median widths
    of all their configs together."""
    cov, width, cov_in, width_in, details = {}, {}, {}, {}, {}
    for c in reports[0].coverage:
        hits, rel, inside = (np.concatenate([r.details[c][k] for r in reports]) for k in range(3))
        details[c] = (hits, rel, inside)
        cov[c], width[c] = float(np.mean(hits)), float(np.median(rel))
        cov_in[c] = float(np.mean(hits[inside])) if inside.any() else None
        width_in[c] = float(np.median(rel[inside])) if inside.any() else None
    n = sum(r.n for r in reports)
    err = sum(r.mape * r.n for r in reports) / n if all(r.mape is not None for r in reports) else None
    n_in = int(details[next(iter(reports[0].coverage))][2].sum())
    how = " and ".join(sorted({r.intervals_method for r in reports}))
    return CoverageReport(method, model, n, cov, width, how, n_in, cov_in, width_in, err, details)


def _concat(ivs: list[PredictionInterval]) -> PredictionInterval:
    cat = lambda f: np.concatenate([getattr(i, f) for i in ivs])  # noqa: E731
    return dataclasses.replace(ivs[0], value=cat("value"), lo=cat("lo"), hi=cat("hi"), in_domain=cat("in_domain"),
                               measured=cat("measured"), distance=cat("distance"))
