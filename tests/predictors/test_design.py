"""Informative designs, source ranking and the few-shot table (on the paper's real rows)."""

import numpy as np
import pytest

from predictors import (
    AdditiveModel,
    PredictorError,
    design_rows,
    featurize,
    few_shot_table,
    informative_order,
    random_order,
    rank_sources,
)
from search_spaces import sample_configs


@pytest.fixture(scope="module")
def pool():
    return featurize(list(sample_configs(300, seed=3)))


@pytest.mark.parametrize("criterion", ["i", "d"])
def test_informative_order_is_deterministic_and_unique(pool, criterion):
    a = informative_order(pool, 20, criterion=criterion)
    assert len(a) == 20 and len(set(a.tolist())) == 20
    np.testing.assert_array_equal(a, informative_order(pool, 20, criterion=criterion))
    # Building on configs already measured (left out of the candidates) changes what is most informative next.
    rest = np.setdiff1d(np.arange(len(pool)), a[:1])
    b = rest[informative_order(pool[rest], 19, X_known=pool[a[:1]], criterion=criterion)]
    assert len(set(b.tolist())) == 19 and a[0] not in b and b.tolist() != a[:19].tolist()


def test_d_optimal_prefers_extremes_and_i_optimal_typical_configs(pool):
    Z = design_rows(pool)
    centre = np.median(Z / np.abs(Z).mean(axis=0), axis=0)
    dist = np.linalg.norm(Z / np.abs(Z).mean(axis=0) - centre, axis=1)
    d = informative_order(pool, 10, criterion="d")
    i = informative_order(pool, 10, criterion="i")
    assert dist[d].mean() > dist[i].mean()


def test_informative_design_fits_better_than_random_on_average(pool):
    # A device whose op types cost differently from MACs: the additive model is exact for it.
    Z = design_rows(pool, terms=("macs_conv", "macs_pointwise", "macs_depthwise", "macs_attention", "layers"))
    y = Z @ np.array([1.0, 0.5, 8.0, 3.0, 2e6]) * pool[:, 12]  # back to absolute cost
    y *= np.exp(np.random.default_rng(0).normal(0, 0.03, len(y)))  # 3 % measurement noise
    idx = informative_order(pool, 12)
    err_design = np.median(np.abs(AdditiveModel().fit(pool[idx], y[idx]).predict(pool) / y - 1))
    errs = [np.median(np.abs(AdditiveModel().fit(pool[r], y[r]).predict(pool) / y - 1))
            for r in (random_order(len(y), 12, seed=s) for s in range(5))]
    assert err_design <= np.median(errs) * 1.1


def test_rank_sources_finds_the_device_that_differs_by_a_scale(paper_data):
    rpi, tx2 = paper_data("rpi5_arm_cpu"), paper_data("jetson_tx2")
    src_rpi, src_tx2 = AdditiveModel().fit(rpi.X, rpi.y), AdditiveModel().fit(tx2.X, tx2.y)
    X = rpi.X[: rpi.n_configs][:6]
    y = src_rpi.predict(X) * 1.7  # a device 1.7x slower than the Pi at everything
    ranking = rank_sources(X, y, {"tx2": src_tx2, "rpi": src_rpi})
    assert ranking[0]["source"] == "rpi" and ranking[0]["scale"] == pytest.approx(1.7)
    assert ranking[0]["spread_pct"] == pytest.approx(0, abs=1e-9) and ranking[1]["spread_pct"] > 1
    with pytest.raises(PredictorError, match="^anchors: at least 2"):
        rank_sources(X[:1], y[:1], {"rpi": src_rpi})


def test_few_shot_table_on_paper_rows(paper_data):
    rpi, tx2 = paper_data("rpi5_arm_cpu"), paper_data("jetson_tx2")
    n = rpi.n_configs
    X, y = rpi.X[:n], rpi.y[:n]
    anchors, hold, pool_ = np.arange(2), np.arange(n - 3, n), np.arange(2, n - 3)  # 2 anchors, 6 in the pool
    df, ranking = few_shot_table(X[pool_], y[pool_], X[hold], y[hold], X_anchors=X[anchors], y_anchors=y[anchors],
                                 sources={"jetson_tx2": AdditiveModel().fit(tx2.X, tx2.y)}, sizes=(4, 6, 999),
                                 repeats=2)
    assert ranking[0]["source"] == "jetson_tx2" and set(df["size"]) == {4, 6}
    assert set(df["selection"]) == {"random", "informative"} and set(df["method"]) == {"scratch", "transfer", "chosen"}
    # Random: 2 draws per size; informative: 1 (deterministic); three methods each.
    assert len(df) == 2 * (2 + 1) * 3 and np.isfinite(df["mape"]).all()
    chosen = df[df["method"] == "chosen"]
    assert set(chosen["model"]) <= {"scratch", "transfer"}


class _ResolutionBiased:
    """A source that agrees with ``base`` at 224 px and is off elsewhere (what two 224-px anchors cannot see)."""

    def __init__(self, base):
        self.base = base

    def __sklearn_is_fitted__(self):
        return True

    def fit(self, X, y):
        return self

    def predict(self, X):
        from predictors import FEATURE_INDEX

        return self.base.predict(X) * (np.asarray(X)[:, FEATURE_INDEX["resolution"]] / 224.0) ** 3


def test_few_shot_chosen_tries_every_source_as_onboarding_does(paper_data):
    from predictors import featurize

    rpi = paper_data("rpi5_arm_cpu")
    good = AdditiveModel().fit(rpi.X, rpi.y)
    decoy = _ResolutionBiased(good)
    configs = [c for c in sample_configs(60, seed=5)]
    at224 = [c for c in configs if c.resolution == 224][:2]
    rest = [c for c in configs if c not in at224][:20]
    Xa, X = featurize(at224), featurize(rest)
    ya, y = decoy.predict(Xa) * 2.0, good.predict(X) * 2.0  # the device: the good source, 2x slower
    df, ranking = few_shot_table(X[:12], y[:12], X[12:], y[12:], X_anchors=Xa, y_anchors=ya,
                                 sources={"decoy": decoy, "good": good}, sizes=(8,), repeats=1, selections=("random",))
    assert ranking[0]["source"] == "decoy"  # ties on the anchors go by name; both match them exactly
    chosen = df[df["method"] == "chosen"]
    assert list(chosen["model"]) == ["transfer:good"] and chosen["mape"].iloc[0] < 1e-6
