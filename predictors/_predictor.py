"""Trained predictors: a fitted estimator with its sidecar, where they live, and how the search loads them.

Lookup order for ``load_predictor(device, metric)``: the user's predictors
(``$LOWFORMER_NAS_HOME/predictors/<device>/<metric>/v<NNNN>/``, newest version), then the ones shipped
inside the package (``predictors/shipped/<device>/<metric>/v<NNNN>/``).
"""

from __future__ import annotations

import logging
import math
import pathlib
from typing import Any, Sequence

import numpy as np

from lowformer_common import home_dir, short
from measured import ACCURACY_DEVICE, RecordError, check_device_id
from search_spaces import ATTENTION_TYPES, OP_TYPES, LowFormerConfig

from ._base import HIGHER_IS_BETTER, PredictorError, check_predictions, from_cost
from ._features import FEATURE_INDEX, featurize, featurize_one, in_space_mask
from ._interval import DEFAULT_COVERAGE, Calibration, PredictionInterval
from ._persist import load_version, read_sidecar, version_dirs
from ._protocol import Predictor

SHIPPED_DIR = pathlib.Path(__file__).parent / "shipped"
_log = logging.getLogger(__name__)  # without a handler configured, a warning is one plain line on stderr

# Features whose training range bounds the domain.
DOMAIN_RANGES = ("resolution", *(f"width{i}" for i in range(5)), *(f"depth{i}" for i in range(5)), "macs", "params")


def user_dir() -> pathlib.Path:
    """Where trained predictors are saved: ``$LOWFORMER_NAS_HOME/predictors`` (the store's home)."""
    return home_dir() / "predictors"


# ---------------------------------------------------------------------------------------------- domain


def domain_of(X: np.ndarray) -> dict[str, Any]:
    """What a predictor was trained on: feature ranges, attention types and op types seen."""
    X = X[in_space_mask(X)]
    ranges = {n: [float(X[:, FEATURE_INDEX[n]].min()), float(X[:, FEATURE_INDEX[n]].max())] for n in DOMAIN_RANGES}
    att = sorted(
        {a for s in (3, 4) for a in ATTENTION_TYPES if (X[:, FEATURE_INDEX[f"att{s}_{a}"]] > 0).any()},
        key=ATTENTION_TYPES.index,
    )
    ops = [op for op in OP_TYPES if (X[:, FEATURE_INDEX[f"layers.{op}"]] > 0).any()]
    return {"ranges": ranges, "attention_types": att, "op_types": ops}


def check_domain(domain: Any) -> dict[str, Any] | None:
    """A sidecar's ``domain`` as :func:`domain_of` writes it (or None); a one-line PredictorError otherwise."""
    if domain is None:
        return None
    allowed = f"an object of ranges {{{', '.join(DOMAIN_RANGES)}: [lo, hi]}}, attention_types and op_types"
    ok = isinstance(domain, dict) and isinstance(domain.get("ranges"), dict)
    ok = ok and all(name in DOMAIN_RANGES and isinstance(r, list) and len(r) == 2
                    and all(type(x) in (int, float) and math.isfinite(x) for x in r) and r[0] <= r[1]
                    for name, r in domain["ranges"].items())
    for key, names in (("attention_types", ATTENTION_TYPES), ("op_types", OP_TYPES)):
        ok = ok and isinstance(domain.get(key), list) and all(isinstance(a, str) and a in names for a in domain[key])
    if not ok:
        raise PredictorError(f"meta.json: domain: must be {allowed} (got {short(repr(domain), 60)}); restore or "
                             "retrain the predictor")
    return domain


def domain_mask(X: np.ndarray, domain: dict[str, Any] | None) -> np.ndarray:
    """Rows of ``X`` inside ``domain`` (all True without a recorded domain)."""
    ok = np.ones(X.shape[0], dtype=bool)
    if not domain:
        return ok
    for name, (lo, hi) in domain["ranges"].items():
        v = X[:, FEATURE_INDEX[name]]
        ok &= (v >= lo) & (v <= hi)
    seen_att = set(domain["attention_types"])
    for s in (3, 4):
        for a in ATTENTION_TYPES:
            if a not in seen_att:
                ok &= X[:, FEATURE_INDEX[f"att{s}_{a}"]] == 0
    seen_ops = set(domain["op_types"])
    for op in OP_TYPES:
        if op not in seen_ops:
            ok &= X[:, FEATURE_INDEX[f"layers.{op}"]] == 0
    return ok


