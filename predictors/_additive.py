"""The MACs baseline and the op-level additive model.

The additive model writes the time of a network as a sum over its layers of per-op-type costs:

    t(x) = c0 + sum_g a_g * MACs_g(x) + b * bytes(x) + l * layers(x)

with a few non-negative per-device coefficients: time per MAC for each group of op types, time per byte
moved, per-layer overhead and a fixed overhead. Each coefficient has a physical meaning and a sign, which
is what lets it fit from a dozen measurements and still extrapolate to architectures it never saw (no
attention, other depths, widths or resolutions): a new config only recombines the same op types.

Fitting minimises the *relative* error (latencies span 10x and more across a device's configs) by
non-negative least squares (scipy.optimize.nnls) with a ridge pull towards a MACs-proportional prior:
each MAC group's coefficient starts at the device's average time per MAC, bytes, layers and fixed
overhead at zero. With few measurements the model therefore stays close to "time proportional to MACs"
unless the data show otherwise; the strength of the pull is chosen by cross-validation on the training
rows. Rows of architectures outside the search space (other families, toy models: only MACs known) can
inform that average time per MAC.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import nnls

from ._base import CostModel, PredictorError, check_finite
from ._features import FEATURE_INDEX, SCHEMA_HASH, in_space_mask

_MEMORY_BOUND = ("depthwise", "norm", "activation", "softmax", "elementwise", "add", "pool", "movement")

# Cost terms the additive model can use: name -> feature columns summed (None: the constant 1).
TERMS: dict[str, tuple[str, ...] | None] = {
    "intercept": None,
    "macs": ("macs",),
    "macs_conv": ("macs.conv", "macs.grouped_conv", "macs.conv_transpose"),
    "macs_pointwise": ("macs.pointwise", "macs.linear"),
    "macs_dense": ("macs.conv", "macs.grouped_conv", "macs.conv_transpose", "macs.pointwise", "macs.linear"),
    "macs_depthwise": ("macs.depthwise",),
    "macs_attention": ("macs.matmul",),
    "bytes": ("bytes",),
    "bytes_memory_bound": tuple(f"bytes.{op}" for op in _MEMORY_BOUND),
    "bytes_softmax": ("bytes.softmax",),
    "layers": ("layers",),
}
DEFAULT_TERMS = ("macs_conv", "macs_pointwise", "macs_depthwise", "macs_attention", "bytes_memory_bound", "layers", "intercept")
ALPHA_GRID = tuple(float(a) for a in np.logspace(-4, 2, 13))
_MACS = FEATURE_INDEX["macs"]


def _check_terms(terms) -> tuple[str, ...]:
    terms = tuple(terms)
    unknown = [t for t in terms if t not in TERMS]
    if unknown or not terms:
        raise ValueError(f"terms: unknown {unknown}; allowed: {', '.join(TERMS)}")
    return terms


def design_matrix(X: np.ndarray, terms) -> np.ndarray:
    """(n, len(terms)) cost drivers of full feature rows."""
    D = np.empty((X.shape[0], len(terms)))
    for k, t in enumerate(terms):
        cols = TERMS[t]
        D[:, k] = 1.0 if cols is None else X[:, [FEATURE_INDEX[c] for c in cols]].sum(axis=1)
    return D


def _mac_terms(terms) -> np.ndarray:
    # MAC terms start from the device's average time per MAC; the others from zero.
    return np.array([t.startswith("macs") for t in terms])


def _rate(macs: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Time per MAC r minimising the (weighted) relative error of y ~ r * macs."""
    q = macs / y
    w = np.ones_like(q) if w is None else w
    return float((w * q).sum() / (w * q * q).sum())


