import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.torch

from lowformer_common import UserError  # noqa: E402
from measured._harness import Protocol  # noqa: E402
from nas.studies import MIN_RUNS, StudySettings, choose_runs, measure_toy, table3_toys  # noqa: E402
from tests._fakes import QuietMonitor  # noqa: E402


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


# ---------------------------------------------------------------------------------------------- paired timing
# Every timing below runs on an injected clock and a quiet load monitor: the figures are exact on a busy machine.

REF_HASH = "c" * 64


_Quiet = QuietMonitor


class _Clock:
    """Each call advances by ``step`` seconds times the host's slowness (which the test moves)."""

    def __init__(self, step=0.001):
        self.t, self.step, self.slowness = 0.0, step, 1.0

    def __call__(self):
        self.t += self.step * self.slowness
        return self.t


def test_measure_toy_pairs_with_the_reference_and_records_the_ratio():
    toy = next(t for t in table3_toys(quick=True) if t.name == "MHSA" and t.resolution == 8)
    calls = []
    m = measure_toy(toy, Protocol(runs=4, min_runs=3, warmup=1, retries=0, target_ci_pct=None), "test-device",
                    reference=(lambda: calls.append(1), REF_HASH, "B0"), clock=_Clock(), monitor=_Quiet)
    assert m.status == "ok" and m.pairing == "paired" and m.reference == REF_HASH and calls
    assert m.ratio > 0 and m.ratio_lo <= m.ratio <= m.ratio_hi and m.reference_value > 0
    assert "pairs with B0" in m.notes


def test_a_reference_that_fails_fails_the_toy_with_the_reason_never_a_ratio_to_nothing():
    from measured import ReferenceFailed

    toy = table3_toys(quick=True)[0]

    def broken():
        raise ReferenceFailed("reference B0 failed: RuntimeError: no kernel")

    m = measure_toy(toy, Protocol(runs=3, warmup=1, retries=0), "test-device", reference=(broken, REF_HASH, "B0"),
                    clock=_Clock(), monitor=_Quiet)
    assert m.status == "failed" and m.reason == "reference B0 failed: RuntimeError: no kernel"
    assert m.ratio is None and m.value is None
    # Alone: no reference is loaded or run.
    m = measure_toy(toy, Protocol(runs=3, warmup=1, retries=0, pairing="alone"), "test-device",
                    reference=(broken, REF_HASH, "B0"), clock=_Clock(), monitor=_Quiet)
    assert m.status == "ok" and m.pairing == "alone" and m.ratio is None


def test_one_phase_puts_every_paired_row_at_one_reference_level():
    import pandas as pd

    from nas.studies._runner import one_phase

    # The host slowed down by 50 % between the two models: their absolute medians say 1.5x, their ratios 1x.
    df = pd.DataFrame({"name": ["a", "b", "c", "d"], "status": ["ok", "ok", "ok", "failed"],
                       "time_ms": [10.0, 15.0, 7.0, float("nan")], "ratio": [1.0, 1.0, None, None],
                       "reference_ms": [10.0, 15.0, None, None]})
    out, words = one_phase(df)
    assert out["time_ms"].tolist()[:2] == [12.5, 12.5] and out["time_ms"].iloc[2] == 7.0
    assert out["measured_ms"].tolist()[:3] == [10.0, 15.0, 7.0]
    assert out["basis"].tolist()[:3] == ["ratio", "ratio", "absolute"]
    assert "ratios to the reference B0" in words and "12.5 ms" in words and "1 ok row(s) without a ratio" in words
    # A study timed alone (or results from before pairing): absolute medians, said so.
    out, words = one_phase(df.drop(columns=["ratio", "reference_ms"]))
    assert out["time_ms"].tolist()[:3] == [10.0, 15.0, 7.0] and words.startswith("absolute medians")


def _anchor_results(factor):
    from measured import anchor_configs

    canon = {"B0@160": 10.0, "B1-unfused": 17.7, "B1": 30.9, "E2": 69.7, "B3": 125.7}
    return [{"anchor": n, "config_hash": c.hash, "status": "ok", "ratio": canon[n] / 21.3,
             "ratio_lo": 0.99 * canon[n] / 21.3, "ratio_hi": 1.01 * canon[n] / 21.3, "reference": REF_HASH,
             "reference_value": 21.3 * factor, "n": 10} for n, c in anchor_configs()]


def test_a_full_paired_study_times_the_anchors_when_due_and_stamps_each_row(tmp_path):
    import json

    from measured import Store, local_device
    from nas.studies import get_study
    from nas.studies._runner import measure_points, phase_tracker

    store = Store(tmp_path / "s.sqlite", seed=False)
    device = local_device()
    store.add_device(device)
    full = StudySettings(progress=False).validate()
    assert phase_tracker(StudySettings(quick=True), store, device, full.protocol(), "c") is None
    assert phase_tracker(StudySettings(pairing="alone"), store, device,
                         StudySettings(pairing="alone").protocol(), "c") is None
    sessions = []

    def time_anchors():
        sessions.append(1)
        return _anchor_results(1.1 ** (len(sessions) - 1))

    minutes = iter(range(0, 10 ** 6, 200))  # 200 s between calls: due again every second model (300 s)
    settings = StudySettings(quick=True, progress=False, runs=3, warmup=0).validate()
    protocol = dataclasses_replace(settings.protocol(), retries=0, target_ci_pct=None)
    tracker = phase_tracker(full, store, device, protocol, "c", time_anchors=time_anchors,
                            clock=lambda: float(next(minutes)))
    study = get_study("attention")
    points = [p for p in study.points(True) if p.kind == "toy"][:3]
    df = measure_points(study, points, settings, store, device, protocol, tracker=tracker, clock=_Clock(),
                        monitor=_Quiet)
    assert len(sessions) == 2 and tracker.sessions == 2
    assert store.anchor_timings(device=device.device_id)["session"].nunique() == 2
    rows = store.measurements(device=device.device_id, status=None, include_flagged=True)
    assert len(rows) == 3 and rows["phase"].notna().all()
    assert sorted(round(json.loads(p)["b"], 6) for p in rows["phase"]) == [0.0] * 3  # a uniform slowdown: scale only
    assert set(df["pairing"]) == {"paired"} and df["ratio"].notna().all() and df["reference_ms"].notna().all()


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_the_configs_of_a_study_share_one_measurer(monkeypatch):
    """Each search-space point (each precision of study int8) is a campaign of its own, with its own protocol, but
    the measuring workers start once per study run: one Measurer, sent each campaign's protocol, closed at the end."""
    import measured
    from nas.studies._runner import _OneMeasurer

    made = []

    class Engine:
        def __init__(self, protocol, device_id, **options):
            self.protocol, self.closed = protocol, False
            made.append(self)

        def close(self):
            self.closed = True

    monkeypatch.setattr(measured, "Measurer", Engine)
    options = dict(campaign="c", timeout_s=60, export_workers=None, fresh_process=False)
    with _OneMeasurer() as engines:
        for protocol in (Protocol(runs=3), Protocol(runs=10), Protocol(runs=10, precision="int8")):
            with engines(protocol, "dev", **options) as e:
                assert e is made[0] and e.protocol is protocol
            assert not e.closed  # a campaign's end leaves the workers running for the next point
        # Workers are started for a backend and a thread count: other ones get an engine of their own.
        with engines(Protocol(threads=2), "dev", **options) as e:
            assert e is made[1] and made[0].closed
    assert len(made) == 2 and made[1].closed
