"""The scikit-learn contract, run over every estimator of the package on real rows."""

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from predictors import (
    AccuracySurrogate,
    AdditiveModel,
    LGBMModel,
    MacsBaseline,
    PredictorError,
    TransferModel,
    estimator_from_json,
    estimator_to_json,
    featurize,
    load_version,
    save_version,
)
from search_spaces import get_variant

PROBE = ["B0", "B1", "B3", "E1", "E3", "B1-mlpless", "B1.5-mlpless-shallow"]


def _transfer(paper_data):
    src = AdditiveModel().fit(paper_data("jetson_tx2").X, paper_data("jetson_tx2").y)
    return TransferModel(source=FrozenEstimator(src))


# id -> (factory(paper_data), device, metric)
ESTIMATORS = {
    "macs": (lambda pd_: MacsBaseline(), "jetson_tx2", "latency_ms"),
    "macs_oos": (lambda pd_: MacsBaseline(use_out_of_space=True), "rpi5_arm_cpu", "latency_ms"),
    "additive": (lambda pd_: AdditiveModel(), "jetson_tx2", "latency_ms"),
    "additive_fixed_alpha": (lambda pd_: AdditiveModel(alpha=0.1, use_out_of_space=True), "a40_gpu", "throughput_img_s"),
    "lgbm_ratio": (lambda pd_: LGBMModel(target="ratio", n_estimators=30), "jetson_tx2", "latency_ms"),
    "lgbm_log": (lambda pd_: LGBMModel(target="log", n_estimators=30), "rpi5_arm_cpu", "latency_ms"),
    "transfer": (_transfer, "rpi5_arm_cpu", "latency_ms"),
    "surrogate": (lambda pd_: AccuracySurrogate(), "imagenet1k", "top1_pct"),
}


@pytest.fixture(params=list(ESTIMATORS))
def case(request, paper_data):
    factory, device, metric = ESTIMATORS[request.param]
    return factory(paper_data), paper_data(device, metric)


@pytest.fixture(scope="module")
def probe_X():
    return featurize([get_variant(n).config for n in PROBE])


def test_fit_returns_self_and_learned_attributes_end_in_underscore(case):
    est, data = case
    before = set(vars(est))
    assert before == set(est.get_params(deep=False))  # __init__ only stores its parameters
    assert est.fit(data.X, data.y) is est
    new = set(vars(est)) - before
    assert new and all(a.endswith("_") and not a.startswith("_") for a in new), new


def test_not_fitted_raises(case, probe_X):
    est, _ = case
    with pytest.raises(NotFittedError):
        est.predict(probe_X)


def test_get_params_round_trip_and_clone(case, probe_X):
    est, data = case
    params = est.get_params(deep=False)
    again = type(est)(**params)
    assert again.get_params(deep=False).keys() == params.keys()
    assert est.set_params(**params) is est
    fitted = clone(est).fit(data.X, data.y)
    c = clone(fitted)
    assert type(c) is type(est) and not hasattr(c, "schema_hash_")
    np.testing.assert_array_equal(c.fit(data.X, data.y).predict(probe_X), fitted.predict(probe_X))


def test_deterministic_and_sane_predictions(case, probe_X):
    est, data = case
    a = clone(est).fit(data.X, data.y).predict(probe_X)
    b = clone(est).fit(data.X, data.y).predict(probe_X)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(PROBE),) and np.isfinite(a).all() and (a > 0).all()


def test_wrong_feature_matrix_is_refused(case):
    est, data = case
    est.fit(data.X, data.y)
    with pytest.raises(ValueError, match="^X: expected"):
        est.predict(np.zeros((2, 7)))


def test_json_round_trip_equal_predictions(case, probe_X, tmp_path):
    est, data = case
    est.fit(data.X, data.y)
    doc, texts = estimator_to_json(est)
    json.dumps(doc)  # JSON through and through: no pickle anywhere
    back = estimator_from_json(json.loads(json.dumps(doc)), texts)
    np.testing.assert_array_equal(back.predict(probe_X), est.predict(probe_X))
    assert back.get_params(deep=False).keys() == est.get_params(deep=False).keys()

    path = save_version(tmp_path / "dev" / "latency_ms", est, {"device": "dev", "metric": "latency_ms", "model_type": "test",
                                                                "feature_schema": {"hash": est.schema_hash_}})
    loaded, meta = load_version(path)
    np.testing.assert_array_equal(loaded.predict(probe_X), est.predict(probe_X))
    assert meta["version"] == 1 and not list(path.glob("*.pkl")) and not list(path.glob("*.pickle"))


