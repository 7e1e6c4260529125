import json
import multiprocessing as mp
import time

import pytest

from lowformer_common import UserError
from measured._fingerprint import LoadMonitor, hardware_fingerprint, local_device, local_device_id, package_versions
from measured._harness import Protocol, measure_config, measure_runner, measurement_id, time_runner
from search_spaces import get_variant


def _spin(seconds):
    t = time.time()
    while time.time() - t < seconds:
        pass


def test_time_runner_counts_every_run():
    calls = []
    timing = time_runner(lambda: calls.append(1), warmup=5, runs=20)
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
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_spin, args=(3.0,))
    p.start()
    time.sleep(0.5)
    with LoadMonitor() as mon:
        time.sleep(1.0)
    p.join()
    # One core of the machine spinning in another process.
    assert mon.other_pct > 100 / (hardware_fingerprint()["logical_cores"] * 2)


def test_busy_machine_is_remeasured_then_marked():
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_spin, args=(6.0,))
    p.start()
    time.sleep(0.5)
    try:
        # One spinning process uses ~100/cores % of the machine: a quarter of that is clearly exceeded.
        threshold = 100 / hardware_fingerprint()["logical_cores"] / 4
        proto = Protocol(runs=20, warmup=1, busy_threshold_pct=threshold, retries=1, retry_pause_s=0.1)
        timing, status, reason = measure_runner(lambda: time.sleep(0.01), proto)
    finally:
        p.terminate()
        p.join()
    assert status == "busy" and reason.startswith("machine busy: other processes used") and "2 attempts" in reason


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
