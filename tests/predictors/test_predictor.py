"""Trained predictors: training from rows, saving versions, the lookup the search uses, the domain."""

import json

import numpy as np
import pytest

import predictors
from predictors import (
    PredictorError,
    TrainedPredictor,
    available_predictors,
    default_metric,
    load_predictor,
    predictor_versions,
    save_version,
    train,
    training_data,
    user_dir,
)
from search_spaces import get_variant, sample_configs

from .conftest import PAPER_DEVICES


def _save(pred: TrainedPredictor, root):
    return save_version(root / pred.device / pred.metric, pred.estimator, pred.meta)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    root = tmp_path / "shipped"
    monkeypatch.setattr(predictors._predictor, "SHIPPED_DIR", root)
    return root


def test_training_data_aggregates_repeats_and_drops_flagged(paper_df):
    d = training_data(paper_df, "jetson_tx2", "latency_ms")
    hashes = [c.hash for c in d.configs]
    assert len(hashes) == len(set(hashes)) == d.n_configs
    assert d.n_rows > d.n_configs  # the paper prints B1 in several tables: one row per config here
    assert d.X.shape[0] == len(d.y) == d.n_configs + d.n_out_of_space
    raw = paper_df[(paper_df.device_id == "iphone13") & (paper_df.metric == "latency_ms") & (paper_df.name == "B1.5")]
    assert set(raw.value) == {2.8}  # the garbled Table 9 cell (111.6, flagged anomaly) never reaches training
    iphone = training_data(paper_df, "iphone13", "latency_ms")
    assert 111.6 not in iphone.values
    assert d.protocol["batch"] == 1 and d.protocol["backend"] == "ONNX+TensorRT"
    a40 = training_data(paper_df, "a40_gpu", "throughput_img_s")
    np.testing.assert_allclose(a40.y[: a40.n_configs], 1000 / a40.values)  # modelled as ms per image


def test_training_data_errors_are_one_line(paper_df):
    for args, start in [
        (("nodevice", "latency_ms"), "device: no measurements of 'nodevice'"),
        (("titan_rtx_gpu", "throughput_img_s"), "metric: no throughput_img_s measurements of titan_rtx_gpu"),
        (("jetson_tx2", "power_w"), "metric: 'power_w' cannot be predicted"),
    ]:
        with pytest.raises(PredictorError) as e:
            training_data(paper_df, *args)
        assert str(e.value).startswith(start) and "\n" not in str(e.value)


@pytest.mark.parametrize("device, metric", PAPER_DEVICES + [("imagenet1k", "top1_pct")])
def test_train_save_load_predict(paper_data, device, metric):
    pred, results = train(paper_data(device, metric))
    assert "macs" in results and pred.meta["validation"]["chosen"] in results
    assert pred.meta["validation"]["method"] == "leave-one-out"
    path = _save(pred, user_dir())
    loaded = load_predictor(device)  # default metric: the device's
    assert loaded.metric == metric and loaded.version == 1 and loaded.path == path
    assert loaded.higher_is_better == (metric != "latency_ms")
    cfgs = [get_variant(n).config for n in ("B0", "B1", "B3", "E1")]
    v = loaded.predict(cfgs)
    np.testing.assert_array_equal(v, pred.predict(cfgs))
    assert loaded.predict_one(cfgs[1]) == pytest.approx(v[1])
    assert np.isfinite(v).all() and (v > 0).all()
    meta = loaded.meta
    for key in ("device", "metric", "protocol", "feature_schema", "training_data", "validation", "libraries", "created",
                "model_type", "domain", "version"):
        assert key in meta
    assert meta["training_data"]["n_configs"] == paper_data(device, metric).n_configs
    assert meta["surrogate"] == (metric == "top1_pct")
    assert (device, metric) in available_predictors()


def test_default_metric_is_the_device_protocol_metric(paper_data):
    for device, metric in (("a40_gpu", "throughput_img_s"), ("jetson_tx2", "latency_ms")):
        pred, _ = train(paper_data(device, metric), device_protocol={"metric": metric.split("_")[0]})
        _save(pred, user_dir())
    assert default_metric("a40_gpu") == "throughput_img_s" and default_metric("imagenet1k") == "top1_pct"
    assert load_predictor("a40_gpu").metric == "throughput_img_s"


