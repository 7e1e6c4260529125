"""The measurement protocol (the paper's): warm-up runs, timed runs on an input generated beforehand, the
median reported; p10/p90, the median's confidence interval, the machine's load while timing, and full
provenance stored with it.

Timed runs are adaptive by default: after ``min_runs`` the harness stops as soon as the median's 95 %
confidence interval (distribution-free, from order statistics) is within ``target_ci_pct`` of the median,
and after ``runs`` at the latest. A quiet machine and a fast model stop after 10-20 runs where the fixed
protocol took 100; a noisy one keeps going. ``target_ci_pct=None`` restores the fixed count.

CPU and edge timing is paired by default (``Protocol.pairing``): the config's runs alternate with runs of a
reference model (B0) in the order A B | B A | A B ..., each adjacent pair giving one ratio config / reference.
A host that slows down by 40 % within minutes (measured/README.md, Paired timing) moves both halves of a pair
alike, so the pair ratios hold still where the absolute median does not; the adaptive stop then applies to the
ratio's interval. The ratio is estimated per ABBA block (two adjacent pairs, in which each model runs once right
after the other model and once right after itself, so the cold-cache cost of a switch cancels) by the
Hodges-Lehmann estimator with its Wilcoxon signed-rank interval (:func:`paired_ratio`).
``pairing="alone"`` keeps the unpaired protocol.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import math
import os
import platform
import re
import time
import weakref
from typing import Callable

import numpy as np

from lowformer_common import UserError, utc_now
from search_spaces import LowFormerConfig

from ._backends import BACKENDS, Backend, Runner, get_backend, precision_note, reference_id
from ._fingerprint import LoadMonitor, package_versions
from ._records import MIN_TIMED_RUNS, Architecture, Measurement, protocol_key

HARNESS_METRICS = ("latency_ms", "throughput_img_s")
PAIRING_CHOICES = ("auto", "paired", "alone")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How to time. Defaults: the paper's CPU latency protocol with onnxruntime on 1 thread."""

    metric: str = "latency_ms"
    backend: str = "onnxruntime"
    batch: int = 1
    threads: int = 1
    precision: str = "fp32"
    warmup: int = 5
    runs: int = 100  # timed runs at most (exactly, when target_ci_pct is None)
    # Adaptive repeats: stop once the median's 95 % CI half-width is <= target_ci_pct % of the median, after at
    # least min_runs timed runs (never more than runs). None: always ``runs`` timed runs.
    min_runs: int = 10
    target_ci_pct: float | None = 1.0
    # A run during which other processes used more than this share of the machine is re-measured,
    # and marked "busy" (never used for training) if the machine stays busy. A paired timing whose pairs agree
    # is kept instead (``keep_loaded_pairs``): the neighbour slows both halves of each pair alike, so its ratio
    # to the reference holds (measured/README.md, Paired timing under load); the row is stored ok, flagged
    # "loaded" (its absolute latency is from a loaded phase: never trained on) with its busy_pct.
    busy_threshold_pct: float = 5.0
    keep_loaded_pairs: bool = True
    retries: int = 2
    retry_pause_s: float = 5.0
    # Paired timing: "auto" (paired on CPU and edge backends, alone on GPUs, whose clocks are fixed by the
    # runtime and whose runs are microseconds apart), "paired" or "alone"; the reference (a named variant);
    # the bound on the disagreement of the pairs' first and second halves (a neighbour that started mid-way):
    # above it a row is measured again once, then stored flagged "suspect".
    pairing: str = "auto"
    reference: str = "B0"
    pair_bound_pct: float = 5.0
    # Paired timing stops on the pair ratio's CI instead (when target_ci_pct is not None): ±2 %, not the median's ±1 %,
    # checked after whole ABBA blocks from 12 pairs on (paired_floor). With the ratio estimated per ABBA block
    # (paired_ratio), ±2 % stopped after a median 12-21 pairs on a quiet 2-core Xeon (1,121-1,833 configs/h; int8 rows
    # 14 pairs, where the median of pair ratios took 23-27 for fp32 and 90-94 for int8); on identical timings the
    # block estimate's repeats varied less than the median's (CV median 0.61 % against 0.91 %) after half the pairs
    # (docs/results.md, 2026-12-03, night). `measure --target-ci 3` trades precision for throughput.
    pair_target_ci_pct: float = 2.0

    def __post_init__(self):
        if self.metric not in HARNESS_METRICS:
            raise UserError(f"metric: the harness measures {'|'.join(HARNESS_METRICS)} (got {self.metric!r})")
        for f, lo in (("batch", 1), ("threads", 1), ("warmup", 0), ("runs", 3), ("retries", 0), ("min_runs", 3)):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise UserError(f"{f}: must be an integer >= {lo} (got {v!r})")
        if not 0 < self.busy_threshold_pct <= 100:
            raise UserError(f"busy_threshold_pct: must be in (0, 100] (got {self.busy_threshold_pct})")
        t = self.target_ci_pct
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 100):
            raise UserError(f"target_ci_pct: must be a percentage in (0, 100], or None for a fixed run count (got {t!r})")
        if self.pairing not in PAIRING_CHOICES:
            raise UserError(f"pairing: must be one of {'|'.join(PAIRING_CHOICES)} (got {self.pairing!r})")
        if not isinstance(self.reference, str) or not self.reference:
            raise UserError(f"reference: must be a named variant (got {self.reference!r})")
        pt = self.pair_target_ci_pct
        if isinstance(pt, bool) or not isinstance(pt, (int, float)) or not 0 < pt <= 100:
            raise UserError(f"pair_target_ci_pct: must be a percentage in (0, 100] (got {pt!r})")
        b = self.pair_bound_pct
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 100:
            raise UserError(f"pair_bound_pct: must be a percentage in (0, 100] (got {b!r})")
        if self.adaptive and self.min_runs < MIN_TIMED_RUNS:
            # A median of fewer runs is a smoke test (never trained on): an adaptive stop must not produce one.
            raise UserError(f"min_runs: must be >= {MIN_TIMED_RUNS} when timing adaptively (got {self.min_runs})")

    @property
    def adaptive(self) -> bool:
        """Whether timing may stop before ``runs`` (a target CI and room between min_runs and runs)."""
        return self.target_ci_pct is not None and self.min_runs < self.runs

    @property
    def stop_ci_pct(self) -> float | None:
        """The CI half-width (%) adaptive timing stops at: the pair ratio's when paired, else the median's;
        None when timing a fixed number of runs."""
        if not self.adaptive:
            return None
        return float(self.pair_target_ci_pct) if self.paired else self.target_ci_pct

    @property
    def paired(self) -> bool:
        """Whether configs are timed paired with the reference (see the module doc)."""
        if self.pairing == "auto":
            cls = BACKENDS.get(self.backend)
            return cls is None or cls.device_kind != "gpu"
        return self.pairing == "paired"

    @property
    def key(self) -> str:
        return protocol_key(self.metric, self.backend, self.precision, self.batch, self.threads)

    @classmethod
    def throughput(cls, **kw) -> "Protocol":
        """The paper's GPU throughput protocol: batch 200, median time per batch / batch."""
        kw.setdefault("batch", 200)
        return cls(metric="throughput_img_s", **kw)


