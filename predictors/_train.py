"""From measurement rows to a validated, saved predictor.

``training_data`` turns the store's rows of one device and metric into features and targets: only ok,
unflagged rows of one measuring protocol; repeated measurements of one architecture (the paper prints
some in several tables) become one row (their median), so that no config is ever on both sides of a
validation split. ``evaluate_models`` cross-validates candidate model types (leave-one-out up to 30
configs, else 5-fold) and reports their figures in the device's metric; ``train`` picks the best, fits
it on everything and builds the sidecar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import clone

from lowformer_common import __version__, utc_now
from measured import ACCURACY_DEVICE, full_results, protocol_key
from search_spaces import LowFormerConfig

# The model types: importing one registers it (CostModel.__init_subclass__), and model_types() reads them.
from . import _additive, _lgbm, _shared, _surrogate, _transfer  # noqa: F401
from ._base import (
    ACCURACY_METRICS,
    ESTIMATORS,
    HIGHER_IS_BETTER,
    MIN_ROWS,
    PREDICTABLE_METRICS,
    PredictorError,
    from_cost,
    to_cost,
)
from ._features import featurize, out_of_space_features, schema
from ._interval import Calibration, MeasurementNoise, pooled_sd, residual_space, rounding_half_width
from ._metrics import cross_val_predict, cv_method, cv_splits, feature_box, regression_report
from ._predictor import TrainedPredictor, domain_of


def model_types() -> dict[str, type]:
    """Every model type by its ``kind`` (what ``--model`` names), in candidate order: read off the estimator
    classes (``predictors.CostModel``), so that a new model type is one class."""
    types = sorted((c for c in ESTIMATORS.values() if c.kind), key=lambda c: c.order)
    return {c.kind: c for c in types}


MODEL_CHOICES = ("auto", *sorted(model_types()))
SURROGATE_LABEL = "accuracy surrogate (ridge regression on architecture descriptors), not a trained network's accuracy"
_PROTOCOL_COLUMNS = ("backend", "batch", "precision", "threads")


@dataclasses.dataclass
class TrainingData:
    """One device's rows for one metric: in-space configs first, then out-of-space (MACs-only) rows."""

    device: str
    metric: str
    configs: list[LowFormerConfig]
    names: list[str | None]
    values: np.ndarray  # device metric of the in-space configs (median over repeats)
    X: np.ndarray  # features: in-space rows, then out-of-space rows
    y: np.ndarray  # estimator targets (cost space) of every row of X
    n_rows: int  # measurement rows before aggregation
    protocol: dict[str, Any]
    sources: list[str]
    data_hash: str
    # Measurement noise per in-space config (what a stored measurement's interval is made of): how many
    # measurements its median comes from, the spread of their values (log for times, points for top-1; NaN with
    # one), the harness's within-run uncertainty of one median (NaN without p10/p90), the printed rounding.
    n_repeats: np.ndarray | None = None
    repeat_sd: np.ndarray | None = None
    within_sd: np.ndarray | None = None
    rounding: np.ndarray | None = None
    # The phase the values were normalised to (measured._phase; None: every value as measured).
    phase: dict[str, Any] | None = None

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    @property
    def n_out_of_space(self) -> int:
        return len(self.y) - len(self.configs)

    def subset(self, keep: np.ndarray) -> "TrainingData":
        """The data with only the in-space configs where ``keep`` is True (out-of-space rows stay)."""
        keep = np.asarray(keep, bool)
        n = self.n_configs
        rows = np.concatenate([np.flatnonzero(keep), np.arange(n, len(self.y))])
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return dataclasses.replace(
            self,
            configs=[c for c, k in zip(self.configs, keep) if k],
            names=[c for c, k in zip(self.names, keep) if k],
            values=self.values[keep],
            X=self.X[rows],
            y=self.y[rows],
            n_repeats=pick(self.n_repeats),
            repeat_sd=pick(self.repeat_sd),
            within_sd=pick(self.within_sd),
            rounding=pick(self.rounding),
        )

    def noise(self) -> MeasurementNoise | None:
        """The stored-measurement noise of the in-space configs, for a predictor's calibration."""
        if self.n_repeats is None:
            return None
        opt = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
        sd = opt(self.repeat_sd)
        return MeasurementNoise(value=[float(v) for v in self.values], n=[int(k) for k in self.n_repeats], sd=sd,
                                within_sd=opt(self.within_sd), rounding=[float(v) for v in self.rounding],
                                pooled_sd=pooled_sd(sd, [int(k) for k in self.n_repeats]))


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "status" in df:
        df = df[df["status"].fillna("ok") == "ok"]
    if "flag" in df:
        df = df[df["flag"].isna()]  # flagged rows (anomaly / suspect / loaded) are never trained on
    df = full_results(df)  # smoke-test medians (`study --quick`) are too noisy to learn from
    return df[np.isfinite(pd.to_numeric(df["value"], errors="coerce"))]


