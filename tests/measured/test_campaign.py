"""Campaigns: failures become stored rows; SIGKILL + restart loses and re-measures nothing; two campaigns
writing one store at once lose and duplicate nothing; workers are reused across configs and replaced after
a failure; a time budget stops a campaign without losing what it measured."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from measured import Store  # noqa: E402
from measured._campaign import Job, run_campaign, run_in_child  # noqa: E402
from measured._fingerprint import local_device  # noqa: E402
from measured._harness import Protocol  # noqa: E402
from measured._measurer import Measurer, Worker, _run_tasks, _Task  # noqa: E402
from search_spaces import sample_configs  # noqa: E402

pytestmark = pytest.mark.torch
FAST = Protocol(runs=3, warmup=1, busy_threshold_pct=100)
# Tiny inputs keep every measurement fast; the architectures are still random points of the whole space. One
# measuring process per campaign (it exports and times): these tests are about the store, not the export phase
# (test_export_phase_on_every_core_then_timing_alone), and a second process only adds a torch import.
MEASURE = [sys.executable, "-m", "nas", "measure", "--resolutions", "32", "--runs", "3", "--warmup", "1",
           "--busy-threshold", "100", "--device", "test-dev", "--export-workers", "1"]


def _rows(url):
    df = Store(url).measurements(device="test-dev", status=None)
    return {r["id"]: (r["config_hash"], r["value"], r["status"]) for r in df.to_dict("records")}


def test_failures_become_stored_rows(tmp_path, monkeypatch):
    cfg = next(sample_configs(1, seed=1, resolutions=[32]))
    m = run_in_child(Job(cfg), FAST, "test-dev", None, timeout_s=0.2)
    assert m.status == "failed" and m.reason.startswith("timeout: no result after")
    import measured._measurer as measurer

    # 150 MB of address space: not even importing torch fits, on any machine.
    monkeypatch.setattr(measurer, "memory_limit_bytes", lambda backend, share=1.0: 150 * 2**20)
    m = run_in_child(Job(cfg), FAST, "test-dev", None, timeout_s=120)
    assert m.status == "failed" and m.reason
    # The same cap on a reusable worker: it cannot start, and the config's row says why.
    with Measurer(FAST, "test-dev", export_workers=1, timeout_s=120) as engine:
        (_, m), = engine.measure([Job(cfg)])
    assert m.status == "failed" and m.reason.startswith(("crashed", "the measuring process could not start"))
    monkeypatch.undo()

    store = Store(str(tmp_path / "s.sqlite"))
    jobs = [Job(c) for c in sample_configs(2, seed=2, resolutions=[32])]
    report = run_campaign(jobs, FAST, local_device(), store, timeout_s=0.2, progress=False)
    assert report.failed == 2 and len(store.measurements(status="failed")) == 2
    # Failed configs are not retried unless asked.
    report = run_campaign(jobs, FAST, local_device(), store, timeout_s=0.2, progress=False)
    assert report.skipped == 2


def test_sigkill_and_restart_lose_and_remeasure_nothing(seeded_store):
    url = str(seeded_store)  # seeded as any new store is: the campaign does not seed it again
    cmd = MEASURE + ["--sample", "5", "--seed", "3", "--store", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900  # a hang guard: two measurements take as long as the machine needs
    while not os.path.exists(url) or len(_rows(url)) < 2:
        if proc.poll() is not None:
            pytest.fail(f"the campaign ended early: {proc.stdout.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "no two measurements in 900 s"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the campaign and its measuring child, mid-way
    proc.wait()
    before = _rows(url)
    assert 2 <= len(before) < 5
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    assert f"{len(before)} already stored" in out.stdout
    after = _rows(url)
    assert len(after) == 5 and len({h for h, _, _ in after.values()}) == 5
    assert all(after[i] == v for i, v in before.items())  # nothing lost, nothing re-measured


def test_two_campaigns_at_once(store_url):  # SQLite and a real PostgreSQL server (conftest)
    from measured import resolve_local_device, session_rows, time_anchor_session

    store = Store(store_url)  # create and seed once, as a user would before starting workers
    # The phase anchors timed once, here, for both campaigns: each takes this session (complete, under 5 minutes
    # old: PhaseTracker) instead of timing its own at its start, and with it stamps its rows' phase. This test is about
    # the rows two writers store; sessions are timed by the campaigns of the other tests (and any campaign that starts
    # later than 5 minutes from now times its own, so nothing here depends on speed). The protocol key is the CLI's.
    store.add_device(resolve_local_device(store, "test-dev"))
    store.add_anchor_timings(session_rows(time_anchor_session(FAST), "test-dev", FAST, source="campaign"))
    a = subprocess.Popen(MEASURE + ["--sample", "4", "--seed", "5", "--store", store_url],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    b = subprocess.Popen(MEASURE + ["--sample", "6", "--seed", "5", "--store", store_url],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert a.wait(1800) == 0 and b.wait(1800) == 0, (a.stdout.read(), b.stdout.read())
    assert f"protocol {FAST.key};" in a.stdout.read().decode()  # the session above is of the campaigns' protocol
    rows = _rows(store_url)
    hashes = [h for h, _, _ in rows.values()]
    # The 4 shared configs and the 2 of the second campaign: each stored exactly once.
    assert len(rows) == 6 and len(set(hashes)) == 6
    expected = {c.hash for c in sample_configs(6, seed=5, resolutions=[32])}
    assert set(hashes) == expected


def test_quick_runs_never_stand_in_for_full_ones(tmp_path):
    from measured import Architecture
    from measured._campaign import pending
    from measured._harness import make_measurement

    store = Store(str(tmp_path / "s.sqlite"))
    store.add_device(local_device())
    dev = local_device().device_id
    cfg = next(sample_configs(1, seed=4, resolutions=[32]))
    store.add_measurements([make_measurement(cfg.hash, 32, FAST, dev, status="failed", reason="x")],
                           [Architecture.from_config(cfg)])
    assert pending(store, [Job(cfg)], FAST, dev) == []  # the quick campaign resumes past it
    full = Protocol()
    assert pending(store, [Job(cfg)], full, dev) == [Job(cfg)]  # the full one still measures it


def test_one_worker_measures_config_after_config(tmp_path):
    cfgs = list(sample_configs(3, seed=7, resolutions=[32]))
    with Measurer(FAST, "test-dev", export_workers=1) as engine:
        pids = []
        for _, m in engine.measure([Job(c, repeat=0) for c in cfgs]):
            assert m.status == "ok" and m.n == 3, m.reason
            pids.append(engine._workers[0].proc.pid)
    assert len(set(pids)) == 1  # torch and onnxruntime imported once for all three


def test_export_phase_on_every_core_then_timing_alone(tmp_path):
    cfgs = list(sample_configs(3, seed=8, resolutions=[32]))
    with Measurer(FAST, "test-dev", export_workers=2) as engine:
        folder = engine._folder()
        out = list(engine.measure([Job(c) for c in cfgs] + [Job(cfgs[0], repeat=1)]))
        assert [m.status for _, m in out] == ["ok"] * 4
        assert not [f for f in os.listdir(folder) if f.endswith(".onnx")]  # each file removed once timed
    assert not os.path.exists(folder)


def test_a_failed_request_gets_a_fresh_worker(tmp_path):
    cfg = next(sample_configs(1, seed=9, resolutions=[32]))
    worker = Worker("onnxruntime", 1, None, str(tmp_path / "w.log"))
    bad = {"op": "measure", "config": cfg.canonical_json(), "protocol": {"runs": 3, "warmup": 1}, "device_id": "d",
           "onnx": str(tmp_path / "missing.onnx")}
    good = dict(bad, onnx=None, protocol={"runs": 3, "warmup": 1, "busy_threshold_pct": 100})
    pids = []
    try:
        for key, reply in _run_tasks([_Task(0, bad), _Task(1, good)], [worker], timeout_s=300):
            pids.append(worker.proc.pid if worker.proc else None)
            if key == 0:
                assert "error" in reply and pids[-1] is None  # stopped after its failure
            else:
                assert "measurement" in reply
    finally:
        worker.stop()


def test_a_time_budget_stops_the_campaign_and_keeps_what_it_measured(tmp_path):
    from measured import Architecture  # noqa: F401

    store = Store(str(tmp_path / "s.sqlite"), seed=False)
    jobs = [Job(c) for c in sample_configs(3, seed=10, resolutions=[32])]
    ticks = iter(range(0, 1000, 10))
    # No phase-anchor sessions (anchors_every_s=None): they would cost as much as several of these configs, and the
    # budget is what this test is about; the campaigns of the other tests time sessions for real.
    report = run_campaign(jobs, FAST, local_device(), store, progress=False, export_workers=1, max_seconds=5,
                          clock=lambda: float(next(ticks)), anchors_every_s=None)
    assert report.ok == 1 and len(store.measurements()) == 1
    report = run_campaign(jobs, FAST, local_device(), store, progress=False, export_workers=1, anchors_every_s=None)
    assert report.skipped == 1 and report.ok == 2


def test_the_measurer_adds_up_where_the_timing_workers_time_went():
    m = Measurer(Protocol(), "dev", export_workers=1)
    replies = (r for r in [(0, {"measurement": {}, "phases": {"session": 0.5, "pairs": 2.0}}), (1, "crashed: SIGKILL"),
                           (2, {"measurement": {}, "phases": {"pairs": 1.0, "warmup": 0.25}})])
    assert [k for k, _ in m._timed(replies, "timing")] == [0, 1, 2]
    assert dict(m.seconds) == pytest.approx({"timing": m.seconds["timing"], "session": 0.5, "pairs": 3.0,
                                             "warmup": 0.25})
    assert m.seconds["timing"] >= 0
