"""Accuracy surrogate: ImageNet-1k top-1 (%) modelled from architecture features.

This is a *surrogate*, not an accuracy: a ridge regression on a handful of architecture descriptors
(log parameters, log MACs, depth, resolution, how many stages have attention and an MLP) fitted to the
top-1 the paper published for its LowFormer configs (about a dozen points). It ranks configs plausibly
near the paper's variants and says nothing reliable far from them; every output that uses it says so.
Users who train networks refit it on their own results (``lowformer-nas predictors train --device
imagenet1k --metric top1_pct`` after importing them).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV

from ._base import CostModel, PredictorError, check_finite
from ._features import FEATURE_INDEX, SCHEMA_HASH, in_space_mask

_ATT = [FEATURE_INDEX[f"att{s}_{a}"] for s in (3, 4) for a in ("lowtention", "mhsa", "relu_linear")]
_MLP = [FEATURE_INDEX["mlp3"], FEATURE_INDEX["mlp4"]]


def _descriptor(name: str, X: np.ndarray) -> np.ndarray:
    f = FEATURE_INDEX
    if name == "log_params":
        return np.log(X[:, f["params"]])
    if name == "log_macs":
        return np.log(X[:, f["macs"]])
    if name == "depth":
        return X[:, f["depth_total"]]
    if name == "resolution":
        return X[:, f["resolution"]]
    if name == "attention_stages":
        return X[:, _ATT].sum(axis=1)
    if name == "mlp_stages":
        return X[:, _MLP].sum(axis=1)
    if name == "log_width":
        return np.log(X[:, f["width4"]])
    raise ValueError(f"features: unknown {name!r}; allowed: {', '.join(DESCRIPTORS)}")


DESCRIPTORS = ("log_params", "log_macs", "depth", "resolution", "attention_stages", "mlp_stages", "log_width")
DEFAULT_DESCRIPTORS = ("log_params", "log_macs", "depth", "resolution", "attention_stages", "mlp_stages")
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class AccuracySurrogate(CostModel):
    """Ridge regression of top-1 (%) on standardised architecture descriptors; alpha by efficient LOO.

    Learned: ``coef_`` (per standardised descriptor), ``intercept_``, ``mean_``/``std_`` (standardisation),
    ``alpha_``, ``n_train_``. Predictions are clipped to [0, 100]. ``sample_weight`` weights rows in the
    standardisation and the ridge fit (a zero weight drops the row).
    """

    kind = "surrogate"
    min_rows, predicts, order = 4, "accuracy", -1

    def __init__(self, features=DEFAULT_DESCRIPTORS, alphas=ALPHAS):
        self.features = features
        self.alphas = alphas

    def _design(self, X):
        return np.column_stack([_descriptor(n, X) for n in self.features])

    def fit(self, X, y, sample_weight=None):
        X = self._validate_X(X)
        y = np.asarray(y, dtype=float)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if w.shape != y.shape or not np.all(np.isfinite(w)) or (w < 0).any():
            raise ValueError(f"sample_weight: expected {len(y)} finite non-negative weights")
        ins = in_space_mask(X) & (w > 0)  # a zero weight drops the row, its standardisation included
        if ins.sum() < 3:
            raise ValueError("X: the surrogate needs at least 3 configs of the search space")
        D, wi = self._design(X[ins]), w[ins]
        self.mean_ = np.average(D, axis=0, weights=wi)
        std = np.sqrt(np.average((D - self.mean_) ** 2, axis=0, weights=wi))
        self.std_ = np.where(std > 0, std, 1.0)
        r = RidgeCV(alphas=np.asarray(self.alphas, dtype=float)).fit((D - self.mean_) / self.std_, y[ins],
                                                    sample_weight=None if sample_weight is None else wi)
        self.coef_, self.intercept_, self.alpha_ = r.coef_.astype(float), float(r.intercept_), float(r.alpha_)
        self.n_train_ = int(ins.sum())
        self.schema_hash_ = SCHEMA_HASH
        return self

    def predict(self, X):
        self._check_fitted()
        D = self._design(self._validate_X(X))
        return np.clip(((D - self.mean_) / self.std_) @ self.coef_ + self.intercept_, 0.0, 100.0)

    def _state(self, prefix):
        return {
            "coef_": dict(zip(self.features, map(float, self.coef_))),
            "intercept_": self.intercept_,
            "mean_": list(map(float, self.mean_)),
            "std_": list(map(float, self.std_)),
            "alpha_": self.alpha_,
            "n_train_": self.n_train_,
        }, {}

    def _load_state(self, state, texts, prefix):
        self.coef_ = np.array([float(check_finite(f"coefficient {n!r}", state["coef_"][n])) for n in self.features])
        self.intercept_ = float(check_finite("intercept_", state["intercept_"]))
        self.alpha_ = float(check_finite("alpha_", state["alpha_"], low=0.0))
        self.mean_ = check_finite("mean_", state["mean_"])
        self.std_ = check_finite("std_", state["std_"], low=0.0)
        if self.mean_.shape != self.coef_.shape or self.std_.shape != self.coef_.shape:
            raise PredictorError(f"model.json: mean_/std_ need one value per feature ({self.coef_.size})")
        self.n_train_ = int(state["n_train_"])
