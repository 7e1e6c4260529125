"""Onboarding end to end on an analytic device: anchors, source ranking, informative design, scratch vs
transfer, hold-out; resumable after a crash; bounded by time; refusals store nothing; the bundle route."""

import json

import numpy as np
import pandas as pd
import pytest

from lowformer_common import UserError
from measured import Store, local_device, local_device_id, make_measurement
from nas.onboard import ANCHORS, OnboardSettings, evaluate_campaign, onboard_bundle, onboard_local, onboard_results
from predictors import load_predictor
from search_spaces import count

from .conftest import analytic_ms


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "store.sqlite"), seed=False)
    yield s
    s.close()


def _settings(measurer, **kw):
    base = dict(configs=10, holdout=3, pool=150, minutes=5, measurer=measurer, progress=False)
    base.update(kw)
    return OnboardSettings(**base)


def test_onboarding_this_machine(store, fake_measurer):
    measurer, measured = fake_measurer()
    lines = []
    r = onboard_local(_settings(measurer), store, log=lines.append)
    here = local_device_id()
    assert r.device == here and r.n_train == 10 and r.holdout["n"] == 3
    assert [j.name for j in measured[: len(ANCHORS)]] == list(ANCHORS)  # the anchors first
    assert r.ranking and r.chosen in ("scratch", "transfer", "shared") and r.cv["mape"] >= 0
    pred = load_predictor(here)
    # Every known device's transfer was cross-validated beside the scratch models, the kept one the lowest.
    cands = pred.meta["onboarding"]["candidates"]
    assert {c["candidate"] for c in cands} >= {"from scratch"} | {f"transfer from {x['source']}" for x in r.ranking}
    assert min(c["cv_mape"] for c in cands) == r.cv["mape"] and r.candidates == cands
    assert (r.source is None) == (r.chosen != "transfer")
    assert any(line.startswith("cross-validated on the 10 configs") for line in lines)
    assert str(pred.path) == r.predictor_path and pred.meta["onboarding"]["configs"] == 10
    trained = set(pred.meta["training_data"]["config_hashes"])
    held = {j.config.hash for j in measured[-3:]}
    assert len(trained) == 10 and not trained & held  # the hold-out is never trained on
    # An exact additive device with 2 % noise: the hold-out is predicted well.
    assert r.holdout["within_10"] >= 2 / 3
    assert r.next_command.startswith("lowformer-nas search --device local --budget-ms ")
    plan = json.loads(next((store_home := (pred.path.parents[3] / "onboard" / here)).glob("round-0.json")).read_text())
    assert plan["done"] and plan["predictor"] == r.predictor_path and store_home.is_dir()
    assert any("anchors vs known devices" in line for line in lines)


def test_source_none_trains_from_scratch_only(store, fake_measurer):
    measurer, _ = fake_measurer()
    r = onboard_local(_settings(measurer, source="none", holdout=0), store, log=lambda s: None)
    cands = load_predictor(local_device_id()).meta["onboarding"]["candidates"]
    assert r.chosen == "scratch" and r.source is None and [c["candidate"] for c in cands] == ["from scratch"]


def test_a_crash_loses_nothing_and_a_rerun_resumes(store, fake_measurer):
    log = []
    crashing, _ = fake_measurer(stop_after=6, log=log)
    with pytest.raises(KeyboardInterrupt):
        onboard_local(_settings(crashing), store, log=lambda s: None)
    assert len(store.measurements()) == 6
    resumed, _ = fake_measurer(log=log)
    lines = []
    r = onboard_local(_settings(resumed), store, log=lines.append)
    assert any(line.startswith("resuming onboarding round 0") for line in lines)
    hashes = [j.config.hash for j in log]
    assert len(hashes) == len(set(hashes)) == 13  # nothing measured twice: 10 + 3 hold-out
    assert r.n_train == 10 and len(store.measurements()) == 13


def test_the_time_budget_bounds_the_measuring(store, fake_measurer):
    measurer, measured = fake_measurer()
    ticks = iter(np.arange(0, 10_000, 4.0))  # every clock reading: 4 s later
    lines = []
    r = onboard_local(_settings(measurer, minutes=1, configs=20), store, log=lines.append,
                      clock=lambda: float(next(ticks)))
    assert 4 < r.n_train < 20 and r.holdout["n"] == 3  # the hold-out is measured outside the budget
    assert any("budget was spent" in line for line in lines)


