"""Calibration figures (coverage of held-out configs, leave-one-group-out on the paper devices) and the update
logic that lives in the package (``predictors update``, ``search --refine``)."""

import numpy as np
import pytest

from predictors import (
    PredictorError,
    interval_coverage,
    load_predictor,
    random_holdout,
    retrain_from_store,
    training_data,
    update,
    update_model,
    variant_groups,
)


def test_variant_groups_put_ablations_together():
    names = ["B1", "B1-mhsa", "B1-unfused", "B3", None, "B3r192"]
    assert variant_groups(names, ["h0", "h1", "h2", "h3", "abcdef0123456789", "h5"]) == [
        "B1", "B1 ablations", "B1 ablations", "B3", "abcdef012345", "B3r192"]


def test_leave_one_group_out_coverage(paper_data):
    data = paper_data("jetson_tx2")
    rep = interval_coverage(data, "additive", groups=variant_groups(data.names, [c.hash for c in data.configs]))
    assert rep.n == data.n_configs and rep.intervals_method == "student_t" and "leave-one-group-out over 7" in rep.method
    assert list(rep.coverage) == [0.8, 0.9, 0.95]
    assert all(0 <= v <= 1 for v in rep.coverage.values())
    widths = list(rep.median_relative_width.values())
    assert widths == sorted(widths) and widths[0] > 0
    assert "coverage at 0.8 / 0.9 / 0.95" in rep.line()
    # In and out of the domain split the held-out configs: the two shares combine to the overall coverage.
    n_in = rep.n_in_domain
    for row in rep.rows():
        out = row["empirical_out_of_domain"]
        inside = row["empirical_in_domain"] or 0.0
        assert out is not None and 0 < n_in < rep.n
        assert inside * n_in + out * (rep.n - n_in) == pytest.approx(row["empirical"] * rep.n)
        assert row["median_relative_width_out_of_domain"] > row["median_relative_width_in_domain"]


def test_random_holdout_coverage_and_errors(paper_data):
    data = paper_data("a40_gpu", "throughput_img_s")
    rep = interval_coverage(data, "macs", holdout=random_holdout(data.n_configs, 4), coverages=(0.9,))
    assert rep.n == 4 and set(rep.coverage) == {0.9} and rep.to_dict()["rows"][0]["nominal"] == 0.9
    with pytest.raises(PredictorError, match="give a hold-out mask or groups"):
        interval_coverage(data, "macs")


def test_update_compares_before_and_after_and_saves(paper_df, tmp_path):
    before = paper_df[(paper_df.device_id == "a40_gpu") & ~paper_df.name.isin(["B2", "B3"])]
    after = paper_df[paper_df.device_id == "a40_gpu"]
    u = update(before, after, "a40_gpu", "throughput_img_s", root=tmp_path)
    assert u.model == "auto" and u.path.parent == tmp_path / "a40_gpu" / "throughput_img_s"
    assert u.predictor.calibrated and u.predictor.version == 1 and u.data.n_configs == 12
    assert u.holdout is None or set(u.holdout) == {"before", "after"}
    prev = load_predictor("a40_gpu")
    assert update_model(prev) == prev.model_type and update_model(None) == "auto" and update_model(prev, "macs") == "macs"


def test_retrain_from_store_saves_a_new_version(tmp_path):
    from measured import Store

    store = Store(str(tmp_path / "store.sqlite"))
    previous = load_predictor("rpi5_arm_cpu")
    pred, path = retrain_from_store(store, "rpi5_arm_cpu", "latency_ms", previous=previous)
    assert pred.model_type == previous.model_type and pred.calibrated and path.is_dir()
    assert load_predictor("rpi5_arm_cpu").path == path  # the user's version now comes first
    data = training_data(store.measurements(device="rpi5_arm_cpu"), "rpi5_arm_cpu", "latency_ms")
    np.testing.assert_allclose(pred.predict(data.configs), previous.predict(data.configs), rtol=1e-6)
