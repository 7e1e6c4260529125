"""The op-level additive model and the MACs baseline on the paper's devices (real measurements)."""

import numpy as np
import pytest

from predictors import (
    DEFAULT_TERMS,
    FEATURE_INDEX,
    AdditiveModel,
    MacsBaseline,
    cross_val_predict,
    design_matrix,
    featurize,
    from_cost,
    regression_report,
)
from search_spaces import get_variant

from .conftest import PAPER_DEVICES


@pytest.mark.parametrize("device, metric", PAPER_DEVICES)
def test_fits_every_paper_device(paper_data, device, metric):
    data = paper_data(device, metric)
    assert data.n_configs >= 6
    m = AdditiveModel().fit(data.X, data.y)
    assert np.isfinite(m.coef_).all() and (m.coef_ >= 0).all() and m.coef_.sum() > 0
    assert m.alpha_ > 0 and m.rate_ > 0 and m.n_train_ == data.n_configs
    fit = from_cost(metric, m.predict(data.X[: data.n_configs]))
    assert np.isfinite(fit).all() and (fit > 0).all()
    contrib = m.contributions(data.X[:1])
    assert set(contrib) == set(DEFAULT_TERMS)
    assert np.isclose(sum(v[0] for v in contrib.values()), m.predict(data.X[:1])[0])


@pytest.mark.parametrize("device, metric", PAPER_DEVICES)
def test_leave_one_out_figures(paper_data, device, metric):
    data = paper_data(device, metric)
    for est in (AdditiveModel(), MacsBaseline()):
        pred = from_cost(metric, cross_val_predict(est, data.X, data.y))
        r = regression_report(data.values, pred)
        assert r["n"] == data.n_configs and np.isfinite(r["mape"]) and r["mape"] >= 0
        assert r["kendall_tau"] is None or -1 <= r["kendall_tau"] <= 1
        assert 0 <= r["within_10"] <= 1


@pytest.mark.parametrize("device, metric", PAPER_DEVICES)
def test_removing_ops_never_costs_time(paper_data, device, metric):
    # Non-negative per-op costs: a config with no more of any op than another is predicted no slower.
    data = paper_data(device, metric)
    m = AdditiveModel().fit(data.X, data.y)
    for full, reduced in (("B1", "B1-mlpless"), ("B1", "B1-mlpless-shallow"), ("B3", "E3"), ("B3", "E2"), ("B1.5", "E1")):
        X = featurize([get_variant(full).config, get_variant(reduced).config])
        D = design_matrix(X, m.terms)
        assert (D[1] <= D[0]).all()
        t = m.predict(X)
        assert 0 < t[1] <= t[0]


def test_recovers_known_costs_on_exact_additive_times(paper_data):
    # Times that are exactly additive in the terms must be fitted (almost) exactly with a weak prior.
    data = paper_data("jetson_tx2")
    X = data.X[: data.n_configs]
    D = design_matrix(X, DEFAULT_TERMS)
    true = np.array([2e-9, 1e-9, 4e-9, 3e-9, 5e-10, 0.01, 1.0])
    y = D @ true
    m = AdditiveModel(alpha=1e-8).fit(X, y)
    np.testing.assert_allclose(m.predict(X), y, rtol=1e-3)


def test_out_of_space_rows_only_set_the_prior(paper_data):
    data = paper_data("jetson_tx2")
    assert data.n_out_of_space > 0
    a = AdditiveModel(alpha=1.0).fit(data.X, data.y)
    b = AdditiveModel(alpha=1.0, use_out_of_space=True).fit(data.X, data.y)
    assert a.n_train_ == b.n_train_ == data.n_configs and a.rate_ != b.rate_
    only_in = AdditiveModel(alpha=1.0).fit(data.X[: data.n_configs], data.y[: data.n_configs])
    np.testing.assert_array_equal(a.coef_, only_in.coef_)


def test_macs_baseline_is_log_linear(paper_data):
    data = paper_data("rpi5_arm_cpu")
    m = MacsBaseline().fit(data.X, data.y)
    macs = data.X[: data.n_configs, FEATURE_INDEX["macs"]]
    np.testing.assert_allclose(np.log(m.predict(data.X[: data.n_configs])), m.intercept_ + m.coef_ * np.log(macs))
    slope, _ = np.polyfit(np.log(macs), np.log(data.y[: data.n_configs]), 1)
    assert np.isclose(m.coef_, slope)


def test_bad_terms_and_times_are_refused(paper_data):
    data = paper_data("jetson_tx2")
    with pytest.raises(ValueError, match="^terms: unknown"):
        AdditiveModel(terms=("macs", "flops")).fit(data.X, data.y)
    with pytest.raises(ValueError, match="^y:"):
        AdditiveModel().fit(data.X, -data.y)
    with pytest.raises(ValueError, match="^prior_coef:"):
        AdditiveModel(prior_coef=(1.0,)).fit(data.X, data.y)