def _missing(v) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


def _protocol_of(row) -> dict[str, Any]:
    d = {}
    for c in _PROTOCOL_COLUMNS:
        v = row.get(c)
        d[c] = None if _missing(v) else (int(v) if c in ("batch", "threads") else v)
    return d


def training_data(df: pd.DataFrame, device: str, metric: str, protocol: str | None = None) -> TrainingData:
    """The rows of ``df`` (``Store.measurements()`` columns) for one device and metric, ready to fit.

    ``protocol``: a protocol key (see :func:`measured.protocol_key`) to use; default the one with the most
    in-space configs. Raises PredictorError when nothing fits.
    """
    if metric not in PREDICTABLE_METRICS:
        raise PredictorError(f"metric: {metric!r} cannot be predicted; allowed: {'|'.join(PREDICTABLE_METRICS)}")
    d = _clean(df[(df["device_id"] == device) & (df["metric"] == metric)])
    if d.empty:
        have = sorted(set(df.loc[df["device_id"] == device, "metric"]))
        if not have:
            others = sorted(set(df["device_id"]) - {device})
            where = f"; the store has: {', '.join(others)}" if others else " in the store"
            raise PredictorError(f"device: no measurements of {device!r}{where}")
        raise PredictorError(f"metric: no {metric} measurements of {device}; it has: {', '.join(have)}")
    if "protocol" in d:  # the store's column
        d = d.assign(_protocol=d["protocol"])
    else:
        d = d.assign(_protocol=[
            protocol_key(metric, _s(r.get("backend")), _s(r.get("precision"), "fp32"), _i(r.get("batch"), 1), _i(r.get("threads"), None))
            for _, r in d.iterrows()
        ])
    in_space = d["config_json"].notna()
    if protocol is None:
        counts = d[in_space].groupby("_protocol")["config_hash"].nunique().sort_values(ascending=False, kind="stable")
        if counts.empty:
            raise PredictorError(f"{device}: no {metric} measurement of a LowFormer config to train on")
        protocol = counts.index[0]
    elif protocol not in set(d["_protocol"]):
        raise PredictorError(f"protocol: {protocol!r} has no rows; {device} has: {', '.join(sorted(set(d['_protocol'])))}")
    d = d[d["_protocol"] == protocol]
    d, phase = _canonical(d)
    in_space = d["config_json"].notna()
    n_rows = len(d)

    agg = d[in_space].groupby("config_hash", sort=True).agg(
        value=("value", "median"), config_json=("config_json", "first"), name=("name", "first")
    )
    noise = _noise(d[in_space], metric).reindex(agg.index)
    configs = [LowFormerConfig.from_json(j, source="config_json") for j in agg["config_json"]]
    oos = d[~in_space & d["macs"].notna()].groupby("config_hash", sort=True).agg(
        value=("value", "median"), macs=("macs", "first"), params=("params", "first"), resolution=("resolution", "first")
    )
    values = agg["value"].to_numpy(float)
    num = lambda c: pd.to_numeric(oos[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)  # noqa: E731
    X = np.vstack([featurize(configs), out_of_space_features(num("macs"), num("params"), num("resolution"))])
    y = to_cost(metric, np.concatenate([values, oos["value"].to_numpy(float)]))
    h = hashlib.sha256()
    for key, v in [*zip(agg.index, values), *zip(oos.index, oos["value"])]:
        h.update(f"{key}:{float(v)!r}\n".encode())
    first = d.iloc[0]
    return TrainingData(
        device=device,
        metric=metric,
        configs=configs,
        names=[None if isinstance(n, float) else n for n in agg["name"]],
        values=values,
        X=X,
        y=y,
        n_rows=n_rows,
        protocol={"key": protocol, **_protocol_of(first)},
        sources=sorted(set(d["source"].dropna())) if "source" in d else [],
        data_hash=h.hexdigest(),
        n_repeats=noise["n"].to_numpy(int),
        repeat_sd=noise["sd"].to_numpy(float),
        within_sd=noise["within_sd"].to_numpy(float),
        rounding=noise["rounding"].to_numpy(float),
        phase=phase,
    )


def _canonical(d: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Rows carrying a phase (measured.Measurement.phase) converted to the device's canonical phase, and what the
    predictor records of it: the canonical session, the anchors' and reference's hashes, and how many rows were
    normalised and how many kept as measured (rows without a phase, or of another canonical session)."""
    if "phase" not in d or not d["phase"].notna().any():
        return d, None
    from measured import anchor_hashes, canonical_frame, row_phase

    sessions = pd.Series([getattr(row_phase(p), "canonical", None) for p in d["phase"]], index=d.index)
    canon = sessions.dropna().mode().iloc[0]
    keep = sessions == canon
    c = canonical_frame(d.assign(phase=d["phase"].where(keep)))
    info = {"canonical_session": str(canon), "anchors": anchor_hashes(), "normalised_rows": int(keep.sum()),
            "not_normalised_rows": int((~keep).sum())}
    return c.drop(columns=["measured_value", "phase_normalised"]), info


# Median of n draws: its sd is about 1.2533 sigma / sqrt(n); p90 - p10 of a normal spans 2.563 sigma.
_MEDIAN_SD, _P10_P90_SIGMAS = 1.2533, 2.5631


def _noise(d: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per config hash: measurements (n), spread of their values (sd), within-run sd of a median, rounding."""
    log = residual_space(metric) == "log"
    v = pd.to_numeric(d["value"], errors="coerce")
    t = np.log(v) if log else v
    within = pd.Series(np.nan, index=d.index)
    if log and {"p10", "p90", "n"} <= set(d.columns):
        p10, p90, runs = (pd.to_numeric(d[c], errors="coerce") for c in ("p10", "p90", "n"))
        ok = (p10 > 0) & (p90 >= p10) & (runs >= 1)
        within[ok] = _MEDIAN_SD * (np.log(p90[ok]) - np.log(p10[ok])) / _P10_P90_SIGMAS / np.sqrt(runs[ok])
    frame = pd.DataFrame({"h": d["config_hash"], "t": t, "within": within, "v": v})
    g = frame.groupby("h", sort=True)
    return pd.DataFrame({
        "n": g["t"].count(),
        "sd": g["t"].std(ddof=1),  # NaN with one measurement
        "within_sd": g["within"].median(),
        "rounding": g["v"].agg(lambda s: rounding_half_width(s.dropna().tolist())),
    })


def _s(v, default=None):
    return default if _missing(v) else str(v)


def _i(v, default):
    return default if _missing(v) else int(v)


# ---------------------------------------------------------------------------------------------- models


def candidate_models(metric: str, model: str = "auto", source=None, n_configs: int | None = None) -> dict[str, Any]:
    """{name: unfitted estimator} to validate for ``model`` (one name, or every applicable one for auto).

    The MACs baseline is always among them, as the contrast; ``auto`` takes every type that needs no source
    predictor once there are enough configs for it (LightGBM from 50). A type may be validated as several
    candidates (LightGBM: two targets); the better is kept.
    """
    if model not in MODEL_CHOICES:
        raise PredictorError(f"model: {model!r} unknown; allowed: {'|'.join(MODEL_CHOICES)}")
    types = _applicable(metric)
    if model != "auto" and model not in types:
        raise PredictorError(f"model: {metric} is not predicted by {model}; allowed: {'|'.join(['auto', *sorted(types)])}")
    out: dict[str, Any] = {}
    for kind, cls in types.items():
        auto = model == "auto" and not cls.needs_source and (n_configs or 0) >= cls.auto_from_rows
        if kind == model or auto or cls.baseline:
            out.update(cls.candidates(source) if kind == model else cls.candidates())
    return out


def evaluation_models(metric: str) -> dict[str, Any]:
    """Every model type that applies to ``metric`` and needs no source, the MACs baseline included (what ``eval``
    compares)."""
    return {name: est for cls in _applicable(metric).values() if not cls.needs_source
            for name, est in cls.candidates().items()}


def _applicable(metric: str) -> dict[str, type]:
    # The model types that predict this metric, in candidate order.
    wanted = "accuracy" if metric in ACCURACY_METRICS else "time"
    return {k: c for k, c in model_types().items() if c.predicts in (wanted, "any")}


def _model_type(name: str) -> str:
    # Candidate names are "<model type>" or "<model type>_<variant>" (lgbm_log).
    return name.split("_")[0]


def evaluate_models(
    data: TrainingData, models: Mapping[str, Any], progress: Callable | None = None, holdout: np.ndarray | None = None
) -> dict[str, dict]:
    """Figures (device metric) of each model on ``data`` and its held-out predictions (``"oof"``; ``"oof_clipped"``:
    the same models' predictions of the held-out configs clipped into their training feature range).

    Without ``holdout``: cross-validation (:func:`predictors.cross_val_predict`). With ``holdout`` (a mask
    over the in-space configs): fit on the other configs, score on the held-out ones (``"oof"`` then
    covers only those).
    """
    out = {}
    n_fit = data.n_configs if holdout is None else int((~np.asarray(holdout, bool)).sum())
    for name, est in models.items():
        need = MIN_ROWS[_model_type(name)]
        if n_fit < need:
            out[name] = {"skipped": f"needs >= {need} configs, has {n_fit}"}
            continue
        if holdout is None:
            cost, cost_clip = cross_val_predict(est, data.X, data.y, progress=progress, clipped=True)
            pred, pred_clip = from_cost(data.metric, cost), from_cost(data.metric, cost_clip)
            truth = data.values
        else:
            h = np.asarray(holdout, bool)
            fit = data.subset(~h)
            model = clone(est).fit(fit.X, fit.y)
            Xh = data.X[: data.n_configs][h]
            pred = from_cost(data.metric, model.predict(Xh))
            pred_clip = from_cost(data.metric, model.predict(np.clip(Xh, *feature_box(fit.X))))
            truth = data.values[h]
        out[name] = {**regression_report(truth, pred), "oof": pred, "oof_clipped": pred_clip}
    return out


def random_holdout(n: int, size: int, seed: int = 0) -> np.ndarray:
    """A mask of ``size`` configs out of ``n`` drawn at random (seeded)."""
    if not 0 < size < n:
        raise PredictorError(f"holdout: must be between 1 and {n - 1} configs (got {size})")
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).choice(n, size=size, replace=False)] = True
    return mask


