import warnings

import optuna
import pytest

from nas.search import (DISTRIBUTIONS, HAS_TRIAL_CONSTRAINTS, CountObjective, Evaluator, PredictorObjective, SearchError,
                        make_constraints, make_sampler, run_search)
from nas.search import _constraints
from search_spaces import get_variant, knobs_to_config

from .conftest import AnalyticPredictor, proxy_objectives, settings


def _objs():
    return [CountObjective("params"), PredictorObjective(AnalyticPredictor("jetson_tx2")),
            PredictorObjective(AnalyticPredictor("a40_gpu"))]


def test_constraints_are_relative_violations():
    objs = _objs()
    cons = make_constraints(objs, {"jetson_tx2": 12.0, "a40_gpu": 0.5}, max_params=5e6, max_macs=1e9)
    assert [c.key for c in cons] == ["budget:jetson_tx2", "budget:a40_gpu", "max_params", "max_macs"]
    e = Evaluator(objs).evaluate([get_variant("B1").config])[0]
    v = _constraints.violations(e, cons, objs)
    # Risk "bound" (the default): the budget applies to the pessimistic end, the upper end of the latency ...
    assert e.scored[1] == e.hi[1] > e.values[1]
    assert v[0] == pytest.approx((e.hi[1] - 12) / 12)
    # ... and for throughput devices to the time per image, 1000 / throughput, at the throughput's lower end.
    assert e.scored[2] == e.lo[2] < e.values[2]
    assert v[1] == pytest.approx((1000 / e.lo[2] - 0.5) / 0.5)
    assert v[2] == pytest.approx((e.params - 5e6) / 5e6) and v[2] > 0
    assert v[3] == pytest.approx((e.macs - 1e9) / 1e9)
    assert [c.bound for c in cons] == ["upper", "lower", None, None]
    assert "upper end of its 90% interval" in cons[0].label
    # Risk "mean": the central predictions.
    e = Evaluator(objs, risk="mean").evaluate([get_variant("B1").config])[0]
    assert e.scored == e.values
    cons = make_constraints(objs, {"jetson_tx2": 12.0}, risk="mean")
    assert cons[0].bound is None and _constraints.violations(e, cons, objs)[0] == pytest.approx((e.values[1] - 12) / 12)


@pytest.mark.parametrize("field, kw", [("budget-ms", {"budgets": {"jetson_tx2": -1}}),
                                       ("max-params", {"max_params": 0}), ("max-macs", {"max_macs": float("inf")})])
def test_bad_limits(field, kw):
    with pytest.raises(SearchError, match=f"^{field}: must be a positive number"):
        make_constraints(_objs(), kw.get("budgets", {}), kw.get("max_params"), kw.get("max_macs"))


def _drive(sampler, constraints, objs, n=60):
    study = optuna.create_study(directions=["maximize", "minimize", "maximize"], sampler=sampler)
    ev = Evaluator(objs)
    for _ in range(n):
        t = study.ask(DISTRIBUTIONS)
        e = ev.evaluate([knobs_to_config(t.params)])[0]
        _constraints.attach(t, constraints, _constraints.violations(e, constraints, objs))
        study.tell(t, list(e.scored))
    return study


def test_current_api_reaches_the_sampler():
    assert HAS_TRIAL_CONSTRAINTS  # Optuna >= 5 here: Trial.set_constraint
    objs = _objs()
    cons = make_constraints(objs, {"jetson_tx2": 8.0}, max_params=8e6)
    assert _constraints.sampler_kwargs(cons) == {}
    study = _drive(make_sampler("nsga2", 0, cons, population_size=10), cons, objs)
    t = study.trials[-1]
    assert set(t.constraints) == {"budget:jetson_tx2", "max_params"}  # what Optuna's samplers read
    assert _constraints.read(t, cons) == [t.constraints["budget:jetson_tx2"], t.constraints["max_params"]]
    feasible = {t.number for t in study.trials if all(v <= 0 for v in t.constraints.values())}
    assert {t.number for t in study.best_trials} <= feasible


def test_older_api_goes_through_constraints_func(monkeypatch):
    """Where Trial.set_constraint is missing, the values travel in a user attr to the sampler's constraints_func."""
    monkeypatch.setattr(_constraints, "HAS_TRIAL_CONSTRAINTS", False)
    objs = _objs()
    cons = make_constraints(objs, {"jetson_tx2": 8.0}, max_params=8e6)
    kw = _constraints.sampler_kwargs(cons)
    assert set(kw) == {"constraints_func"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Optuna 5 deprecates constraints_func
        study = _drive(make_sampler("nsga2", 0, cons, population_size=10), cons, objs)
    t = study.trials[-1]
    assert list(t.system_attrs["constraints"]) == t.user_attrs["constraints"]  # stored by the sampler after the trial
    assert _constraints.read(t, cons) == t.user_attrs["constraints"]


def test_search_with_the_older_api(monkeypatch):
    monkeypatch.setattr(_constraints, "HAS_TRIAL_CONSTRAINTS", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        r = run_search(settings(trials=80, budgets_ms=[9.0]), objectives=proxy_objectives(), progress=False, outputs=False)
    front = r.results.front
    assert len(front) and (front["jetson_tx2:latency_ms"] <= 9.0).all()


def test_one_unit_per_quantity_in_labels_and_values():
    from nas.search import format_quantity

    assert [format_quantity(v, m) for v, m in ((2.574e9, "macs"), (33_982_028, "params"), (16.98, "latency_ms"),
                                                (11_586.3, "throughput_img_s"), (76.4, "top1_pct"), (0.5, None))] == [
        "2,574 M", "33.98 M", "16.98 ms", "11,586 img/s", "76.4 %", "0.5"]
    assert format_quantity(2.5e6, "params", signed=True) == "+2.5 M"
    params, macs = make_constraints([], {}, max_params=20e6, max_macs=2e9)
    assert (params.label, params.shown(33_982_028)) == ("params <= 20 M", "33.98 M")
    assert (macs.label, macs.shown(2.574e9)) == ("MACs <= 2,000 M", "2,574 M")


def test_size_limits_come_from_one_table():
    import types

    from nas.search._constraints import SIZE_LIMITS

    cons = make_constraints([], {}, max_params=5e6, max_macs=2e9)
    assert [c.key for c in cons] == list(SIZE_LIMITS) and [c.unit for c in cons] == ["params", "MACs"]
    e = types.SimpleNamespace(params=4e6, macs=3e9)
    assert [c.quantity(e, []) for c in cons] == [4e6, 3e9]
    assert [c.label for c in cons] == ["params <= 5 M", "MACs <= 2,000 M"]
