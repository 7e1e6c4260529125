"""The predictors shipped in the package: one per paper device, loadable by this code (schema hash)."""

import numpy as np
import pytest

from predictors import SCHEMA_HASH, SHIPPED_DIR, available_predictors, load_predictor
from search_spaces import get_variant

from .conftest import PAPER_DEVICES

SHIPPED = PAPER_DEVICES + [("imagenet1k", "top1_pct")]


def test_every_paper_device_is_shipped():
    assert set(SHIPPED) <= set(available_predictors())  # the test home is empty: these come from the package


@pytest.mark.parametrize("device, metric", SHIPPED)
def test_shipped_predictor_loads_and_predicts(device, metric):
    p = load_predictor(device)
    assert p.metric == metric and p.path.is_relative_to(SHIPPED_DIR)
    assert p.meta["feature_schema"]["hash"] == SCHEMA_HASH  # retrain with `predictors train` if this fails
    assert p.meta["training_data"]["sources"] == ["paper"]
    v = p.predict([get_variant(n).config for n in ("B0", "B1", "B3")])
    assert np.isfinite(v).all() and (v > 0).all()
    assert p.in_domain(get_variant("B1").config)
    if metric == "top1_pct":
        assert p.is_surrogate and p.model_type == "surrogate" and "surrogate" in p.meta["label"]
    else:
        # The additive model, or the cross-device one where it predicted held-out variants better (retrain_shipped).
        assert p.model_type in ("additive", "shared") and p.meta["validation"]["method"] == "leave-one-out"
        additive = p.estimator if p.model_type == "additive" else p.estimator.refit_
        assert (additive.coef_ >= 0).all()
    # Every shipped predictor carries its interval figures from configs it never saw (predictors list shows them).
    rows = p.meta["interval_figures"]["rows"]
    assert [r["nominal"] for r in rows] == [0.8, 0.9, 0.95] and all(0 <= r["empirical"] <= 1 for r in rows)
