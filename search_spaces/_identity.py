"""What the builder makes of each numeric knob, and the simplest knob value with the same effect.

A config hash must name the network that is built, not the knobs as typed. Several knobs reach the network
only through a rounded or thresholded effect:

- ``fusion_threshold``: which stage-3/4 local convs are FusedMBConvs (``width < threshold``, only with
  ``fused_blocks`` and only for stages that have blocks);
- the expansion ratios and ``mlp_ratio``: the hidden widths ``round(c * ratio)`` of the blocks they expand;
- ``compression``: the heads and head size of each Lowtention layer (none below 81 channels).

For each of them this module picks one representative per effect: the *simplest* value that gives it
(on the coarsest decimal grid; for the threshold, a power of two). ``LowFormerConfig.canonical()`` replaces every knob by
its representative; the hash is taken of that canonical config, so configs that build the same network
share one hash while each config keeps the values it was given. The representatives are chosen so that
the usual values (the search space's choices, the named variants) are already canonical: their hashes did
not change when identity became canonical. tests/search_spaces/test_identity.py checks "same op graph <=>
same hash" over thousands of configs.

Nothing here imports the config class: these are pure functions of widths and values.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

# Lowtention head arithmetic (docs/architecture.md, Lowtention): channel compression applies only when C > 80.
COMPRESSION_MIN_WIDTH = 80
# The identity version: 1 hashed the knobs as typed, 2 hashes the canonical config. Stores, shipped data and
# predictor sidecars record the version their hashes were made with.
CONFIG_IDENTITY = 2
# Candidate values with more decimals than this are not tried (the preimage of an effect is never that narrow
# for widths <= 4096; see _simplest).
_MAX_DECIMALS = 12


def lowtention_heads(width: int, compression: float) -> tuple[int, int]:
    """(heads, head_dim) of a Lowtention layer of ``width`` channels, as the reference code computes it."""
    r = compression if width > COMPRESSION_MIN_WIDTH else 1.0
    heads = max(1, math.floor(width * r / 30))
    head_dim = math.floor(math.floor(width / heads) * r)
    return heads, head_dim


def _simplest(lo: float, hi: float, ok: Callable[[float], bool]) -> float | None:
    """The simplest number r with ``ok(r)`` around [lo, hi]: on the coarsest decimal grid that has one (steps 1,
    0.5, 0.1, 0.05, 0.01, ...), then nearest the middle of [lo, hi], then the smallest.

    ``ok`` is the exact test (the builder's own arithmetic); [lo, hi] only bounds where candidates are
    looked for, so float error in the bounds cannot change the answer's effect. The answer depends on the
    bounds and ``ok`` only, never on the value the caller started from: that is what makes it canonical.
    """
    mid = (lo + hi) / 2
    for digits in range(_MAX_DECIMALS + 1):
        for den in (10**digits, 2 * 10**digits):  # k / den: steps 10^-d, then 0.5 * 10^-d
            first, last = math.ceil(lo * den) - 1, math.floor(hi * den) + 1
            if last - first > 10_000:  # a grid this fine means a coarser one had candidates; never reached
                first, last = round(mid * den) - 5_000, round(mid * den) + 5_000
            found = [k / den for k in range(max(first, 1), last + 1) if ok(k / den)]
            if found:
                return min(found, key=lambda r: (abs(r - mid), r))
    return None


@functools.lru_cache(maxsize=1 << 14)
def _simplest_ratio(active: tuple[int, ...], hidden: tuple[int, ...], checked: tuple[int, ...], top: float) -> float | None:
    def ok(r: float) -> bool:
        return (0 < r <= top and all(round(c * r) == m for c, m in zip(active, hidden))
                and all(round(c * r) >= 1 for c in checked))

    lo = max([(m - 0.5) / c for c, m in zip(active, hidden)] + [0.5 / c for c in checked], default=0.0)
    hi = min([(m + 0.5) / c for c, m in zip(active, hidden)] + [top])
    return _simplest(lo, hi, ok)


def canonical_ratio(value: float | None, active: tuple[int, ...], checked: tuple[int, ...] = (), top: float = 16.0):
    """The simplest ratio giving the hidden widths ``round(c * value)`` of every input width ``c`` in ``active``
    (and, as the config requires, at least one hidden channel for every width in ``checked``)."""
    if value is None or not active:
        return value
    hidden = tuple(round(c * value) for c in active)
    r = _simplest_ratio(tuple(active), hidden, tuple(checked), top)
    return value if r is None else r


@functools.lru_cache(maxsize=1 << 12)
def _simplest_compression(wide: tuple[int, ...], effect: tuple[tuple[int, int], ...]) -> float | None:
    lo, hi = 0.0, 1.0
    for w, (h, hd) in zip(wide, effect):
        # heads = max(1, floor(w r / 30)); head_dim = floor(floor(w / heads) * r)
        if h > 1:
            lo = max(lo, 30 * h / w)
        hi = min(hi, 30 * (h + 1) / w)
        q = w // h
        lo, hi = max(lo, hd / q), min(hi, (hd + 1) / q)
    return _simplest(lo, hi, lambda r: 0 < r <= 1 and all(lowtention_heads(w, r) == e for w, e in zip(wide, effect)))


def canonical_compression(value: float | None, lowtention_widths: tuple[int, ...]) -> float | None:
    """The simplest compression giving every Lowtention layer (of these widths) its heads and head size;
    1 when no Lowtention layer is wide enough to be compressed."""
    if value is None:
        return None
    wide = tuple(w for w in lowtention_widths if w > COMPRESSION_MIN_WIDTH)
    effect = tuple(lowtention_heads(w, value) for w in wide)
    r = _simplest_compression(wide, effect)
    return value if r is None else r


def canonical_threshold(threshold: int | None, fused_blocks: bool, active_widths: tuple[int, ...]) -> int | None:
    """The representative fusion threshold for stage-3/4 local convs of ``active_widths`` (stages with blocks).

    Without ``fused_blocks`` nothing is fused whatever the threshold: 0. Otherwise the fused stages are those
    narrower than the threshold, so every threshold in (widest fused, narrowest unfused] is the same network;
    the representative is the largest power of two in that range (the smallest above the widest fused stage
    when every stage is fused), else the narrowest unfused width itself.
    """
    if threshold is None:
        return None
    if not fused_blocks:
        return 0
    lo = max((w for w in active_widths if w < threshold), default=-1)  # threshold > lo
    hi = min((w for w in active_widths if w >= threshold), default=None)  # threshold <= hi
    if hi is None:
        t = 1
        while t <= lo:
            t *= 2
        return t
    t = 1 << (hi.bit_length() - 1)
    return t if t > lo else hi
