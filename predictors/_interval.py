"""Prediction intervals: a central value and a range that holds the truth with a stated probability.

Errors of the time predictors are multiplicative (latencies span 10x and more across a device's configs), so
intervals are built on log time; the accuracy surrogate's errors are additive, in points of top-1.

Calibration data, stored in the sidecar (``meta["calibration"]``), is what the predictor's own validation
produced: the out-of-fold residuals of the chosen model (leave-one-out up to 30 configs, else 5-fold) and, for
each, how far the held-out config lay from the configs it was predicted from. That distance, ``d(x)``, is the
Euclidean distance from x to the nearest training config in the space of *key features* (log MACs, log params,
resolution, depths, log widths, attention type and MLP per stage, the share of MACs in dense, pointwise, depthwise
and attention ops, whether depthwise convolutions occur), each continuous feature in units of its spread over the
search space, each indicator 0/1 (an attention type never seen counts 1). A training config has d = 0; a random
config of the space lies 3-6 units from a dozen paper configs.

The interval's half-width is ``e(x) + sqrt((q(c) * (1 + gamma * d(x)))^2 + (w(x) * z(c) * s_far)^2)``:

- ``e(x)`` is the part of the prediction that rests on extrapolation: |f(x) - f(x clipped into the training
  range of every feature)| (in log time or points). A trend beyond the data is not trusted: the change a model
  predicts past the edge of its data could be anywhere between none and twice as much. Inside the range e = 0.
  With it, going outside the data can never improve an interval's pessimistic end by more than its width inside.
- ``gamma`` is fitted to the residuals (maximum likelihood of r_i ~ N(0, s^2 (1 + gamma d_i)^2)): leave-one-out
  on a dozen paper configs extrapolates often (the largest, the smallest, the only one at 192 px, the only one
  with MHSA), so the data say how fast errors grow away from the data. It never goes below ``GAMMA_MIN``: a
  predictor whose validation never left its data still widens away from it.
- ``w(x) * z(c) * s_far`` is the far field: outside the range of the training configs (``b(x)``, the Euclidean length
  of the key features' excess beyond their training range, in the same units), the model knows less and less
  about x, down to no more than the spread of the metric over its training configs (``s_far``, the standard
  deviation of their log times or top-1): ``w(x) = 1 - exp(-b(x) / FAR_LENGTH)``, z(c) the normal quantile.
  Inside the range w = 0. This term is a prior, not calibrated: it can only widen an interval. It is what keeps
  a search from trusting a predictor where the predictor has no evidence, e.g. a conv-only config scored by a
  surrogate that never saw one (the surrogate cannot tell attention from none: its training configs all had it).
- ``q`` is the conformal quantile of the normalised scores max(|r_i| - e_i, 0) / (1 + gamma d_i) (cross-conformal:
  the ceil((n + 1) c)-th smallest) when there are more than 30 configs; with fewer, a conformal quantile at 0.95
  does not exist (it needs 19 scores), so a Student-t interval on the normalised residuals is used instead:
  ``t_{n-1}((1 + c) / 2) * rms * sqrt(1 + 1/n)``.

A config the predictor was trained on has a stored measurement of this device and protocol:
:meth:`Calibration.measured_interval` reports that value with an interval from its measurement noise.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from search_spaces import ATTENTION_TYPES, sample_configs

from ._base import TIME_METRICS, PredictorError
from ._features import FEATURE_INDEX, N_FEATURES, SCHEMA_HASH, featurize

CALIBRATION_FORMAT = 1
# With more configs than this, the conformal quantile (the LOO regime of the validation ends here too).
CONFORMAL_MIN = 31
GAMMA_MIN = 1.0  # the near-field error at least doubles one unit of distance away from the nearest training config
FAR_LENGTH = 1.0  # one spread of the search space beyond the training range: 63 % of the far field
GAMMA_GRID = tuple(float(g) for g in np.concatenate([[GAMMA_MIN], np.geomspace(GAMMA_MIN * 1.25, 50.0, 40)]))
DEFAULT_COVERAGE = 0.9
COVERAGE_RANGE = (0.5, 0.999)  # exclusive bounds
_SPACE_SAMPLE = 2000
_MAX_ROWS = 1_000_000  # a sidecar with more calibration rows than this was not written by us

_F = FEATURE_INDEX
_MAC_GROUPS = {
    "share_dense": ("conv", "grouped_conv", "conv_transpose"),
    "share_pointwise": ("pointwise", "linear"),
    "share_depthwise": ("depthwise",),
    "share_attention": ("matmul",),
}
# (name, kind): "log"/"linear" are continuous (scaled by their spread over the space), "indicator" is 0/1. One
# structural change should count once: op types implied by the attention type (matmul, softmax, ...) or always
# present are left out; depthwise convolutions can vanish on their own (fused blocks), so they stay.
KEY_FEATURES: tuple[tuple[str, str], ...] = (
    ("macs", "log"),
    ("params", "log"),
    ("resolution", "linear"),
    *((f"depth{i}", "linear") for i in range(5)),
    *((f"width{i}", "log") for i in range(5)),
    *((f"att{s}_{a}", "indicator") for s in (3, 4) for a in ATTENTION_TYPES),
    ("mlp3", "indicator"),
    ("mlp4", "indicator"),
    *((name, "linear") for name in _MAC_GROUPS),
    ("uses.depthwise", "indicator"),
)
KEY_NAMES = tuple(n for n, _ in KEY_FEATURES)
_INDICATOR = np.array([k == "indicator" for _, k in KEY_FEATURES])


def key_features(X: np.ndarray) -> np.ndarray:
    """(n, len(KEY_FEATURES)) key features of full feature rows (:func:`predictors.featurize`)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], len(KEY_FEATURES)))
    macs = X[:, _F["macs"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, (name, kind) in enumerate(KEY_FEATURES):
            if name in _MAC_GROUPS:
                out[:, j] = sum(X[:, _F[f"macs.{op}"]] for op in _MAC_GROUPS[name]) / macs
            elif name.startswith("uses."):
                out[:, j] = X[:, _F[f"layers.{name[5:]}"]] > 0
            elif kind == "log":
                out[:, j] = np.log(X[:, _F[name]])
            else:
                out[:, j] = X[:, _F[name]]
    return out


@functools.lru_cache(maxsize=1)
def space_scales() -> tuple[float, ...]:
    """Spread of each key feature over the search space: the std over a fixed random sample of configs for
    continuous features (1 where it is 0), 1 for indicators. Stored with each calibration, so a later change
    of the space does not move a saved predictor's intervals."""
    K = key_features(featurize(list(sample_configs(_SPACE_SAMPLE, seed=0))))
    sd = K.std(axis=0)
    sd = np.where(_INDICATOR | ~(sd > 0), 1.0, sd)
    return tuple(float(v) for v in sd)


_CHUNK = 4096


def nearest_distance(Z: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``Z`` to its nearest row of ``points``.

    Brute force through one matrix product per chunk (|z|^2 + |p|^2 - 2 z.p): a search asks about 50 configs at a
    time against at most a few thousand training configs. (sklearn's pairwise_distances_argmin_min costs ~0.2 s per
    call in thread-pool set-up alone; a KD-tree degrades to brute force in 28 dimensions.)
    """
    out = np.empty(len(Z))
    p2 = np.einsum("ij,ij->i", points, points)
    for i in range(0, len(Z), _CHUNK):
        z = Z[i:i + _CHUNK]
        d2 = np.einsum("ij,ij->i", z, z)[:, None] + p2[None, :] - 2.0 * (z @ points.T)
        out[i:i + _CHUNK] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def check_coverage(coverage: float) -> float:
    lo, hi = COVERAGE_RANGE
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not lo < coverage < hi:
        raise PredictorError(f"coverage: must be a number in ({lo}, {hi}) (got {coverage!r})")
    return float(coverage)


def residual_space(metric: str) -> str:
    """"log" for time metrics (multiplicative errors), "points" for top-1 (additive)."""
    return "log" if metric in TIME_METRICS else "points"


def residuals(space: str, truth, pred) -> np.ndarray:
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    return np.log(truth) - np.log(pred) if space == "log" else truth - pred


def apply_half_width(space: str, value: np.ndarray, half: np.ndarray, metric: str | None = None):
    """(lo, hi) around ``value``: multiplicative on log time, additive (clipped to 0-100) on top-1."""
    if space == "log":
        return value * np.exp(-half), value * np.exp(half)
    lo, hi = value - half, value + half
    if metric == "top1_pct":
        lo, hi = np.clip(lo, 0.0, 100.0), np.clip(hi, 0.0, 100.0)
    return lo, hi


# ---------------------------------------------------------------------------------------------- result


@dataclasses.dataclass(frozen=True)
class PredictionInterval:
    """Per config: the central ``value`` and the interval [``lo``, ``hi``] expected to hold the truth with
    probability ``coverage`` (about (1 - coverage) / 2 on each side), whether the config lies in the predictor's
    training domain, whether ``value`` is a stored measurement rather than a prediction (``measured``), and its
    distance outside the training range (``distance``, 0 inside)."""

    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    in_domain: np.ndarray
    coverage: float
    measured: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def relative_width(self) -> np.ndarray:
        """Width over the central value (0.2: the interval spans 20 % of the value)."""
        return self.width / np.abs(self.value)

    def contains(self, truth) -> np.ndarray:
        t = np.asarray(truth, dtype=float)
        return (self.lo <= t) & (t <= self.hi)

    def pessimistic(self, higher_is_better: bool) -> np.ndarray:
        """The interval's bad end: the lower bound where higher is better, else the upper bound."""
        return self.lo if higher_is_better else self.hi

    def optimistic(self, higher_is_better: bool) -> np.ndarray:
        return self.hi if higher_is_better else self.lo

    def __getitem__(self, idx) -> "PredictionInterval":
        pick = lambda a: np.atleast_1d(a[idx])  # noqa: E731
        return dataclasses.replace(self, value=pick(self.value), lo=pick(self.lo), hi=pick(self.hi),
                                   in_domain=pick(self.in_domain), measured=pick(self.measured),
                                   distance=pick(self.distance))


# ---------------------------------------------------------------------------------------------- fitting


def fit_gamma(r: np.ndarray, d: np.ndarray, grid: Sequence[float] = GAMMA_GRID) -> float:
    """The gamma of ``grid`` maximising the likelihood of r_i ~ N(0, s^2 (1 + gamma d_i)^2) (s profiled out)."""
    r, d = np.asarray(r, float), np.asarray(d, float)
    if len(r) < 2 or not (d > 0).any():
        return float(grid[0])
    g = np.asarray(grid, float)[:, None]
    f = 1.0 + g * d[None, :]
    s2 = np.mean((r[None, :] / f) ** 2, axis=1)
    s2 = np.maximum(s2, 1e-300)
    loglik = -0.5 * len(r) * np.log(s2) - np.log(f).sum(axis=1)
    return float(grid[int(np.argmax(loglik))])


def _decimals(v: float) -> int:
    exp = decimal.Decimal(repr(float(v))).normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def rounding_half_width(values: Sequence[float]) -> float:
    """Half a unit of the last printed digit (11.7 -> 0.05): the paper's numbers are rounded; a harness median
    with 15 digits gets ~0."""
    return 0.5 * 10.0 ** -min((_decimals(v) for v in values), default=15)


@dataclasses.dataclass
class MeasurementNoise:
    """Per training config: its median value, how many measurements it has, the spread of their log values
    (None with one), the harness's within-run uncertainty of the median (from p10/p90 and the run count;
    None without), and the printed rounding; plus the device's pooled spread of repeated measurements."""

    value: list[float]
    n: list[int]
    sd: list[float | None]
    within_sd: list[float | None]
    rounding: list[float]
    pooled_sd: float | None


# ---------------------------------------------------------------------------------------------- calibration


class Calibration:
    """A predictor's interval calibration (see the module doc). Built by :meth:`fit`, stored with
    :meth:`to_json`, read back (validated: a sidecar is untrusted) with :meth:`from_json`."""

    def __init__(self, *, space: str, metric: str, residuals, distances, extrapolation, gamma: float, points, scale,
                 feature_lo, feature_hi, far_sd: float, cv: str, noise: MeasurementNoise | None = None,
                 hashes: Sequence[str] = ()):
        self.space, self.metric, self.cv = space, metric, cv
        self.residuals = np.asarray(residuals, float)
        self.distances = np.asarray(distances, float)
        self.extrapolation = np.asarray(extrapolation, float)
        self.gamma = float(gamma)
        self.points, self.scale = np.asarray(points, float), np.asarray(scale, float)
        self.box_lo, self.box_hi = self.points.min(axis=0), self.points.max(axis=0)
        self.far_sd = float(far_sd)
        self.feature_lo, self.feature_hi = np.asarray(feature_lo, float), np.asarray(feature_hi, float)
        self.noise = noise
        self._index = {h: i for i, h in enumerate(hashes)} if noise is not None else {}

    # -- what it says ------------------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.residuals)

    @property
    def method(self) -> str:
        return "conformal" if self.n >= CONFORMAL_MIN else "student_t"

    def describe(self) -> str:
        how = ("conformal quantile of cross-validated residuals" if self.method == "conformal"
               else "Student-t on leave-one-out residuals")
        unit = "log time" if self.space == "log" else "points of top-1"
        return (f"{how} ({self.n} configs, {unit}), widened by 1 + {self.gamma:.3g} x distance to the nearest training "
                f"config, plus the extrapolated part of the prediction; outside the training range towards the spread of "
                f"the metric (sd {self.far_sd:.3g})")

    @property
    def scores(self) -> np.ndarray:
        return np.maximum(np.abs(self.residuals) - self.extrapolation, 0.0) / (1.0 + self.gamma * self.distances)

    def quantile(self, coverage: float) -> float:
        """The half-width, in residual units, of an interval at ``coverage`` for a config inside the training
        range (d = 0)."""
        c = check_coverage(coverage)
        s = self.scores
        n = len(s)
        k = math.ceil((n + 1) * c)
        if self.method == "conformal" and k <= n:
            return float(np.partition(s, k - 1)[k - 1])
        # Small-sample fallback: Student-t on the normalised residuals (rms: they are centred by construction).
        rms = float(np.sqrt(np.mean(s**2))) if n else 0.0
        return float(stats.t.ppf((1 + c) / 2, max(n - 1, 1)) * rms * math.sqrt(1 + 1 / max(n, 1)))

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Distance of each row of ``X`` to the nearest training config (key features, see the module doc)."""
        return nearest_distance(key_features(X) / self.scale, self.points)

    def outside(self, X: np.ndarray) -> np.ndarray:
        """How far each row of ``X`` lies outside the training range of the key features (0 inside)."""
        Z = key_features(X) / self.scale
        excess = np.maximum(self.box_lo - Z, 0.0) + np.maximum(Z - self.box_hi, 0.0)
        return np.sqrt((excess**2).sum(axis=1))

    def clip(self, X: np.ndarray) -> np.ndarray:
        """``X`` clipped into the feature range of the training configs (the model is asked there too)."""
        return np.minimum(np.maximum(X, self.feature_lo), self.feature_hi)

    def interval(self, value: np.ndarray, value_clipped: np.ndarray, X: np.ndarray, coverage: float):
        """(lo, hi, distance) of predictions ``value`` for feature rows ``X`` (``value_clipped``: the same model's
        predictions for :meth:`clip` of ``X``)."""
        d = self.distance(X)
        e = np.abs(residuals(self.space, value, value_clipped))
        near = self.quantile(coverage) * (1.0 + self.gamma * d)
        far = (1.0 - np.exp(-self.outside(X) / FAR_LENGTH)) * stats.norm.ppf((1 + coverage) / 2) * self.far_sd
        half = e + np.sqrt(near**2 + far**2)
        lo, hi = apply_half_width(self.space, np.asarray(value, float), half, self.metric)
        return lo, hi, d

    # -- stored measurements -----------------------------------------------------------------------------------

    def measured_rows(self, hashes: Sequence[str]) -> np.ndarray:
        """Index into the stored measurements per hash, -1 where the config was never measured."""
        return np.array([self._index.get(h, -1) for h in hashes], dtype=np.int64)

    def measured_interval(self, rows: np.ndarray, coverage: float):
        """(value, lo, hi) of stored measurements ``rows`` at ``coverage``: the median of the config's
        measurements, widened by z * sd * sqrt(1 + 1/n) with sd the largest known noise (its own repeats, the
        device's pooled repeats, the harness's within-run uncertainty) and by the printed rounding."""
        nz = self.noise
        c = check_coverage(coverage)
        z = stats.norm.ppf((1 + c) / 2)
        v = np.array([nz.value[i] for i in rows], float)
        n = np.array([nz.n[i] for i in rows], float)
        own = np.array([nz.sd[i] or 0.0 for i in rows], float)
        within = np.array([nz.within_sd[i] or 0.0 for i in rows], float)
        sd = np.maximum.reduce([own, within, np.full(len(rows), nz.pooled_sd or 0.0)])
        half = z * sd * np.sqrt(1 + 1 / n)
        lo, hi = apply_half_width(self.space, v, half, self.metric)
        r = np.array([nz.rounding[i] for i in rows], float)
        lo, hi = lo - r, hi + r
        if self.metric == "top1_pct":
            lo, hi = np.clip(lo, 0.0, 100.0), np.clip(hi, 0.0, 100.0)
        return v, lo, hi

    # -- building and storing ----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, *, metric: str, truth, oof, oof_clipped, X_train: np.ndarray, splits, cv: str,
            noise: MeasurementNoise | None = None, hashes: Sequence[str] = ()) -> "Calibration":
        """From out-of-fold predictions ``oof`` of ``truth`` (in-space configs ``X_train``, in order) made by
        models fitted on the folds ``splits`` ((train, test) index arrays); ``oof_clipped``: the same models'
        predictions of the held-out configs clipped into their fold's training feature range."""
        space = residual_space(metric)
        scale = np.array(space_scales())
        Z = key_features(X_train) / scale
        d = np.zeros(len(Z))
        for train, test in splits:
            d[test] = nearest_distance(Z[test], Z[train])
        r = residuals(space, truth, oof)
        e = np.abs(residuals(space, oof, oof_clipped))
        t = np.log(np.asarray(truth, float)) if space == "log" else np.asarray(truth, float)
        return cls(space=space, metric=metric, residuals=r, distances=d, extrapolation=e,
                   far_sd=float(np.std(t, ddof=1)) if len(t) > 1 else 0.0,
                   gamma=fit_gamma(np.maximum(np.abs(r) - e, 0.0), d), points=Z, scale=scale,
                   feature_lo=X_train.min(axis=0), feature_hi=X_train.max(axis=0), cv=cv, noise=noise, hashes=hashes)

    def to_json(self) -> dict[str, Any]:
        r6 = lambda a: [float(f"{x:.6g}") for x in a]  # noqa: E731
        doc: dict[str, Any] = {
            "format": CALIBRATION_FORMAT, "space": self.space, "method": self.method, "cv": self.cv,
            "gamma": self.gamma, "far_sd": self.far_sd, "residuals": r6(self.residuals), "distances": r6(self.distances),
            "extrapolation": r6(self.extrapolation),
            "features": {"names": list(KEY_NAMES), "scale": list(map(float, self.scale)),
                         "points": [[float(f"{x:.4g}") for x in p] for p in self.points]},
            "feature_range": {"schema": SCHEMA_HASH, "lo": list(map(float, self.feature_lo)),
                              "hi": list(map(float, self.feature_hi))},
            "measured": None,
        }
        if self.noise is not None:
            nz = self.noise
            doc["measured"] = {"value": list(map(float, nz.value)), "n": list(map(int, nz.n)),
                               "sd": [None if v is None else float(f"{v:.6g}") for v in nz.sd],
                               "within_sd": [None if v is None else float(f"{v:.6g}") for v in nz.within_sd],
                               "rounding": [float(f"{v:.6g}") for v in nz.rounding], "pooled_sd": nz.pooled_sd}
        return doc

    @classmethod
    def from_json(cls, doc: Any, metric: str, hashes: Sequence[str]) -> "Calibration":
        """A stored calibration; any malformed field is a one-line PredictorError naming it."""
        if not isinstance(doc, Mapping):
            raise PredictorError("calibration: not an object")
        if doc.get("format") != CALIBRATION_FORMAT:
            raise PredictorError(f"calibration.format: {doc.get('format')!r}; this code reads {CALIBRATION_FORMAT}")
        space = doc.get("space")
        if space != residual_space(metric):
            raise PredictorError(f"calibration.space: {space!r} does not fit metric {metric}")
        r = _floats(doc.get("residuals"), "calibration.residuals")
        d = _floats(doc.get("distances"), "calibration.distances", n=len(r), nonneg=True)
        e = _floats(doc.get("extrapolation"), "calibration.extrapolation", n=len(r), nonneg=True)
        if len(r) < 2:
            raise PredictorError("calibration.residuals: at least 2 are needed")
        # Finite is not enough: exp(1e300) is an infinite interval. No real residual comes near these bounds.
        cap = _MAX_RESIDUAL[space]
        if np.abs(r).max() > cap or d.max() > _MAX_DISTANCE or e.max() > _MAX_DISTANCE:
            raise PredictorError(f"calibration.residuals: must lie within ±{cap:g} ({space}), distances and "
                                 f"extrapolation within [0, {_MAX_DISTANCE:g}]; restore or retrain the predictor")
        gamma = doc.get("gamma")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < 1e6:
            raise PredictorError(f"calibration.gamma: must be a non-negative number (got {gamma!r})")
        far_sd = doc.get("far_sd")
        if isinstance(far_sd, bool) or not isinstance(far_sd, (int, float)) or not 0 <= far_sd < 1e6:
            raise PredictorError(f"calibration.far_sd: must be a non-negative number (got {far_sd!r})")
        feats = doc.get("features")
        if not isinstance(feats, Mapping) or list(feats.get("names") or []) != list(KEY_NAMES):
            raise PredictorError("calibration.features: other key features than this code's; retrain the predictor")
        k = len(KEY_NAMES)
        scale = _floats(feats.get("scale"), "calibration.features.scale", n=k)
        rows = feats.get("points")
        if not isinstance(rows, list) or not rows or len(rows) > _MAX_ROWS:
            raise PredictorError("calibration.features.points: must be a non-empty list of rows")
        points = np.vstack([_floats(row, "calibration.features.points", n=k) for row in rows])
        if not (scale > 0).all():
            raise PredictorError("calibration.features.scale: must be positive")
        fr = doc.get("feature_range")
        if not isinstance(fr, Mapping) or fr.get("schema") != SCHEMA_HASH:
            raise PredictorError("calibration.feature_range: recorded for another feature schema; retrain the predictor")
        f_lo = _floats(fr.get("lo"), "calibration.feature_range.lo", n=N_FEATURES)
        f_hi = _floats(fr.get("hi"), "calibration.feature_range.hi", n=N_FEATURES)
        if (f_lo > f_hi).any():
            raise PredictorError("calibration.feature_range: a lower end above its upper end")
        noise = None
        m = doc.get("measured")
        if m is not None:
            noise = _noise_from_json(m, len(hashes))
        cv = doc.get("cv")
        return cls(space=space, metric=metric, residuals=r, distances=d, extrapolation=e, gamma=float(gamma),
                   points=points, scale=scale, feature_lo=f_lo, feature_hi=f_hi, far_sd=float(far_sd),
                   cv=str(cv) if isinstance(cv, str) else "?", noise=noise, hashes=hashes)


# Bounds of stored calibration data: a log residual of 20 is a factor of 5e8, 100 top-1 points the whole scale.
_MAX_RESIDUAL = {"log": 20.0, "points": 100.0}
_MAX_DISTANCE = 1e6


def _floats(v: Any, field: str, n: int | None = None, nonneg: bool = False) -> np.ndarray:
    if not isinstance(v, list) or len(v) > _MAX_ROWS or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise PredictorError(f"{field}: must be a list of numbers")
    a = np.asarray(v, dtype=float)
    if n is not None and len(a) != n:
        raise PredictorError(f"{field}: expected {n} values, got {len(a)}")
    if not np.isfinite(a).all() or (nonneg and (a < 0).any()):
        raise PredictorError(f"{field}: must be finite{' and non-negative' if nonneg else ''}")
    return a


def _optional_floats(v: Any, field: str, n: int) -> list[float | None]:
    if not isinstance(v, list) or len(v) != n:
        raise PredictorError(f"{field}: expected a list of {n} numbers or nulls")
    out = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0:
            out.append(float(x))
        else:
            raise PredictorError(f"{field}: must hold non-negative numbers or nulls (got {x!r})")
    return out


def _noise_from_json(m: Any, n: int) -> MeasurementNoise:
    if not isinstance(m, Mapping):
        raise PredictorError("calibration.measured: not an object")
    value = _floats(m.get("value"), "calibration.measured.value", n=n)
    counts = m.get("n")
    if not isinstance(counts, list) or len(counts) != n or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
        raise PredictorError(f"calibration.measured.n: expected {n} positive integers")
    rounding = _floats(m.get("rounding"), "calibration.measured.rounding", n=n, nonneg=True)
    pooled = m.get("pooled_sd")
    if pooled is not None and (isinstance(pooled, bool) or not isinstance(pooled, (int, float))
                               or not math.isfinite(pooled) or pooled < 0):
        raise PredictorError(f"calibration.measured.pooled_sd: a non-negative number or null (got {pooled!r})")
    return MeasurementNoise(
        value=[float(x) for x in value], n=list(counts), sd=_optional_floats(m.get("sd"), "calibration.measured.sd", n),
        within_sd=_optional_floats(m.get("within_sd"), "calibration.measured.within_sd", n),
        rounding=[float(x) for x in rounding], pooled_sd=None if pooled is None else float(pooled))


def pooled_sd(sds: Sequence[float | None], counts: Sequence[int]) -> float | None:
    """sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over the configs measured more than once (None if none)."""
    num = den = 0.0
    for s, k in zip(sds, counts):
        if s is not None and k >= 2:
            num += (k - 1) * s * s
            den += k - 1
    return math.sqrt(num / den) if den else None
