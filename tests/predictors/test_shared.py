"""The cross-device model: a common additive profile learned from every other device, re-fitted per op type on the
target's few configs; registered like every model type; saved and loaded without pickle; a device whose data cannot
support it is refused in one line naming the device and what to do."""

import numpy as np
import pytest

from predictors import (
    MODEL_CHOICES,
    PredictorError,
    candidate_models,
    check_shared_fit,
    load_predictor,
    profile_rows,
    save_version,
    shared_profile,
    train,
    user_dir,
)
from predictors._base import MIN_ROWS
from search_spaces import get_variant


def test_profile_rows_leave_out_the_target_and_the_held_out_configs(paper_df, paper_data):
    rows = profile_rows(paper_df, "rpi5_arm_cpu")
    assert "rpi5_arm_cpu" not in rows and {"jetson_tx2", "a40_gpu", "x86_64-amd-epyc-2c-24g"} <= set(rows)
    b3 = get_variant("B3").config.hash
    without = profile_rows(paper_df, "rpi5_arm_cpu", [b3])
    for dev, (X, _) in without.items():
        assert len(X) == len(rows[dev][0]) - (1 if b3 in set(paper_df.loc[paper_df.device_id == dev, "config_hash"]) else 0)


def test_shared_model_trains_saves_and_loads(paper_df, paper_data):
    assert "shared" in MODEL_CHOICES and MIN_ROWS["shared"] == 3
    data = paper_data("a40_gpu", "throughput_img_s")
    prof = shared_profile(profile_rows(paper_df, "a40_gpu"))
    assert (prof.coef_ >= 0).all()
    pred, results = train(data, "shared", source=prof)
    assert pred.model_type == "shared" and pred.calibration.fitted_growth
    assert results["shared"]["mape"] < 10
    path = save_version(user_dir() / "a40_gpu" / "throughput_img_s", pred.estimator, pred.meta)
    loaded = load_predictor("a40_gpu")
    assert loaded.path == path and loaded.model_type == "shared"
    cfgs = [get_variant(n).config for n in ("B0", "B1", "E1")]
    np.testing.assert_allclose(loaded.predict(cfgs), pred.predict(cfgs), rtol=1e-9)
    iv = loaded.predict_interval(cfgs, 0.9)
    assert (iv.lo < iv.value).all() and (iv.value < iv.hi).all()


def test_shared_needs_its_profile():
    with pytest.raises(PredictorError, match="--model shared needs the common cost profile"):
        candidate_models("latency_ms", "shared")


def test_a_device_that_cannot_support_a_cross_device_fit(paper_df, paper_data):
    data = paper_data("titan_rtx_gpu")
    rows = profile_rows(paper_df, "titan_rtx_gpu")
    with pytest.raises(PredictorError) as e:
        check_shared_fit("titan_rtx_gpu", "latency_ms", data.X[:2], 2, rows)
    msg = str(e.value)
    assert msg.startswith("titan_rtx_gpu: ") and "needs >= 3" in msg and "\n" not in msg
    with pytest.raises(PredictorError, match="titan_rtx_gpu: its configs share 0 op types"):
        check_shared_fit("titan_rtx_gpu", "latency_ms", data.X[: data.n_configs], data.n_configs, {})
    with pytest.raises(PredictorError, match="imagenet1k: --model shared predicts times"):
        check_shared_fit("imagenet1k", "top1_pct", data.X, data.n_configs, rows)
    with pytest.raises(PredictorError, match="no other device"):
        shared_profile({})
    check_shared_fit("titan_rtx_gpu", "latency_ms", data.X[: data.n_configs], data.n_configs, rows)  # enough: no error
