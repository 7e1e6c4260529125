"""What a search optimises: one small interface over the predictors, the analytic counts and plain functions.

An objective scores a batch of configs at once (predictors are much faster on batches than row by row), with an
interval per value where the objective is uncertain (predictors), and the :class:`Evaluator` scores every
architecture (config hash) once per study. Under risk "bound" (the default) the search optimises and constrains
the pessimistic end of each interval, so a config it returns meets a budget with probability >= (1 + c) / 2 at
confidence c, and a config predicted well only by extrapolation (wide intervals) loses to one with evidence.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from measured import ACCURACY_DEVICE  # a dataset (the accuracy surrogate's rows), never a device to measure on
from search_spaces import Counts, LowFormerConfig, count

from ._errors import SearchError

if TYPE_CHECKING:  # the search works with any implementation of the interface
    from predictors import Predictor

DIRECTIONS = ("minimize", "maximize")
ACCURACY_METRIC = "top1_pct"
# --objective: the accuracy side of the search. params/MACs are capacity proxies, so they are maximised:
# within the latency budget, the largest network is taken as the most accurate one.
ACCURACY_OBJECTIVES = ("surrogate", "params", "macs")


RISKS = ("bound", "mean")
DEFAULT_RISK = "bound"
DEFAULT_CONFIDENCE = 0.9


@dataclasses.dataclass(frozen=True)
class Scores:
    """One objective's answer for a batch: central values, interval ends (equal to the value for exact objectives),
    which values are stored measurements, and the training domain (None where that means nothing)."""

    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    measured: np.ndarray
    in_domain: np.ndarray | None = None
    # How far outside the predictor's training domain (0 inside; None: only in/out is known), to guide a search back.
    domain_excess: np.ndarray | None = None

    @classmethod
    def exact(cls, value, in_domain=None) -> "Scores":
        v = np.asarray(value, dtype=np.float64)
        return cls(v, v, v, np.zeros(v.shape, dtype=bool), in_domain)


class Objective(abc.ABC):
    """One value per config, optimised in ``direction``. ``key`` names it in trials, tables and charts."""

    key: str
    direction: str
    label: str
    device: str | None = None
    metric: str | None = None
    note: str | None = None  # something the study's outputs must say about this objective

    @abc.abstractmethod
    def evaluate(self, configs: Sequence[LowFormerConfig], counts: Sequence[Counts]) -> np.ndarray:
        """Values of ``configs`` (their analytic ``counts`` come along, computed once)."""

    def scores(self, configs: Sequence[LowFormerConfig], counts: Sequence[Counts], coverage: float,
               features: Callable[[], np.ndarray] | None = None) -> Scores:
        """Values with intervals at ``coverage``; ``features()`` gives the batch's predictor features (computed
        once per batch, shared by every objective). Exact objectives have no uncertainty."""
        return Scores.exact(self.evaluate(configs, counts), self.in_domain(configs))

    def in_domain(self, configs: Sequence[LowFormerConfig]) -> np.ndarray | None:
        """Per config, whether it lies where the objective was fitted; None when that has no meaning."""
        return None

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    @property
    def is_time(self) -> bool:
        """A device latency/throughput objective (the ones a ``--budget-ms`` applies to)."""
        return self.device is not None and self.device != ACCURACY_DEVICE

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "direction": self.direction, "label": self.label, "device": self.device,
                "metric": self.metric, "kind": type(self).__name__}


class CountObjective(Objective):
    """An analytic count of the search space (``params`` or ``macs``); maximised by default (capacity proxy)."""

    def __init__(self, quantity: str, direction: str = "maximize"):
        if quantity not in ("params", "macs"):
            raise SearchError("objective", f"count objective must be params or macs (got {quantity!r})")
        _check_direction(direction)
        self.key = self.metric = quantity
        self.direction = direction
        self.label = {"params": "parameters", "macs": "MACs"}[quantity]

    def evaluate(self, configs, counts) -> np.ndarray:
        return np.array([getattr(c, self.key) for c in counts], dtype=np.float64)


class FunctionObjective(Objective):
    """Any batch function ``fn(configs) -> values`` (benchmarks, tests, experiments)."""

    def __init__(self, key: str, direction: str, fn: Callable[[Sequence[LowFormerConfig]], Any], *,
                 label: str | None = None, device: str | None = None, metric: str | None = None):
        _check_direction(direction)
        self.key, self.direction, self.fn = key, direction, fn
        self.label, self.device, self.metric = label or key, device, metric

    def evaluate(self, configs, counts) -> np.ndarray:
        return np.asarray(self.fn(configs), dtype=np.float64)


class PredictorObjective(Objective):
    """Adapter of a :class:`predictors.Predictor`: its predictions with their intervals, its direction.

    A predictor without calibration data (saved before intervals) gives point values only; :attr:`note` says so
    and the study's outputs repeat it.
    """

    def __init__(self, predictor: "Predictor"):
        self.predictor = predictor
        self.device, self.metric = predictor.device, predictor.metric
        self.direction = "maximize" if predictor.higher_is_better else "minimize"
        self.key = f"{self.device}:{self.metric}"
        self.label = f"predicted {self.metric} ({self.device})"
        self.calibrated = bool(getattr(predictor, "calibrated", True))
        if not self.calibrated:
            hint = getattr(predictor, "retrain_hint", lambda: f"lowformer-nas predictors train --device {self.device}")()
            self.note = (f"{self.key}: the predictor has no calibration data (saved before prediction intervals), so its "
                         f"values are point predictions without intervals, budgets included; retrain it: {hint}")

    # The device phase the values are mapped into (a measured.Phase, set by search --phase; see _phase.py); None:
    # the predictor's own values.
    phase = None

    def evaluate(self, configs, counts) -> np.ndarray:
        v = np.asarray(self.predictor.predict(list(configs)), dtype=np.float64).reshape(len(configs))
        return self._in_phase(v, v, v, DEFAULT_CONFIDENCE)[0]

    def _in_phase(self, v, lo, hi, coverage: float):
        """Values and interval ends mapped into :attr:`phase`, the interval widened by the phase's uncertainty."""
        if self.phase is None:
            return v, lo, hi
        from nas.onboard._phase import PhaseChoice, in_phase

        return in_phase(v, lo, hi, self.metric, PhaseChoice("", self.phase, ""), coverage)

    def scores(self, configs, counts, coverage, features=None) -> Scores:
        if not self.calibrated:
            return Scores.exact(self.evaluate(configs, counts), self.in_domain(configs))
        p = self.predictor
        by_features = getattr(p, "predict_interval_features", None)
        if by_features is not None and features is not None:
            iv = by_features(features(), coverage, hashes=[c.hash for c in configs])
        else:
            iv = p.predict_interval(list(configs), coverage)
        excess_of = getattr(p, "domain_excess_features", None)
        excess = None if excess_of is None or features is None else np.asarray(excess_of(features()), dtype=np.float64)
        v, lo, hi = (np.asarray(a, dtype=np.float64).reshape(len(configs)) for a in (iv.value, iv.lo, iv.hi))
        return Scores(*self._in_phase(v, lo, hi, coverage), np.asarray(iv.measured, dtype=bool),
                      np.asarray(iv.in_domain, dtype=bool), excess)

    def in_domain(self, configs) -> np.ndarray:
        return np.asarray(self.predictor.in_domain_mask(list(configs)), dtype=bool)

    def describe(self) -> dict[str, Any]:
        p = self.predictor
        return {**super().describe(), "model_type": getattr(p, "model_type", None), "version": getattr(p, "version", None),
                "identity": getattr(p, "identity", None), "calibrated": self.calibrated}


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise SearchError("direction", f"must be one of {'|'.join(DIRECTIONS)} (got {direction!r})")