def domain_excess(X: np.ndarray, domain: dict[str, Any] | None) -> np.ndarray:
    """How far each row of ``X`` lies outside ``domain`` (0 exactly where :func:`domain_mask` is True): per feature range
    its excess in units of the range's width (of the value where the range is a single value), plus one per attention
    type and op type never seen. A graded measure, so that a search can move towards the domain."""
    out = np.zeros(X.shape[0])
    if not domain:
        return out
    for name, (lo, hi) in domain["ranges"].items():
        v = X[:, FEATURE_INDEX[name]]
        unit = hi - lo if hi > lo else max(abs(hi), 1.0)
        out += (np.maximum(lo - v, 0.0) + np.maximum(v - hi, 0.0)) / unit
    seen_att, seen_ops = set(domain["attention_types"]), set(domain["op_types"])
    for s in (3, 4):
        for a in ATTENTION_TYPES:
            if a not in seen_att:
                out += X[:, FEATURE_INDEX[f"att{s}_{a}"]] != 0
    for op in OP_TYPES:
        if op not in seen_ops:
            out += X[:, FEATURE_INDEX[f"layers.{op}"]] != 0
    return out


def domain_violations(x: np.ndarray, domain: dict[str, Any] | None) -> list[str]:
    """Why one feature row lies outside ``domain`` (empty when inside), e.g. "resolution 288 outside [192, 224]"."""
    if not domain:
        return []
    out = []
    for name, (lo, hi) in domain["ranges"].items():
        v = x[FEATURE_INDEX[name]]
        if not lo <= v <= hi:
            out.append(f"{name} {v:g} outside [{lo:g}, {hi:g}]")
    for s in (3, 4):
        for a in ATTENTION_TYPES:
            if a not in domain["attention_types"] and x[FEATURE_INDEX[f"att{s}_{a}"]]:
                out.append(f"stage-{s} attention {a} never seen")
    for op in OP_TYPES:
        if op not in domain["op_types"] and x[FEATURE_INDEX[f"layers.{op}"]]:
            out.append(f"op type {op} never seen")
    return out


# ---------------------------------------------------------------------------------------------- predictor