CI_CONFIDENCE = 0.95

# Where this process's measuring time went, in seconds per phase ("session", "warmup", "pairs", "runs", ...): a
# measuring worker resets it per request and sends it back with the reply, so a campaign can say what its time was
# spent on (CampaignReport.phase_seconds, tests/benchmarks/bench_campaign.py).
STOPWATCH: collections.Counter = collections.Counter()


@contextlib.contextmanager
def stopwatch(phase: str, into: collections.Counter = STOPWATCH):
    """Adds the block's wall time to ``into[phase]`` (this process's :data:`STOPWATCH` unless told)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        into[phase] += time.perf_counter() - t0


@functools.lru_cache(maxsize=1024)
def _median_ci_rank(n: int, confidence: float = CI_CONFIDENCE) -> int:
    """The 1-based rank j of the lower bound of the distribution-free confidence interval of a median,
    [x_(j), x_(n-j+1)]: the largest j with P(Binomial(n, 1/2) <= j - 1) <= (1 - confidence) / 2.
    0 when n is too small for any interval to reach the confidence."""
    alpha_half = (1.0 - confidence) / 2
    cdf, total = 0.0, 2.0**n
    for k in range(n + 1):
        cdf += math.comb(n, k) / total
        if cdf > alpha_half:
            return k
    return 0


def median_ci(times, confidence: float = CI_CONFIDENCE) -> tuple[float, float]:
    """(lo, hi): a distribution-free confidence interval of the median of ``times`` (order statistics; no
    assumption on the distribution, so outliers cannot shrink it). The full range when n is too small."""
    x = np.sort(np.asarray(times, dtype=float))
    n = len(x)
    j = _median_ci_rank(n, confidence)
    if j == 0:
        return float(x[0]), float(x[-1])
    return float(x[j - 1]), float(x[n - j])


def ci_half_width_pct(times, confidence: float = CI_CONFIDENCE) -> float:
    """Half the width of the median's confidence interval, in % of the median."""
    lo, hi = median_ci(times, confidence)
    med = float(np.median(times))
    return (hi - lo) / 2 / med * 100 if med > 0 else math.inf


