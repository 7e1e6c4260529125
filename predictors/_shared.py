"""A cross-device cost model for devices with little data: a common profile shared by every device, and per device
only what differs.

The paper's devices have 6-12 measured configs each; the local x86 dataset has over a thousand. What they share is
how cost grows with width, depth and resolution (the op counts); what differs is which op types are expensive on a
device. :func:`shared_profile` fits one additive model (:class:`predictors.AdditiveModel`: non-negative per-op-type
costs) to every device's rows at once, each device's times divided by its own speed factor (fitted alternately with
the profile; each device weighs as much as any other, so the 1,156 x86 configs do not outvote a dozen paper ones).
The device's model is then that profile's per-op-type coefficients, scaled to the device and re-fitted by NNLS on its
own rows with a ridge pull towards the scaled profile (:class:`predictors.TransferModel` in ``refit`` mode, the pull
chosen by leave-one-out): a hierarchical model whose coefficients are shrunk towards the common profile as far as
the device's data allow.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ._additive import AdditiveModel
from ._base import ACCURACY_METRICS, TIME_METRICS, PredictorError, to_cost
from ._features import FEATURE_INDEX, featurize
from ._transfer import TransferModel, transfer_from

# A device joins the profile (and can be fitted by it) with at least this many distinct configs.
SHARED_MIN_CONFIGS = 3
_PROFILE_ALPHA = 1e-3  # the profile has hundreds of rows: a light pull towards time-per-MAC suffices
_ITERATIONS = 3
# Op-type cost drivers of the additive model; a device must share at least two with the profile's devices.
_DRIVERS = ("macs.conv", "macs.pointwise", "macs.depthwise", "macs.matmul", "layers")


class SharedModel(TransferModel):
    """The cross-device model as a model type (``--model shared``): a :class:`TransferModel` in ``refit`` mode whose
    source is the common profile of the other devices (:func:`shared_profile`). It exists to register the type;
    the estimator it validates is a plain TransferModel, so nothing new is persisted."""

    kind = "shared"
    min_rows, needs_source, order = SHARED_MIN_CONFIGS, True, 4

    @classmethod
    def candidates(cls, source=None) -> dict[str, TransferModel]:
        if source is None:
            raise PredictorError("source: --model shared needs the common cost profile of the other devices "
                                 "(predictors.shared_profile); the CLI builds it from the store")
        return {"shared": transfer_from(source, mode="refit")}


def _device_rows(df: pd.DataFrame, device: str, exclude: set[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, ms per image) of one device's in-space configs in its time metric with most configs (the median
    over repeats), without the configs in ``exclude``; None without enough of them."""
    from search_spaces import LowFormerConfig

    d = df[(df["device_id"] == device) & df["metric"].isin(TIME_METRICS) & df["config_json"].notna()]
    if "status" in d:
        d = d[d["status"].fillna("ok") == "ok"]
    if "flag" in d:
        d = d[d["flag"].isna()]
    d = d[~d["config_hash"].isin(exclude)]
    if d.empty:
        return None
    metric = d.groupby("metric")["config_hash"].nunique().idxmax()
    g = d[d["metric"] == metric].groupby("config_hash", sort=True).agg(value=("value", "median"), cfg=("config_json", "first"))
    g = g[np.isfinite(pd.to_numeric(g["value"], errors="coerce")) & (g["value"] > 0)]
    if len(g) < SHARED_MIN_CONFIGS:
        return None
    X = featurize([LowFormerConfig.from_json(j, source="config_json") for j in g["cfg"]])
    return X, to_cost(metric, g["value"].to_numpy(float))


def profile_rows(df: pd.DataFrame, target: str, exclude: Sequence[str] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{device: (features, ms per image)} of every device in ``df`` but ``target`` with at least
    :data:`SHARED_MIN_CONFIGS` time-measured configs, without the config hashes in ``exclude``."""
    out = {}
    for device in sorted(set(df["device_id"]) - {target}):
        rows = _device_rows(df, device, set(exclude))
        if rows is not None:
            out[device] = rows
    return out


def shared_profile(rows: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> AdditiveModel:
    """The common profile: one additive model of every device's times over its own speed factor (see the module doc)."""
    if not rows:
        raise PredictorError("shared: no other device with enough measurements to learn a common cost profile from; "
                             "train this device with --model additive")
    X = np.vstack([x for x, _ in rows.values()])
    y = np.concatenate([t for _, t in rows.values()])
    group = np.concatenate([np.full(len(t), k) for k, (_, t) in enumerate(rows.values())])
    w = np.concatenate([np.full(len(t), 1.0 / len(t)) for _, t in rows.values()])
    base = X[:, FEATURE_INDEX["macs"]]
    model = None
    for _ in range(_ITERATIONS):
        speed = np.array([np.exp(np.mean(np.log(y[group == k] / base[group == k]))) for k in range(len(rows))])
        model = AdditiveModel(alpha=_PROFILE_ALPHA).fit(X, y / speed[group], sample_weight=w)
        base = model.predict(X)
    return model


def check_shared_fit(device: str, metric: str, X: np.ndarray, n_configs: int,
                     rows: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One-line PredictorError when ``device``'s data cannot support a cross-device fit."""
    if metric in ACCURACY_METRICS:
        raise PredictorError(f"{device}: --model shared predicts times, not {metric}; use --model surrogate")
    if n_configs < SHARED_MIN_CONFIGS:
        raise PredictorError(f"{device}: a cross-device fit needs >= {SHARED_MIN_CONFIGS} measured configs, has "
                             f"{n_configs}; measure more (lowformer-nas measure) or use --model macs")
    have = {c for c in _DRIVERS if (X[:, FEATURE_INDEX[c]] > 0).any()}
    pooled = {c for x, _ in rows.values() for c in _DRIVERS if (x[:, FEATURE_INDEX[c]] > 0).any()}
    if len(have & pooled) < 2:
        raise PredictorError(f"{device}: its configs share {len(have & pooled)} op types with the other devices' "
                             "(a cross-device fit needs 2); train it with --model additive")


def shared_model(df: pd.DataFrame, device: str, exclude: Sequence[str] = ()) -> TransferModel:
    """The unfitted cross-device model of ``device``: the common profile of every other device in ``df`` (store
    measurements; without the config hashes in ``exclude``), re-fitted per op type on the device's rows."""
    return transfer_from(shared_profile(profile_rows(df, device, exclude)), mode="refit")