class TrainedPredictor(Predictor):
    """A fitted estimator for one (device, metric), in the device's metric.

    Attributes: ``device``, ``metric``, ``model_type``, ``version``, ``higher_is_better``, ``meta`` (the
    sidecar dict), ``estimator``, ``path`` (its directory, or None), ``calibration`` (the interval calibration,
    None for a predictor saved before intervals existed).
    """

    def __init__(self, estimator, meta: dict[str, Any], path: pathlib.Path | None = None):
        self.estimator = estimator
        self.meta = meta
        self.path = path
        self.device: str = meta["device"]
        self.metric: str = meta["metric"]
        self.model_type: str = meta["model_type"]
        self.version: int | None = meta.get("version")
        self.higher_is_better: bool = self.metric in HIGHER_IS_BETTER
        self._domain = check_domain(meta.get("domain"))
        doc = meta.get("calibration")
        hashes = (meta.get("training_data") or {}).get("config_hashes") or []
        self.calibration: Calibration | None = None if doc is None else Calibration.from_json(doc, self.metric, hashes)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def identity(self) -> str:
        # Version numbers count per folder (user, shipped): the creation time and training-data hash tell two
        # predictors of the same version apart.
        return f"{self.meta.get('created')}|{(self.meta.get('training_data') or {}).get('hash')}"

    def retrain_hint(self) -> str:
        return f"lowformer-nas predictors train --device {self.device} --metric {self.metric}"

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows of :func:`predictors.featurize`. A non-finite or impossible value (a time <= 0 or
        beyond PLAUSIBLE_COST_MS) is refused with a PredictorError: no decision may rest on it."""
        return from_cost(self.metric, check_predictions(self.metric, self.estimator.predict(X), repr(self)))

    def predict(self, configs: Sequence[LowFormerConfig]) -> np.ndarray:
        """Predicted metric values (latency ms, throughput img/s, top-1 %) of a batch of configs."""
        return self.predict_features(featurize(list(configs)))

    def predict_one(self, config: LowFormerConfig) -> float:
        return float(self.predict_features(featurize_one(config))[0])

    def predict_interval(self, configs: Sequence[LowFormerConfig], coverage: float = DEFAULT_COVERAGE,
                         measured: bool = True) -> PredictionInterval:
        """Central values and ``coverage`` intervals of a batch (see :class:`predictors.PredictionInterval`);
        with ``measured``, configs this predictor was trained on report their stored measurement."""
        configs = list(configs)
        return self.predict_interval_features(featurize(configs), coverage,
                                              hashes=[c.hash for c in configs] if measured else None)

    def predict_interval_features(self, X: np.ndarray, coverage: float = DEFAULT_COVERAGE,
                                  hashes: Sequence[str] | None = None) -> PredictionInterval:
        """:meth:`predict_interval` for rows of :func:`predictors.featurize` (featurise once, ask several
        predictors); ``hashes`` (the rows' config hashes) enable the stored measurements."""
        cal = self.calibration
        if cal is None:
            raise PredictorError(f"{self.device}/{self.metric}: this predictor has no calibration data (saved before "
                                 f"prediction intervals), so it gives no intervals; retrain it: {self.retrain_hint()}")
        value = np.array(self.predict_features(X), dtype=float)
        lo, hi, dist = cal.interval(value, cal.clipped_values(X, value, self.predict_features), X, coverage)
        dom = self.in_domain_features(X)
        measured = np.zeros(len(value), dtype=bool)
        if hashes is not None and cal.noise is not None:
            rows = cal.measured_rows(hashes)
            measured = rows >= 0
            if measured.any():
                value[measured], lo[measured], hi[measured] = cal.measured_interval(rows[measured], coverage)
                dist[measured] = 0.0
        return PredictionInterval(value=value, lo=lo, hi=hi, in_domain=dom, coverage=float(coverage), measured=measured,
                                  distance=dist)

    def in_domain_features(self, X: np.ndarray) -> np.ndarray:
        """:meth:`in_domain` for rows of :func:`predictors.featurize` (featurise once, ask several predictors)."""
        return domain_mask(X, self._domain)

    def domain_excess_features(self, X: np.ndarray) -> np.ndarray:
        """:func:`domain_excess` of feature rows: how far outside the training domain (0 inside)."""
        return domain_excess(X, self._domain)

    def in_domain_mask(self, configs: Sequence[LowFormerConfig]) -> np.ndarray:
        return domain_mask(featurize(list(configs)), self._domain)

    def in_domain(self, config: LowFormerConfig) -> bool:
        """False when ``config`` lies outside the training data: a resolution, width, depth, MACs or params
        outside the trained range, or an attention type or op type never seen in training."""
        return bool(domain_mask(featurize_one(config), self._domain)[0])

    def domain_violations(self, config: LowFormerConfig) -> list[str]:
        """Why ``config`` is outside the training domain (empty when :meth:`in_domain`)."""
        return domain_violations(featurize_one(config)[0], self._domain)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"TrainedPredictor({self.device}/{self.metric}, {self.model_type}, v{self.version}{where})"


# ---------------------------------------------------------------------------------------------- registry


def _roots() -> list[tuple[str, pathlib.Path]]:
    return [("user", user_dir()), ("shipped", SHIPPED_DIR)]


def available_predictors() -> list[tuple[str, str]]:
    """Sorted (device, metric) pairs that have a predictor, user-trained or shipped."""
    found = set()
    for _, root in _roots():
        if not root.is_dir():
            continue
        for dev in root.iterdir():
            if dev.is_dir():
                for met in dev.iterdir():
                    if met.is_dir() and version_dirs(met):
                        found.add((dev.name, met.name))
    return sorted(found)


def _validation_summary(v: Any) -> dict[str, Any] | None:
    """{method, mape} of the chosen model in a sidecar's validation block (None where it has none)."""
    if not isinstance(v, dict) or not isinstance(v.get("models"), dict):
        return None
    chosen = v["models"].get(v.get("chosen"))
    mape = chosen.get("mape") if isinstance(chosen, dict) else None
    return {"method": v.get("method"), "mape": mape if isinstance(mape, (int, float)) else None}


def _interval_summary(f: Any) -> list[dict[str, Any]] | None:
    """[{nominal, empirical, median_relative_width}] of a sidecar's interval figures (None where it has none)."""
    if not isinstance(f, dict) or not isinstance(f.get("rows"), list):
        return None
    keep = ("nominal", "empirical", "median_relative_width")
    rows = [{k: r.get(k) for k in keep} for r in f["rows"] if isinstance(r, dict)]
    ok = all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows for k in keep)
    return rows if rows and ok else None


