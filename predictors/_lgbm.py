"""Gradient-boosted trees (LightGBM) on the features, for devices with hundreds of measurements.

Two targets, chosen by validation: ``log`` fits log(time) directly; ``ratio`` fits log(time / additive
model), so the trees only learn what the op-level additive model misses (fusion effects, cache cliffs)
and the additive model keeps extrapolating where the trees have seen nothing. Log space makes the
squared loss a relative one, as for the other models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._additive import AdditiveModel
from ._base import CostModel, PredictorError
from ._features import FEATURE_NAMES, SCHEMA_HASH, in_space_mask
from ._persist import estimator_from_json, estimator_to_json

TARGETS = ("log", "ratio")
MODEL_TXT = "model.txt"
# A leaf of a log-time tree beyond this is no timing (e^20 ~ 5e8): an edited or corrupt model.
MAX_LEAF_VALUE = 20.0
_TREE_KEYS = ("num_leaves", "num_cat", "split_feature", "threshold", "decision_type", "left_child", "right_child",
              "leaf_value", "is_linear", "shrinkage")


def _fail(name: str, what: str):
    raise PredictorError(f"{name}: {what}; the LightGBM model is corrupt or edited (restore or retrain it)")


def _kv(lines: list[str], name: str, where: str) -> dict[str, str]:
    out = {}
    for line in lines:
        if line:
            key, sep, value = line.partition("=")
            if not sep:
                _fail(name, f"{where}: {line[:40]!r} is not key=value")
            out[key] = value
    return out


def _numbers(kv: dict[str, str], key: str, n: int, kind, name: str, where: str) -> list:
    text = kv.get(key)
    if text is None:
        _fail(name, f"{where}: no {key}")
    items = text.split()
    if len(items) != n:
        _fail(name, f"{where}: {key} has {len(items)} values, {n} expected")
    try:
        values = [kind(v) for v in items]
    except ValueError:
        _fail(name, f"{where}: {key} holds a non-number")
    if kind is float and not all(math.isfinite(v) for v in values):
        _fail(name, f"{where}: {key} holds a non-finite number")
    return values


def check_model_text(text: str, name: str = MODEL_TXT) -> None:
    """Check a LightGBM model text before LightGBM parses it: a malformed one can crash the process (SIGSEGV,
    abort) instead of raising, so nothing reaches the library that is not a complete, well-formed model of
    this feature schema whose every tree is a proper binary tree with finite, plausible values.

    Raises a one-line PredictorError naming the file and the first problem.
    """
    if not text.isascii():
        _fail(name, "non-ASCII text")
    head, sep, rest = text.partition("\nTree=")
    if not sep:
        _fail(name, "no trees")
    header = _kv(head.split("\n")[1:], name, "header") if head.startswith("tree\n") else _fail(name, "no 'tree' header")
    for key, want in (("num_class", "1"), ("num_tree_per_iteration", "1"), ("max_feature_idx", str(len(FEATURE_NAMES) - 1))):
        if header.get(key) != want:
            _fail(name, f"header: {key} is {str(header.get(key))[:20]!r}, {want!r} expected")
    if header.get("feature_names", "").split() != list(FEATURE_NAMES):
        _fail(name, "header: feature_names are not this feature schema's")
    body, sep, tail = rest.partition("\nend of trees\n")
    if not sep:
        _fail(name, "no 'end of trees' (truncated?)")
    last = tail.rstrip("\n").rpartition("\n")[2]
    if not last.startswith("pandas_categorical:"):
        _fail(name, "no pandas_categorical line at the end (truncated?)")
    blocks = ("Tree=" + body).split("\n\n\n")
    sizes = header.get("tree_sizes", "").split()
    if len(sizes) != len(blocks):
        _fail(name, f"header: tree_sizes lists {len(sizes)} trees, the file has {len(blocks)}")
    n_features = len(FEATURE_NAMES)
    for i, (block, size) in enumerate(zip(blocks, sizes)):
        where = f"tree {i}"
        # LightGBM seeks to each tree by these byte counts: they must be exact.
        if not size.isdigit() or int(size) != len(block) + (3 if i < len(blocks) - 1 else 1):
            _fail(name, f"{where}: its size differs from tree_sizes")
        lines = block.split("\n")
        if lines[0] != f"Tree={i}":
            _fail(name, f"{where}: starts with {lines[0][:20]!r}")
        kv = _kv(lines[1:], name, where)
        missing = [k for k in _TREE_KEYS if k not in kv]
        if missing:
            _fail(name, f"{where}: no {missing[0]}")
        leaves = _numbers(kv, "num_leaves", 1, int, name, where)[0]
        if not 1 <= leaves <= 1 << 17 or kv["num_cat"] != "0" or kv["is_linear"] != "0":
            _fail(name, f"{where}: num_leaves {leaves}, num_cat {kv['num_cat'][:5]}, is_linear {kv['is_linear'][:5]}")
        inner = leaves - 1
        split = _numbers(kv, "split_feature", inner, int, name, where)
        _numbers(kv, "threshold", inner, float, name, where)
        decision = _numbers(kv, "decision_type", inner, int, name, where)
        left = _numbers(kv, "left_child", inner, int, name, where)
        right = _numbers(kv, "right_child", inner, int, name, where)
        values = _numbers(kv, "leaf_value", leaves, float, name, where)
        _numbers(kv, "shrinkage", 1, float, name, where)
        if any(not 0 <= f < n_features for f in split):
            _fail(name, f"{where}: split_feature outside the {n_features} features")
        if any(d < 0 or d & 1 or (d >> 2) & 3 > 2 or d > 15 for d in decision):  # numerical splits only
            _fail(name, f"{where}: decision_type of a categorical or unknown split")
        if any(abs(v) > MAX_LEAF_VALUE for v in values):
            _fail(name, f"{where}: a leaf value beyond ±{MAX_LEAF_VALUE:g} (log time)")
        # Every internal node but the root and every leaf is the child of exactly one node, reached from the
        # root: a proper tree, no cycle, no index out of range.
        children = left + right
        if sorted(children) != sorted([*range(1, inner), *(~j for j in range(leaves))]):
            _fail(name, f"{where}: child indices do not form a binary tree")
        seen, stack = 0, [0] if inner else []
        while stack:
            node = stack.pop()
            seen += 1
            if seen > inner:
                _fail(name, f"{where}: child indices form a cycle")
            stack += [c for c in (left[node], right[node]) if c >= 0]
        if seen != inner:
            _fail(name, f"{where}: nodes unreachable from the root")


class LGBMModel(CostModel):
    """LightGBM regressor of log(time) (``target="log"``) or of log(time / base) (``target="ratio"``).

    ``base``: the additive model of the ratio target (default: ``AdditiveModel()``), refit with the trees.
    ``min_child_samples=None`` scales the leaf size with the data (2 to 20). Training is deterministic for a
    given ``random_state`` (LightGBM ``deterministic`` mode, row-wise histograms).

    Learned: ``booster_`` (lightgbm.Booster), ``base_`` (fitted base for the ratio target, else None),
    ``n_train_``.
    """

    kind = "lgbm"
    min_rows, auto_from_rows, order = 50, 50, 2

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

    @classmethod
    def candidates(cls, source=None) -> dict[str, "LGBMModel"]:
        # Two targets: "lgbm" fits the additive model's residual ratio, "lgbm_log" log time directly.
        return {"lgbm": cls(target="ratio"), "lgbm_log": cls(target="log")}

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

        if self.target not in TARGETS:
            raise PredictorError(f"model.json: LightGBM target {str(self.target)[:20]!r}; allowed: {'|'.join(TARGETS)}")
        name = state["booster_"]
        if not isinstance(name, str) or name not in texts:
            raise PredictorError(f"model.json: names the LightGBM model {str(name)[:60]!r}, which is not among the files")
        check_model_text(texts[name], name)  # a malformed text can crash LightGBM itself
        self.booster_ = lgb.Booster(model_str=texts[name])
        self.base_ = None if state["base_"] is None else estimator_from_json(state["base_"], texts, prefix + "base_.")
        self.n_train_ = int(state["n_train_"])
