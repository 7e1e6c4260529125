"""What to measure on a new device, and which known device it resembles.

**Informative design.** A new device's predictor is fitted from a few dozen measurements, so which configs
are measured matters as much as how many. The additive model (:class:`predictors.AdditiveModel`) writes a
config's time as a sum of per-op-type costs fitted on *relative* errors; its uncertainty about a config x
is, to first order, z(x)^T M^-1 z(x), where z(x) is x's row of cost drivers divided by its expected time
(what the relative fit sees) and M = lambda I + sum z z^T over what is measured. :func:`informative_order`
picks configs greedily from a candidate pool (configs sampled over the whole space, so the pool *is* the
distribution the predictor will be asked about):

- ``"i"`` (default, I-optimal): the config whose measurement most reduces the *average* predictive
  variance over the pool; it favours configs typical of the space whose op mix is not yet covered;
- ``"d"`` (D-optimal): the config with the largest predictive variance (greedy determinant); it favours
  extremes, which pins the coefficients but says little about typical configs.

The expected time comes from the source predictor when there is one (a known device the new one
resembles), else from MACs alone: the design only needs the op mix in relative terms.

**Source ranking.** :func:`rank_sources` scores every known device's predictor on a few anchors measured on
the new device: after the best common scale factor (a faster or slower device of the same kind), how far
do the anchors still deviate (RMS of the log ratios, in %)? The device with the smallest deviation is the
source a transfer starts from.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ._additive import DEFAULT_TERMS, design_matrix
from ._base import PredictorError
from ._features import FEATURE_INDEX, in_space_mask
from ._metrics import kendall_tau

CRITERIA = ("i", "d")
# The ridge of the information matrix, in units of one well-spread measurement: keeps M invertible before
# there are as many measurements as terms, and stops the first picks from chasing tiny driver values.
_RIDGE = 1e-2


def design_rows(X: np.ndarray, expected_cost: np.ndarray | None = None, terms: Sequence[str] = DEFAULT_TERMS) -> np.ndarray:
    """z(x): the additive model's cost drivers of each row divided by its expected time (``expected_cost``;
    default proportional to MACs), i.e. each term's share of the time per unit of coefficient."""
    X = np.asarray(X, dtype=float)
    if not in_space_mask(X).all():
        raise PredictorError("design: candidates must be configs of the search space (full feature rows)")
    D = design_matrix(X, tuple(terms))
    t = X[:, FEATURE_INDEX["macs"]] if expected_cost is None else np.asarray(expected_cost, dtype=float)
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise PredictorError("design: expected times must be positive and finite")
    return D / t[:, None]


def _scaled(Z_cand: np.ndarray, Z_known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Each driver in units of its typical value over the pool, so that one ridge suits every term.
    scale = np.abs(Z_cand).mean(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return Z_cand / scale, Z_known / scale


def informative_order(
    X_candidates: np.ndarray,
    n: int,
    *,
    X_known: np.ndarray | None = None,
    expected_cost: np.ndarray | None = None,
    expected_cost_known: np.ndarray | None = None,
    criterion: str = "i",
    terms: Sequence[str] = DEFAULT_TERMS,
    ridge: float = _RIDGE,
) -> np.ndarray:
    """Indices of ``n`` candidates (rows of ``X_candidates``), most informative first (see the module doc).

    ``X_known``: configs already measured (the anchors), which the design builds on. ``expected_cost`` /
    ``expected_cost_known``: expected times (any unit; e.g. a source predictor's) of the candidates / the
    known rows; default proportional to MACs. Deterministic: ties go to the lower index.
    """
    if criterion not in CRITERIA:
        raise PredictorError(f"criterion: must be one of {'|'.join(CRITERIA)} (got {criterion!r})")
    X_candidates = np.asarray(X_candidates, dtype=float)
    n = int(min(max(n, 0), len(X_candidates)))
    if n == 0:
        return np.zeros(0, dtype=int)
    Zc = design_rows(X_candidates, expected_cost, terms)
    if X_known is not None and len(X_known):
        Zk = design_rows(np.asarray(X_known, dtype=float), expected_cost_known, terms)
    else:
        Zk = np.zeros((0, Zc.shape[1]))
    Zc, Zk = _scaled(Zc, Zk)
    k = Zc.shape[1]
    Minv = np.linalg.inv(ridge * np.eye(k) + Zk.T @ Zk)
    chosen: list[int] = []
    free = np.ones(len(Zc), dtype=bool)
    for _ in range(n):
        A = Zc @ Minv  # (N, k): M^-1 z for every candidate
        var = np.einsum("ij,ij->i", A, Zc)  # predictive variance z^T M^-1 z
        if criterion == "d":
            score = var
        else:
            # Adding z cuts the variance at every c by (z_c^T M^-1 z)^2 / (1 + z^T M^-1 z) (Sherman-Morrison).
            G = A @ Zc.T  # (N, N): z_i^T M^-1 z_c
            score = (G**2).mean(axis=1) / (1.0 + var)
        score = np.where(free, score, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        free[best] = False
        u = Minv @ Zc[best]
        Minv -= np.outer(u, u) / (1.0 + Zc[best] @ u)
    return np.asarray(chosen, dtype=int)


def random_order(n_candidates: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` candidate indices drawn at random (seeded): the baseline of an informative design."""
    n = int(min(max(n, 0), n_candidates))
    return np.random.default_rng(seed).choice(n_candidates, size=n, replace=False)


def rank_sources(
    X_anchors: np.ndarray,
    cost_anchors: np.ndarray,
    sources: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Known devices ranked by how well each predicts the new device's anchors after a common scale.

    ``cost_anchors``: the anchors' measured cost (ms per image; :func:`predictors.to_cost`). ``sources``:
    {name: a fitted estimator or a TrainedPredictor} predicting cost. Returns one dict per source, best
    first: ``source``, ``scale`` (new / source time), ``spread_pct`` (RMS of the log ratios after the
    scale, in %), ``kendall_tau`` (anchor order), ``n``. A source that cannot predict the anchors is left out.
    """
    X_anchors = np.asarray(X_anchors, dtype=float)
    y = np.asarray(cost_anchors, dtype=float)
    if len(y) < 2:
        raise PredictorError(f"anchors: at least 2 are needed to rank sources (got {len(y)})")
    out = []
    for name, src in sources.items():
        est = getattr(src, "estimator", src)
        try:
            s = np.asarray(est.predict(X_anchors), dtype=float)
        except (ValueError, PredictorError):
            continue
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            continue
        r = np.log(y) - np.log(s)
        a = float(r.mean())
        spread = float(np.sqrt(np.mean((r - a) ** 2)))
        out.append({"source": name, "scale": float(np.exp(a)), "spread_pct": float((np.exp(spread) - 1) * 100),
                    "kendall_tau": kendall_tau(y, s), "n": int(len(y))})
    out.sort(key=lambda d: (d["spread_pct"], d["source"]))
    return out
