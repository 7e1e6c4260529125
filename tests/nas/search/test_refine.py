"""--verify and --refine with an injected measuring function: over-budget counts, coverage of the intervals, and
refinement rounds that retrain the predictor and continue the same study."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from nas.search import (
    SearchError,
    load_results,
    open_study,
    pick_for_refinement,
    refine_search,
    rounds_table,
    run_search,
    verify_front,
)

from .conftest import AnalyticPredictor, settings

DEVICE = "jetson_tx2"
KEY = f"{DEVICE}:latency_ms"


@dataclasses.dataclass
class FakeMeasurement:
    value: float
    status: str = "ok"
    reason: str | None = None
    metric: str = "latency_ms"


class FakeBench:
    """'Measures' a config as the analytic latency times ``factor``; remembers what it measured."""

    def __init__(self, factor: float = 1.0):
        self.factor, self.seen = factor, []

    def __call__(self, configs, device):
        assert device == DEVICE
        self.seen.extend(c.hash for c in configs)
        return [FakeMeasurement(AnalyticPredictor(DEVICE).predict_one(c) * self.factor) for c in configs]


class Versioned(AnalyticPredictor):
    """An analytic predictor whose version the fake retraining bumps (as a retrained predictor's would)."""

    version_no = 1

    @property
    def identity(self):
        return f"analytic|{Versioned.version_no}"

    @property
    def version(self):
        return Versioned.version_no


def loader(device, metric=None):
    return Versioned(device, metric)


def _retrain(device):
    Versioned.version_no += 1
    return f"analytic v{Versioned.version_no}"


@pytest.fixture(autouse=True)
def _fresh_versions():
    Versioned.version_no = 1


def test_verify_reports_over_budget_and_coverage():
    r = run_search(settings(trials=60, devices=[DEVICE], budgets_ms=[6.0]), loader=loader, progress=False, png=False)
    lines = []
    rows = verify_front(r.results, 4, r.folder, measure=FakeBench(1.0), log=lines.append)
    assert len(rows) == 4 and all(x["inside"] for x in rows) and not any(x["over_budget"] for x in rows)
    assert "0 of 4 measured configs exceed the budget" in lines[-1] and "4 of 4 measured values lie inside" in lines[-1]
    # A device 30 % slower than predicted: outside the intervals, over budget near it.
    rows = verify_front(r.results, 4, r.folder, measure=FakeBench(1.3), log=lines.append)
    assert not any(x["inside"] for x in rows)
    saved = json.loads((r.folder / "verify.json").read_text())
    assert saved["summary"]["inside"] == 0 and saved["summary"]["measured"] == 4 and saved["summary"]["coverage"] == 0.9


class Known(Versioned):
    """Reports the configs of ``KNOWN`` as stored measurements (as a trained predictor does for its training
    configs): the analytic value with a narrow interval, ``measured`` true."""

    KNOWN: set = set()

    def predict_interval(self, configs, coverage=0.9, measured=True):
        iv = super().predict_interval(configs, coverage, measured)
        known = np.array([c.hash in Known.KNOWN for c in configs], dtype=bool) & (self.metric == "latency_ms")
        return dataclasses.replace(iv, measured=known)


def test_front_configs_measured_before_test_nothing():
    """A verify or refinement round on configs whose value already is a stored measurement: the harness returns
    that measurement again, so it must neither count as a hit of the interval nor be picked to refine."""
    s = settings(trials=60, devices=[DEVICE], budgets_ms=[6.0])
    front = run_search(s, loader=loader, progress=False, outputs=False).results.front
    Known.KNOWN = set(front["hash"].head(2))
    r = run_search(dataclasses.replace(s, study="s2"), loader=lambda d, m=None: Known(d, m), progress=False, png=False)
    res = r.results
    assert set(res.front["hash"].head(2)) == Known.KNOWN
    lines = []
    rows = verify_front(res, 4, r.folder, measure=FakeBench(1.0), log=lines.append)
    assert [x["known"] for x in rows] == [True, True, False, False]
    assert [x["inside"] for x in rows] == [None, None, True, True]
    assert "2 of 2 measured values lie inside" in lines[-1]
    assert "2 of the 4 had been measured before" in lines[-1] and "(measured before)" in lines[1]
    o = next(o for o in res.objectives if o["key"] == KEY)
    assert not set(pick_for_refinement(res, o, 10)["hash"]) & Known.KNOWN


def test_picks_nearest_the_budget_and_widest():
    r = run_search(settings(trials=80, devices=[DEVICE], budgets_ms=[6.0]), loader=loader, progress=False, outputs=False)
    res = r.results
    o = next(o for o in res.objectives if o["key"] == KEY)
    picked = pick_for_refinement(res, o, 4)
    assert len(picked) == min(4, len(res.front))
    gap = (res.front["q:budget:jetson_tx2"] / 6.0 - 1).abs()
    assert picked["hash"].iloc[:].isin([res.front.loc[gap.idxmin(), "hash"]]).any()


def test_refine_rounds_retrain_and_continue_the_study():
    s = settings(trials=60, devices=[DEVICE], budgets_ms=[6.0])
    bench = FakeBench(1.1)
    result, rounds = refine_search(s, 2, 3, measure=bench, retrain=_retrain, loader=loader, log=lambda _: None, png=False)
    assert [x.round for x in rounds] == [0, 1] and all(x.picked == 3 for x in rounds)
    assert all(x.retrained.startswith("analytic v") for x in rounds) and Versioned.version_no == 3
    assert len(bench.seen) == 6 and result.round == 2
    # One study, three rounds: each round's trials are its own, scored by that round's predictor.
    study = open_study("s", "runs")
    rounds_seen = sorted({t.user_attrs.get("round", 0) for t in study.get_trials()})
    assert rounds_seen == [0, 1, 2] and result.n_trials == 60
    meta = study.user_attrs["lowformer_nas"]
    assert meta["round"] == 2 and [r["round"] for r in meta["rounds"]] == [0, 1, 2]
    assert [r["objectives"][1]["version"] for r in meta["rounds"]] == [1, 2, 3]
    # A round starts from the previous round's front (enqueued, re-scored).
    r1 = load_results(study, round_=1)
    r0 = load_results(study, round_=0)
    assert set(r0.front["hash"]) <= set(r1.table["hash"])
    table = rounds_table(rounds)
    assert table.startswith("| round | measured | over budget | inside interval | median width near budget |")
    assert table.count("\n") == 3
    report = (pathlib.Path("runs/s") / "report.md").read_text()
    assert "refinement round 2" in report


def test_a_plain_resume_still_refuses_a_retrained_predictor():
    s = settings(trials=40, devices=[DEVICE])
    run_search(s, loader=loader, progress=False, outputs=False)
    _retrain(DEVICE)
    with pytest.raises(SearchError, match=r"^predictor: \S+ is now version 2, the study was scored with 1; .*search --refine"):
        run_search(dataclasses.replace(s, trials=50), loader=loader, progress=False, outputs=False)
    with pytest.raises(SearchError, match="^refine: must be a positive number of rounds"):
        refine_search(s, 0, 3, measure=FakeBench(), retrain=_retrain, loader=loader)


def test_results_of_a_round_keep_the_objectives_of_that_round():
    s = settings(trials=40, devices=[DEVICE])
    refine_search(s, 1, 2, measure=FakeBench(), retrain=_retrain, loader=loader, log=lambda _: None, png=False)
    study = open_study("s", "runs")
    assert load_results(study).round == 1 and len(load_results(study, round_=0).table) > 0
    assert np.isfinite(load_results(study).front[KEY]).all()
