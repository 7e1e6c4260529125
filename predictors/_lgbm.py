"""Gradient-boosted trees (LightGBM) on the features, for devices with hundreds of measurements.

Two targets, chosen by validation: ``log`` fits log(time) directly; ``ratio`` fits log(time / additive
model), so the trees only learn what the op-level additive model misses (fusion effects, cache cliffs)
and the additive model keeps extrapolating where the trees have seen nothing. Log space makes the
squared loss a relative one, as for the other models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._additive import AdditiveModel
from ._base import CostModel
from ._features import FEATURE_NAMES, SCHEMA_HASH, in_space_mask
from ._persist import estimator_from_json, estimator_to_json

TARGETS = ("log", "ratio")
MODEL_TXT = "model.txt"


class LGBMModel(CostModel):
    """LightGBM regressor of log(time) (``target="log"``) or of log(time / base) (``target="ratio"``).

    ``base``: the additive model of the ratio target (default: ``AdditiveModel()``), refit with the trees.
    ``min_child_samples=None`` scales the leaf size with the data (2 to 20). Training is deterministic for a
    given ``random_state`` (LightGBM ``deterministic`` mode, row-wise histograms).

    Learned: ``booster_`` (lightgbm.Booster), ``base_`` (fitted base for the ratio target, else None),
    ``n_train_``.
    """

    kind = "lgbm"

    def __init__(
        self,
        target: str = "ratio",
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int | None = None,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        reg_lambda: float = 1.0,
        random_state: int = 0,
        n_jobs: int = 1,
        base=None,
    ):
        self.target = target
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.base = base

    def _lgb_params(self, n: int) -> dict[str, Any]:
        mcs = self.min_child_samples if self.min_child_samples is not None else int(np.clip(n // 20, 2, 20))
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": mcs,
            "min_sum_hessian_in_leaf": 0.0,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
            # Small data sets: let a feature be split on at all (the default needs 3 distinct bins of data).
            "min_data_in_bin": 1,
            "feature_pre_filter": False,
        }

    def fit(self, X, y, sample_weight=None):
        import lightgbm as lgb
        from sklearn.base import clone

        if self.target not in TARGETS:
            raise ValueError(f"target: must be one of {'|'.join(TARGETS)} (got {self.target!r})")
        X = self._validate_X(X)
        y = np.asarray(y, dtype=float)
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("y: needs positive finite times")
        if self.target == "ratio":
            # The base may use out-of-space rows (its prior); the trees see only full rows.
            self.base_ = clone(self.base if self.base is not None else AdditiveModel()).fit(X, y, sample_weight)
        else:
            self.base_ = None
        ins = in_space_mask(X)
        Xi, yi = X[ins], y[ins]
        t = np.log(yi)
        if self.base_ is not None:
            t = t - np.log(self.base_.predict(Xi))
        w = None if sample_weight is None else np.asarray(sample_weight, float)[ins]
        data = lgb.Dataset(Xi, t, weight=w, feature_name=list(FEATURE_NAMES), free_raw_data=True)
        self.booster_ = lgb.train(self._lgb_params(len(t)), data, num_boost_round=self.n_estimators)
        self.n_train_ = int(ins.sum())
        self.schema_hash_ = SCHEMA_HASH
        return self

    def correction(self, X) -> np.ndarray:
        """The trees' output: log(time) for the log target, log(time / base) for the ratio target."""
        self._check_fitted()
        return self.booster_.predict(self._validate_X(X), num_threads=self.n_jobs)

    def predict(self, X):
        X = self._validate_X(X)
        out = np.exp(self.correction(X))
        if self.base_ is not None:
            out = out * self.base_.predict(X)
        return out

    def _state(self, prefix):
        state: dict[str, Any] = {"n_train_": self.n_train_, "booster_": prefix + MODEL_TXT, "base_": None}
        texts = {prefix + MODEL_TXT: self.booster_.model_to_string()}
        if self.base_ is not None:
            doc, t = estimator_to_json(self.base_, prefix + "base_.")
            state["base_"] = doc
            texts.update(t)
        return state, texts

    def _load_state(self, state, texts, prefix):
        import lightgbm as lgb

        self.booster_ = lgb.Booster(model_str=texts[state["booster_"]])
        self.base_ = None if state["base_"] is None else estimator_from_json(state["base_"], texts, prefix + "base_.")
        self.n_train_ = int(state["n_train_"])