def _best(results: dict[str, dict], requested: str) -> str:
    ok = {k: v for k, v in results.items() if "skipped" not in v}
    if requested not in ("auto",):
        ok = {k: v for k, v in ok.items() if _model_type(k) == requested}
    if not ok:
        reasons = "; ".join(f"{k}: {v['skipped']}" for k, v in results.items() if "skipped" in v)
        raise PredictorError(f"model: too few measurements to train {requested} ({reasons})")
    # Lowest MAPE; on equal MAPE the earlier (simpler) candidate.
    return min(ok, key=lambda k: (round(ok[k]["mape"], 9), list(results).index(k)))


def library_versions() -> dict[str, str]:
    import lightgbm
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
        "pandas": pd.__version__,
        "lowformer-nas": __version__,
    }


def build_meta(data: TrainingData, model_name: str, results: dict[str, dict], device_protocol: Mapping | None = None) -> dict[str, Any]:
    """The sidecar of a predictor trained on ``data`` (version and format are added when saved)."""
    surrogate = data.metric in ACCURACY_METRICS
    proto = dict(data.protocol)
    if device_protocol:
        proto["device"] = dict(device_protocol)
        m = str(device_protocol.get("metric", ""))
        proto["device_metric"] = "throughput_img_s" if m.startswith("throughput") else "latency_ms" if m.startswith("latency") else m or None
    elif data.device == ACCURACY_DEVICE:
        proto["device_metric"] = "top1_pct"
    return {
        "device": data.device,
        "metric": data.metric,
        "model_type": _model_type(model_name),
        "model_name": model_name,
        "higher_is_better": data.metric in HIGHER_IS_BETTER,
        "surrogate": surrogate,
        "label": SURROGATE_LABEL if surrogate else f"{data.metric} predictor for {data.device}",
        "protocol": proto,
        "feature_schema": schema(),
        "training_data": {
            "hash": data.data_hash,
            "n_configs": data.n_configs,
            "n_out_of_space": data.n_out_of_space,
            "n_rows": data.n_rows,
            "sources": data.sources,
            "config_hashes": [c.hash for c in data.configs],
        },
        **({"phase": data.phase} if data.phase else {}),
        "validation": {
            "method": cv_method(data.n_configs),
            "chosen": model_name,
            "models": {k: figures_only(v) for k, v in results.items()},
        },
        "domain": domain_of(data.X),
        "libraries": library_versions(),
        "created": utc_now(),
    }