# Paired ratios are estimated per ABBA block: pairs 2k (A B) and 2k+1 (B A). Within a block each model runs once
# right after the other model (cold caches) and once right after itself, so the block's mean log ratio is free of
# the switch cost. Per pair it is not: the config's run is cold in one pair and warm in the next, so pair ratios
# alternate by +-1-3 % (fp32) and +-3-5 % (int8) on a 2-core Xeon, a two-humped spread in which the median of pair
# ratios is a poor estimator (its standard error 1.3x the block estimator's for fp32, 1.8x for int8; 14 configs x
# 150 pairs, tests/benchmarks/bench_ratio_estimators.py).
PAIRS_PER_BLOCK = 2


def block_log_ratios(a, b) -> np.ndarray:
    """The mean log ratio a/b of each complete ABBA block (pairs 2k and 2k+1); a trailing unmatched pair is left
    out, unless it is the only pair."""
    r = np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float))
    m = len(r) // PAIRS_PER_BLOCK
    if m == 0:
        return r
    return r[: m * PAIRS_PER_BLOCK].reshape(m, PAIRS_PER_BLOCK).mean(axis=1)


@functools.lru_cache(maxsize=256)
def _signed_rank_lower(m: int, confidence: float = CI_CONFIDENCE) -> int:
    """The 1-based rank k of the lower bound of the Wilcoxon signed-rank confidence interval of a symmetric
    centre from m values, [W_(k), W_(N-k+1)] over the N = m(m+1)/2 sorted Walsh averages: the largest k with
    P(T+ <= k - 1) <= (1 - confidence) / 2 under the exact null distribution of the signed-rank statistic T+.
    0 when m is too small for any interval to reach the confidence."""
    counts = np.zeros(m * (m + 1) // 2 + 1)
    counts[0] = 1.0
    for i in range(1, m + 1):  # T+ over ranks 1..i: each rank is in the positive set or not
        counts[i:] = counts[i:] + counts[:-i].copy()
    cdf = np.cumsum(counts) / 2.0**m
    return int(np.searchsorted(cdf, (1.0 - confidence) / 2, side="right"))


def hodges_lehmann(x, confidence: float = CI_CONFIDENCE) -> tuple[float, float, float]:
    """(estimate, lo, hi): the Hodges-Lehmann estimate of the centre of ``x`` (the median of its Walsh averages
    (x_i + x_j) / 2, i <= j) and its distribution-free confidence interval (Wilcoxon signed rank; valid for any
    symmetric distribution: 95 % of a normal sample's efficiency, robust to a third of outliers). The full range
    of the Walsh averages when there are too few values for the confidence."""
    x = np.asarray(x, dtype=float)
    i, j = np.triu_indices(len(x))
    w = np.sort((x[i] + x[j]) / 2)
    k = _signed_rank_lower(len(x), confidence)
    lo, hi = (w[0], w[-1]) if k == 0 else (w[k - 1], w[len(w) - k])
    return float(np.median(w)), float(lo), float(hi)


def paired_ratio(a, b, confidence: float = CI_CONFIDENCE) -> tuple[float, float, float]:
    """(ratio, lo, hi): the ratio a/b of paired timings in the ABBA order and its confidence interval, from the
    Hodges-Lehmann estimate over the blocks' log ratios (:func:`block_log_ratios`)."""
    est, lo, hi = hodges_lehmann(block_log_ratios(a, b), confidence)
    return math.exp(est), math.exp(lo), math.exp(hi)


def paired_ratio_half_pct(a, b, confidence: float = CI_CONFIDENCE) -> float:
    """Half the width of :func:`paired_ratio`'s confidence interval, in % of the ratio."""
    return _half_pct(*paired_ratio(a, b, confidence))


def _half_pct(est: float, lo: float, hi: float) -> float:
    return (hi - lo) / 2 / est * 100


def paired_floor(confidence: float = CI_CONFIDENCE) -> int:
    """The fewest pairs whose ratio interval reaches the confidence (6 ABBA blocks, 12 pairs, at 95 %): an adaptive
    paired timing never stops before it, whatever ``min_runs`` says."""
    m = 1
    while _signed_rank_lower(m, confidence) == 0:
        m += 1
    return m * PAIRS_PER_BLOCK


@dataclasses.dataclass
class Timing:
    times_s: np.ndarray  # one per timed run
    other_pct: float  # CPU used by other processes while timing, % of the machine

    @property
    def n(self) -> int:
        return int(len(self.times_s))

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.times_s, q))

    @property
    def ci_s(self) -> tuple[float, float]:
        """The median's 95 % confidence interval, in seconds."""
        return median_ci(self.times_s)

    @property
    def ci_half_pct(self) -> float:
        """Half-width of the median's 95 % confidence interval, in % of the median."""
        return ci_half_width_pct(self.times_s)