def test_other_feature_schema_is_refused(case, probe_X, tmp_path):
    est, data = case
    est.fit(data.X, data.y)
    path = save_version(tmp_path / "d" / "m", est, {"device": "d", "metric": "m", "feature_schema": {"hash": est.schema_hash_}})
    meta = json.loads((path / "meta.json").read_text())
    meta["feature_schema"]["hash"] = "0" * 64
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="feature schema 000000000000.*retrain it") as e:
        load_version(path)
    assert "\n" not in str(e.value)

    doc, texts = estimator_to_json(est)
    doc["schema_hash"] = "f" * 64
    with pytest.raises(PredictorError, match="feature schema ffffffffffff"):
        estimator_from_json(doc, texts)
    est.schema_hash_ = "1" * 64
    with pytest.raises(PredictorError, match="retrain"):
        est.predict(probe_X)


def test_sample_weight_is_honoured_or_refused(case, probe_X):
    """Weights are never accepted and ignored: a zero weight drops its row, a weight of 2 counts the row twice,
    or fit refuses weights outright (one line)."""
    est, data = case
    n = len(data.y)
    if isinstance(est, TransferModel):
        with pytest.raises(ValueError, match="^sample_weight: TransferModel does not weight rows"):
            clone(est).fit(data.X, data.y, sample_weight=np.ones(n))
        return
    if isinstance(est, LGBMModel):
        # LightGBM weights rows itself (lightgbm.Dataset); its row sampling differs with the rows, so only check
        # that the weights reach it.
        w = np.where(np.arange(n) % 2 == 0, 5.0, 0.2)
        a = clone(est).fit(data.X, data.y, sample_weight=w).predict(probe_X)
        assert not np.allclose(a, clone(est).fit(data.X, data.y).predict(probe_X))
        return
    zero = np.ones(n)
    zero[1] = 0.0
    keep = zero > 0
    a = clone(est).fit(data.X, data.y, sample_weight=zero).predict(probe_X)
    b = clone(est).fit(data.X[keep], data.y[keep]).predict(probe_X)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # Alpha fixed: duplicated rows change the folds that choose it.
    fixed = clone(est).set_params(alpha=0.1) if isinstance(est, AdditiveModel) else clone(est)
    if isinstance(est, AccuracySurrogate):
        fixed.set_params(alphas=(1.0,))
    two = np.ones(n)
    two[2] = 2.0
    dup = np.r_[np.arange(n), 2]
    a = clone(fixed).fit(data.X, data.y, sample_weight=two).predict(probe_X)
    b = clone(fixed).fit(data.X[dup], data.y[dup]).predict(probe_X)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_model_types_are_read_off_their_classes():
    from predictors import MODEL_CHOICES, candidate_models, evaluation_models
    from predictors._base import MIN_ROWS
    from predictors._train import model_types

    types = model_types()
    assert MODEL_CHOICES == ("auto", *sorted(types)) == ("auto", "additive", "lgbm", "macs", "shared", "surrogate", "transfer")
    assert MIN_ROWS == {k: c.min_rows for k, c in types.items()}
    assert list(candidate_models("top1_pct")) == ["surrogate", "macs"]  # on equal MAPE the surrogate wins
    assert list(candidate_models("latency_ms", n_configs=49)) == ["macs", "additive"]
    assert list(candidate_models("latency_ms", n_configs=50)) == ["macs", "additive", "lgbm", "lgbm_log"]
    assert list(candidate_models("latency_ms", "lgbm")) == ["macs", "lgbm", "lgbm_log"]
    assert list(evaluation_models("latency_ms")) == ["macs", "additive", "lgbm", "lgbm_log"]
    assert list(evaluation_models("top1_pct")) == ["surrogate", "macs"]
