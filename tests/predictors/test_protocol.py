"""The Predictor contract, over every implementation the search may be given: trained predictors of each model
type the package ships (additive, surrogate, LightGBM) and the tests' analytic stand-in."""

import numpy as np
import pytest

from predictors import HIGHER_IS_BETTER, PredictionInterval, Predictor, PredictorError, load_predictor, train
from search_spaces import get_variant, sample_configs
from tests.nas.search.conftest import AnalyticPredictor

CONFIGS = [get_variant(n).config for n in ("B0", "B1", "E1")] + list(sample_configs(5, seed=21))


def _lgbm(paper_data):
    # A LightGBM predictor on real rows: the local CPU dataset would take minutes; the paper devices have too few
    # configs, so the rows of the paper's devices are pooled as one pseudo-device (contract only, not accuracy).
    import dataclasses

    data = paper_data("rpi5_arm_cpu")
    reps = 5
    X = np.vstack([data.X[: data.n_configs]] * reps)
    y = np.concatenate([data.y[: data.n_configs] * (1 + 0.01 * k) for k in range(reps)])
    big = dataclasses.replace(data, configs=data.configs * reps, names=data.names * reps,
                              values=np.concatenate([data.values * (1 + 0.01 * k) for k in range(reps)]), X=X, y=y,
                              n_repeats=np.tile(data.n_repeats, reps), repeat_sd=np.tile(data.repeat_sd, reps),
                              within_sd=np.tile(data.within_sd, reps), rounding=np.tile(data.rounding, reps))
    return train(big, "lgbm")[0]


IMPLEMENTATIONS = {
    "trained additive": lambda pd_: train(pd_("jetson_tx2"), "additive")[0],
    "trained throughput": lambda pd_: train(pd_("a40_gpu", "throughput_img_s"), "additive")[0],
    "trained surrogate": lambda pd_: train(pd_("imagenet1k", "top1_pct"), "surrogate")[0],
    "trained lgbm": _lgbm,
    "shipped": lambda pd_: load_predictor("jetson_tx2"),
    "analytic stand-in": lambda pd_: AnalyticPredictor("jetson_tx2"),
    "analytic throughput": lambda pd_: AnalyticPredictor("a40_gpu"),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def predictor(request, paper_data):
    return IMPLEMENTATIONS[request.param](paper_data)


def test_is_a_predictor_with_its_attributes(predictor):
    assert isinstance(predictor, Predictor)
    assert isinstance(predictor.device, str) and isinstance(predictor.metric, str)
    assert predictor.higher_is_better == (predictor.metric in HIGHER_IS_BETTER)
    assert isinstance(predictor.model_type, str) and isinstance(predictor.identity, str)
    assert predictor.calibrated


def test_predictions_and_domain(predictor):
    v = predictor.predict(CONFIGS)
    assert v.shape == (len(CONFIGS),) and np.isfinite(v).all() and (v > 0).all()
    assert predictor.predict_one(CONFIGS[3]) == pytest.approx(v[3])
    dom = predictor.in_domain_mask(CONFIGS)
    assert dom.shape == (len(CONFIGS),) and dom.dtype == bool
    assert predictor.in_domain(CONFIGS[4]) == dom[4]


def test_intervals(predictor):
    iv = predictor.predict_interval(CONFIGS, 0.9)
    assert isinstance(iv, PredictionInterval) and len(iv) == len(CONFIGS) and iv.coverage == 0.9
    for a in (iv.value, iv.lo, iv.hi, iv.distance):
        assert a.shape == (len(CONFIGS),) and np.isfinite(a).all()
    assert iv.in_domain.dtype == bool and iv.measured.dtype == bool
    assert (iv.lo <= iv.value).all() and (iv.value <= iv.hi).all() and (iv.lo < iv.hi).all()
    model = ~iv.measured
    np.testing.assert_allclose(iv.value[model], predictor.predict(CONFIGS)[model])
    np.testing.assert_array_equal(iv.in_domain[model], predictor.in_domain_mask(CONFIGS)[model])
    # Higher coverage, wider intervals; a stored measurement is only reported on request.
    wide = predictor.predict_interval(CONFIGS, 0.95)
    assert (wide.hi - wide.lo >= iv.hi - iv.lo - 1e-12).all()
    plain = predictor.predict_interval(CONFIGS, 0.9, measured=False)
    assert not plain.measured.any()
    np.testing.assert_allclose(plain.value, predictor.predict(CONFIGS))


@pytest.mark.parametrize("coverage", [0.5, 1.0, 0.9999])
def test_coverage_out_of_range_is_refused(predictor, coverage):
    with pytest.raises(PredictorError, match=r"^coverage: must be a number in \(0.5, 0.999\)"):
        predictor.predict_interval(CONFIGS[:1], coverage)