@dataclasses.dataclass
class PairedTiming(Timing):
    """A config timed in adjacent pairs with a reference: ``times_s`` the config's runs, ``ref_times_s`` the
    reference's (pair k: runs 2k and 2k+1 of the A B | B A order)."""

    ref_times_s: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    reference: str | None = None  # the reference's config hash
    reference_name: str | None = None
    remeasured: int = 0  # times the row was timed again because its pairs disagreed

    @functools.cached_property
    def _ratio_estimate(self) -> tuple[float, float, float]:
        # Computed once per timing (the runs never change after it is made): a row reads it several times.
        return paired_ratio(self.times_s, self.ref_times_s)

    @property
    def ratio(self) -> float:
        """The config's ratio to the reference (:func:`paired_ratio`: Hodges-Lehmann over ABBA blocks)."""
        return self._ratio_estimate[0]

    @property
    def ratio_ci(self) -> tuple[float, float]:
        """The ratio's 95 % confidence interval (Wilcoxon signed rank over ABBA blocks)."""
        return self._ratio_estimate[1:]

    @property
    def ratio_ci_half_pct(self) -> float:
        return _half_pct(*self._ratio_estimate)

    @property
    def ref_median_s(self) -> float:
        return float(np.median(self.ref_times_s))

    @property
    def disagreement_pct(self) -> float:
        """How far the ratio of the first half of the ABBA blocks is from that of the second half, in %, when the
        two halves' 95 % intervals (:func:`hodges_lehmann`; their ranges for a few blocks) do not overlap; 0 when
        they do. A neighbour that started (or a governor that stepped) mid-way moves one half only, as a whole;
        pair-to-pair jitter on a busy host widens both intervals instead."""
        r = block_log_ratios(self.times_s, self.ref_times_s)
        h = len(r) // 2
        if h < 2:
            return 0.0
        (a, alo, ahi), (b, blo, bhi) = hodges_lehmann(r[:h]), hodges_lehmann(r[h:])
        if ahi >= blo and bhi >= alo:
            return 0.0
        return abs(math.exp(a - b) - 1) * 100


def time_paired(
    runner: Runner,
    reference: Runner,
    warmup: int,
    runs: int,
    *,
    min_runs: int | None = None,
    target_ci_pct: float | None = None,
    ref_warmup: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
    monitor: Callable[[], LoadMonitor] = LoadMonitor,
) -> PairedTiming:
    """Time ``runner`` (A) and ``reference`` (B) in adjacent pairs, A B | B A | A B ... (each pair's order the
    reverse of the last: a linear drift and an order effect cancel over two pairs), with the garbage collector
    paused: ``runs`` pairs, or, with ``target_ci_pct``, as few as ``min_runs`` (and :func:`paired_floor`) once the
    95 % CI of the ratio (:func:`paired_ratio`) is within that % of it, checked after whole ABBA blocks. ``ref_warmup``: the reference's warm-up runs (default ``warmup``; a
    reference already warmed in this process needs one run to bring its data back into the caches, not the
    first-run allocations again). ``clock`` and ``monitor`` are injectable (tests)."""
    with stopwatch("warmup"):
        for _ in range(warmup):
            runner()
        for _ in range(warmup if ref_warmup is None else ref_warmup):
            reference()
    adaptive, floor = _adaptive_floor(runs, min_runs, target_ci_pct)
    floor = max(floor, min(paired_floor(), runs))  # no stop before the ratio's interval can reach 95 %
    a, b = np.empty(runs), np.empty(runs)
    n = 0
    with stopwatch("pairs"), _gc_paused(), monitor() as mon:
        while n < runs:
            first, second = ((runner, a), (reference, b)) if n % 2 == 0 else ((reference, b), (runner, a))
            for fn, out in (first, second):
                t0 = clock()
                fn()
                out[n] = clock() - t0
            n += 1
            # Only after a whole ABBA block (even n): the estimate never rests on a half-cancelled switch cost.
            if (adaptive and n >= floor and n % PAIRS_PER_BLOCK == 0
                    and paired_ratio_half_pct(a[:n], b[:n]) <= target_ci_pct):
                break
    return PairedTiming(a[:n].copy(), mon.other_pct, ref_times_s=b[:n].copy())


