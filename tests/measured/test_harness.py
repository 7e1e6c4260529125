import json
import multiprocessing as mp
import time

import pytest

from lowformer_common import UserError
from measured._fingerprint import LoadMonitor, hardware_fingerprint, local_device, local_device_id, package_versions
from measured._harness import Protocol, measure_config, measure_runner, measurement_id, time_runner
from search_spaces import get_variant


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
    assert arch.config_hash == cfg.hash and arch.macs > 0 and m.notes == "B0"


def test_noise_report():
    import pandas as pd

    from measured._noise import noise_report

    df = pd.DataFrame(
        {"protocol": ["p"] * 5, "config_hash": ["a", "a", "a", "b", "c"], "value": [10.0, 10.2, 9.8, 5.0, 7.0]}
    )
    r = noise_report(df)["p"]
    assert r["configs"] == 1 and r["cv_median_pct"] == pytest.approx(2.0, abs=1e-3)
    with pytest.raises(UserError, match="no config was measured twice"):
        noise_report(df[df.config_hash != "a"])
