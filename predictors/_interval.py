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

Since calibration format 2 the half-width is ``sqrt((q(c) * (1 + u(x)))^2 + (w(x) * z(c) * s_far)^2)``:

- ``u(x) = gamma d(x) + beta b(x) + kappa e(x) / ref`` is the config's difficulty: ``d`` its distance to the nearest
  training config, ``b`` the Euclidean length of its key features' excess beyond their training range (same units; an
  attention type or MLP no training config had counts one unit), ``e`` the part of the prediction that rests on
  extrapolation, |f(x) - f(x clipped into the training range of every feature)| (in log time or points), over the
  rms of the held-out residuals (``ref``). The growth coefficients are **fitted** on the held-out residuals (maximum
  likelihood of r_i ~ N(0, s^2 (1 + u_i)^2), each coefficient from ``GROWTH_GRID``): on the paper's devices every held-out
  config is a whole named variant or ablation (leave-one-variant-out: the largest, the smallest, the only one with
  MHSA, ...), i.e. the kind of config a search asks about, so the data say how fast errors grow with each measure of
  difficulty, and an interval is as wide as the errors seen at that difficulty, not wider.
- ``q`` is the conformal quantile of the normalised scores |r_i| / (1 + u_i) when there are more than 30 configs:
  format 3 takes the k-th smallest with k the least rank at or above ceil((n + 1) c) for which the coverage of the
  k-th smallest of n exchangeable scores, Beta(k, n + 1 - k), is at least c with probability ``CONFIDENCE``
  (training-conditional, "PAC" conformal: the interval of *this* predictor covers c, not only the average over
  calibrations; with 956 scores at 0.95 rank 918 instead of 910); format 2 takes the ceil((n + 1) c)-th smallest
  (marginal). With fewer configs, or where no rank suffices (fewer than log(1 - CONFIDENCE) / log(c) scores: 45 at
  0.95), a Student-t interval on the normalised residuals is used instead: ``t_{n-1}((1 + c) / 2) * rms * sqrt(1 +
  1/n)``.
