import collections

import pytest

from search_spaces import (
    KNOBS,
    SPACE,
    ConfigError,
    config_knob_name,
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


# The space as main b3f6b5f listed it by hand (name, domain, doc), in order: the samplers draw knob by knob in this
# order, so a seed must keep giving the same configs.
SPACE_B3F6B5F = [
    ('resolution', (160, 176, 192, 208, 224, 240, 256, 272, 288), 'input resolution (px)'),
    ('width0', (16, 20, 24, 32), 'stem width'),
    ('width1', (32, 40, 48, 64), 'stage-1 width'),
    ('width2', (64, 80, 96, 128), 'stage-2 width'),
    ('width3', (96, 128, 160, 192, 224, 256, 288, 320), 'stage-3 width'),
    ('width4', (192, 256, 320, 384, 448, 512), 'stage-4 width'),
    ('depth0', (0, 1, 2), 'extra stem blocks'),
    ('depth1', (1, 2, 3), 'stage-1 blocks incl. the stride-2 block'),
    ('depth2', (1, 2, 3, 4), 'stage-2 blocks incl. the stride-2 block'),
    ('depth3', (0, 1, 2, 3, 4, 5, 6, 7, 8), 'stage-3 LowFormer blocks'),
    ('depth4', (0, 1, 2, 3, 4, 5, 6, 7, 8), 'stage-4 LowFormer blocks'),
    ('expand_stem', (2.0, 4.0), 'expansion of stem blocks'),
    ('expand_s2', (4.0, 6.0), 'expansion of stride-2 blocks'),
    ('expand_s1', (2.0, 4.0, 6.0), 'expansion of stride-1 blocks in stages 1-2'),
    ('expand_local', (2.0, 3.0, 4.0, 6.0), 'expansion of the local conv in LowFormer blocks'),
    ('fused_blocks', (True, False), 'stand-alone blocks fused (FusedMBConv) or not (MBConv)'),
    ('fusion_threshold', (0, 128, 192, 256, 320, 384, 512, 1024), 'local conv fused when width < T'),
    ('attention3', ('lowtention', 'mhsa', 'relu_linear', 'none'), 'stage-3 attention'),
    ('attention4', ('lowtention', 'mhsa', 'relu_linear', 'none'), 'stage-4 attention'),
    ('att_stride3', (1, 2, 4), 'stage-3 Lowtention downsampling'),
    ('att_stride4', (1, 2), 'stage-4 Lowtention downsampling'),
    ('compression', (0.25, 0.5, 1.0), 'Lowtention channel compression'),
    ('split_proj', (False, True), 'Lowtention output: 1x1 conv + depthwise transposed conv'),
    ('mlp3', (True, False), 'stage-3 MLP (and attention pre-norm)'),
    ('mlp4', (True, False), 'stage-4 MLP (and attention pre-norm)'),
    ('mlp_ratio3', (2.0, 3.0, 4.0), 'stage-3 MLP hidden ratio'),
    ('mlp_ratio4', (2.0, 3.0, 4.0), 'stage-4 MLP hidden ratio'),
    ('head0', (1024, 1536, 2304), 'head conv width'),
    ('head1', (1280, 1600, 2560), 'head hidden width'),
]


def test_the_space_is_derived_from_the_config_fields():
    assert [(k.name, k.choices, k.doc) for k in SPACE] == SPACE_B3F6B5F
    assert [repr(k.choices) for k in SPACE] == [repr(c) for _, c, _ in SPACE_B3F6B5F]  # 4.0 stays a float
    assert [c.short_hash for c in sample_configs(4, seed=3)] == ['ae0c40a31ea6', '288d14862448', 'f869fae6def6', 'f9ad9dd33d3e']
    assert [config_knob_name(k) for k in ("resolution", "width3", "depth0", "attention4", "mlp_ratio3", "head1")] == [
        "resolution", "widths[3]", "depths[0]", "attention[1] (stage 4)", "mlp_ratio[0] (stage 3)", "head_widths[1]"]
