"""The measurement protocol (the paper's): warm-up runs, N timed runs on an input generated beforehand,
the median reported; p10/p90, the machine's load while timing, and full provenance stored with it."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import platform
import time
from typing import Callable

import numpy as np

from lowformer_common import UserError, utc_now
from search_spaces import LowFormerConfig

from ._backends import Backend, Runner, get_backend
from ._fingerprint import LoadMonitor, package_versions
from ._records import MIN_TIMED_RUNS, Architecture, Measurement, protocol_key

HARNESS_METRICS = ("latency_ms", "throughput_img_s")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How to time. Defaults: the paper's CPU latency protocol with onnxruntime on 1 thread."""

    metric: str = "latency_ms"
    backend: str = "onnxruntime"
    batch: int = 1
    threads: int = 1
    precision: str = "fp32"
    warmup: int = 5
    runs: int = 100
    # A run during which other processes used more than this share of the machine is re-measured,
    # and marked "busy" (never used for training) if the machine stays busy.
    busy_threshold_pct: float = 5.0
    retries: int = 2
    retry_pause_s: float = 5.0

    def __post_init__(self):
        if self.metric not in HARNESS_METRICS:
            raise UserError(f"metric: the harness measures {'|'.join(HARNESS_METRICS)} (got {self.metric!r})")
        for f, lo in (("batch", 1), ("threads", 1), ("warmup", 0), ("runs", 3), ("retries", 0)):
            v = getattr(self, f)
            if not isinstance(v, int) or v < lo:
                raise UserError(f"{f}: must be an integer >= {lo} (got {v!r})")
        if not 0 < self.busy_threshold_pct <= 100:
            raise UserError(f"busy_threshold_pct: must be in (0, 100] (got {self.busy_threshold_pct})")

    @property
    def key(self) -> str:
        return protocol_key(self.metric, self.backend, self.precision, self.batch, self.threads)

    @classmethod
    def throughput(cls, **kw) -> "Protocol":
        """The paper's GPU throughput protocol: batch 200, median time per batch / batch."""
        kw.setdefault("batch", 200)
        return cls(metric="throughput_img_s", **kw)


@dataclasses.dataclass
class Timing:
    times_s: np.ndarray  # one per timed run
    other_pct: float  # CPU used by other processes while timing, % of the machine

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.times_s, q))


def time_runner(runner: Runner, warmup: int, runs: int, monitor: Callable[[], LoadMonitor] = LoadMonitor) -> Timing:
    """Warm up, then time ``runs`` calls one by one (perf_counter), with the garbage collector paused.
    ``monitor`` makes the context that reads the machine's load (tests inject a fixed one)."""
    for _ in range(warmup):
        runner()
    times = np.empty(runs)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with monitor() as mon:
            clock = time.perf_counter
            for i in range(runs):
                t0 = clock()
                runner()
                times[i] = clock() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(times, mon.other_pct)


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


def measure_runner(
    runner: Runner, protocol: Protocol, monitor: Callable[[], LoadMonitor] = LoadMonitor
) -> tuple[Timing, str, str | None]:
    """Time a runner; re-measure while the machine is busy. Returns (timing, status, reason)."""
    attempts = protocol.retries + 1
    for attempt in range(attempts):
        timing = time_runner(runner, protocol.warmup, protocol.runs, monitor)
        if timing.other_pct <= protocol.busy_threshold_pct:
            return timing, "ok", (f"re-measured {attempt}x: machine was busy" if attempt else None)
        if attempt + 1 < attempts:
            time.sleep(protocol.retry_pause_s)
    reason = (
        f"machine busy: other processes used {timing.other_pct:.1f}% of the CPU "
        f"(threshold {protocol.busy_threshold_pct}%) in {attempts} attempts"
    )
    return timing, "busy", reason


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
    """A measurement row with the harness's provenance (versions, OS, time, load)."""
    value = p10 = p90 = busy = None
    if timing is not None:
        value, p10, p90 = timing_to_values(timing, protocol)
        busy = round(timing.other_pct, 2)
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
        n=protocol.runs if timing is not None else None,
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
    ).validate()


def measure_config(
    config: LowFormerConfig,
    protocol: Protocol,
    device_id: str,
    *,
    name: str | None = None,
    repeat: int = 0,
    campaign: str | None = None,
    backend: Backend | None = None,
) -> tuple[Measurement, Architecture]:
    """Build, export/compile and time one config in this process (campaigns isolate it in a child)."""
    backend = backend or get_backend(protocol.backend, protocol.threads, protocol.precision)
    try:
        runner = backend.load_config(config, protocol.batch)
        timing, status, reason = measure_runner(runner, protocol)
    finally:
        backend.close()
    m = make_measurement(
        config.hash, config.resolution, protocol, device_id, timing=timing, status=status, reason=reason,
        backend_version=backend.version(), repeat=repeat, campaign=campaign, notes=name,
    )
    return m, Architecture.from_config(config, name)


def measure_onnx(path: str, input_shape: tuple[int, ...], protocol: Protocol) -> Timing:
    """Time an ONNX file with the protocol (onnxruntime or tensorrt)."""
    backend = get_backend(protocol.backend, protocol.threads, protocol.precision)
    try:
        return measure_runner(backend.load_onnx(path, input_shape), protocol)[0]
    finally:
        backend.close()
