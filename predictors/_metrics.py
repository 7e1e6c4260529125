"""Validation figures of a predictor: error (MAPE, RMSE, share within +-5 % / +-10 %) and ranking (Kendall tau,
Spearman), and out-of-fold predictions by k-fold or leave-one-out cross-validation."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import KFold, LeaveOneOut

from ._features import in_space_mask

# At most this many configs: leave-one-out; above: k-fold.
LOO_MAX = 30
K_FOLDS = 5


def mape(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.mean(np.abs(y_pred - y_true) / np.abs(y_true)) * 100)


def rmse(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def within(y_true, y_pred, pct: float) -> float:
    """Share (0-1) of predictions within +-pct % of the truth."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.mean(np.abs(y_pred - y_true) <= pct / 100 * np.abs(y_true)))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _ranks_undefined(y_true, y_pred) -> bool:
    return len(y_true) < 2 or np.ptp(np.asarray(y_true, float)) == 0 or np.ptp(np.asarray(y_pred, float)) == 0


def kendall_tau(y_true, y_pred) -> float | None:
    if _ranks_undefined(y_true, y_pred):
        return None
    return _nan_to_none(stats.kendalltau(y_true, y_pred).statistic)


def spearman(y_true, y_pred) -> float | None:
    if _ranks_undefined(y_true, y_pred):
        return None
    return _nan_to_none(stats.spearmanr(y_true, y_pred).statistic)


def regression_report(y_true, y_pred) -> dict:
    """{n, mape, rmse, within_5, within_10, kendall_tau, spearman, mae}; tau/rho None when undefined."""
    return {
        "n": int(len(y_true)),
        "mape": mape(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "mae": float(np.mean(np.abs(np.asarray(y_pred, float) - np.asarray(y_true, float)))),
        "within_5": within(y_true, y_pred, 5),
        "within_10": within(y_true, y_pred, 10),
        "kendall_tau": kendall_tau(y_true, y_pred),
        "spearman": spearman(y_true, y_pred),
    }


def cv_method(n: int) -> str:
    return "leave-one-out" if n <= LOO_MAX else f"{K_FOLDS}-fold"


def cv_splits(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) index pairs over ``n`` configs that validation uses: leave-one-out up to
    :data:`LOO_MAX`, else shuffled k-fold (the interval calibration reuses them)."""
    splitter = LeaveOneOut() if n <= LOO_MAX else KFold(K_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.arange(n)))


def feature_box(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the (min, max) over the in-space rows of ``X``: the range a model was trained on."""
    Xi = np.asarray(X, float)[in_space_mask(X)]
    return Xi.min(axis=0), Xi.max(axis=0)


def cross_val_predict(estimator, X, y, seed: int = 0, progress: Callable | None = None, clipped: bool = False):
    """Out-of-fold predictions for the full (in-space) rows of ``X``.

    Leave-one-out up to :data:`LOO_MAX` configs, else shuffled k-fold (:func:`cv_splits`). Out-of-space rows
    (MACs only) are never predicted: they join every training fold. Returns predictions for the in-space rows,
    in order; with ``clipped``, also each fold model's predictions for the held-out rows clipped into the feature
    range of its training rows (what the interval calibration compares them with: the part of a prediction
    that rests on extrapolation).
    """
    X, y = np.asarray(X, float), np.asarray(y, float)
    ins = np.flatnonzero(in_space_mask(X))
    oos = np.flatnonzero(~in_space_mask(X))
    n = len(ins)
    pred = np.empty(n)
    pred_clip = np.empty(n)
    splits = cv_splits(n, seed)
    for train, test in progress(splits) if progress else splits:
        rows = np.concatenate([ins[train], oos])
        est = clone(estimator).fit(X[rows], y[rows])
        pred[test] = est.predict(X[ins[test]])
        if clipped:
            lo, hi = feature_box(X[ins[train]])
            pred_clip[test] = est.predict(np.clip(X[ins[test]], lo, hi))
    return (pred, pred_clip) if clipped else pred
