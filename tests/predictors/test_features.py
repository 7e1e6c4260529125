import hashlib

import numpy as np
import pytest

from predictors import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    N_FEATURES,
    SCHEMA_HASH,
    SCHEMA_VERSION,
    featurize,
    in_space_mask,
    out_of_space_features,
    schema,
)
from predictors._features import check_features
from search_spaces import OP_TYPES, STAGES, count, get_variant, sample_configs


def test_schema_is_versioned_and_hashed():
    assert len(set(FEATURE_NAMES)) == N_FEATURES == len(FEATURE_NAMES)
    expected = hashlib.sha256("\n".join((f"v{SCHEMA_VERSION}", *FEATURE_NAMES)).encode()).hexdigest()
    assert SCHEMA_HASH == expected
    assert schema() == {"version": SCHEMA_VERSION, "hash": SCHEMA_HASH, "n_features": N_FEATURES}


@pytest.mark.parametrize("name", ["B1", "B3r192", "E1", "B1-relu-linear", "B1-mhsa", "B1-unfused"])
def test_features_are_the_counts(name):
    cfg = get_variant(name).config
    x = featurize([cfg])[0]
    c = count(cfg)
    assert x[FEATURE_INDEX["macs"]] == c.macs and x[FEATURE_INDEX["params"]] == c.params
    assert x[FEATURE_INDEX["bytes"]] == c.bytes and x[FEATURE_INDEX["layers"]] == c.layers
    assert x[FEATURE_INDEX["resolution"]] == cfg.resolution and x[FEATURE_INDEX["depth_total"]] == sum(cfg.depths)
    for op, q in c.per_op().items():
        for k in ("macs", "params", "bytes", "layers"):
            assert x[FEATURE_INDEX[f"{k}.{op}"]] == q[k]
    for si, s in enumerate(STAGES):
        for oi, op in enumerate(OP_TYPES):
            assert x[FEATURE_INDEX[f"macs.{s}.{op}"]] == c.array[si, oi, 0]
            assert x[FEATURE_INDEX[f"bytes.{s}.{op}"]] == c.array[si, oi, 2]
            assert x[FEATURE_INDEX[f"layers.{s}.{op}"]] == c.array[si, oi, 3]
    assert x[FEATURE_INDEX["tokens_stage3"]] == c.tokens["stage3"]
    for i, s in enumerate((3, 4)):
        a = cfg.attention[i]
        assert x[FEATURE_INDEX[f"att{s}_{a}"]] == 1
        assert x[FEATURE_INDEX[f"mlp{s}"]] == int(bool(cfg.mlp[i]))


def test_batch_equals_one_by_one():
    cfgs = list(sample_configs(50, seed=3))
    X = featurize(cfgs)
    assert X.shape == (50, N_FEATURES) and X.dtype == np.float64
    for i in (0, 17, 49):
        np.testing.assert_array_equal(X[i], featurize([cfgs[i]])[0])
    assert in_space_mask(X).all()


def test_empty_stage_has_no_attention_flags():
    cfg = get_variant("B1").config.with_(depths=(0, 1, 1, 0, 3))
    x = featurize([cfg])[0]
    assert all(x[FEATURE_INDEX[f"att3_{a}"]] == 0 for a in ("lowtention", "mhsa", "relu_linear", "none"))
    assert x[FEATURE_INDEX["att4_lowtention"]] == 1


def test_out_of_space_rows():
    X = out_of_space_features([1e9, 2e9], [5e6, np.nan], [224, 256])
    assert X.shape == (2, N_FEATURES)
    assert not in_space_mask(X).any()
    assert X[0, FEATURE_INDEX["macs"]] == 1e9 and np.isnan(X[1, FEATURE_INDEX["params"]])
    assert np.isnan(X[:, FEATURE_INDEX["layers"]]).all()


def test_wrong_shape_is_one_line():
    with pytest.raises(ValueError, match=r"^X: expected a \(n, \d+\) feature matrix") as e:
        check_features(np.zeros((3, 5)))
    assert "\n" not in str(e.value)