PredictorLoader = Callable[..., "Predictor"]  # (device, metric=None) -> a Predictor (predictors.load_predictor)


def default_loader() -> PredictorLoader:
    try:
        from predictors import load_predictor
    except ImportError as e:
        raise SearchError("predictors", f"no trained predictors available ({e}); train them first or use the Python "
                                        "API with your own objectives") from None
    return load_predictor


def build_objectives(devices: Sequence[str], objective: str = "surrogate",
                     loader: PredictorLoader | None = None) -> list[Objective]:
    """The accuracy side first (surrogate or a count proxy), then one predicted time objective per device."""
    if objective not in ACCURACY_OBJECTIVES:
        raise SearchError("objective", f"must be one of {'|'.join(ACCURACY_OBJECTIVES)} (got {objective!r})")
    if not devices:
        raise SearchError("device", "give at least one --device to search for")
    load = loader or default_loader()
    first: Objective = (PredictorObjective(load(ACCURACY_DEVICE, ACCURACY_METRIC)) if objective == "surrogate"
                        else CountObjective(objective))
    return [first] + [PredictorObjective(load(d)) for d in devices]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything a study records about one architecture, per objective in the study's order: the central
    ``values`` (predictions, or stored measurements), the interval ends ``lo``/``hi`` and the values the search
    optimises and constrains (``scored``: the pessimistic ends under risk "bound", the central values under
    "mean")."""

    hash: str
    macs: int
    params: int
    values: tuple[float, ...]
    ood: tuple[str, ...] = ()  # keys of the objectives whose predictor has not seen its like
    lo: tuple[float, ...] | None = None
    hi: tuple[float, ...] | None = None
    measured: tuple[str, ...] = ()  # keys of the objectives whose value is a stored measurement
    scored: tuple[float, ...] | None = None
    # Sum over the objectives outside their domain of how far outside (predictors.domain_excess; 1 where unknown).
    domain_excess: float = 0.0

    def __post_init__(self):
        for f in ("lo", "hi", "scored"):
            if getattr(self, f) is None:
                object.__setattr__(self, f, self.values)


def scored_values(values, lo, hi, directions: Sequence[str], risk: str) -> tuple[float, ...]:
    """What the search optimises: under ``bound`` the pessimistic end of each interval (the upper end of a
    latency, the lower end of a throughput or top-1), under ``mean`` the central values."""
    if risk == "mean":
        return tuple(values)
    return tuple(h if d == "minimize" else low for low, h, d in zip(lo, hi, directions))


def check_risk(risk: str) -> str:
    if risk not in RISKS:
        raise SearchError("risk", f"must be one of {'|'.join(RISKS)} (got {risk!r})")
    return risk


def check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 < confidence < 0.999:
        raise SearchError("confidence", f"must be a number in (0.5, 0.999), the interval coverage (got {confidence!r})")
    return float(confidence)


def check_unique_keys(objectives: Sequence[Objective]) -> None:
    """One objective per key (a device given twice would be optimised twice)."""
    keys = [o.key for o in objectives]
    twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if twice is not None:
        raise SearchError("objective", f"objective keys must be unique: {twice} is given {keys.count(twice)} times "
                                       "(each --device once)")


class Evaluator:
    """Scores configs with every objective, once per architecture: duplicates (same hash) come from a cache.

    ``risk``/``confidence``: what :attr:`Evaluation.scored` holds (see :func:`scored_values`) and the coverage of
    the intervals.
    """

    def __init__(self, objectives: Sequence[Objective], risk: str = DEFAULT_RISK,
                 confidence: float = DEFAULT_CONFIDENCE):
        check_unique_keys(objectives)
        self.objectives = list(objectives)
        self.risk, self.confidence = check_risk(risk), check_confidence(confidence)
        self.directions = [o.direction for o in self.objectives]
        self.cache: dict[str, Evaluation] = {}
        self.scored = 0  # architectures scored by this evaluator (not from the cache)

    def seed(self, evaluations) -> None:
        for e in evaluations:
            self.cache.setdefault(e.hash, e)

    def evaluate(self, configs: Sequence[LowFormerConfig]) -> list[Evaluation]:
        hashes = [c.hash for c in configs]
        new: dict[str, LowFormerConfig] = {}
        for h, c in zip(hashes, configs):
            if h not in self.cache:
                new.setdefault(h, c)
        if new:
            self._score(list(new.values()))
        return [self.cache[h] for h in hashes]

    def _score(self, cfgs: list[LowFormerConfig]) -> None:
        counts = [count(c) for c in cfgs]
        features = _BatchFeatures(cfgs)
        cols = [self._objective_scores(o, cfgs, counts, features) for o in self.objectives]
        for i, (c, n) in enumerate(zip(cfgs, counts)):
            values = tuple(float(s.value[i]) for s in cols)
            lo = tuple(float(s.lo[i]) for s in cols)
            hi = tuple(float(s.hi[i]) for s in cols)
            ood = tuple(o.key for o, s in zip(self.objectives, cols) if s.in_domain is not None and not s.in_domain[i])
            measured = tuple(o.key for o, s in zip(self.objectives, cols) if s.measured[i])
            excess = sum(max(float(s.domain_excess[i]), 1e-3) if s.domain_excess is not None else 1.0
                         for o, s in zip(self.objectives, cols) if o.key in ood)
            self.cache[c.hash] = Evaluation(c.hash, int(n.macs), int(n.params), values, ood, lo, hi, measured,
                                            scored_values(values, lo, hi, self.directions, self.risk), excess)
        self.scored += len(cfgs)

    def _objective_scores(self, o: Objective, cfgs, counts, features) -> Scores:
        s = o.scores(cfgs, counts, self.confidence, features)
        n = len(cfgs)
        for name in ("value", "lo", "hi"):
            v = np.asarray(getattr(s, name))
            if v.shape != (n,) or not np.all(np.isfinite(v)):
                bad = next((i for i, x in enumerate(np.ravel(v)) if not np.isfinite(x)), 0)
                raise SearchError(o.key, f"objective returned {v.shape} values or a non-finite one "
                                         f"(config {cfgs[min(bad, n - 1)].short_hash})")
        if np.any(s.lo > s.value) or np.any(s.hi < s.value):
            raise SearchError(o.key, "objective returned an interval that does not contain its value")
        return s


class _BatchFeatures:
    """The batch's predictor features, computed on first use and shared by every predictor objective."""

    def __init__(self, configs):
        self.configs, self.X = configs, None

    def __call__(self) -> np.ndarray:
        if self.X is None:
            from predictors import featurize

            self.X = featurize(self.configs)
        return self.X