def time_runner(
    runner: Runner,
    warmup: int,
    runs: int,
    *,
    min_runs: int | None = None,
    target_ci_pct: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    monitor: Callable[[], LoadMonitor] = LoadMonitor,
) -> Timing:
    """Warm up, then time calls one by one with the garbage collector paused: ``runs`` of them, or, with
    ``target_ci_pct``, as few as ``min_runs`` once the median's 95 % CI half-width is within that % of the
    median. ``clock`` and ``monitor`` are injectable (tests)."""
    with stopwatch("warmup"):
        for _ in range(warmup):
            runner()
    adaptive, floor = _adaptive_floor(runs, min_runs, target_ci_pct)
    times = np.empty(runs)
    n = 0
    with stopwatch("runs"), _gc_paused(), monitor() as mon:
        while n < runs:
            t0 = clock()
            runner()
            times[n] = clock() - t0
            n += 1
            # Between runs, outside the timed window: the check costs microseconds of n <= 100 values.
            if adaptive and n >= floor and ci_half_width_pct(times[:n]) <= target_ci_pct:
                break
    return Timing(times[:n].copy(), mon.other_pct)


def _adaptive_floor(runs: int, min_runs: int | None, target_ci_pct: float | None) -> tuple[bool, int]:
    """(whether timing stops on the CI, the fewest runs before it may): fixed ``runs`` unless both are set."""
    adaptive = target_ci_pct is not None and min_runs is not None and min_runs < runs
    return adaptive, (min(min_runs, runs) if adaptive else runs)


@contextlib.contextmanager
def _gc_paused():
    """The garbage collector collected once, then off while timing (a collection inside a timed run is noise)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measurement_id(
    device_id: str, protocol: str, config_hash: str, repeat: int, status: str, runs: int | None = None
) -> str:
    """Deterministic for results (ok, failed): a config measured twice under one protocol and repeat index is
    stored once, even by two campaigns at once. Busy marks are history and get unique ids.

    A quick run (fewer than MIN_TIMED_RUNS timed runs) gets ids of its own: it is not a result of the
    protocol, so it must not occupy the id the full measurement of the same config will take later."""
    if status == "busy":
        return hashlib.sha256(f"busy|{time.time_ns()}|{device_id}|{config_hash}".encode()).hexdigest()
    smoke = "|smoke" if runs is not None and runs < MIN_TIMED_RUNS else ""
    return hashlib.sha256(f"{device_id}|{protocol}|{config_hash}|{repeat}|{status}{smoke}".encode()).hexdigest()


# References warmed up in this process: the next config's warm-up runs the reference once, not ``warmup`` times.
_WARM_REFERENCES: weakref.WeakSet = weakref.WeakSet()


def _time_once(runner: Runner, protocol: Protocol, reference, timer: dict) -> Timing:
    kw = dict(min_runs=protocol.min_runs, target_ci_pct=protocol.stop_ci_pct, **timer)
    if reference is None:
        return time_runner(runner, protocol.warmup, protocol.runs, **kw)
    ref_runner, ref_hash, ref_name = reference
    kw["ref_warmup"] = min(1, protocol.warmup) if ref_runner in _WARM_REFERENCES else protocol.warmup
    _WARM_REFERENCES.add(ref_runner)
    t = time_paired(runner, ref_runner, protocol.warmup, protocol.runs, **kw)
    t.reference, t.reference_name = ref_hash, ref_name
    # Pairs that disagree (a neighbour started mid-way): timed once more; the row keeps the second timing and
    # is flagged by make_measurement if that one disagrees too.
    if t.disagreement_pct > protocol.pair_bound_pct:
        t = time_paired(runner, ref_runner, protocol.warmup, protocol.runs, **kw)
        t.reference, t.reference_name, t.remeasured = ref_hash, ref_name, 1
    return t


def measure_runner(runner: Runner, protocol: Protocol, *, reference=None, **timer) -> tuple[Timing, str, str | None]:
    """Time a runner; re-measure while the machine is busy. Returns (timing, status, reason).
    ``reference``: (runner, config hash, name) of the reference to pair with (None: timed alone).
    ``timer``: ``clock``/``monitor`` for :func:`time_runner` (tests)."""
    attempts = protocol.retries + 1
    for attempt in range(attempts):
        timing = _time_once(runner, protocol, reference, timer)
        if timing.other_pct <= protocol.busy_threshold_pct:
            return timing, "ok", (f"re-measured {attempt}x: machine was busy" if attempt else None)
        if loaded_pairs_kept(timing, protocol):
            # Not re-measured: a neighbour that keeps running would only triple the time of every row.
            return timing, "ok", (f"timed beside other processes ({timing.other_pct:.1f}% of the CPU, threshold "
                                  f"{protocol.busy_threshold_pct:g}%): ratio kept, absolute latency from a loaded phase")
        if attempt + 1 < attempts:
            time.sleep(protocol.retry_pause_s)
    reason = (
        f"machine busy: other processes used {timing.other_pct:.1f}% of the CPU "
        f"(threshold {protocol.busy_threshold_pct}%) in {attempts} attempts"
    )
    return timing, "busy", reason


def loaded_pairs_kept(timing: Timing, protocol: Protocol) -> bool:
    """Whether a timing taken while other processes used more than the busy threshold is kept (flagged "loaded"):
    paired, with ``protocol.keep_loaded_pairs``, and its pairs agreeing within ``protocol.pair_bound_pct``."""
    return (protocol.keep_loaded_pairs and isinstance(timing, PairedTiming)
            and timing.other_pct > protocol.busy_threshold_pct and timing.disagreement_pct <= protocol.pair_bound_pct)


def timing_to_values(timing: Timing, protocol: Protocol) -> tuple[float, float, float]:
    """(value, p10, p90) in the metric's unit. Throughput: batch / time per batch (so p10 uses the slow runs)."""
    if protocol.metric == "latency_ms":
        return timing.median_s * 1e3, timing.percentile_s(10) * 1e3, timing.percentile_s(90) * 1e3
    b = protocol.batch
    return b / timing.median_s, b / timing.percentile_s(90), b / timing.percentile_s(10)