def test_another_machine_or_a_bad_id_stores_nothing(store, fake_measurer):
    import dataclasses

    here = local_device()
    twin = dataclasses.replace(here, device_id="twin", fingerprint={k: v for k, v in here.fingerprint.items()
                                                                    if k != "cpu_id"})
    store.add_device(twin)
    measurer, measured = fake_measurer()
    for device, match in (("twin", "another host with this machine's fingerprint"), ("a/b", "is not a device id")):
        with pytest.raises(UserError, match=match):
            onboard_local(_settings(measurer, device=device), store, log=lambda s: None)
    assert not measured and store.count() == 0 and [d.device_id for d in store.devices()] == ["twin"]
    with pytest.raises(UserError, match=r"^configs: must be an integer in \[6, 20000\]"):
        onboard_local(_settings(measurer, configs=3), store)


def _results_csv(path, jobs, device_id="pi5_test", scale=3.0):
    from measured import Architecture, Protocol, Timing

    rows = []
    for job in jobs:
        timing = Timing(np.full(100, analytic_ms(job.config, scale) / 1e3), 0.0)
        m = make_measurement(job.config.hash, job.config.resolution, Protocol(), device_id, timing=timing, notes=job.name)
        m.source, m.versions, m.os = "bundle", None, None
        a = Architecture.from_config(job.config, job.name)
        rows.append({**m.to_dict(), "family": a.family, "name": a.name, "config_json": a.config_json,
                     "params": a.params, "macs": a.macs, "in_space": True})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_an_edge_device_through_a_bundle(store, tmp_path, monkeypatch, fake_measurer):
    import measured

    written = {}

    def fake_write_bundle(jobs, out_dir, **kw):
        written["jobs"], written["dir"] = list(jobs), out_dir
        return {"models": []}

    monkeypatch.setattr(measured, "write_bundle", fake_write_bundle)
    settings = OnboardSettings(device="pi5_test", configs=10, holdout=4, pool=150, progress=False)
    lines = []
    plan = onboard_bundle(settings, store, str(tmp_path / "bundle"), log=lines.append)
    jobs = written["jobs"]
    assert len(jobs) == 14 and [j.name for j in jobs[:4]] == list(ANCHORS) and len(plan["holdout"]) == 4
    assert any("--results results.csv" in line for line in lines)
    _results_csv(tmp_path / "results.csv", jobs)
    r = onboard_results(settings, store, str(tmp_path / "results.csv"), log=lambda s: None)
    assert r.device == "pi5_test" and r.n_train == 10 and r.holdout["n"] == 4
    assert load_predictor("pi5_test").meta["onboarding"]["round"] == plan["round"]
    # This machine cannot be onboarded through a bundle, and results need a bundle first.
    with pytest.raises(UserError, match="onboard another device"):
        onboard_bundle(OnboardSettings(device="local"), store, str(tmp_path / "b2"))
    with pytest.raises(UserError, match="no onboarding bundle was written for 'rpi_other'"):
        onboard_results(OnboardSettings(device="rpi_other"), store, str(tmp_path / "results.csv"))


def test_scoring_a_separately_measured_holdout(store, fake_measurer):
    from measured import Job, Protocol, run_campaign
    from search_spaces import sample_configs

    measurer, _ = fake_measurer()
    onboard_local(_settings(measurer, holdout=0), store, log=lambda s: None)
    jobs = [Job(c) for c in sample_configs(12, seed=77)]
    run_campaign(jobs, Protocol(), local_device(), store, campaign="holdout-a", progress=False, measurer=measurer)
    r = evaluate_campaign(store, local_device_id(), "holdout-a")
    assert r["n"] + r["left_out_trained"] == 12 and 0 <= r["within_10"] <= 1
    with pytest.raises(UserError, match="no ok latency_ms measurements"):
        evaluate_campaign(store, local_device_id(), "nope")
    assert count  # (imported for the analytic device)


def test_drift_then_a_new_round_that_ignores_the_old_measurements(store, fake_measurer):
    from nas.onboard import drift_check
    from search_spaces import get_variant

    measurer, _ = fake_measurer()
    onboard_local(_settings(measurer, holdout=0), store, log=lambda s: None)
    here = local_device_id()

    def slower(protocol, device_id):  # the host now runs 1.7x slower
        return {n: analytic_ms(get_variant(n).config, 1.7) for n in ANCHORS}

    report = drift_check(here, store=store, measure=slower, today="2026-12-01")
    assert report is not None and report.drifted
    assert "lowformer-nas onboard" in report.lines()[1]
    slow_measurer, _ = fake_measurer(scale=1.7)
    r = onboard_local(_settings(slow_measurer, holdout=0, restart=True), store, log=lambda s: None)
    assert r.round == 1 and r.n_train == 10
    assert len(store.measurements()) == 20  # round 1 measured afresh (repeat 1), round 0 kept
    again = drift_check(here, store=store, measure=slower, today="2026-12-02")
    assert not again.drifted  # the new predictor rests on round 1 only
