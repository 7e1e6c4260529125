import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nas.search import SearchError, open_study, run_search
from nas.search._pareto import dominates, to_min
from search_spaces import KNOBS, named_series

from .conftest import macs_latency, proxy_objectives, settings

NAMED = [v.name for v in named_series()]


def _trials(name="s", runs="runs"):
    return open_study(name, runs).get_trials()


def test_search_with_proxy_objectives():
    r = run_search(settings(trials=150), objectives=proxy_objectives(), progress=False, outputs=False)
    trials = _trials()
    assert r.n_trials == r.ran == len(trials) == 150
    assert all(t.state.name == "COMPLETE" for t in trials)
    # Every knob on every trial, with the same distributions (NSGA-II crossover needs them).
    assert all(set(t.params) == set(KNOBS) for t in trials)
    assert len({json.dumps(sorted((k, repr(d)) for k, d in t.distributions.items())) for t in trials}) == 1
    # Named variants: each enqueued once, flagged.
    assert sorted(t.user_attrs["named"] for t in trials if "named" in t.user_attrs) == sorted(NAMED)
    # Each architecture scored once.
    hashes = [t.user_attrs["hash"] for t in trials]
    assert r.scored == len(set(hashes)) == len(r.results.table)
    res = r.results
    front = res.front
    assert len(front) > 0 and front["feasible"].all() and (front["jetson_tx2:latency_ms"] <= 12.0).all()
    y = to_min(front[res.keys].to_numpy(), res.directions)
    assert not any(dominates(y[i], y).any() for i in range(len(y)))
    # Every feasible architecture is on the front or dominated by a front member.
    feas = res.table[res.table["feasible"]]
    fy = to_min(feas[res.keys].to_numpy(), res.directions)
    assert all(dominates(y, p).any() or (np.abs(y - p).sum(axis=1) == 0).any() for p in fy)
    assert list(front["rank"]) == list(range(1, len(front) + 1))
    assert front["params"].is_monotonic_decreasing  # rank 1 = best on the first objective (params, maximised)


def test_named_variants_status():
    r = run_search(settings(trials=100), objectives=proxy_objectives(), progress=False, outputs=False)
    status = {d["name"]: d for d in r.results.named_status()}
    assert list(status) == NAMED
    for d in status.values():
        assert d["status"] in ("on the front", "dominated", "over budget")
        if d["status"] == "over budget":
            assert d["values"]["jetson_tx2:latency_ms"] > 12.0 and "jetson_tx2 latency <= 12 ms" in d["detail"]
        if d["status"] == "dominated":
            by = d["dominated_by"]
            row = r.results.front[r.results.front["hash"] == by["hash"]].iloc[0]
            assert row["rank"] == by["rank"]
            assert by["deltas"]["params"] >= 0 and by["deltas"]["jetson_tx2:latency_ms"] <= 0
            assert by["deltas"]["params"] > 0 or by["deltas"]["jetson_tx2:latency_ms"] < 0
    assert status["B3"]["status"] == "over budget"  # 6 GMACs: far over 12 ms here


def test_resume_runs_only_the_missing_trials():
    run_search(settings(trials=60), objectives=proxy_objectives(), progress=False, outputs=False)
    first = [t.params for t in _trials()]
    r = run_search(settings(trials=130), objectives=proxy_objectives(), progress=False, outputs=False)
    trials = _trials()
    assert (r.n_trials, r.ran) == (130, 70)
    assert [t.number for t in trials] == list(range(130)) and [t.params for t in trials[:60]] == first
    assert sorted(t.user_attrs["named"] for t in trials if "named" in t.user_attrs) == sorted(NAMED)
    # Cached architectures are not scored again; a seeded resume does not replay the first run's draws.
    assert r.scored == len({t.user_attrs["hash"] for t in trials}) - len({t.user_attrs["hash"] for t in trials[:60]})
    again = run_search(settings(trials=130), objectives=proxy_objectives(), progress=False, outputs=False)
    assert (again.n_trials, again.ran) == (130, 0)


def test_resume_keeps_the_study_settings():
    run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, outputs=False)
    with pytest.raises(SearchError, match=r"^budget-ms: study 's' was made with --budget-ms 12, not 10; keep it"):
        run_search(settings(trials=60, budgets_ms=[10.0]), objectives=proxy_objectives(), progress=False, outputs=False)
    with pytest.raises(SearchError, match="^objective: the study optimises"):
        run_search(settings(trials=60), objectives=[proxy_objectives()[0], macs_latency("rpi5_arm_cpu")],
                   progress=False, outputs=False)
    r = run_search(settings(trials=40, budgets_ms=None, seed=None), objectives=proxy_objectives(), progress=False,
                   outputs=False)  # omitted settings come from the study
    assert r.n_trials == 40 and r.results.settings["budgets_ms"] == [12.0] and r.results.settings["seed"] == 0


