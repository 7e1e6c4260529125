import numpy as np
import pytest
from scipy import stats

from predictors import MacsBaseline, cross_val_predict, cv_method, kendall_tau, mape, regression_report, rmse, spearman, within


def test_figures_on_known_values():
    t = np.array([10.0, 20.0, 30.0, 40.0])
    p = np.array([11.0, 18.0, 30.0, 50.0])
    assert mape(t, p) == pytest.approx((10 + 10 + 0 + 25) / 4)
    assert rmse(t, p) == pytest.approx(np.sqrt((1 + 4 + 0 + 100) / 4))
    assert within(t, p, 5) == 0.25 and within(t, p, 10) == 0.75
    assert kendall_tau(t, p) == pytest.approx(stats.kendalltau(t, p).statistic)
    assert spearman(t, p) == pytest.approx(1.0)
    r = regression_report(t, p)
    assert set(r) == {"n", "mape", "rmse", "mae", "within_5", "within_10", "kendall_tau", "spearman"}


def test_undefined_ranks_are_none():
    assert kendall_tau([1.0], [1.0]) is None
    assert regression_report([1.0, 1.0], [2.0, 3.0])["kendall_tau"] is None


def test_loo_when_small_kfold_when_large(paper_data):
    assert cv_method(30) == "leave-one-out" and cv_method(31) == "5-fold"
    d = paper_data("jetson_tx2")
    pred = cross_val_predict(MacsBaseline(), d.X, d.y)
    assert pred.shape == (d.n_configs,)
    # LOO of a log-linear fit: each prediction comes from the other rows only.
    X, y = d.X[: d.n_configs], d.y[: d.n_configs]
    keep = np.arange(d.n_configs) != 0
    np.testing.assert_allclose(pred[0], MacsBaseline().fit(X[keep], y[keep]).predict(X[:1])[0])
