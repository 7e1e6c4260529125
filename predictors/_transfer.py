"""Few-shot transfer: a predictor for a new device from a handful of its measurements and a source device's model.

Three ways to map the source's predicted time s(x) to the target device, chosen by leave-one-out on the
target's measurements (``mode="auto"``):

- ``scale``: t = k * s(x), one coefficient (devices that differ by a constant factor);
- ``affine``: log t = a + b log s(x), the slope pulled towards 1 (devices whose speed-up grows with size);
- ``refit``: the source's additive coefficients re-fit by NNLS on the target rows, pulled towards the
  source's coefficients times the scale factor (devices whose op types differ in relative cost). For a
  LightGBM ratio source, its additive base is re-fit and its trees' correction kept.

:func:`few_shot_curve` compares this with training from scratch for growing training-set sizes;
:func:`few_shot_table` does so the way a device is onboarded (anchors first, the source chosen on them,
then random or informative selection) and adds the choice by cross-validation (of the two and the transfer
from every other source).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from ._additive import AdditiveModel
from ._base import MIN_ROWS, CostModel, PredictorError, check_finite, from_cost
from ._features import SCHEMA_HASH, in_space_mask
from ._lgbm import LGBMModel
from ._metrics import cross_val_predict, mape, regression_report
from ._persist import estimator_from_json, estimator_to_json

MODES = ("scale", "affine", "refit")
# Pull of the affine slope towards 1 (in units of the rows' log-variance): two-parameter fits from ten
# points otherwise swing wildly.
_SLOPE_PRIOR = 1.0


def _unwrap(est):
    return est.estimator if isinstance(est, FrozenEstimator) else est


def _additive_of(source) -> tuple[AdditiveModel | None, Any]:
    """(additive part, trees with a ratio target or None) of a source model, when it has one."""
    s = _unwrap(source)
    if isinstance(s, AdditiveModel):
        return s, None
    if isinstance(s, LGBMModel) and s.base_ is not None and isinstance(_unwrap(s.base_), AdditiveModel):
        return _unwrap(s.base_), s
    return None, None


class TransferModel(CostModel):
    """A target-device model built from a fitted ``source`` model and a few target measurements.

    ``source``: a fitted predictors estimator (wrap it in ``sklearn.frozen.FrozenEstimator`` so that
    ``clone`` keeps it fitted; :func:`transfer_from` does). ``mode``: one of MODES or "auto".

    Learned: ``mode_``, ``a_`` and ``b_`` (log t = a_ + b_ log s for scale/affine), ``refit_`` (the re-fit
    additive model for refit), ``n_train_``.
    """

    kind = "transfer"
    min_rows, needs_source, order = 2, True, 3

    @classmethod
    def candidates(cls, source=None) -> dict[str, "TransferModel"]:
        if source is None:
            raise PredictorError("source: --model transfer needs --source DEVICE (a device with a trained predictor)")
        return {"transfer": transfer_from(source)}

    def __init__(self, source=None, mode: str = "auto"):
        self.source = source
        self.mode = mode

    def _modes(self) -> list[str]:
        if self.mode != "auto":
            return [self.mode]
        modes = ["scale", "affine"]
        if _additive_of(self.source)[0] is not None:
            modes.append("refit")
        return modes

    def _fit_mode(self, mode, X, y, s, alpha=None):
        """(a, b, refit) for one mode; ``alpha``: the refit's pull towards the source (None: chosen by CV)."""
        ls, ly = np.log(s), np.log(y)
        a = float(np.mean(ly - ls))
        if mode == "scale":
            return a, 1.0, None
        if mode == "affine":
            if len(y) < 3:
                return a, 1.0, None
            xm, ym = ls.mean(), ly.mean()
            sxx = float(((ls - xm) ** 2).sum())
            sxy = float(((ls - xm) * (ly - ym)).sum())
            lam = _SLOPE_PRIOR * max(sxx, 1e-12) / len(y)
            b = (sxy + lam) / (sxx + lam)
            return float(ym - b * xm), float(b), None
        add, _ = _additive_of(self.source)
        # The trees' correction (ratio sources) stays as it is; the additive part learns the rest.
        corr = np.exp(_unwrap(self.source).correction(X)) if _additive_of(self.source)[1] is not None else 1.0
        refit = AdditiveModel(
            terms=add.terms, alpha=alpha, relative=add.relative, prior_coef=tuple(float(c) * np.exp(a) for c in add.coef_)
        ).fit(X, y / corr)
        return a, 1.0, refit

    def _predict_mode(self, X, s, a, b, refit):
        if refit is not None:
            corr = np.exp(_unwrap(self.source).correction(X)) if _additive_of(self.source)[1] is not None else 1.0
            return refit.predict(X) * corr
        return np.exp(a + b * np.log(s))

    def fit(self, X, y, sample_weight=None):
        if sample_weight is not None:  # refused rather than silently ignored: the mode choice is unweighted LOO
            raise ValueError("sample_weight: TransferModel does not weight rows; fit it on the rows you want")
        if self.source is None or not _unwrap(self.source).__sklearn_is_fitted__():
            raise ValueError("source: a fitted source model is needed")
        modes = self._modes()
        bad = [m for m in modes if m not in MODES]
        if bad:
            raise ValueError(f"mode: must be one of auto|{'|'.join(MODES)} (got {self.mode!r})")
        if "refit" in modes and _additive_of(self.source)[0] is None:
            raise ValueError("mode: refit needs an additive source model (or a LightGBM ratio model)")
        X = self._validate_X(X)
        y = np.asarray(y, dtype=float)
        ins = in_space_mask(X)
        X, y = X[ins], y[ins]
        if len(y) < 1:
            raise ValueError("X: no row of the search space to fit on")
        s = _unwrap(self.source).predict(X)
        if len(modes) > 1 and len(y) >= 3:
            # The refit's pull towards the source is chosen once on all rows and kept while the modes are
            # compared: choosing it again inside every left-out fit costs n times more for the same choice.
            alpha = self._fit_mode("refit", X, y, s)[2].alpha_ if "refit" in modes else None
            errs = []
            for m in modes:
                err = 0.0
                for i in range(len(y)) if len(y) <= 50 else np.array_split(np.arange(len(y)), 10):
                    test = np.atleast_1d(i)
                    train = np.setdiff1d(np.arange(len(y)), test)
                    a, b, refit = self._fit_mode(m, X[train], y[train], s[train], alpha)
                    p = self._predict_mode(X[test], s[test], a, b, refit)
                    err += float((((p - y[test]) / y[test]) ** 2).sum())
                errs.append(err)
            mode = modes[int(np.argmin(errs))]  # ties: the first, i.e. the simplest
        else:
            mode = modes[0]
        self.mode_ = mode
        self.a_, self.b_, self.refit_ = self._fit_mode(mode, X, y, s)
        self.n_train_ = int(len(y))
        self.schema_hash_ = SCHEMA_HASH
        return self

    def predict(self, X):
        self._check_fitted()
        X = self._validate_X(X)
        return self._predict_mode(X, _unwrap(self.source).predict(X), self.a_, self.b_, self.refit_)

    def _state(self, prefix):
        state: dict[str, Any] = {"mode_": self.mode_, "a_": self.a_, "b_": self.b_, "n_train_": self.n_train_, "refit_": None}
        texts: dict[str, str] = {}
        if self.refit_ is not None:
            state["refit_"], texts = estimator_to_json(self.refit_, prefix + "refit_.")
        return state, texts

    def _load_state(self, state, texts, prefix):
        if state["mode_"] not in MODES:
            raise PredictorError(f"model.json: transfer mode {str(state['mode_'])[:20]!r}; allowed: {'|'.join(MODES)}")
        self.mode_ = state["mode_"]
        self.a_, self.b_ = float(check_finite("a_", state["a_"])), float(check_finite("b_", state["b_"]))
        self.n_train_ = int(state["n_train_"])
        self.refit_ = None if state["refit_"] is None else estimator_from_json(state["refit_"], texts, prefix + "refit_.")


