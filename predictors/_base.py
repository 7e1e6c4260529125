"""The estimator base, the error type and the metric <-> cost conversion shared by every predictor."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from lowformer_common import UserError

from ._features import SCHEMA_HASH, check_features


class PredictorError(UserError):
    """A predictor cannot be found, loaded or trained. ``str(err)`` is one line saying what is allowed."""


# Metrics where larger is better; they are modelled as a time per image (ms) so that costs add up.
HIGHER_IS_BETTER = frozenset({"throughput_img_s", "fps", "top1_pct"})
TIME_METRICS = ("latency_ms", "throughput_img_s", "fps")
ACCURACY_METRICS = ("top1_pct",)
PREDICTABLE_METRICS = TIME_METRICS + ACCURACY_METRICS
# Fewest configs each model type is trained from.
MIN_ROWS = {"macs": 2, "additive": 3, "surrogate": 4, "transfer": 2, "shared": 3, "lgbm": 50}


def to_cost(metric: str, values) -> np.ndarray:
    """Device metric -> what the estimators model: milliseconds per image for time metrics, the value otherwise."""
    v = np.asarray(values, dtype=np.float64)
    if metric in ("throughput_img_s", "fps"):
        return 1000.0 / v
    return v


def from_cost(metric: str, cost) -> np.ndarray:
    c = np.asarray(cost, dtype=np.float64)
    if metric in ("throughput_img_s", "fps"):
        return 1000.0 / c
    return c


# A time per image outside this range (ms) is no prediction of a real network on a real device: 0.1 µs to
# about three hours. Predictions beyond it come from a corrupt or edited model and are refused.
PLAUSIBLE_COST_MS = (1e-4, 1e7)


def check_finite(name: str, values, *, low: float | None = None, what: str = "") -> np.ndarray:
    """``values`` as a float array if every one is finite (and >= ``low``); else a one-line PredictorError
    naming the parameter: a loaded model must not carry NaN, infinity or physically impossible values."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PredictorError(f"model.json: {name} is not a number or list of numbers") from None
    if not np.isfinite(v).all():
        raise PredictorError(f"model.json: {name} holds a non-finite number; the model is corrupt or edited (retrain it)")
    if low is not None and (v < low).any():
        bad = float(v[v < low].flat[0])
        raise PredictorError(f"model.json: {name} is {bad:g}; {what or f'it must be >= {low:g}'} (corrupt or edited: retrain it)")
    return v


def check_predictions(metric: str, cost: np.ndarray, who: str) -> np.ndarray:
    """Predicted costs (ms per image, or top-1 %) that are finite and, for time metrics, within
    PLAUSIBLE_COST_MS; else a one-line PredictorError naming the predictor."""
    cost = np.asarray(cost, dtype=np.float64)
    bad = ~np.isfinite(cost)
    if metric in TIME_METRICS:
        lo, hi = PLAUSIBLE_COST_MS
        bad |= (cost < lo) | (cost > hi)
    if bad.any():
        v = float(cost[bad].flat[0])
        unit = "ms per image" if metric in TIME_METRICS else metric
        raise PredictorError(f"{who}: predicted {v:.4g} {unit}, which no network takes; the predictor is corrupt or "
                             "edited (retrain it: lowformer-nas predictors train)")
    return cost


# Every concrete estimator by class name: what persistence may rebuild from a model.json (nothing else).
ESTIMATORS: dict[str, type] = {}


class CostModel(RegressorMixin, BaseEstimator, abc.ABC):
    """A scikit-learn regressor on the feature matrix of :func:`predictors.featurize`.

    Time models predict a positive cost (ms per image). Subclasses implement ``fit``/``predict`` and the JSON
    state used by persistence: ``_state()`` returns the learned attributes as JSON values plus any text
    artefacts (LightGBM models), ``_load_state`` restores them. Nothing is pickled.
    """

    # Model type name used on disk and on the command line.
    kind: str = ""

    def __init_subclass__(cls, **kwargs):
        # Registering here, not in the persistence module, keeps persistence free of imports of the models
        # (which import it for their nested estimators).
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            ESTIMATORS[cls.__name__] = cls

    def _validate_X(self, X) -> np.ndarray:
        return check_features(X)

    def _check_fitted(self) -> None:
        check_is_fitted(self)
        if getattr(self, "schema_hash_", SCHEMA_HASH) != SCHEMA_HASH:
            raise PredictorError(
                f"model: trained on feature schema {self.schema_hash_[:12]}, this code has {SCHEMA_HASH[:12]}; retrain it"
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "schema_hash_")

    @abc.abstractmethod
    def fit(self, X, y, sample_weight=None) -> "CostModel": ...

    @abc.abstractmethod
    def predict(self, X) -> np.ndarray: ...

    @abc.abstractmethod
    def _state(self, prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(JSON-able learned attributes, {artefact file name: text}); file names start with ``prefix``."""

    @abc.abstractmethod
    def _load_state(self, state: dict[str, Any], texts: dict[str, str], prefix: str) -> None: ...
