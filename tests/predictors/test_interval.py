"""Prediction intervals: calibrated on synthetic data with known noise, wider away from the data, stored
measurements reported as measured, calibration data validated on load, predictors without it refused clearly."""

import copy
import json
import logging

import numpy as np
import pytest
from scipy import stats

from predictors import (
    Calibration,
    PredictorError,
    TrainingData,
    check_coverage,
    featurize,
    load_predictor,
    load_predictor_dir,
    save_version,
    to_cost,
    train,
    user_dir,
)
from search_spaces import get_variant, sample_configs

COVERAGES = (0.8, 0.9, 0.95)


def _synthetic(configs, noise_sd: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Latency = a power law of MACs (what MacsBaseline models exactly) times lognormal noise of known sd."""
    X = featurize(configs)
    truth = 2.0 * (X[:, 12] / 1e9) ** 0.8  # column 12: total MACs
    return X, truth * np.exp(rng.normal(0.0, noise_sd, len(configs)))


def _data(configs, X, y) -> TrainingData:
    n = len(y)
    return TrainingData(device="synthetic", metric="latency_ms", configs=list(configs), names=[None] * n, values=y, X=X,
                        y=to_cost("latency_ms", y), n_rows=n, protocol={}, sources=[], data_hash="")


def test_conformal_coverage_on_known_noise():
    """Cross-conformal intervals (more than 30 configs): over 2,000 fresh draws (10 calibrations on 200 configs x
    200 new configs each; conformal coverage holds on average over calibrations), within 5 points of nominal."""
    rng = np.random.default_rng(0)
    pool = list(sample_configs(4000, seed=11))
    X_pool, y_pool = _synthetic(pool, 0.08, rng)
    hits = {c: [] for c in COVERAGES}
    for k in range(10):
        tr, te = slice(400 * k, 400 * k + 200), slice(400 * k + 200, 400 * k + 400)
        pred, _ = train(_data(pool[tr], X_pool[tr], y_pool[tr]), "macs")
        assert pred.calibration.method == "conformal" and pred.calibration.n == 200
        for c in COVERAGES:
            hits[c].extend(pred.predict_interval_features(X_pool[te], c).contains(y_pool[te]))
    for c in COVERAGES:
        assert len(hits[c]) == 2000 and abs(np.mean(hits[c]) - c) <= 0.05, (c, np.mean(hits[c]))


def test_small_sample_student_t_coverage():
    """The small-sample method (Student-t on leave-one-out residuals, as for the paper's 6-12 configs): over
    2,000 draws (200 calibrations of 11 configs x 10 new draws each), coverage within 5 points of nominal."""
    rng = np.random.default_rng(1)
    n, sd = 11, 0.05
    hits = {c: [] for c in COVERAGES}
    for _ in range(200):
        x = rng.uniform(0, 1, n)
        y = 1.0 + 0.5 * x + rng.normal(0, sd, n)
        loo = np.array([np.polyval(np.polyfit(np.delete(x, i), np.delete(y, i), 1), x[i]) for i in range(n)])
        cal = Calibration(space="points", metric="top1_pct", residuals=y - loo, distances=np.zeros(n),
                          extrapolation=np.zeros(n), gamma=1.0, points=np.zeros((n, 28)), scale=np.ones(28),
                          feature_lo=np.zeros(336), feature_hi=np.ones(336), far_sd=0.0, cv="leave-one-out")
        assert cal.method == "student_t"
        fit = np.polyfit(x, y, 1)
        x_new = rng.uniform(0, 1, 10)
        err = 1.0 + 0.5 * x_new + rng.normal(0, sd, 10) - np.polyval(fit, x_new)
        for c in COVERAGES:
            hits[c].extend(np.abs(err) <= cal.quantile(c))
    for c in COVERAGES:
        assert len(hits[c]) == 2000 and abs(np.mean(hits[c]) - c) <= 0.05, (c, np.mean(hits[c]))


def test_intervals_widen_away_from_the_data_and_with_coverage(paper_data):
    pred, _ = train(paper_data("jetson_tx2"), "additive")
    near = get_variant("B1").config.with_(resolution=208)  # between the paper's 192 and 224 px
    far = get_variant("E2").config.with_(resolution=288)  # conv-only at a resolution never measured
    iv = pred.predict_interval([near, far], 0.9, measured=False)
    assert (iv.lo < iv.value).all() and (iv.value < iv.hi).all()
    assert iv.distance[1] > iv.distance[0] and iv.relative_width[1] > 2 * iv.relative_width[0]
    assert list(iv.in_domain) == [True, False]
    widths = [pred.predict_interval([near], c, measured=False).relative_width[0] for c in COVERAGES]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # The batch and the features form agree.
    X = featurize([near, far])
    same = pred.predict_interval_features(X, 0.9)
    np.testing.assert_allclose(same.hi, iv.hi)
    np.testing.assert_allclose(iv.value, pred.predict([near, far]))


def test_named_variant_reports_its_measurement(paper_data):
    pred, _ = train(paper_data("jetson_tx2"), "additive")
    b1, e1 = get_variant("B1").config, get_variant("E1").config
    iv = pred.predict_interval([b1, e1])
    assert list(iv.measured) == [True, False]
    # The paper prints B1 as 11.7 ms in four tables: the rounding is the only noise it shows.
    assert iv.value[0] == 11.7 and iv.lo[0] == pytest.approx(11.65) and iv.hi[0] == pytest.approx(11.75)
    assert iv.value[1] == pytest.approx(pred.predict_one(e1))
    assert pred.predict_interval([b1], measured=False).measured[0] == np.False_
    assert pred.predict_one(b1) != 11.7  # predict() stays the model's value: validation compares it


def test_measurement_noise_from_repeats_and_runs():
    """Harness rows: the spread of repeated medians and the within-run p10/p90 widen a measured interval."""
    import pandas as pd

    from predictors import training_data

    cfg = get_variant("B1").config
    other = list(sample_configs(3, seed=4))
    rows = []
    for v in (30.1, 30.6, 29.7):  # three repeats of B1
        rows.append({"value": v, "p10": v * 0.98, "p90": v * 1.03, "n": 100, "config_hash": cfg.hash})
    for c in other:
        rows.append({"value": 20.0, "p10": 19.8, "p90": 20.3, "n": 100, "config_hash": c.hash})
    cfgs = {cfg.hash: cfg, **{c.hash: c for c in other}}
    df = pd.DataFrame([{**r, "device_id": "dev", "metric": "latency_ms", "status": "ok", "flag": None, "backend": "ort",
                        "batch": 1, "precision": "fp32", "threads": 1, "name": None, "macs": None, "params": None,
                        "resolution": None, "config_json": cfgs[r["config_hash"]].to_json(), "source": "harness"}
                       for r in rows])
    d = training_data(df, "dev", "latency_ms")
    i = [c.hash for c in d.configs].index(cfg.hash)
    assert d.n_repeats[i] == 3 and d.repeat_sd[i] == pytest.approx(np.std(np.log([30.1, 30.6, 29.7]), ddof=1))
    assert np.isnan(d.repeat_sd[1 - i if i else 1]) and d.within_sd[i] > 0 and d.rounding[i] == pytest.approx(0.05)
    noise = d.noise()
    assert noise.pooled_sd == pytest.approx(d.repeat_sd[i])


def test_uncalibrated_predictor_loads_with_a_note_and_refuses_intervals(paper_data, caplog):
    pred, _ = train(paper_data("rpi5_arm_cpu"), "additive")
    meta = {k: v for k, v in pred.meta.items() if k != "calibration"}
    path = save_version(user_dir() / "rpi5_arm_cpu" / "latency_ms", pred.estimator, meta)
    with caplog.at_level(logging.WARNING, logger="predictors._predictor"):
        p = load_predictor_dir(path)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "no calibration data" in notes[0] and "\n" not in notes[0]
    assert "retrain it: lowformer-nas predictors train --device rpi5_arm_cpu" in notes[0]
    assert not p.calibrated and p.predict_one(get_variant("B1").config) > 0  # still predicts
    with pytest.raises(PredictorError, match=r"no calibration data .*retrain it: lowformer-nas predictors train --device "
                                             r"rpi5_arm_cpu --metric latency_ms$"):
        p.predict_interval([get_variant("B1").config])


@pytest.mark.parametrize("field, value, message", [
    ("gamma", -1, "calibration.gamma: must be a non-negative number"),
    ("residuals", "x", "calibration.residuals: must be a list of numbers"),
    ("distances", [1.0], "calibration.distances: expected 11 values"),
    ("format", 99, "calibration.format: 99"),
    ("space", "log", "calibration.space: 'log' does not fit metric top1_pct"),
])
def test_tampered_calibration_is_one_line(paper_data, field, value, message):
    pred, _ = train(paper_data("imagenet1k", "top1_pct"), "surrogate")
    meta = copy.deepcopy(pred.meta)
    meta["calibration"][field] = value
    path = save_version(user_dir() / "imagenet1k" / "top1_pct", pred.estimator, meta)
    with pytest.raises(PredictorError) as e:
        load_predictor_dir(path)
    assert message in str(e.value) and "\n" not in str(e.value) and "retrain it" in str(e.value)


def test_calibration_round_trips_through_the_sidecar(paper_data):
    pred, _ = train(paper_data("a40_gpu", "throughput_img_s"), "additive")
    path = save_version(user_dir() / "a40_gpu" / "throughput_img_s", pred.estimator, pred.meta)
    loaded = load_predictor("a40_gpu")
    assert loaded.path == path
    cfgs = [get_variant(n).config for n in ("B1", "E1", "B3")]
    a, b = pred.predict_interval(cfgs), loaded.predict_interval(cfgs)
    np.testing.assert_allclose(a.lo, b.lo, rtol=1e-4)
    np.testing.assert_allclose(a.hi, b.hi, rtol=1e-4)
    doc = json.loads((path / "meta.json").read_text())["calibration"]
    assert doc["method"] == "student_t" and doc["cv"] == "leave-one-out" and len(doc["residuals"]) == 12
    # A throughput's pessimistic end is its lower end.
    assert (a.pessimistic(True) == a.lo).all() and (a.optimistic(True) == a.hi).all()


def test_training_configs_are_inside_the_stored_range(paper_data):
    """The sidecar stores the key-feature points rounded to 4 digits: a training config on an edge of the range (the
    deepest, the widest) still lies inside it after loading, and one beyond the range does not."""
    data = paper_data("jetson_tx2")
    pred, _ = train(data, "additive")
    X = data.X[: data.n_configs]
    assert (pred.calibration.outside(X) == 0).all()
    assert pred.calibration.outside(featurize([get_variant("B3").config]))[0] == 0
    assert (pred.calibration.outside(featurize(list(sample_configs(50, seed=5)))) > 0).any()


@pytest.mark.parametrize("bad", [0.5, 0.999, 1.2, -1, True, "0.9"])
def test_coverage_outside_the_allowed_range(bad):
    with pytest.raises(PredictorError, match=r"^coverage: must be a number in \(0.5, 0.999\)"):
        check_coverage(bad)


def test_student_t_falls_back_where_conformal_is_undefined():
    s = np.abs(np.random.default_rng(3).normal(0, 1, 40))
    cal = Calibration(space="log", metric="latency_ms", residuals=s, distances=np.zeros(40), extrapolation=np.zeros(40),
                      gamma=1.0, points=np.zeros((40, 28)), scale=np.ones(28), feature_lo=np.zeros(336),
                      feature_hi=np.ones(336), far_sd=0.0, cv="5-fold")
    assert cal.method == "conformal"
    assert cal.quantile(0.9) == pytest.approx(np.sort(s)[int(np.ceil(41 * 0.9)) - 1])
    # 40 scores cannot give a conformal quantile at 0.99 (it needs 99): the Student-t value instead.
    t = stats.t.ppf(0.995, 39) * np.sqrt(np.mean(s**2)) * np.sqrt(1 + 1 / 40)
    assert cal.quantile(0.99) == pytest.approx(t)


def test_growth_is_fitted_on_the_held_out_errors():
    """fit_growth finds growth where errors grow with a difficulty measure, and none where they do not."""
    from predictors._interval import fit_growth

    rng = np.random.default_rng(3)
    d, b, e = rng.uniform(0, 2, 400), rng.uniform(0, 2, 400), np.zeros(400)
    flat = rng.normal(0, 0.05, 400)
    assert fit_growth(flat, d, b, e) == (0.0, 0.0, 0.0)
    grows = rng.normal(0, 0.05, 400) * (1 + 2.0 * d)
    gamma, beta, _ = fit_growth(grows, d, b, e)
    assert 1.0 <= gamma <= 4.0 and beta <= 0.25


def test_intervals_follow_difficulty_and_unseen_structure(paper_data):
    """Format 2: a config near the training configs gets a narrower interval than one far outside them, and one with
    structure no training config had (conv-only: no attention) gets the far-field prior on top."""
    pred, _ = train(paper_data("jetson_tx2"), "additive")
    cal = pred.calibration
    assert cal.fitted_growth and cal.cv == "leave-one-out" and "growth fitted on the held-out" in cal.describe()
    near, conv_only = get_variant("B1").config, get_variant("E1").config
    iv = pred.predict_interval([near, conv_only], 0.9, measured=False)
    rel = iv.relative_width
    assert rel[0] < 0.35 and rel[1] > 2 * rel[0]
    assert cal.unseen(featurize([near, conv_only])).tolist()[0] == 0 and cal.unseen(featurize([conv_only]))[0] >= 1


def test_format_1_calibrations_still_load(paper_data):
    """A sidecar written before fitted growth (format 1) keeps its meaning: fixed growth, far field, extrapolated part."""
    pred, _ = train(paper_data("imagenet1k", "top1_pct"), "surrogate")
    meta = copy.deepcopy(pred.meta)
    doc = meta["calibration"]
    doc["format"] = 1
    for k in ("growth", "outside"):
        doc.pop(k)
    path = save_version(user_dir() / "imagenet1k" / "top1_pct", pred.estimator, meta)
    old = load_predictor_dir(path)
    assert not old.calibration.fitted_growth
    iv = old.predict_interval([get_variant("E1").config], 0.9)
    assert iv.lo[0] < iv.value[0] < iv.hi[0]


@pytest.mark.parametrize("field, value, message", [
    ("growth", {"gamma": 0.0, "beta": -1, "kappa": 0.0, "ref": 0.1}, "calibration.growth.beta: must be a non-negative"),
    ("growth", None, "calibration.growth: not an object"),
    ("outside", [1.0], "calibration.outside: expected 11 values"),
])
def test_tampered_growth_is_one_line(paper_data, field, value, message):
    pred, _ = train(paper_data("imagenet1k", "top1_pct"), "surrogate")
    meta = copy.deepcopy(pred.meta)
    meta["calibration"][field] = value
    path = save_version(user_dir() / "imagenet1k" / "top1_pct", pred.estimator, meta)
    with pytest.raises(PredictorError) as e:
        load_predictor_dir(path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value, message", [
    (None, "calibration.confidence: must be a number in [0.5, 0.999] (got None)"),
    (1.5, "calibration.confidence: must be a number in [0.5, 0.999] (got 1.5)"),
    (True, "calibration.confidence: must be a number in [0.5, 0.999] (got True)"),
])
def test_tampered_confidence_is_one_line(paper_data, value, message):
    pred, _ = train(paper_data("imagenet1k", "top1_pct"), "surrogate")
    meta = copy.deepcopy(pred.meta)
    assert meta["calibration"]["format"] == 3 and meta["calibration"]["confidence"] == 0.9
    meta["calibration"]["confidence"] = value
    path = save_version(user_dir() / "imagenet1k" / "top1_pct", pred.estimator, meta)
    with pytest.raises(PredictorError) as e:
        load_predictor_dir(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_training_conditional_rank():
    """Format 3's conformal rank: the least rank at or above the marginal ceil((n + 1) c) whose coverage (Beta(k, n + 1
    - k) for exchangeable scores) reaches c with the stated confidence; n + 1 where none does (too few scores)."""
    from predictors._interval import conformal_rank

    assert conformal_rank(956, 0.95) == 910 and conformal_rank(956, 0.95, 0.9) == 918
    for n, c in [(956, 0.8), (956, 0.9), (956, 0.95), (200, 0.9), (60, 0.8)]:
        k = conformal_rank(n, c, 0.9)
        assert k >= conformal_rank(n, c)
        assert stats.beta.sf(c, k, n + 1 - k) >= 0.9 > stats.beta.sf(c, k - 1, n + 2 - k)
    assert conformal_rank(40, 0.95, 0.9) == 41  # 40 scores cannot hold 0.95 with 90 % confidence (it needs 45)


def test_training_conditional_coverage_on_known_noise():
    """Format 3 holds coverage per calibration, not only on average: over 200 calibrations of 100 scores each, the
    true coverage of the interval (known noise: |N(0, 1)|) is at least nominal in about 90 % of them, where the
    marginal rank reaches it in about half."""
    rng = np.random.default_rng(5)
    n, c = 100, 0.9
    common = dict(space="log", metric="latency_ms", distances=np.zeros(n), extrapolation=np.zeros(n), gamma=0.0,
                  points=np.zeros((n, 28)), scale=np.ones(28), feature_lo=np.zeros(336), feature_hi=np.ones(336),
                  far_sd=0.0, cv="5-fold", outside=np.zeros(n), kappa=0.0)
    held = {None: [], 0.9: []}
    for _ in range(200):
        r = rng.normal(0, 1, n)
        for conf in held:
            q = Calibration(residuals=r, confidence=conf, **common).quantile(c)
            held[conf].append(2 * stats.norm.cdf(q) - 1 >= c)
    assert np.mean(held[0.9]) >= 0.85 and np.mean(held[None]) <= 0.7


@pytest.mark.parametrize("device", ["x86_64-amd-epyc-2c-24g", "jetson_tx2", "imagenet1k"])
def test_fast_interval_path_gives_the_same_intervals(device):
    """The batch path asks the model about clipped rows only where clipping moves them and finds nearest distances
    in place (bench_predict's 10,000 configs): the same values as the direct computation on a small batch."""
    from scipy.spatial.distance import cdist

    from predictors._interval import key_features, nearest_distance

    pred = load_predictor(device)
    cal = pred.calibration
    configs = list(sample_configs(300, seed=9)) + [get_variant(n).config for n in ("B0", "B1", "E1")]
    X = featurize(configs)
    value = pred.predict_features(X)
    direct = pred.predict_features(cal.clip(X))
    assert np.array_equal(cal.clipped_values(X, value, pred.predict_features), direct)
    Z = key_features(X) / cal.scale
    np.testing.assert_allclose(nearest_distance(Z, cal.points), cdist(Z, cal.points).min(axis=1), rtol=1e-9, atol=1e-9)
    lo, hi, _ = cal.interval(value, direct, X, 0.9)
    iv = pred.predict_interval_features(X, 0.9)
    np.testing.assert_allclose(iv.lo, lo, rtol=1e-12)
    np.testing.assert_allclose(iv.hi, hi, rtol=1e-12)
