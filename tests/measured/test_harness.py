import json
import multiprocessing as mp
import time

import pytest

from lowformer_common import UserError
from measured._fingerprint import LoadMonitor, hardware_fingerprint, local_device, local_device_id, package_versions
from measured._harness import (
    Protocol,
    Timing,
    ci_from_notes,
    make_measurement,
    measure_config,
    measure_runner,
    measurement_id,
    median_ci,
    time_runner,
)
from search_spaces import get_variant
from tests._fakes import QuietMonitor


def _spin(started, stop):
    started.set()
    while not stop.is_set():
        pass


def test_time_runner_counts_every_run(quiet_machine):
    calls = []
    timing = time_runner(lambda: calls.append(1), warmup=5, runs=20, monitor=quiet_machine)
    assert len(calls) == 25 and len(timing.times_s) == 20 and timing.median_s >= 0


def test_protocol_validation():
    with pytest.raises(UserError, match="^runs: must be an integer >= 3"):
        Protocol(runs=1)
    with pytest.raises(UserError, match="^metric: the harness measures latency_ms|throughput_img_s"):
        Protocol(metric="power_w")
    assert Protocol().key == "latency_ms|onnxruntime|fp32|b1|t1"
    assert Protocol.throughput().batch == 200


def test_fingerprint_names_the_device():
    fp = hardware_fingerprint()
    assert {"cpu_model", "arch", "logical_cores", "memory_gb", "os"} <= set(fp)
    assert local_device_id().startswith(fp["arch"]) and local_device().kind == "cpu"
    assert "python" in package_versions()


def test_load_monitor_sees_another_busy_process():
    # The real monitor against a real spinning process: it spins until told to stop, so the reading does
    # not depend on how fast the machine starts it.
    ctx = mp.get_context("spawn")
    started, stop = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_spin, args=(started, stop))
    p.start()
    try:
        assert started.wait(timeout=300)
        with LoadMonitor() as mon:
            time.sleep(1.0)
    finally:
        stop.set()
        p.join(timeout=60)
    # One core of the machine spinning in another process (more if the machine is busy anyway).
    assert mon.other_pct > 100 / (hardware_fingerprint()["logical_cores"] * 2)


def test_busy_machine_is_remeasured_then_marked(load_monitor):
    proto = Protocol(runs=5, warmup=1, busy_threshold_pct=5.0, retries=1, retry_pause_s=0.0)
    monitor = load_monitor(60.0)
    timing, status, reason = measure_runner(lambda: None, proto, monitor=monitor)
    assert status == "busy" and monitor.calls == 2 and timing.other_pct == 60.0
    assert reason == "machine busy: other processes used 60.0% of the CPU (threshold 5.0%) in 2 attempts"


def test_busy_then_quiet_machine_is_remeasured_once(load_monitor):
    proto = Protocol(runs=5, warmup=1, busy_threshold_pct=5.0, retries=2, retry_pause_s=0.0)
    monitor = load_monitor(60.0, 1.0)
    timing, status, reason = measure_runner(lambda: None, proto, monitor=monitor)
    assert (status, reason, monitor.calls, timing.other_pct) == ("ok", "re-measured 1x: machine was busy", 2, 1.0)


def test_threshold_100_never_marks_busy(load_monitor):
    timing, status, reason = measure_runner(lambda: None, Protocol(runs=3, busy_threshold_pct=100),
                                            monitor=load_monitor(100.0))
    assert (status, reason) == ("ok", None)


def test_measurement_ids_are_deterministic_for_results():
    a = measurement_id("dev", "p", "h" * 64, 0, "ok")
    assert a == measurement_id("dev", "p", "h" * 64, 0, "ok") != measurement_id("dev", "p", "h" * 64, 1, "ok")
    assert measurement_id("dev", "p", "h" * 64, 0, "busy") != measurement_id("dev", "p", "h" * 64, 0, "busy")


@pytest.mark.torch
def test_measure_config_carries_provenance():
    pytest.importorskip("onnxruntime")
    cfg = get_variant("B0").config.with_(resolution=64)
    m, arch = measure_config(cfg, Protocol(runs=5, warmup=1, busy_threshold_pct=100), "test-device", name="B0")
    assert m.status == "ok" and m.value > 0 and m.p10 <= m.value <= m.p90 and m.n == 5
    assert m.metric == "latency_ms" and m.backend == "onnxruntime" and m.threads == 1 and m.batch == 1
    versions = json.loads(m.versions)
    assert "onnxruntime" in versions and "torch" in versions and m.backend_version == versions["onnxruntime"]
    assert m.timestamp.endswith("+00:00") and m.os and m.busy_pct is not None
    assert arch.config_hash == cfg.hash and arch.macs > 0 and m.notes.startswith("B0; median 95% CI ±")