def transfer_from(source, mode: str = "auto") -> TransferModel:
    """An unfitted TransferModel from a fitted source estimator or a TrainedPredictor (kept fitted by clone)."""
    est = getattr(source, "estimator", source)
    if not isinstance(est, FrozenEstimator):
        est = FrozenEstimator(est)
    return TransferModel(source=est, mode=mode)


def few_shot_curve(
    source,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_hold: np.ndarray,
    y_hold: np.ndarray,
    sizes: Sequence[int] = (10, 20, 50, 100, 200),
    repeats: int = 5,
    scratch=None,
    seed: int = 0,
    metric: str = "latency_ms",
    progress: bool = False,
):
    """Transfer vs training from scratch for each training-set size, on one fixed hold-out.

    For each size n and repeat, n rows are drawn from the pool (never from the hold-out); a transfer model
    (from ``source``) and each scratch model (``scratch``: an estimator or {name: estimator}; default
    ``{"additive": AdditiveModel()}``) are fitted on them and scored on the hold-out in the device metric.
    Sizes larger than the pool are skipped, and so are scratch models below their minimum (LightGBM: 50 rows).
    Returns a pandas DataFrame: size, method ("transfer",
    "scratch_<name>"), repeat, and the figures of :func:`predictors.regression_report`.
    """
    import pandas as pd
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    if scratch is None:
        scratch = {"additive": AdditiveModel()}
    elif not isinstance(scratch, dict):
        scratch = {getattr(scratch, "kind", "model"): scratch}

    truth = from_cost(metric, y_hold)
    rows = []
    plan = [(n, r) for n in sizes if n <= len(y_pool) for r in range(repeats)]
    for n, r in tqdm(plan, desc="few-shot fits", unit="draw", disable=not progress, dynamic_ncols=True):
        idx = rng.choice(len(y_pool), size=n, replace=False)
        models = [("transfer", transfer_from(source))] + [
            (f"scratch_{k}", clone(e)) for k, e in scratch.items() if n >= MIN_ROWS.get(getattr(e, "kind", ""), 1)
        ]
        for method, est in models:
            est.fit(X_pool[idx], y_pool[idx])
            rep = regression_report(truth, from_cost(metric, est.predict(X_hold)))
            rows.append({"size": n, "method": method, "repeat": r, **rep})
    return pd.DataFrame(rows)