- ``w(x) * z(c) * s_far`` is the far field, a prior that can only widen an interval: for structure no training config
  had (``unseen``: attention type per stage, MLP per stage, depthwise convolutions), ``w = 1 - exp(-k / FAR_LENGTH)``
  with k the number of such indicators, z(c) the normal quantile and ``s_far`` the spread of the metric over the
  training configs. No held-out fold can show how wrong a model is about structure none of its data had (the
  surrogate's configs all have attention: it cannot tell attention from none), so this term is not calibrated.

Format 1 (sidecars written before): fixed growth instead, half-width ``e(x) + sqrt((q(c) * (1 + gamma d(x)))^2 + (w(x)
* z(c) * s_far)^2)`` with gamma >= ``GAMMA_MIN`` and the far field growing with ``b(x)``; such sidecars are still read
and keep that meaning.

A config the predictor was trained on has a stored measurement of this device and protocol:
:meth:`Calibration.measured_interval` reports that value with an interval from its measurement noise.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from search_spaces import ATTENTION_TYPES, sample_configs

from ._base import TIME_METRICS, PredictorError
from ._features import FEATURE_INDEX, N_FEATURES, SCHEMA_HASH, featurize

CALIBRATION_FORMAT = 3
# format 1: fixed growth (GAMMA_MIN floor, extrapolated part added whole, far-field prior); format 2: fitted growth,
# marginal conformal quantile; format 3: the same with a training-conditional conformal quantile (CONFIDENCE).
READ_FORMATS = (1, 2, 3)
# With more configs than this, the conformal quantile (the LOO regime of the validation ends here too).
CONFORMAL_MIN = 31
GAMMA_MIN = 1.0  # the near-field error at least doubles one unit of distance away from the nearest training config
FAR_LENGTH = 1.0  # one spread of the search space beyond the training range: 63 % of the far field
GAMMA_GRID = tuple(float(g) for g in np.concatenate([[GAMMA_MIN], np.geomspace(GAMMA_MIN * 1.25, 50.0, 40)]))
# Format 2: the growth of the error with difficulty is fitted on held-out variant families; each coefficient from
# this grid (0: the held-out errors did not grow with that measure of difficulty).
GROWTH_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_COVERAGE = 0.9
# Format 3: the conformal quantile's rank is chosen so that *this* calibration's coverage is at least the nominal one
# with this probability (over the draw of the calibration configs), not only on average over calibrations.
CONFIDENCE = 0.9
COVERAGE_RANGE = (0.5, 0.999)  # exclusive bounds
_SPACE_SAMPLE = 2000
_ROUNDING = 5e-4  # relative rounding of a stored key-feature point (4 significant digits)
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
        # |z|^2 is the same for a whole row: add it after the minimum, and build the rest in place (one
        # chunk-by-points array instead of four).
        m = z @ points.T
        m *= -2.0
        m += p2
        out[i:i + _CHUNK] = np.sqrt(np.maximum(m.min(axis=1) + np.einsum("ij,ij->i", z, z), 0.0))
    return out


def _outside(Z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean length of each row's excess beyond the box [lo, hi] (0 inside)."""
    excess = np.maximum(lo - Z, 0.0) + np.maximum(Z - hi, 0.0)
    return np.sqrt((excess**2).sum(axis=1))


@functools.lru_cache(maxsize=64)
def conformal_rank(n: int, coverage: float, confidence: float | None = None) -> int:
    """The rank k (1-based) of the conformal quantile among ``n`` scores at ``coverage``: ceil((n + 1) c) (marginal:
    covers c on average over calibrations), or with ``confidence`` the least k at or above it whose coverage,
    Beta(k, n + 1 - k) for exchangeable scores, is at least c with that probability (training-conditional). n + 1
    where no rank suffices (too few scores): the caller falls back to its small-sample interval."""
    k = math.ceil((n + 1) * coverage)
    if confidence is None or k > n:
        return k
    ks = np.arange(k, n + 1)
    ok = stats.beta.sf(coverage, ks, n + 1 - ks) >= confidence
    return int(ks[np.argmax(ok)]) if ok.any() else n + 1


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


def fit_growth(r: np.ndarray, d: np.ndarray, b: np.ndarray, e: np.ndarray,
               grid: Sequence[float] = GROWTH_GRID) -> tuple[float, float, float]:
    """(gamma, beta, kappa) of ``grid`` maximising the likelihood of r_i ~ N(0, s^2 (1 + u_i)^2) with the difficulty
    u_i = gamma d_i + beta b_i + kappa e_i (s profiled out): d the distance to the nearest training config, b the
    distance outside the training range, e the extrapolated part of the prediction over the rms residual. Ties go to
    the smaller growth (earlier in the grid)."""
    r = np.asarray(r, float)
    if len(r) < 3:
        return 0.0, 0.0, 0.0
    g = np.asarray(grid, float)
    G, B, K = (a.ravel() for a in np.meshgrid(g, g, g, indexing="ij"))
    f = 1.0 + G[:, None] * d[None, :] + B[:, None] * b[None, :] + K[:, None] * e[None, :]
    s2 = np.maximum(np.mean((r[None, :] / f) ** 2, axis=1), 1e-300)
    loglik = -0.5 * len(r) * np.log(s2) - np.log(f).sum(axis=1)
    best = int(np.argmax(loglik - 1e-9 * (G + B + K)))
    return float(G[best]), float(B[best]), float(K[best])


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
                 hashes: Sequence[str] = (), outside=None, beta: float = 0.0, kappa: float | None = None,
                 ref: float = 0.0, confidence: float | None = None):
        self.space, self.metric, self.cv = space, metric, cv
        # Format 3: the conformal rank holds coverage with this probability; None (formats 1, 2): marginal rank.
        self.confidence = None if confidence is None else float(confidence)
        self.residuals = np.asarray(residuals, float)
        self.distances = np.asarray(distances, float)
        self.extrapolation = np.asarray(extrapolation, float)
        self.gamma = float(gamma)
        # Format 2 (kappa not None): growth fitted on held-out families (see :meth:`difficulty`); format 1: fixed.
        self.outside_d = np.zeros(len(self.residuals)) if outside is None else np.asarray(outside, float)
        self.beta, self.kappa, self.ref = float(beta), None if kappa is None else float(kappa), float(ref)
        self.points, self.scale = np.asarray(points, float), np.asarray(scale, float)
        # The stored points are rounded to 4 significant digits (to_json): widen the box by that rounding, or every
        # config on an edge of the training range (the deepest, the widest) would count as a little outside it.
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        self.box_lo, self.box_hi = lo - _ROUNDING * np.abs(lo), hi + _ROUNDING * np.abs(hi)
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

    @property
    def fitted_growth(self) -> bool:
        """Whether the width's growth with difficulty was fitted on held-out families (format 2)."""
        return self.kappa is not None

    def describe(self) -> str:
        how = ("conformal quantile of cross-validated residuals" if self.method == "conformal"
               else f"Student-t on {self.cv} residuals")
        if self.method == "conformal" and self.confidence is not None:
            how += f" (training-conditional: covers at least the nominal share with {self.confidence:.0%} confidence)"
        unit = "log time" if self.space == "log" else "points of top-1"
        if self.fitted_growth:
            return (f"{how} ({self.n} configs, {unit}), scaled by the difficulty 1 + {self.gamma:.3g} x distance to "
                    f"the nearest training config + {self.beta:.3g} x distance outside the training range + "
                    f"{self.kappa:.3g} x extrapolated part / {self.ref:.3g} (growth fitted on the held-out configs)")
        return (f"{how} ({self.n} configs, {unit}), widened by 1 + {self.gamma:.3g} x distance to the nearest training "
                f"config, plus the extrapolated part of the prediction; outside the training range towards the spread of "
                f"the metric (sd {self.far_sd:.3g})")

    def difficulty(self, d: np.ndarray, b: np.ndarray, e: np.ndarray) -> np.ndarray:
        """1 + u(x), the factor an interval's width grows by (format 2): u = gamma d + beta b + kappa e / ref with d
        the distance to the nearest training config, b the distance outside the training range (an attention type
        or MLP never seen counts one unit each), e the extrapolated part of the prediction (residual units)."""
        e_rel = e / self.ref if self.ref > 0 else np.zeros_like(e)
        # Beyond the farthest held-out config the calibration saw, the data say nothing about the growth: there it
        # is at least GAMMA_MIN per unit (format 1's floor). The held-out configs themselves are never beyond it.
        beyond = np.maximum(d - (self.distances.max() if len(self.distances) else 0.0), 0.0)
        return 1.0 + self.gamma * d + max(GAMMA_MIN - self.gamma, 0.0) * beyond + self.beta * b + self.kappa * e_rel

    @property
    def scores(self) -> np.ndarray:
        if self.fitted_growth:
            return np.abs(self.residuals) / self.difficulty(self.distances, self.outside_d, self.extrapolation)
        return np.maximum(np.abs(self.residuals) - self.extrapolation, 0.0) / (1.0 + self.gamma * self.distances)

    def quantile(self, coverage: float) -> float:
        """The half-width, in residual units, of an interval at ``coverage`` for a config inside the training
        range (d = 0)."""
        c = check_coverage(coverage)
        s = self.scores
        n = len(s)
        k = conformal_rank(n, c, self.confidence)
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
        return _outside(key_features(X) / self.scale, self.box_lo, self.box_hi)

    def unseen(self, X: np.ndarray) -> np.ndarray:
        """How many structural indicators (attention type per stage, MLP per stage, depthwise convolutions) of each
        row of ``X`` take a value no training config had: structure the predictor has no evidence about."""
        return self._unseen(key_features(X) / self.scale)

    def _unseen(self, Z: np.ndarray) -> np.ndarray:
        ind = Z[:, _INDICATOR]
        return ((ind < self.box_lo[_INDICATOR]) | (ind > self.box_hi[_INDICATOR])).sum(axis=1).astype(float)

    def clip(self, X: np.ndarray) -> np.ndarray:
        """``X`` clipped into the feature range of the training configs (the model is asked there too)."""
        return np.minimum(np.maximum(X, self.feature_lo), self.feature_hi)

    def clipped_values(self, X: np.ndarray, value: np.ndarray, predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``predict(clip(X))`` for :meth:`interval`, asking ``predict`` only about the rows that clipping changes:
        the others are ``value`` already (``value = predict(X)``; every model predicts row by row)."""
        Xc = self.clip(X)
        moved = (Xc != X).any(axis=1)  # NaN (out-of-space rows) counts as moved: predicted, as before
        out = np.array(value, dtype=float)
        if moved.any():
            out[moved] = predict(Xc[moved])
        return out

    def interval(self, value: np.ndarray, value_clipped: np.ndarray, X: np.ndarray, coverage: float):
        """(lo, hi, distance) of predictions ``value`` for feature rows ``X`` (``value_clipped``: the same model's
        predictions for :meth:`clip` of ``X``)."""
        Z = key_features(X) / self.scale  # once: distance, excess and unseen structure all read it
        d = nearest_distance(Z, self.points)
        e = np.abs(residuals(self.space, value, value_clipped))
        if self.fitted_growth:
            near = self.quantile(coverage) * self.difficulty(d, _outside(Z, self.box_lo, self.box_hi), e)
            far = (1.0 - np.exp(-self._unseen(Z) / FAR_LENGTH)) * stats.norm.ppf((1 + coverage) / 2) * self.far_sd
            half = np.sqrt(near**2 + far**2)
            lo, hi = apply_half_width(self.space, np.asarray(value, float), half, self.metric)
            return lo, hi, d
        near = self.quantile(coverage) * (1.0 + self.gamma * d)
        far = (1.0 - np.exp(-_outside(Z, self.box_lo, self.box_hi) / FAR_LENGTH)) * stats.norm.ppf((1 + coverage) / 2) \
            * self.far_sd
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
        d, b = np.zeros(len(Z)), np.zeros(len(Z))
        for train, test in splits:
            d[test] = nearest_distance(Z[test], Z[train])
            b[test] = _outside(Z[test], Z[train].min(axis=0), Z[train].max(axis=0))
        r = residuals(space, truth, oof)
        e = np.abs(residuals(space, oof, oof_clipped))
        t = np.log(np.asarray(truth, float)) if space == "log" else np.asarray(truth, float)
        ref = float(np.sqrt(np.mean(r**2))) if len(r) else 0.0
        gamma, beta, kappa = fit_growth(r, d, b, e / ref if ref > 0 else np.zeros_like(e))
        return cls(space=space, metric=metric, residuals=r, distances=d, extrapolation=e,
                   far_sd=float(np.std(t, ddof=1)) if len(t) > 1 else 0.0, gamma=gamma, points=Z, scale=scale,
                   feature_lo=X_train.min(axis=0), feature_hi=X_train.max(axis=0), cv=cv, noise=noise, hashes=hashes,
                   outside=b, beta=beta, kappa=kappa, ref=ref, confidence=CONFIDENCE)

    def to_json(self) -> dict[str, Any]:
        r6 = lambda a: [float(f"{x:.6g}") for x in a]  # noqa: E731
        doc: dict[str, Any] = {
            "format": CALIBRATION_FORMAT, "space": self.space, "method": self.method, "cv": self.cv,
            "gamma": self.gamma, "far_sd": self.far_sd, "residuals": r6(self.residuals), "distances": r6(self.distances),
            "extrapolation": r6(self.extrapolation), "outside": r6(self.outside_d),
            "growth": {"gamma": self.gamma, "beta": self.beta, "kappa": self.kappa, "ref": self.ref},
            "confidence": self.confidence,
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
        fmt = doc.get("format")
        if isinstance(fmt, bool) or fmt not in READ_FORMATS:
            raise PredictorError(f"calibration.format: {fmt!r}; this code reads {'|'.join(map(str, READ_FORMATS))}")
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
        growth = _growth_from_json(doc, len(r)) if fmt >= 2 else {}
        if fmt >= 3:
            growth["confidence"] = _confidence_from_json(doc.get("confidence"))
        return cls(space=space, metric=metric, residuals=r, distances=d, extrapolation=e, gamma=float(gamma),
                   points=points, scale=scale, feature_lo=f_lo, feature_hi=f_hi, far_sd=float(far_sd),
                   cv=str(cv) if isinstance(cv, str) else "?", noise=noise, hashes=hashes, **growth)


def _growth_from_json(doc: Mapping, n: int) -> dict[str, Any]:
    """The fitted growth of a format-2 calibration (beta, kappa, ref, the held-out configs' outside distances)."""
    g = doc.get("growth")
    if not isinstance(g, Mapping):
        raise PredictorError("calibration.growth: not an object")
    out: dict[str, Any] = {"outside": _floats(doc.get("outside"), "calibration.outside", n=n, nonneg=True)}
    for k in ("beta", "kappa", "ref"):
        v = g.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e6:
            raise PredictorError(f"calibration.growth.{k}: must be a non-negative number (got {v!r})")
        out[k] = float(v)
    if g.get("gamma") != doc.get("gamma"):
        raise PredictorError("calibration.growth.gamma: differs from calibration.gamma")
    return out


def _confidence_from_json(v: Any) -> float:
    """A format-3 calibration's training-conditional confidence: a number in [0.5, 0.999]."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 <= v <= 0.999:
        raise PredictorError(f"calibration.confidence: must be a number in [0.5, 0.999] (got {v!r})")
    return float(v)


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
