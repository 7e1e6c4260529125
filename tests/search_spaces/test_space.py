import collections

import pytest

from search_spaces import (
    KNOBS,
    SPACE,
    ConfigError,
    config_to_knobs,
    get_variant,
    knobs_to_config,
    named_series,
    sample_config,
    sample_configs,
    variant_names,
)


def test_sampling_is_seeded():
    assert sample_config(7) == sample_config(7)
    assert [c.hash for c in sample_configs(20, seed=1)] == [c.hash for c in sample_configs(20, seed=1)]
    assert sample_config(7) != sample_config(8)


def test_sampling_exercises_every_knob():
    cfgs = list(sample_configs(600, seed=0))
    assert len({c.hash for c in cfgs}) == 600
    seen = collections.defaultdict(set)
    for c in cfgs:
        for k, v in config_to_knobs(c).items():
            seen[k].add(v)
    for knob in SPACE:
        assert seen[knob.name] == set(knob.choices), knob.name
    assert {c.resolution for c in cfgs} == set(range(160, 289, 16))
    kinds = collections.Counter(a for c in cfgs for a in c.attention if a)
    assert set(kinds) == {"lowtention", "mhsa", "relu_linear", "none"}


def test_every_named_variant_is_a_point_of_the_space():
    for name in variant_names():
        cfg = get_variant(name).config
        assert knobs_to_config(config_to_knobs(cfg)) == cfg, name
    assert [v.name for v in named_series()] == ["B0", "B1", "B1.5", "B2", "B3", "E1", "E2", "E3"]


def test_out_of_space_values_are_reported():
    with pytest.raises(ConfigError, match="^width3: 136 is outside the search space"):
        config_to_knobs(get_variant("B1").config.with_(widths=(16, 32, 64, 136, 256)))
    with pytest.raises(ConfigError, match="^depth4: missing knob"):
        knobs_to_config({k: v for k, v in config_to_knobs(get_variant("B1").config).items() if k != "depth4"})


def test_restricted_resolutions():
    assert {c.resolution for c in sample_configs(30, seed=2, resolutions=[192, 256])} == {192, 256}


def test_knob_ranges():
    assert KNOBS["resolution"].int_range == (160, 288, 16)
    assert KNOBS["width0"].int_range is None
    assert KNOBS["fused_blocks"].int_range is None