def make_measurement(
    config_hash: str,
    resolution: int | None,
    protocol: Protocol,
    device_id: str,
    *,
    timing: Timing | None = None,
    status: str = "ok",
    reason: str | None = None,
    backend_version: str | None = None,
    repeat: int = 0,
    campaign: str | None = None,
    notes: str | None = None,
) -> Measurement:
    """A measurement row with the harness's provenance (versions, OS, time, load). ``n`` is the number of
    timed runs taken; the median's 95 % CI goes into ``notes`` after the variant name (:func:`ci_note`)."""
    value = p10 = p90 = busy = None
    paired = {}
    if timing is not None:
        value, p10, p90 = timing_to_values(timing, protocol)
        busy = round(timing.other_pct, 2)
        notes = "; ".join(s for s in (notes, ci_note(timing, protocol)) if s)
        paired = pairing_fields(timing, protocol)
        if paired.get("flag") == "loaded" and status != "ok":
            paired = {k: v for k, v in paired.items() if k not in ("flag", "flag_note")}  # busy says it already
        if paired.get("flag"):
            notes = f"{notes}; {paired.pop('flag_note')}"
    notes = "; ".join(s for s in (notes, precision_note(protocol.precision)) if s) or None  # how int8 was made
    return Measurement(
        device_id=device_id,
        config_hash=config_hash,
        metric=protocol.metric,
        value=value,
        backend=protocol.backend,
        batch=protocol.batch,
        resolution=resolution,
        status=status,
        reason=reason,
        backend_version=backend_version,
        precision=protocol.precision,
        threads=protocol.threads,
        warmup=protocol.warmup,
        n=timing.n if timing is not None else None,
        p10=p10,
        p90=p90,
        busy_pct=busy,
        source="harness",
        source_ref=campaign,
        versions=json.dumps(package_versions(), sort_keys=True),
        os=platform.platform(),
        timestamp=utc_now(),
        campaign=campaign,
        notes=notes,
        id=measurement_id(device_id, protocol.key, config_hash, repeat, status, protocol.runs),
        **{k: v for k, v in paired.items() if k != "flag_note"},
    ).validate()


def pairing_fields(timing: Timing, protocol: Protocol) -> dict:
    """The paired-timing columns of a row: ``pairing``, and for a paired timing the ratio, its CI, the
    reference and its median (in the metric's unit), and ``flag`` "suspect" when its pairs disagreed beyond
    ``protocol.pair_bound_pct`` twice."""
    if not isinstance(timing, PairedTiming):
        return {"pairing": "alone"}
    lo, hi = timing.ratio_ci
    ref = timing.ref_median_s
    out = {"pairing": "paired", "ratio": timing.ratio, "ratio_lo": lo, "ratio_hi": hi, "reference": timing.reference,
           "reference_value": ref * 1e3 if protocol.metric == "latency_ms" else protocol.batch / ref}
    if timing.disagreement_pct > protocol.pair_bound_pct:
        out["flag"] = "suspect"
        out["flag_note"] = (f"pairs disagree: first and second half {timing.disagreement_pct:.1f}% apart "
                            f"(bound {protocol.pair_bound_pct:g}%), after {timing.remeasured} re-measurement")
    elif timing.other_pct > protocol.busy_threshold_pct:
        out["flag"] = "loaded"
        out["flag_note"] = (f"loaded: timed beside other processes using {timing.other_pct:.1f}% of the CPU; the ratio "
                            f"to {timing.reference_name or 'the reference'} is kept, the absolute latency is from a "
                            "loaded phase (not trained on)")
    return out