def test_noise_report():
    import pandas as pd

    from measured._noise import noise_report

    df = pd.DataFrame(
        {"protocol": ["p"] * 5, "config_hash": ["a", "a", "a", "b", "c"], "value": [10.0, 10.2, 9.8, 5.0, 7.0]}
    )
    r = noise_report(df)["p"]
    assert r["configs"] == 1 and r["cv_median_pct"] == pytest.approx(2.0, abs=1e-3) and "runs_median" not in r
    df["n"] = [10, 20, 30, 100, 100]
    df["notes"] = ["B1; median 95% CI ±0.50% [1, 2] ms, 10 runs (adaptive, target ±1%)", None, "x", None, None]
    r = noise_report(df)["p"]
    assert r["runs_median"] == 30 and r["ci_half_pct_median"] == 0.5
    with pytest.raises(UserError, match="no config was measured twice"):
        noise_report(df[df.config_hash != "a"])


# ---------------------------------------------------------------------------------------------- adaptive repeats


_Quiet = QuietMonitor  # timing tests must not depend on the machine's load


def _clock(durations):
    """A perf_counter stand-in: each timed call lasts the next of ``durations`` (seconds)."""
    import itertools

    steps = itertools.cycle(durations)
    state = {"t": 0.0, "start": True}

    def clock():
        if not state["start"]:
            state["t"] += next(steps)
        state["start"] = not state["start"]
        return state["t"]

    return clock


def test_median_ci_uses_order_statistics():
    import numpy as np

    x = np.arange(1.0, 11.0)  # n = 10: the 97.9 % interval [x(2), x(9)] is the narrowest reaching 95 %
    assert median_ci(x) == (2.0, 9.0)
    assert median_ci(np.arange(100.0)) == (39.0, 60.0)  # ranks 40 and 61
    assert median_ci(np.array([3.0, 1.0, 2.0])) == (1.0, 3.0)  # too few for 95 %: the range


def test_adaptive_timing_stops_once_the_median_is_precise():
    calls = []
    quiet = time_runner(lambda: calls.append(1), warmup=2, runs=100, min_runs=10, target_ci_pct=1.0,
                        clock=_clock([0.0100, 0.0101, 0.0099]), monitor=_Quiet)
    assert quiet.n == 10 and len(calls) == 12 and quiet.ci_half_pct <= 1.0
    noisy = time_runner(lambda: None, warmup=0, runs=100, min_runs=10, target_ci_pct=1.0,
                        clock=_clock([0.010, 0.014, 0.007, 0.012, 0.009]), monitor=_Quiet)
    assert noisy.n == 100 and noisy.ci_half_pct > 1.0
    fixed = time_runner(lambda: None, warmup=0, runs=30, clock=_clock([0.01]), monitor=_Quiet)
    assert fixed.n == 30


def test_adaptive_protocol_and_what_a_row_records():
    import numpy as np

    p = Protocol()
    assert p.adaptive and p.min_runs == 10 and p.runs == 100 and p.target_ci_pct == 1.0
    assert not Protocol(target_ci_pct=None).adaptive and not Protocol(runs=3).adaptive
    # Paired timing stops on the pair ratio's CI (±2 % by default), alone on the median's (±1 %); fixed: neither.
    assert p.paired and p.stop_ci_pct == 2.0 and Protocol(pairing="alone").stop_ci_pct == 1.0
    assert Protocol(target_ci_pct=None).stop_ci_pct is None
    with pytest.raises(UserError, match="^pair_target_ci_pct: must be a percentage"):
        Protocol(pair_target_ci_pct=0)
    with pytest.raises(UserError, match="^min_runs: must be >= 10 when timing adaptively"):
        Protocol(min_runs=5)
    with pytest.raises(UserError, match="^target_ci_pct: must be a percentage"):
        Protocol(target_ci_pct=0)
    timing = Timing(np.array([0.0100, 0.0101, 0.0099] * 5), 0.0)
    m = make_measurement("a" * 64, 224, p, "dev", timing=timing, notes="B1")
    assert m.n == 15 and m.notes.startswith("B1; median 95% CI ±") and "15 runs (adaptive, target ±1%)" in m.notes
    assert ci_from_notes(m.notes) == pytest.approx(timing.ci_half_pct, abs=0.01)
    assert ci_from_notes("B1") is None and ci_from_notes(None) is None