SELECTIONS = ("random", "informative")
FEW_SHOT_METHODS = ("scratch", "transfer", "chosen")


def choose_by_validation(X, y, candidates: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """(name, {name: cross-validated MAPE %}) of the candidate estimator with the lowest cross-validated
    relative error on (X, y) (leave-one-out up to 30 rows, else 5-fold); ties go to the first."""
    errs = {}
    for name, est in candidates.items():
        try:
            errs[name] = mape(y[in_space_mask(X)], cross_val_predict(est, X, y))
        except ValueError:
            errs[name] = float("inf")
    return min(errs, key=lambda k: (errs[k], list(candidates).index(k))), errs


def few_shot_table(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_hold: np.ndarray,
    y_hold: np.ndarray,
    *,
    X_anchors: np.ndarray,
    y_anchors: np.ndarray,
    sources: dict[str, Any],
    sizes: Sequence[int] = (10, 20, 30, 50),
    repeats: int = 5,
    selections: Sequence[str] = SELECTIONS,
    methods: Sequence[str] = FEW_SHOT_METHODS,
    metric: str = "latency_ms",
    criterion: str = "i",
    seed: int = 0,
    progress: bool = False,
):
    """Few-shot quality the way ``lowformer-nas onboard`` works, on measurements taken beforehand.

    The anchors (``X_anchors``/``y_anchors``, measured on the device) pick the source among ``sources``
    ({name: fitted estimator or TrainedPredictor}) by :func:`predictors.rank_sources`. For each size n the
    training set is the anchors plus n - len(anchors) configs of the pool, chosen at random (``repeats``
    seeded draws) or by :func:`predictors.informative_order` (deterministic: one draw). On it are fitted the
    additive model from scratch, the transfer from the source, and "chosen": the best by cross-validation on the
    training set among these two and the transfer from every other source (model ``"transfer:<source>"``), as
    onboarding chooses (``nas.onboard.train_best``, where every scratch model type and the cross-device model
    compete too). Every model is scored on the hold-out,
    which is never trained on. ``y_*`` are costs (:func:`predictors.to_cost`); scores are in ``metric``.

    Returns (DataFrame: size, selection, method, repeat, source, model, figures of
    :func:`predictors.regression_report`; the source ranking).
    """
    import pandas as pd
    from tqdm import tqdm

    from ._design import informative_order, random_order, rank_sources

    bad = [s for s in selections if s not in SELECTIONS] + [m for m in methods if m not in FEW_SHOT_METHODS]
    if bad:
        raise ValueError(f"selections/methods: unknown {bad[0]!r}; allowed {'|'.join(SELECTIONS)} / {'|'.join(FEW_SHOT_METHODS)}")
    ranking = rank_sources(X_anchors, y_anchors, sources)
    if not ranking:
        raise ValueError("sources: none of them predicts the anchors")
    best = ranking[0]["source"]
    src = getattr(sources[best], "estimator", sources[best])
    k0 = len(y_anchors)
    truth = from_cost(metric, y_hold)
    plan = []
    for n in sizes:
        if n <= k0 or n - k0 > len(y_pool):
            continue
        for sel in selections:
            for r in range(repeats if sel == "random" else 1):
                plan.append((n, sel, r))
    cost_pool, cost_anchors = src.predict(X_pool), src.predict(X_anchors)
    rows = []
    for n, sel, r in tqdm(plan, desc="few-shot fits", unit="draw", disable=not progress, dynamic_ncols=True):
        if sel == "random":
            idx = random_order(len(y_pool), n - k0, seed=seed + 1000 * n + r)
        else:
            idx = informative_order(X_pool, n - k0, X_known=X_anchors, expected_cost=cost_pool,
                                    expected_cost_known=cost_anchors, criterion=criterion)
        X = np.vstack([X_anchors, X_pool[idx]])
        y = np.concatenate([y_anchors, y_pool[idx]])
        fitted = {"scratch": AdditiveModel(), "transfer": transfer_from(src)}
        # As onboarding chooses: the transfer from every source competes, not only from the anchors' best.
        others = {f"transfer:{k}": transfer_from(getattr(v, "estimator", v)) for k, v in sources.items() if k != best}
        chosen = None
        if "chosen" in methods:
            chosen, _ = choose_by_validation(X, y, {**fitted, **others})
        for method in methods:
            name = chosen if method == "chosen" else method
            est = clone({**fitted, **others}[name]).fit(X, y)
            rep = regression_report(truth, from_cost(metric, est.predict(X_hold)))
            rows.append({"size": n, "selection": sel, "method": method, "repeat": r, "source": best, "model": name,
                         **rep})
    return pd.DataFrame(rows), ranking
