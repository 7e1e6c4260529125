"""Risk-aware search: budgets on the pessimistic end of the intervals, objectives on it too, intervals in every
output, the setting kept by a resumed study, predictors without calibration data said so, never silently."""

import json
import pathlib

import numpy as np
import pytest

from nas.search import PredictorObjective, SearchError, run_search
from search_spaces import get_variant

from .conftest import AnalyticPredictor, settings

KEY = "jetson_tx2:latency_ms"


def _objectives():
    return [PredictorObjective(AnalyticPredictor("imagenet1k", "top1_pct")), PredictorObjective(AnalyticPredictor("jetson_tx2"))]


def _run(**kw):
    return run_search(settings(**kw), objectives=_objectives(), progress=False, png=False)


def test_budget_applies_to_the_upper_end_by_default():
    res = _run(trials=150, budgets_ms=[6.0]).results
    assert res.risk == "bound" and res.confidence == 0.9
    front = res.front
    assert len(front) and (front[f"{KEY}_hi"] <= 6.0).all()
    assert (front[f"{KEY}_hi"] > front[KEY]).all()  # the bound, not the central value, meets the budget
    # What the search optimised: the pessimistic ends (upper latency, lower top-1).
    np.testing.assert_allclose(front[f"opt:{KEY}"], front[f"{KEY}_hi"])
    np.testing.assert_allclose(front["opt:imagenet1k:top1_pct"], front["imagenet1k:top1_pct_lo"])
    # Every architecture whose upper end is over the budget is infeasible, whatever its central value.
    t = res.table
    assert not t.loc[t[f"{KEY}_hi"] > 6.0, "feasible"].any()
    assert ((t[KEY] <= 6.0) & (t[f"{KEY}_hi"] > 6.0)).any()


def test_risk_mean_uses_central_values():
    res = _run(trials=150, budgets_ms=[6.0], risk="mean").results
    assert res.risk == "mean" and res.confidence == 0.9
    front, t = res.front, res.table
    assert (front[KEY] <= 6.0).all()
    straddling = (t[KEY] <= 6.0) & (t[f"{KEY}_hi"] > 6.0)
    assert straddling.any() and t.loc[straddling, "feasible"].all()  # feasible on the central value
    np.testing.assert_allclose(front[f"opt:{KEY}"], front[KEY])
    # Intervals are still computed and reported (at 0.9) under risk mean.
    assert (front[f"{KEY}_hi"] > front[KEY]).all()


def test_confidence_sets_the_coverage():
    narrow = _run(trials=60, study="a", confidence=0.6).results.table
    wide = _run(trials=60, study="b", confidence=0.99).results.table
    rel = lambda t: float(np.median((t[f"{KEY}_hi"] - t[f"{KEY}_lo"]) / t[KEY]))  # noqa: E731
    assert rel(wide) > 2 * rel(narrow)


def test_a_resumed_study_keeps_risk_and_confidence():
    _run(trials=40, confidence=0.8)
    r = run_search(settings(trials=60, confidence=None), objectives=_objectives(), progress=False, outputs=False)
    assert r.results.settings["confidence"] == 0.8 and r.results.risk == "bound"
    with pytest.raises(SearchError, match=r"^confidence: study 's' was made with --confidence 0.8, not 0.95"):
        run_search(settings(trials=70, confidence=0.95), objectives=_objectives(), progress=False, outputs=False)
    with pytest.raises(SearchError, match=r"^risk: study 's' was made with --risk bound, not mean"):
        run_search(settings(trials=70, risk="mean"), objectives=_objectives(), progress=False, outputs=False)


@pytest.mark.parametrize("kw, message", [
    ({"risk": "max"}, r"^risk: must be one of bound\|mean \(got 'max'\)$"),
    ({"confidence": 0.999}, r"^confidence: must be a number in \(0.5, 0.999\), the interval coverage \(got 0.999\)$"),
    ({"confidence": 0.5}, r"^confidence: must be a number in \(0.5, 0.999\)"),
    ({"confidence": "high"}, r"^confidence: must be a number in"),
])
def test_bad_risk_settings(kw, message):
    with pytest.raises(SearchError, match=message):
        _run(trials=10, **kw)


def test_intervals_in_every_output():
    r = _run(trials=80)
    d = pathlib.Path("runs/s")
    front = json.loads((d / "front.json").read_text())
    assert front["risk"] == "bound" and front["confidence"] == 0.9
    for e in front["front"] + front["named"]:
        for k in ("imagenet1k:top1_pct", KEY):
            if "intervals" in e:
                lo, hi = e["intervals"][k]
                v = (e.get("predictions") or e.get("values"))[k]
                assert lo <= v <= hi
        assert set(e.get("in_domain", {})) <= {"imagenet1k:top1_pct", KEY}
    import pandas as pd

    csv = pd.read_csv(d / "front.csv")
    assert {f"{KEY}_lo", f"{KEY}_hi", "imagenet1k:top1_pct_lo", "imagenet1k:top1_pct_hi", "out_of_domain"} <= set(csv.columns)
    report = (d / "report.md").read_text()
    assert "risk bound: budgets and objectives use the pessimistic end" in report
    assert "| domain |" in report or "domain |" in report
    # Every extrapolated row of the report is flagged.
    ood_rows = r.results.front[r.results.front["ood"].apply(bool)]
    assert report.count("**extrapolated**") >= min(len(ood_rows), 30)
    html = (d / "pareto_front.html").read_text()
    assert '"error_x"' in html or "error_x" in html


class _Uncalibrated(AnalyticPredictor):
    calibrated = False

    def retrain_hint(self):
        return "lowformer-nas predictors train --device jetson_tx2"

    def predict_interval(self, configs, coverage=0.9, measured=True):
        raise AssertionError("an uncalibrated predictor must not be asked for intervals")


def test_uncalibrated_predictor_falls_back_with_a_note():
    objs = [PredictorObjective(AnalyticPredictor("imagenet1k", "top1_pct")), PredictorObjective(_Uncalibrated("jetson_tx2"))]
    r = run_search(settings(trials=40), objectives=objs, progress=False, png=False)
    assert any("has no calibration data" in n and "retrain it: lowformer-nas predictors train --device jetson_tx2" in n
               for n in r.notes)
    res = r.results
    assert (res.front[f"{KEY}_lo"] == res.front[KEY]).all()  # point values, no interval
    assert res.constraints[0].bound is None and "upper end" not in res.constraints[0].label
    report = pathlib.Path("runs/s/report.md").read_text()
    assert "has no calibration data" in report and "**none** (point predictions)" in report


def test_scores_of_a_named_variant_are_its_bounds():
    from nas.search import Evaluator

    objs = _objectives()
    e = Evaluator(objs).evaluate([get_variant("B1").config])[0]
    assert e.scored == (e.lo[0], e.hi[1]) and e.lo[0] < e.values[0] < e.hi[0]
    m = Evaluator(objs, risk="mean").evaluate([get_variant("B1").config])[0]
    assert m.scored == m.values