def train(
    data: TrainingData,
    model: str = "auto",
    source=None,
    device_protocol: Mapping | None = None,
    progress: Callable | None = None,
) -> tuple[TrainedPredictor, dict[str, dict]]:
    """Validate the candidates for ``model``, fit the best on all of ``data``; (predictor, figures per model)."""
    models = candidate_models(data.metric, model, source, data.n_configs)
    results = evaluate_models(data, models, progress)
    best = _best(results, model)
    est = clone(models[best]).fit(data.X, data.y)
    meta = build_meta(data, best, results, device_protocol)
    meta["calibration"] = calibrate(data, results[best]["oof"], results[best]["oof_clipped"]).to_json()
    return TrainedPredictor(est, meta), results


def figures_only(result: Mapping[str, Any]) -> dict[str, Any]:
    """A model's validation figures without its held-out predictions."""
    return {k: v for k, v in result.items() if not k.startswith("oof")}


def calibrate(data: TrainingData, oof: np.ndarray, oof_clipped: np.ndarray, seed: int = 0) -> Calibration:
    """The interval calibration of a model whose cross-validated predictions (:func:`evaluate_models`, same
    folds: :func:`predictors.cv_splits`) of ``data``'s configs are ``oof`` (``oof_clipped``: of the configs
    clipped into each fold's training feature range)."""
    n = data.n_configs
    return Calibration.fit(metric=data.metric, truth=data.values, oof=oof, oof_clipped=oof_clipped, X_train=data.X[:n],
                           splits=cv_splits(n, seed), cv=cv_method(n), noise=data.noise(),
                           hashes=[c.hash for c in data.configs])


def holdout_mask(hashes, share: float = 0.2) -> np.ndarray:
    """The fixed hold-out: configs whose hash falls in the first ``share`` of hash space.

    Fixed by content, so the same configs are held out before and after new measurements arrive.
    """
    return np.array([int(hashlib.sha256(f"holdout:{h}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share for h in hashes])
