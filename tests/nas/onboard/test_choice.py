"""Onboarding's choice between training from scratch, the transfer from every known device and the cross-device
model: by cross-validation on all the round's configs, not by the anchors' ranking of the sources."""

import numpy as np
import pytest

from nas.onboard import train_best
from predictors import AdditiveModel, TrainingData, featurize, train
from search_spaces import sample_configs

from .conftest import COEF, analytic_ms

# A source device whose costs are not proportional to MACs (a heavy per-layer overhead): the device onboarded runs
# 3x slower with the same op mix, so a scale of the source predicts it, while 8 configs cannot teach an additive
# model from scratch its 7 coefficients.
_LAYER_HEAVY = np.array([2.0e-8, 1.2e-8, 1.5e-7, 4.0e-8, 2.0e-9, 0.4, 0.5])


def _ms(configs, coef=_LAYER_HEAVY, scale=1.0):
    """Each config's cost under ``coef`` (ms per unit of DEFAULT_TERMS) with the analytic device's 2 % jitter."""
    from predictors import DEFAULT_TERMS, design_matrix

    exact = np.array([analytic_ms(c) for c in configs]) / (design_matrix(featurize(configs), DEFAULT_TERMS) @ COEF)
    return scale * (design_matrix(featurize(configs), DEFAULT_TERMS) @ coef) * exact


def _configs(n, seed):
    return list(sample_configs(n, seed=seed))


def _data(device, configs, ms) -> TrainingData:
    ms = np.asarray(ms, float)
    return TrainingData(device=device, metric="latency_ms", configs=list(configs), names=[None] * len(configs),
                        values=ms, X=featurize(configs), y=ms.copy(), n_rows=len(configs),
                        protocol={"key": "test"}, sources=["test"], data_hash=device)


@pytest.fixture(scope="module")
def sources():
    """{"decoy": a MACs-only predictor (what a ranking on a few anchors may put first), "good": an additive
    predictor of the layer-heavy source device}, decoy first as in a ranking."""
    pool = _configs(60, 11)
    good, _ = train(_data("good", pool, _ms(pool)), "additive")
    decoy, _ = train(_data("decoy", pool, _ms(pool, coef=np.array([2e-8, 2e-8, 2e-8, 2e-8, 0, 0, 0]))), "macs")
    return {"decoy": decoy, "good": good}


def test_every_source_is_tried_and_the_best_cross_validated_kept(sources):
    configs = _configs(8, 12)
    data = _data("new", configs, _ms(configs, scale=3.0))
    lines = []
    pred, results, chosen = train_best(data, sources, log=lines.append)
    assert chosen == "transfer" and pred.meta["transfer_source"]["device"] == "good"  # not the first-ranked decoy
    cands = pred.meta["onboarding_candidates"]
    assert [c["candidate"] for c in cands] == ["from scratch", "transfer from decoy", "transfer from good"]
    best = min(cands, key=lambda c: c["cv_mape"])
    assert best["candidate"] == "transfer from good" and results[pred.meta["model_name"]]["mape"] == best["cv_mape"]
    assert lines and lines[0].startswith("cross-validated on the 8 configs") and lines[0].endswith("-> transfer from good")
    held = _configs(40, 13)
    err = np.abs(pred.predict(held) / _ms(held, scale=3.0) - 1)
    assert np.median(err) < 0.05  # the kept model predicts configs it never saw


def test_without_sources_scratch_and_a_cross_device_profile_compete(sources):
    configs = _configs(8, 12)
    data = _data("new", configs, _ms(configs, scale=3.0))
    pred, _, chosen = train_best(data, {})
    assert chosen == "scratch" and "transfer_source" not in pred.meta
    # The common profile of other devices (here: the good source's device alone) borrows its per-op-type costs.
    profile = AdditiveModel().fit(featurize(_configs(60, 11)), _ms(_configs(60, 11)))
    pred, _, chosen = train_best(data, {}, shared=profile)
    assert chosen == "shared" and pred.model_type == "shared"
    assert [c["candidate"] for c in pred.meta["onboarding_candidates"]] == ["from scratch", "cross-device (shared)"]


def test_a_source_that_cannot_predict_is_skipped(sources):
    class Broken:  # a predictor whose model was never fitted: its transfer refuses to fit (ValueError)
        metric, version, model_type = "latency_ms", 1, "additive"
        estimator = AdditiveModel()

    configs = _configs(8, 12)
    data = _data("new", configs, _ms(configs, scale=3.0))
    pred, _, chosen = train_best(data, {"broken": Broken(), "good": sources["good"]})
    assert chosen == "transfer" and [c["candidate"] for c in pred.meta["onboarding_candidates"]] == [
        "from scratch", "transfer from good"]


def test_candidates_within_one_standard_error_are_chosen_by_the_prior():
    from nas.onboard._session import _one_se_choice

    kinds = ["scratch", "transfer", "transfer", "transfer", "shared"]
    # The 2026-12-03 18:46 onboarding (30 configs): scratch 5.81, x86 6.11, titan 5.69 (lowest), iphone 15.96,
    # shared 5.87 %; sources in the anchors' order (x86 before titan). One SE at 5.69 % on 30 configs: 0.79 %.
    assert _one_se_choice(kinds, [5.81, 15.96, 6.11, 5.69, 5.87], 30) == 2  # the x86 transfer, not titan
    assert _one_se_choice(kinds, [5.81, 15.96, 6.60, 5.69, 5.87], 30) == 3  # x86 outside the window: titan
    assert _one_se_choice(["scratch", "shared"], [4.0, 4.2], 30) == 1  # shared before scratch when alike
    assert _one_se_choice(["scratch", "shared"], [4.0, 6.0], 30) == 0  # not when clearly worse
    assert _one_se_choice(["scratch", "transfer"], [4.0, 4.5], 400) == 0  # many configs: a narrow window
