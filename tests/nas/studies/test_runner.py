import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.torch

from lowformer_common import UserError  # noqa: E402
from measured._harness import Protocol  # noqa: E402
from nas.studies import MIN_RUNS, StudySettings, choose_runs, measure_toy, table3_toys  # noqa: E402


def test_choose_runs_bounds_the_time_per_point():
    p = Protocol()
    assert choose_runs(0.001, p, 3.0) == 100  # fast: the protocol's runs
    assert choose_runs(0.1, p, 3.0) == 30  # 3 s of timing
    assert choose_runs(5.0, p, 3.0) == MIN_RUNS  # slow: never fewer than 10
    assert choose_runs(5.0, Protocol(runs=3), 3.0) == 3
    assert choose_runs(None, p, 3.0) == 100


def test_settings_protocol_and_validation():
    s = StudySettings(quick=True).validate()
    p = s.protocol()
    assert (p.runs, p.warmup, p.retries, p.batch, p.threads, p.backend) == (3, 1, 0, 1, 1, "onnxruntime")
    t = StudySettings(metric="throughput_img_s").protocol()
    assert (t.metric, t.batch, t.runs, t.warmup) == ("throughput_img_s", 200, 100, 5)
    assert StudySettings().effective_mac_cap == 100e9
    assert s.campaign("attention") == "study:attention:quick"
    assert p.busy_threshold_pct == 5.0 and StudySettings(busy_threshold_pct=100).protocol().busy_threshold_pct == 100
    for bad in (dict(backend="tpu"), dict(metric="fps"), dict(budget_s=0), dict(mac_cap=-1), dict(busy_threshold_pct=0)):
        with pytest.raises(UserError):
            StudySettings(**bad).validate()


def test_measure_toy_records_provenance():
    toy = next(t for t in table3_toys(quick=True) if t.name == "MHSA" and t.resolution == 8)
    # Threshold 100 %: no reading of the real load monitor exceeds it, so the outcome does not depend on the machine.
    m = measure_toy(toy, Protocol(runs=3, warmup=1, retries=0, busy_threshold_pct=100), "test-device", repeat=2,
                    campaign="c")
    assert m.status == "ok" and m.value > 0 and m.n == 3 and m.warmup == 1
    assert (m.config_hash, m.resolution, m.campaign, m.backend) == (toy.config_hash, 8, "c", "onnxruntime")
    assert m.notes.startswith("study attention: MHSA; median 95% CI ±") and m.backend_version


def test_a_failing_model_becomes_a_failed_measurement():
    import dataclasses

    toy = table3_toys(quick=True)[0]

    def broken():
        raise RuntimeError("cannot build")

    bad = dataclasses.replace(toy, builder=broken)
    m = measure_toy(bad, Protocol(runs=3, warmup=1, retries=0), "test-device")
    assert m.status == "failed" and "cannot build" in m.reason and m.value is None
