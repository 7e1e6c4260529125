"""Features of a config for the predictors: one versioned schema read off the analytic counts.

Every estimator, the domain check and the persisted predictors use this one table of columns. Its hash
(sha256 of the version and the ordered names) is written beside every saved predictor; a predictor
whose hash differs from :data:`SCHEMA_HASH` was trained on other columns and is refused.

Featurising costs one :func:`search_spaces.count` per config plus a few array reshapes, so it runs at
nearly the counter's speed. Architectures outside the search space (other families, the paper's toy
models) have only MACs and parameters: :func:`out_of_space_features` gives them rows with those two
filled in and NaN everywhere else, which the estimators recognise.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Iterable, Sequence

import numpy as np

from search_spaces import ATTENTION_TYPES, OP_TYPES, QUANTITIES, STAGES, LowFormerConfig, count

SCHEMA_VERSION = 1

# Quantities kept per stage and op type (params only in total: they drive memory, not time, per stage).
_STAGE_QUANTITIES = ("macs", "bytes", "layers")
_Q = {q: i for i, q in enumerate(QUANTITIES)}
_ATT_STAGES = (3, 4)

_GLOBAL = (
    "resolution",
    "depth_total",
    *(f"depth{i}" for i in range(5)),
    *(f"width{i}" for i in range(5)),
    "macs",
    "params",
    "bytes",
    "layers",
    "tokens_stage3",
    "tokens_stage4",
)
# Knobs the counts do not show directly (which attention, whether there is an MLP): for the trees and the
# domain check. A stage without blocks has all of them 0.
_KNOB = (
    *(f"att{s}_{a}" for s in _ATT_STAGES for a in ATTENTION_TYPES),
    *(f"mlp{s}" for s in _ATT_STAGES),
)
_PER_OP = tuple(f"{q}.{op}" for q in QUANTITIES for op in OP_TYPES)
_PER_STAGE_OP = tuple(f"{q}.{s}.{op}" for q in _STAGE_QUANTITIES for s in STAGES for op in OP_TYPES)

FEATURE_NAMES: tuple[str, ...] = _GLOBAL + _KNOB + _PER_OP + _PER_STAGE_OP
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
N_FEATURES = len(FEATURE_NAMES)
SCHEMA_HASH = hashlib.sha256(("\n".join((f"v{SCHEMA_VERSION}", *FEATURE_NAMES))).encode()).hexdigest()

_G0 = 0
_K0 = len(_GLOBAL)
_P0 = _K0 + len(_KNOB)
_S0 = _P0 + len(_PER_OP)
_ATT_INDEX = {a: i for i, a in enumerate(ATTENTION_TYPES)}


def schema() -> dict:
    """What a saved predictor records about the columns it was trained on."""
    return {"version": SCHEMA_VERSION, "hash": SCHEMA_HASH, "n_features": N_FEATURES}


def columns(names: Iterable[str]) -> list[int]:
    """Column indices of feature names (KeyError names the unknown one)."""
    return [FEATURE_INDEX[n] for n in names]


def featurize(configs: Sequence[LowFormerConfig]) -> np.ndarray:
    """The (n, N_FEATURES) float64 feature matrix of ``configs``."""
    n = len(configs)
    counts = np.empty((n, len(STAGES), len(OP_TYPES), len(QUANTITIES)), dtype=np.int64)
    knobs = np.zeros((n, 13 + len(_KNOB)), dtype=np.float64)  # resolution, depths, widths, tokens 3/4, knob one-hots
    n_att = len(ATTENTION_TYPES)
    for i, cfg in enumerate(configs):
        c = count(cfg)
        counts[i] = c.array
        row = knobs[i]
        row[0] = cfg.resolution
        row[1:6] = cfg.depths
        row[6:11] = cfg.widths
        row[11] = c.tokens["stage3"]
        row[12] = c.tokens["stage4"]
        for j in range(2):
            a = cfg.attention[j]
            if a is not None:
                row[13 + j * n_att + _ATT_INDEX[a]] = 1.0
                row[13 + 2 * n_att + j] = 1.0 if cfg.mlp[j] else 0.0
    return _assemble(counts, knobs)


@functools.lru_cache(maxsize=1024)
def featurize_one(config: LowFormerConfig) -> np.ndarray:
    """The (1, N_FEATURES) features of one config, cached (read-only): a search asks several predictors and
    the domain check about the same config in a row."""
    X = featurize([config])
    X.flags.writeable = False
    return X


def _assemble(counts: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    n = counts.shape[0]
    X = np.empty((n, N_FEATURES), dtype=np.float64)
    X[:, 0] = knobs[:, 0]
    X[:, 1] = knobs[:, 1:6].sum(axis=1)
    X[:, 2:7] = knobs[:, 1:6]
    X[:, 7:12] = knobs[:, 6:11]
    totals = counts.sum(axis=(1, 2))  # (n, quantities)
    X[:, 12:16] = totals
    X[:, 16:18] = knobs[:, 11:13]
    X[:, _K0:_P0] = knobs[:, 13:]
    X[:, _P0:_S0] = counts.sum(axis=1).transpose(0, 2, 1).reshape(n, -1)  # quantity-major, then op
    per_stage = counts[:, :, :, [_Q[q] for q in _STAGE_QUANTITIES]]  # (n, stage, op, q)
    X[:, _S0:] = per_stage.transpose(0, 3, 1, 2).reshape(n, -1)  # quantity, stage, op
    return X


def out_of_space_features(macs: Sequence[float], params: Sequence[float], resolution: Sequence[float]) -> np.ndarray:
    """Rows for architectures outside the space: MACs, params and resolution (NaN where unknown), the rest NaN."""
    n = len(macs)
    X = np.full((n, N_FEATURES), np.nan)
    X[:, FEATURE_INDEX["macs"]] = np.asarray(macs, dtype=float)
    X[:, FEATURE_INDEX["params"]] = np.asarray(params, dtype=float)
    X[:, FEATURE_INDEX["resolution"]] = np.asarray(resolution, dtype=float)
    return X


def in_space_mask(X: np.ndarray) -> np.ndarray:
    """Rows that are full featurisations (not out-of-space MACs-only rows)."""
    return ~np.isnan(X[:, FEATURE_INDEX["layers"]])


def check_features(X) -> np.ndarray:
    """``X`` as a float64 (n, N_FEATURES) array, or a one-line ValueError."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise ValueError(
            f"X: expected a (n, {N_FEATURES}) feature matrix of schema v{SCHEMA_VERSION} (got shape {X.shape}); "
            "use predictors.featurize(configs)"
        )
    return X
