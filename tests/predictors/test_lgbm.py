import numpy as np
import pytest

from predictors import FEATURE_INDEX, AdditiveModel, LGBMModel, estimator_to_json, featurize, regression_report
from search_spaces import sample_configs


@pytest.fixture(scope="module")
def structured(paper_data):
    """Times with an effect the additive terms cannot express (which attention, which resolution band) on top
    of the additive model fitted to the Raspberry Pi's real rows: what the trees' ratio target is for."""
    base = AdditiveModel().fit(paper_data("rpi5_arm_cpu").X, paper_data("rpi5_arm_cpu").y)
    X = featurize(list(sample_configs(320, seed=11)))
    effect = 0.3 * X[:, FEATURE_INDEX["att3_mhsa"]] + 0.2 * (X[:, FEATURE_INDEX["resolution"]] > 224)
    return X, base.predict(X) * np.exp(effect)


def test_ratio_target_learns_what_the_additive_model_misses(structured):
    X, y = structured
    train, test = slice(0, 260), slice(260, None)
    lgbm = LGBMModel(target="ratio", n_estimators=150).fit(X[train], y[train])
    add = AdditiveModel().fit(X[train], y[train])
    r_lgbm = regression_report(y[test], lgbm.predict(X[test]))
    r_add = regression_report(y[test], add.predict(X[test]))
    assert r_lgbm["mape"] < r_add["mape"]
    assert lgbm.base_ is not None and lgbm.n_train_ == 260


def test_log_target_has_no_base(structured):
    X, y = structured
    m = LGBMModel(target="log", n_estimators=20).fit(X, y)
    assert m.base_ is None and (m.predict(X[:5]) > 0).all()
    np.testing.assert_allclose(np.log(m.predict(X[:5])), m.correction(X[:5]))


def test_saved_as_lightgbm_text(structured):
    X, y = structured
    m = LGBMModel(n_estimators=10).fit(X, y)
    doc, texts = estimator_to_json(m)
    assert set(texts) == {"model.txt"} and texts["model.txt"].startswith("tree")
    assert doc["fitted"]["base_"]["type"] == "AdditiveModel"


def test_bad_target(structured):
    X, y = structured
    with pytest.raises(ValueError, match="^target:"):
        LGBMModel(target="linear").fit(X, y)