def ci_note(timing: Timing, protocol: Protocol) -> str:
    """What a row records about its median's precision, e.g. ``median 95% CI ±0.42% [30.81, 31.07] ms, 23 runs
    (adaptive, target ±1%)``. In the metric's unit (throughput: the CI of the batch time, inverted)."""
    lo_s, hi_s = timing.ci_s
    if protocol.metric == "latency_ms":
        lo, hi, unit = lo_s * 1e3, hi_s * 1e3, "ms"
    else:
        lo, hi, unit = protocol.batch / hi_s, protocol.batch / lo_s, "img/s"
    target = protocol.pair_target_ci_pct if isinstance(timing, PairedTiming) else protocol.target_ci_pct
    how = f"adaptive, target ±{target:g}%" if protocol.adaptive else "fixed"
    if isinstance(timing, PairedTiming):
        rlo, rhi = timing.ratio_ci
        return (f"median 95% CI ±{timing.ci_half_pct:.2f}% [{lo:.4g}, {hi:.4g}] {unit}, {timing.n} pairs with "
                f"{timing.reference_name} ({how} on the ratio); ratio 95% CI ±{timing.ratio_ci_half_pct:.2f}% "
                f"[{rlo:.4g}, {rhi:.4g}]")
    return f"median 95% CI ±{timing.ci_half_pct:.2f}% [{lo:.4g}, {hi:.4g}] {unit}, {timing.n} runs ({how})"


_CI_NOTE = re.compile(r"median 95% CI ±([0-9.]+|inf)%")


def ci_from_notes(notes) -> float | None:
    """The median's 95 % CI half-width in % recorded by :func:`ci_note` in a row's notes (None if absent)."""
    m = _CI_NOTE.search(notes) if isinstance(notes, str) else None
    return float(m.group(1)) if m else None


def measure_config(
    config: LowFormerConfig,
    protocol: Protocol,
    device_id: str,
    *,
    name: str | None = None,
    repeat: int = 0,
    campaign: str | None = None,
    backend: Backend | None = None,
    onnx_path: str | None = None,
) -> tuple[Measurement, Architecture]:
    """Build, export/compile and time one config in this process (campaigns isolate it in a worker).

    ``onnx_path``: the config already exported there (a campaign exports ahead of timing): loaded instead of
    building and exporting it again (backends that run ONNX files)."""
    backend = backend or get_backend(protocol.backend, protocol.threads, protocol.precision)
    try:
        # The reference first: a reference that cannot run fails the config (never a ratio to nothing).
        with stopwatch("reference"):  # loaded once per process: seconds for the first config, nothing after
            reference = reference_runner(protocol) if protocol.paired else None
        with stopwatch("session"):
            if onnx_path is not None:
                r = config.resolution
                runner = backend.load_onnx(onnx_path, (protocol.batch, 3, r, r))
            else:
                runner = backend.load_config(config, protocol.batch)
        timing, status, reason = measure_runner(runner, protocol, reference=reference)
    finally:
        backend.close()
    m = make_measurement(
        config.hash, config.resolution, protocol, device_id, timing=timing, status=status, reason=reason,
        backend_version=backend.version(), repeat=repeat, campaign=campaign, notes=name,
    )
    return m, Architecture.from_config(config, name)


ANCHOR_CACHE_ENV = "LOWFORMER_NAS_ANCHOR_CACHE"  # where the graph cache lives (default: the home's cache/anchors)


class ReferenceFailed(RuntimeError):
    """The reference (or an anchor) could not be built or run: the config it was to pair with fails with this."""


# Per process: (backend, threads, precision, batch, model) -> (runner, config hash, name). A measuring worker
# exports the reference once and keeps its session for the configs it times (up to MAX_JOBS_PER_WORKER).
_LOADED: dict[tuple, tuple[Runner, str, str]] = {}


def reference_runner(protocol: Protocol, name: str | None = None, config: LowFormerConfig | None = None):
    """(runner, config hash, name) of the reference (or of ``name``/``config``: an anchor) under ``protocol``,
    loaded once per process; ReferenceFailed with the reason when it cannot be loaded."""
    from search_spaces import get_variant

    name = name or protocol.reference
    key = (protocol.backend, protocol.threads, protocol.precision, protocol.batch, name)
    if key not in _LOADED:
        try:
            cfg = config or get_variant(name).config
            backend = get_backend(protocol.backend, protocol.threads, protocol.precision)
            r = cfg.resolution
            if protocol.precision == "int8":
                # Like with like: the int8 model a campaign times for this config (its export, quantised by the
                # same recipe), quantised once per host; not the weight-free cached graph, whose generated weights
                # quantise into another, slower model (measured/README.md, int8).
                run = backend.load_onnx(cached_int8(cfg, name, protocol.batch), (protocol.batch, 3, r, r),
                                        quantised=True)
            elif backend.runs_onnx:
                with cached_graph(cfg, name, protocol.batch) as path:
                    run = backend.load_onnx(path, (protocol.batch, 3, r, r))
            else:
                run = backend.load_config(cfg, protocol.batch)  # the backend stays open with the process
        except Exception as e:  # noqa: BLE001 (any failure of the reference fails the config, with its reason)
            raise ReferenceFailed(_failure(name, e)) from None
        label = f"{name} {protocol.precision}" if protocol.precision == "int8" else name
        _LOADED[key] = (_named_failures(run, name), reference_id(cfg.hash, protocol.precision), label)
    return _LOADED[key]


