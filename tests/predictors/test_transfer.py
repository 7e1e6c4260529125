import numpy as np
import pytest
from sklearn.base import clone

from predictors import AdditiveModel, LGBMModel, TransferModel, few_shot_curve, transfer_from


@pytest.fixture(scope="module")
def jetson_model(paper_data):
    d = paper_data("jetson_tx2")
    return AdditiveModel().fit(d.X, d.y)


@pytest.mark.parametrize("mode", ["auto", "scale", "affine", "refit"])
def test_transfer_to_another_device(paper_data, jetson_model, mode):
    rpi = paper_data("rpi5_arm_cpu")
    n = rpi.n_configs
    train = np.arange(n) < 6
    m = transfer_from(jetson_model, mode=mode).fit(rpi.X[:n][train], rpi.y[:n][train])
    assert m.mode_ in ("scale", "affine", "refit") and (mode == "auto" or m.mode_ == mode)
    pred = m.predict(rpi.X[:n][~train])
    assert np.isfinite(pred).all() and (pred > 0).all()
    if m.mode_ == "refit":
        assert (m.refit_.coef_ >= 0).all()
    # The source stays fitted through clone (FrozenEstimator).
    np.testing.assert_array_equal(clone(m).fit(rpi.X[:n][train], rpi.y[:n][train]).predict(rpi.X[:n]), m.predict(rpi.X[:n]))


def test_scale_mode_is_a_constant_factor(paper_data, jetson_model):
    rpi = paper_data("rpi5_arm_cpu")
    m = transfer_from(jetson_model, mode="scale").fit(rpi.X, rpi.y)
    ratio = m.predict(rpi.X[:5]) / jetson_model.predict(rpi.X[:5])
    np.testing.assert_allclose(ratio, ratio[0])


def test_refit_from_a_lightgbm_ratio_source(paper_data):
    j = paper_data("jetson_tx2")
    src = LGBMModel(n_estimators=10).fit(j.X, j.y)
    rpi = paper_data("rpi5_arm_cpu")
    m = transfer_from(src, mode="refit").fit(rpi.X, rpi.y)
    assert m.refit_ is not None and np.isfinite(m.predict(rpi.X[:3])).all()


def test_refit_needs_an_additive_source(paper_data):
    j = paper_data("jetson_tx2")
    src = LGBMModel(target="log", n_estimators=5).fit(j.X, j.y)
    with pytest.raises(ValueError, match="^mode: refit needs"):
        transfer_from(src, mode="refit").fit(j.X, j.y)
    with pytest.raises(ValueError, match="^source:"):
        TransferModel().fit(j.X, j.y)


def test_few_shot_curve_on_paper_devices(paper_data, jetson_model):
    rpi = paper_data("rpi5_arm_cpu")
    n = rpi.n_configs
    hold = np.arange(n) >= n - 4
    df = few_shot_curve(jetson_model, rpi.X[:n][~hold], rpi.y[:n][~hold], rpi.X[:n][hold], rpi.y[:n][hold],
                        sizes=(3, 5, 100), repeats=2)
    assert set(df["size"]) == {3, 5}  # sizes beyond the pool are skipped
    assert set(df["method"]) == {"transfer", "scratch_additive"}
    assert len(df) == 2 * 2 * 2 and {"within_10", "kendall_tau", "mape"} <= set(df.columns)
    assert np.isfinite(df["mape"]).all()
