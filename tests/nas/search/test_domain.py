"""Fronts stay where the evidence is: by default every predicted objective stays inside its predictor's training
domain (a constraint); --extrapolate lets extrapolated configs compete; every front row names what its numbers rest on
(measured, predicted in domain, extrapolated); a resumed study keeps the setting; the named variants' statuses do not
turn 'over budget' for being outside a domain."""

import json
import pathlib

import pytest

from nas.search import PredictorObjective, SearchError, run_search

from .conftest import AnalyticPredictor, settings

KEY = "jetson_tx2:latency_ms"
ACC = "imagenet1k:top1_pct"


def _objectives():
    return [PredictorObjective(AnalyticPredictor("imagenet1k", "top1_pct")), PredictorObjective(AnalyticPredictor("jetson_tx2"))]


def _run(**kw):
    return run_search(settings(**kw), objectives=_objectives(), progress=False, png=False)


def test_default_front_stays_inside_every_domain():
    res = _run(trials=200, budgets_ms=[8.0]).results
    assert any(c.key == "domain" for c in res.constraints)
    assert len(res.front) and not res.front["ood"].apply(bool).any()
    # Outside configs were tried and refused, not just never met.
    t = res.table
    outside = t["ood"].apply(bool)
    assert outside.any() and not t.loc[outside, "feasible"].any()
    assert res.settings["extrapolate"] is False


def test_extrapolate_lets_outside_configs_compete():
    res = _run(trials=200, budgets_ms=[8.0], extrapolate=True).results
    assert not any(c.key == "domain" for c in res.constraints)
    t = res.table
    assert t.loc[t["ood"].apply(bool), "feasible"].any()
    assert res.settings["extrapolate"] is True


def test_a_resumed_study_keeps_the_setting():
    _run(trials=40, study="d", extrapolate=True)
    again = _run(trials=60, study="d")
    assert again.results.settings["extrapolate"] is True
    with pytest.raises(SearchError, match="extrapolate"):
        _run(trials=80, study="d", extrapolate=False)


def test_every_front_row_names_its_evidence():
    _run(trials=120, budgets_ms=[8.0], extrapolate=True)
    d = pathlib.Path("runs/s")
    front = json.loads((d / "front.json").read_text())
    for e in front["front"]:
        ev = e["evidence"]
        assert set(ev) == {ACC, KEY}
        for k, v in ev.items():
            assert v in ("measured", "predicted in domain", "extrapolated")
            assert (v == "extrapolated") == (not e["in_domain"][k])
    import pandas as pd

    csv = pd.read_csv(d / "front.csv")
    assert all(f"{ACC}=" in e and f"{KEY}=" in e for e in csv["evidence"])
    report = (d / "report.md").read_text()
    assert "evidence (domain)" in report and "in domain: " in report
    assert "extrapolation | allowed (--extrapolate)" in report


def test_named_variants_outside_the_domain_are_not_over_budget():
    res = _run(trials=200, budgets_ms=[50.0]).results
    for d in res.named_status():
        if d["status"] == "over budget":
            assert "training domain" not in d["detail"]