def _anchor_cache(batch: int):
    """The anchor cache's folder for ``batch`` and this torch version: ``$LOWFORMER_NAS_ANCHOR_CACHE``, else
    ``$LOWFORMER_NAS_HOME/cache/anchors/``."""
    import pathlib

    import torch

    from lowformer_common import home_dir

    root = os.environ.get(ANCHOR_CACHE_ENV) or home_dir() / "cache" / "anchors"
    return pathlib.Path(root) / f"b{batch}-torch{torch.__version__.split('+')[0]}"


def cached_int8(cfg: LowFormerConfig, name: str, batch: int) -> str:
    """The path of ``cfg``'s int8 model (exported as a campaign exports it, quantised with INT8_RECIPE), made once
    per host, torch and onnxruntime version and recipe into the anchor cache (``int8-…`` beside the graphs: the
    weights are int8 and kept, about 1 byte per parameter, 140 MB for the reference and all anchors)."""
    import fcntl
    import tempfile

    import onnxruntime

    from search_spaces import export_onnx

    from ._backends import INT8_RECIPE, quantize_int8

    recipe = hashlib.sha256(INT8_RECIPE.encode()).hexdigest()[:12]
    folder = _anchor_cache(batch) / f"int8-ort{onnxruntime.__version__}-{recipe}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{cfg.hash[:16]}.int8.onnx"
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes never quantise one model at once
        if not out.is_file():
            with tempfile.TemporaryDirectory(prefix=".q-", dir=folder) as tmp:  # same filesystem: an atomic rename
                r = cfg.resolution
                src = export_onnx(cfg, os.path.join(tmp, "m.onnx"), batch=batch)
                os.replace(quantize_int8(src, os.path.join(tmp, "m.int8.onnx"), (batch, 3, r, r)), out)
    return str(out)


@contextlib.contextmanager
def cached_graph(cfg: LowFormerConfig, name: str, batch: int):
    """The path of ``cfg``'s ONNX file with weights, for as long as the block runs (a session loads it).

    The reference and the anchors are timed by every measuring process; exporting them each time (seconds per
    model, tens for the six) would make a quick anchor timing slow. Their graphs are kept without weight data in
    ``$LOWFORMER_NAS_ANCHOR_CACHE``, else ``$LOWFORMER_NAS_HOME/cache/anchors/`` (a bundle's format, measured/_bundle.py: a few MB for all), written
    once per torch version and batch; the weights are generated from the graph's recipe into a private folder
    (latency depends on the weights' shapes, not their values) and deleted when the block ends."""
    import fcntl
    import shutil
    import tempfile

    from ._graphs import _export_one, _reusable
    from .bundle_runner import write_weights

    folder = _anchor_cache(batch)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes never export one graph at once (they share a temporary)
        entry = _reusable(str(folder), cfg.hash, False) or _export_one(
            {"config_json": cfg.canonical_json(), "name": name, "out_dir": str(folder), "batch": batch,
             "full_weights": False})
    private = tempfile.mkdtemp(prefix="lowformer-anchor-")
    try:
        os.makedirs(os.path.join(private, "models"))
        shutil.copyfile(folder / entry["file"], os.path.join(private, entry["file"]))
        write_weights(private, entry["weights"])
        yield os.path.join(private, entry["file"])
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _failure(name: str, e: BaseException) -> str:
    return f"reference {name} failed: {type(e).__name__}: {e}".replace("\n", " ")[:400]


def _named_failures(run: Runner, name: str) -> Runner:
    """``run``, whose failures say that the reference (not the config) failed."""
    def call():
        try:
            return run()
        except Exception as e:  # noqa: BLE001
            raise ReferenceFailed(_failure(name, e)) from None
    return call


def measure_onnx(path: str, input_shape: tuple[int, ...], protocol: Protocol) -> Timing:
    """Time an ONNX file with the protocol (onnxruntime or tensorrt)."""
    backend = get_backend(protocol.backend, protocol.threads, protocol.precision)
    try:
        return measure_runner(backend.load_onnx(path, input_shape), protocol)[0]
    finally:
        backend.close()
