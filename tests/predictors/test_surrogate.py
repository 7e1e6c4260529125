import numpy as np
import pytest

from predictors import AccuracySurrogate, cross_val_predict, featurize, regression_report
from search_spaces import get_variant, sample_configs


def test_leave_one_out_error_on_the_papers_top1(paper_data):
    d = paper_data("imagenet1k", "top1_pct")
    assert d.n_configs >= 10
    pred = cross_val_predict(AccuracySurrogate(), d.X, d.y)
    r = regression_report(d.values, pred)
    assert r["n"] == d.n_configs and np.isfinite(r["mae"])
    print(f"surrogate LOO: MAE {r['mae']:.3f} pp, tau {r['kendall_tau']}")


def test_predictions_are_percentages(paper_data):
    d = paper_data("imagenet1k", "top1_pct")
    m = AccuracySurrogate().fit(d.X, d.y)
    X = featurize(list(sample_configs(200, seed=2)))
    p = m.predict(X)
    assert ((p >= 0) & (p <= 100)).all()
    b = m.predict(featurize([get_variant(n).config for n in ("B0", "B3")]))
    assert b[0] < b[1]  # the paper's ordering: B3 above B0


def test_unknown_descriptor(paper_data):
    d = paper_data("imagenet1k", "top1_pct")
    with pytest.raises(ValueError, match="^features: unknown"):
        AccuracySurrogate(features=("log_flops",)).fit(d.X, d.y)