def test_search_through_the_predictor_interface(loader):
    r = run_search(settings(trials=60, devices=["jetson_tx2", "a40_gpu"], budgets_ms=[12.0, 1.0], population_size=10),
                   loader=loader, progress=False, outputs=False)
    res = r.results
    assert res.keys == ["imagenet1k:top1_pct", "jetson_tx2:latency_ms", "a40_gpu:throughput_img_s"]
    assert res.directions == ["maximize", "minimize", "maximize"]
    assert all(o["version"] == "analytic-1" for o in res.objectives)
    assert (1000 / res.front["a40_gpu:throughput_img_s"] <= 1.0).all()
    share = res.in_domain_share()
    assert set(share) == set(res.keys) and 0 < share["jetson_tx2:latency_ms"]["all"] < 1


def test_all_infeasible_shows_the_closest():
    r = run_search(settings(trials=60, budgets_ms=[0.5]), objectives=proxy_objectives(), progress=False, outputs=False)
    res = r.results
    assert not res.any_feasible and len(res.front) == 0
    closest = res.closest()
    assert len(closest) == 10 and closest["violation"].is_monotonic_increasing
    assert closest["violation"].iloc[0] == res.table["violation"].min() > 0
    assert {d["status"] for d in res.named_status()} == {"over budget"}


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 101, "a\\b"])
def test_study_name_with_path_characters(name):
    with pytest.raises(SearchError, match="^study: .* is not a valid name"):
        run_search(settings(study=name), objectives=proxy_objectives(), progress=False, outputs=False)


@pytest.mark.parametrize("kw, match", [
    ({"trials": 0}, "^trials: must be a positive integer"),
    ({"budgets_ms": [-3.0]}, "^budget-ms: must be a positive number"),
    ({"budgets_ms": [1.0, 2.0]}, "^budget-ms: give one value for all devices or one per --device"),
    ({"sampler": "annealing"}, "^sampler: must be one of"),
    ({"storage": "postgresql://nobody@127.0.0.1:1/none"}, "^storage: cannot open postgresql://nobody@127.0.0.1:1/none"),
    ({"storage": "ftp://x"}, "^storage: 'ftp://x': give a database URL"),
])
def test_bad_settings(kw, match):
    with pytest.raises(SearchError, match=match):
        run_search(settings(**kw), objectives=proxy_objectives(), progress=False, outputs=False)
    assert not os.path.exists("runs/s/study.journal")  # nothing created


_KILLED = textwrap.dedent("""
    import sys, time
    from nas.search import CountObjective, FunctionObjective, SearchSettings, run_search
    from search_spaces import count

    def slow(cs):
        time.sleep(0.01 * len(cs))  # slow enough for the kill to land mid-search
        return [1.0 + count(c).macs / 1.5e8 for c in cs]

    objs = [CountObjective("params"), FunctionObjective("jetson_tx2:latency_ms", "minimize", slow,
                                                        device="jetson_tx2", metric="latency_ms")]
    run_search(SearchSettings(trials=400, study="k", seed=0, budgets_ms=[12.0], population_size=20,
                              runs_dir=sys.argv[1]), objectives=objs, progress=False)
""")


def test_killed_search_resumes_without_duplicates(tmp_path):
    journal = tmp_path / "runs" / "k" / "study.journal"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path / "runs")], stderr=subprocess.PIPE)
    # Wait for 50 finished trials however slow the machine is (the deadline only catches a hang).
    deadline = time.monotonic() + 900
    try:
        while not (journal.exists() and journal.read_bytes().count(b'{"op_code":4,') >= 50):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no 50 trials in 900 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _trials("k", tmp_path / "runs")
    assert 50 <= len(before) < 400
    r = run_search(settings(trials=400, study="k", population_size=20, runs_dir=str(tmp_path / "runs")),
                   objectives=proxy_objectives(), progress=False, outputs=False)
    after = _trials("k", tmp_path / "runs")
    assert r.n_trials == len(after) == 400 and r.ran == 400 - len(before)
    assert [t.number for t in after] == list(range(400))
    assert [t.params for t in after[: len(before)]] == [t.params for t in before]
    assert sorted(t.user_attrs["named"] for t in after if "named" in t.user_attrs) == sorted(NAMED)


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp"])
def test_other_samplers(sampler):
    if sampler == "gp":
        pytest.importorskip("torch")
    n = 13 if sampler == "gp" else 24  # gp: 10 startup trials, then 3 fitted ones (about 1 s each)
    r = run_search(settings(trials=n, sampler=sampler), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == n and r.results.settings["sampler"] == sampler
    assert sum(1 for t in _trials() if "named" in t.user_attrs) == 8