def test_versions_user_before_shipped(paper_data, shipped):
    pred, _ = train(paper_data("rpi5_arm_cpu"), "macs")
    _save(pred, shipped)
    assert load_predictor("rpi5_arm_cpu").model_type == "macs"
    pred2, _ = train(paper_data("rpi5_arm_cpu"), "additive")
    p1 = _save(pred2, user_dir())
    p2 = _save(pred2, user_dir())
    assert p1.name == "v0001" and p2.name == "v0002" and p1.is_dir()  # earlier versions stay
    got = load_predictor("rpi5_arm_cpu")
    assert got.model_type == "additive" and got.version == 2
    origins = [(v["origin"], v["version"]) for v in predictor_versions("rpi5_arm_cpu", "latency_ms")]
    assert origins == [("user", 1), ("user", 2), ("shipped", 1)]


def test_unknown_device_or_metric_lists_what_exists(paper_data, shipped):
    _save(train(paper_data("jetson_tx2"))[0], user_dir())
    with pytest.raises(PredictorError, match=r"^device: no predictor for 'pixel9'; available: jetson_tx2/latency_ms$"):
        load_predictor("pixel9")
    with pytest.raises(PredictorError, match=r"^metric: no 'top1_pct' predictor for jetson_tx2; available: "):
        load_predictor("jetson_tx2", "top1_pct")


def test_schema_mismatch_is_refused_on_load(paper_data):
    path = _save(train(paper_data("jetson_tx2"))[0], user_dir())
    meta = json.loads((path / "meta.json").read_text())
    meta["feature_schema"]["hash"] = "a" * 64
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match=r"feature schema aaaaaaaaaaaa, this code has .*retrain it: lowformer-nas predictors train --device jetson_tx2"):
        load_predictor("jetson_tx2")


def test_in_domain(paper_data):
    pred, _ = train(paper_data("jetson_tx2"), "additive")
    b1 = get_variant("B1").config
    assert pred.in_domain(b1) and pred.domain_violations(b1) == []
    assert not pred.in_domain(b1.with_(resolution=288))
    assert pred.domain_violations(b1.with_(resolution=288)) == ["resolution 288 outside [192, 224]"]
    assert not pred.in_domain(get_variant("E1").config)  # attention "none" never measured on this device
    assert any("attention none never seen" in v for v in pred.domain_violations(get_variant("E1").config))
    cfgs = list(sample_configs(30, seed=1))
    mask = pred.in_domain_mask(cfgs)
    assert mask.dtype == bool and list(mask) == [pred.in_domain(c) for c in cfgs]


def test_training_data_from_rows_without_store_columns(paper_df):
    # Any frame of measurement rows works: the protocol key is computed when the store's column is absent.
    a = training_data(paper_df, "rpi5_arm_cpu", "latency_ms")
    b = training_data(paper_df.drop(columns=["protocol", "source"]), "rpi5_arm_cpu", "latency_ms")
    assert a.data_hash == b.data_hash and a.protocol == b.protocol and b.sources == []
    np.testing.assert_array_equal(a.X, b.X)


def test_domain_excess_is_zero_exactly_inside_and_grows_outside():
    """The graded distance outside a predictor's domain (what leads a search back into it): 0 exactly where in_domain,
    positive elsewhere, larger further out."""
    import dataclasses

    from predictors import domain_excess, domain_mask, featurize, load_predictor
    from search_spaces import get_variant, sample_configs

    p = load_predictor("jetson_tx2")
    X = featurize(list(sample_configs(300, seed=3)) + [get_variant(n).config for n in ("B0", "B1", "E1")])
    ex, inside = domain_excess(X, p.meta["domain"]), domain_mask(X, p.meta["domain"])
    assert ((ex == 0) == inside).all() and inside.any() and (~inside).any()
    b1 = get_variant("B1").config
    near, far = (dataclasses.replace(b1, resolution=r) for r in (256, 320))
    e_near, e_far = p.domain_excess_features(featurize([near, far]))
    assert 0 < e_near < e_far