def predictor_versions(device: str, metric: str) -> list[dict[str, Any]]:
    """Every saved version of (device, metric): {origin, version, path, model_type, created, n_configs (the
    configs it was trained on), validation ({method, mape})}, newest last per origin."""
    out = []
    for origin, root in _roots():
        for v, p in version_dirs(root / device / metric):
            try:
                meta, problem = read_sidecar(p), None
            except PredictorError as e:  # a truncated or edited sidecar is listed as such, never a traceback
                meta, problem = {}, str(e)
            model_type = meta.get("model_type") if isinstance(meta.get("model_type"), str) else None
            data = meta.get("training_data") if isinstance(meta.get("training_data"), dict) else {}
            out.append({"origin": origin, "version": v, "path": str(p), "model_type": model_type or "unreadable",
                        "created": meta.get("created"), "n_configs": data.get("n_configs"),
                        "validation": _validation_summary(meta.get("validation")),
                        "intervals": _interval_summary(meta.get("interval_figures")),
                        **({"problem": problem} if problem else {})})
    return out


def default_metric(device: str) -> str:
    """The device's protocol metric among its predictors: top1_pct for imagenet1k, else the metric its
    sidecars name as the device protocol's (throughput for a40_gpu), else latency_ms."""
    if device == ACCURACY_DEVICE:
        return "top1_pct"
    metrics = sorted({m for d, m in available_predictors() if d == device})
    if len(metrics) == 1:
        return metrics[0]
    for m in metrics:
        path = _newest(device, m)
        if path is not None:
            try:
                meta = read_sidecar(path)
            except PredictorError:
                continue
            if meta.get("protocol", {}).get("device_metric") == m:
                return m
    return "latency_ms"


def _newest(device: str, metric: str) -> pathlib.Path | None:
    for _, root in _roots():
        versions = version_dirs(root / device / metric)
        if versions:
            return versions[-1][1]
    return None


def _available_line() -> str:
    pairs = available_predictors()
    return ", ".join(f"{d}/{m}" for d, m in pairs) if pairs else "none (train one: lowformer-nas predictors train --device NAME)"


def load_predictor(device: str, metric: str | None = None) -> TrainedPredictor:
    """The newest predictor of ``device`` for ``metric`` (None: the device's protocol metric).

    Raises PredictorError (a UserError: one line, listing what is available) for an unknown device or
    metric, or a predictor trained on another feature schema.
    """
    try:
        check_device_id(device, "device")
    except RecordError:
        raise PredictorError(f"device: {short(repr(device), 60)} is not a device id; available: {_available_line()}") from None
    if metric is None:
        metric = default_metric(device)
    path = _newest(device, metric)
    if path is None:
        if not any(d == device for d, _ in available_predictors()):
            raise PredictorError(f"device: no predictor for {device!r}; available: {_available_line()}")
        raise PredictorError(f"metric: no {metric!r} predictor for {device}; available: {_available_line()}")
    return load_predictor_dir(path)


def load_predictor_dir(path) -> TrainedPredictor:
    """A predictor from one version directory. One without calibration data (saved before intervals) loads,
    with a one-line note: it predicts, but gives no intervals."""
    est, meta = load_version(pathlib.Path(path))
    try:
        pred = TrainedPredictor(est, meta, pathlib.Path(path))
    except PredictorError as e:
        raise PredictorError(f"{path}: {e}; retrain it: lowformer-nas predictors train --device {meta['device']}") from None
    if not pred.calibrated:
        _log.warning("note: %s/%s v%s has no calibration data (saved before prediction intervals): no intervals, a "
                     "risk-aware search uses its point predictions; retrain it: %s", pred.device, pred.metric,
                     pred.version, pred.retrain_hint())
    return pred
