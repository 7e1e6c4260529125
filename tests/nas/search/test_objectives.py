import numpy as np
import pytest

from lowformer_common import UserError
from nas.search import CountObjective, Evaluator, FunctionObjective, Objective, PredictorObjective, SearchError, build_objectives
from search_spaces import count, get_variant, sample_configs

from .conftest import AnalyticPredictor

CONFIGS = list(sample_configs(6, seed=1))


def _objectives():
    return [
        CountObjective("params"),
        CountObjective("macs", "minimize"),
        FunctionObjective("res", "maximize", lambda cs: [c.resolution for c in cs]),
        PredictorObjective(AnalyticPredictor("jetson_tx2")),
        PredictorObjective(AnalyticPredictor("a40_gpu")),
        PredictorObjective(AnalyticPredictor("imagenet1k", "top1_pct")),
    ]


@pytest.mark.parametrize("obj", _objectives(), ids=lambda o: o.key)
def test_objective_contract(obj):
    """Every implementation: one finite value per config, a direction, a description naming it."""
    assert isinstance(obj, Objective) and obj.direction in ("minimize", "maximize")
    v = obj.evaluate(CONFIGS, [count(c) for c in CONFIGS])
    assert v.shape == (len(CONFIGS),) and np.all(np.isfinite(v))
    d = obj.describe()
    assert d["key"] == obj.key and d["direction"] == obj.direction
    dom = obj.in_domain(CONFIGS)
    assert dom is None or (len(dom) == len(CONFIGS) and dom.dtype == bool)


def test_predictor_adapter_follows_the_predictor():
    lat, thr, acc = (PredictorObjective(AnalyticPredictor(*a)) for a in
                     (("jetson_tx2",), ("a40_gpu",), ("imagenet1k", "top1_pct")))
    assert (lat.key, lat.direction, lat.is_time) == ("jetson_tx2:latency_ms", "minimize", True)
    assert (thr.key, thr.direction, thr.is_time) == ("a40_gpu:throughput_img_s", "maximize", True)
    assert (acc.key, acc.direction, acc.is_time) == ("imagenet1k:top1_pct", "maximize", False)
    assert lat.describe()["version"] == "analytic-1" and lat.describe()["model_type"] == "analytic"
    b1 = get_variant("B1").config
    assert lat.evaluate([b1], [count(b1)])[0] == pytest.approx(AnalyticPredictor("jetson_tx2").predict_one(b1))


def test_build_objectives(loader):
    objs = build_objectives(["jetson_tx2", "a40_gpu"], "surrogate", loader)
    assert [o.key for o in objs] == ["imagenet1k:top1_pct", "jetson_tx2:latency_ms", "a40_gpu:throughput_img_s"]
    assert [o.key for o in build_objectives(["jetson_tx2"], "macs", loader)] == ["macs", "jetson_tx2:latency_ms"]
    assert build_objectives(["jetson_tx2"], "params", loader)[0].direction == "maximize"  # capacity proxy
    with pytest.raises(UserError, match="no predictor for 'mars'"):
        build_objectives(["mars"], "surrogate", loader)
    with pytest.raises(SearchError, match="objective: must be one of surrogate|params|macs"):
        build_objectives(["jetson_tx2"], "flops", loader)


def test_evaluator_scores_each_architecture_once():
    calls = []
    f = FunctionObjective("n", "minimize", lambda cs: calls.append(len(cs)) or [1.0] * len(cs))
    ev = Evaluator([CountObjective("params"), f])
    a, b = CONFIGS[0], CONFIGS[1]
    out = ev.evaluate([a, b, a, a])
    assert calls == [2] and ev.scored == 2 and out[0] is out[2]
    assert out[0].params == count(a).params and out[0].macs == count(a).macs
    ev.evaluate([b, CONFIGS[2]])
    assert calls == [2, 1] and ev.scored == 3


def test_evaluator_refuses_non_finite_values():
    ev = Evaluator([FunctionObjective("bad", "minimize", lambda cs: [float("nan")] * len(cs))])
    with pytest.raises(SearchError, match="^bad: objective returned"):
        ev.evaluate(CONFIGS[:2])


def test_out_of_domain_is_recorded():
    p = AnalyticPredictor("jetson_tx2")
    ev = Evaluator([PredictorObjective(p)])
    hi = CONFIGS[0].with_(resolution=288)
    lo = CONFIGS[0].with_(resolution=224)
    e_hi, e_lo = ev.evaluate([hi, lo])
    assert e_hi.ood == ("jetson_tx2:latency_ms",) and e_lo.ood == ()