def _solve(Z: np.ndarray, t: np.ndarray, alpha: float, prior: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Row weights scale the squared errors: rows times sqrt(w); the ridge pull weighs like sum(w) rows.
    k = Z.shape[1]
    sw = np.sqrt(w)
    Z, t = Z * sw[:, None], t * sw
    if alpha > 0:
        s = np.sqrt(alpha * w.sum())
        Z = np.vstack([Z, s * np.eye(k)])
        t = np.concatenate([t, s * prior])
    phi, _ = nnls(Z, t, maxiter=50 * k)
    return phi


def _weights(sample_weight, n: int) -> np.ndarray:
    """Per-row weights (ones without ``sample_weight``); a one-line ValueError for wrong ones."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"sample_weight: expected {n} finite non-negative weights, not all zero")
    return w


def _folds(n: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    if n <= 30:
        return [np.array([i]) for i in range(n)]
    idx = np.random.default_rng(seed).permutation(n)
    return np.array_split(idx, k)


class MacsBaseline(CostModel):
    """log(time) = intercept + slope * log(MACs): what MACs alone predict, the contrast for every other model.

    ``use_out_of_space``: also fit on rows of other architectures (only MACs known).
    """

    kind = "macs"
    min_rows, predicts, baseline, order = 2, "any", True, 0

    def __init__(self, use_out_of_space: bool = False):
        self.use_out_of_space = use_out_of_space

    def fit(self, X, y, sample_weight=None):
        X = self._validate_X(X)
        y = np.asarray(y, dtype=float)
        keep = np.ones(len(y), bool) if self.use_out_of_space else in_space_mask(X)
        m = X[keep, _MACS]
        if keep.sum() < 2 or np.ptp(np.log(m)) == 0:
            # One MACs value: a constant ratio time/MAC.
            self.coef_ = 1.0
            self.intercept_ = float(np.mean(np.log(y[keep]) - np.log(m)))
        else:
            # polyfit weights the unsquared residuals: sample weights enter as their square roots.
            w = None if sample_weight is None else np.sqrt(_weights(sample_weight, len(y))[keep])
            self.coef_, self.intercept_ = (float(v) for v in np.polyfit(np.log(m), np.log(y[keep]), 1, w=w))
        self.n_train_ = int(keep.sum())
        self.schema_hash_ = SCHEMA_HASH
        return self

    def predict(self, X):
        self._check_fitted()
        X = self._validate_X(X)
        return np.exp(self.intercept_ + self.coef_ * np.log(X[:, _MACS]))

    def _state(self, prefix):
        return {"coef_": self.coef_, "intercept_": self.intercept_, "n_train_": self.n_train_}, {}

    def _load_state(self, state, texts, prefix):
        self.coef_ = float(check_finite("coef_", state["coef_"]))
        self.intercept_ = float(check_finite("intercept_", state["intercept_"]))
        self.n_train_ = int(state["n_train_"])


class AdditiveModel(CostModel):
    """time = sum of per-op-type costs with non-negative per-device coefficients (see the module doc).

    Parameters
    ----------
    terms: cost terms, names of :data:`TERMS`.
    alpha: strength of the pull towards the MACs-proportional prior; None chooses it from
        :data:`ALPHA_GRID` by leave-one-out (k-fold above 30 rows) on the training rows.

    ``fit(X, y, sample_weight)`` weights each row's squared relative error (a zero weight drops the row).
    relative: minimise relative errors (True) or absolute ones.
    use_out_of_space: let MACs-only rows of other architectures set the prior's time per MAC.
    prior_coef: coefficients (one per term) to pull towards instead of the MACs-proportional prior; few-shot
        transfer passes a source device's coefficients here.

    Learned: ``coef_`` (time per unit of each term, same order as ``terms``), ``alpha_``, ``rate_`` (prior
    time per MAC), ``scale_`` (mean share of each term per unit of time, the units the prior acts in).
    """

    kind = "additive"
    min_rows, order = 3, 1

    def __init__(
        self,
        terms=DEFAULT_TERMS,
        alpha: float | None = None,
        relative: bool = True,
        use_out_of_space: bool = False,
        prior_coef=None,
    ):
        self.terms = terms
        self.alpha = alpha
        self.relative = relative
        self.use_out_of_space = use_out_of_space
        self.prior_coef = prior_coef

    # The fit works in normalised units phi_k = coef_k * scale_k, where scale_k is the average share of
    # term k in one unit of (relative) time, so that the ridge treats every term alike.
    def _prepare(self, D: np.ndarray, y: np.ndarray, sw: np.ndarray):
        w = 1.0 / y if self.relative else np.full_like(y, 1.0 / np.median(y))
        scale = np.average(D * w[:, None], axis=0, weights=sw)
        active = scale > 0
        scale = np.where(active, scale, 1.0)
        return w, scale, active

    def _fit_phi(self, D, y, rate, alpha, sw):
        w, scale, active = self._prepare(D, y, sw)
        Z = D[:, active] * w[:, None] / scale[active]
        if self.prior_coef is None:
            prior = np.where(_mac_terms(self.terms), rate * scale, 0.0)[active]
        else:
            prior = (np.asarray(self.prior_coef, dtype=float) * scale)[active]
        phi = np.zeros(D.shape[1])
        phi[active] = _solve(Z, y * w, alpha, prior, sw)
        return phi / scale, scale

    def fit(self, X, y, sample_weight=None):
        X = self._validate_X(X)
        y = np.asarray(y, dtype=float)
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("y: the additive model needs positive finite times")
        terms = _check_terms(self.terms)
        if self.prior_coef is not None and len(self.prior_coef) != len(terms):
            raise ValueError(f"prior_coef: needs one value per term ({len(terms)}), got {len(self.prior_coef)}")
        sw = _weights(sample_weight, len(y))
        ins = in_space_mask(X) & (sw > 0)
        if ins.sum() < 1:
            raise ValueError("X: no row of the search space (with a positive weight) to fit on")
        rate_rows = (np.ones(len(y), bool) if self.use_out_of_space else in_space_mask(X)) & (sw > 0)
        rate = _rate(X[rate_rows, _MACS], y[rate_rows], sw[rate_rows])
        D, yi, wi = design_matrix(X[ins], terms), y[ins], sw[ins]
        if self.alpha is None:
            alpha = self._select_alpha(D, yi, rate, wi)
        else:
            alpha = float(self.alpha)
        self.coef_, self.scale_ = self._fit_phi(D, yi, rate, alpha, wi)
        self.alpha_, self.rate_ = alpha, rate
        self.n_train_ = int(ins.sum())
        self.schema_hash_ = SCHEMA_HASH
        return self

    def _select_alpha(self, D, y, rate, sw) -> float:
        if len(y) < 3:
            return ALPHA_GRID[len(ALPHA_GRID) // 2]
        folds = _folds(len(y))
        best, best_err = None, np.inf
        for alpha in ALPHA_GRID:
            err = 0.0
            for test in folds:
                train = np.setdiff1d(np.arange(len(y)), test)
                coef, _ = self._fit_phi(D[train], y[train], rate, alpha, sw[train])
                pred = D[test] @ coef
                err += float((sw[test] * ((pred - y[test]) / y[test]) ** 2).sum())
            # Ties go to the stronger pull (later in the grid): simpler model.
            if err <= best_err * (1 + 1e-9):
                best, best_err = alpha, err
        return float(best)

    def predict(self, X):
        self._check_fitted()
        X = self._validate_X(X)
        return design_matrix(X, tuple(self.terms)) @ self.coef_

    def contributions(self, X) -> dict[str, np.ndarray]:
        """Each term's share of the predicted time, per row (explains a prediction)."""
        self._check_fitted()
        D = design_matrix(self._validate_X(X), tuple(self.terms))
        return {t: D[:, k] * self.coef_[k] for k, t in enumerate(self.terms)}

    def _state(self, prefix) -> tuple[dict[str, Any], dict[str, str]]:
        return {
            "coef_": dict(zip(self.terms, map(float, self.coef_))),
            "scale_": list(map(float, self.scale_)),
            "alpha_": self.alpha_,
            "rate_": self.rate_,
            "n_train_": self.n_train_,
        }, {}

    def _load_state(self, state, texts, prefix):
        try:
            terms = _check_terms(self.terms)
        except ValueError as e:
            raise PredictorError(f"model.json: {e}") from None
        # The model promises non-negative per-op costs: a negative one predicts negative latencies.
        self.coef_ = np.array([float(check_finite(f"coefficient {t!r}", state["coef_"][t], low=0.0,
                                                  what="per-op costs are >= 0")) for t in terms])
        self.scale_ = check_finite("scale_", state["scale_"], low=0.0)
        if self.scale_.shape != (len(terms),):
            raise PredictorError(f"model.json: scale_ has {self.scale_.size} values for {len(terms)} terms")
        self.alpha_ = float(check_finite("alpha_", state["alpha_"], low=0.0))
        self.rate_ = float(check_finite("rate_", state["rate_"], low=0.0))
        self.n_train_ = int(state["n_train_"])
