import json

import pytest

from search_spaces import ConfigError, LowFormerConfig, config_from_dict, get_variant

B1 = LowFormerConfig()


def test_defaults_are_b1():
    assert B1 == get_variant("B1").config


def test_json_round_trip_and_hash_stable():
    for name in ("B0", "B3", "E1", "B1-unfused", "B1-mhsa"):
        cfg = get_variant(name).config
        again = LowFormerConfig.from_json(cfg.to_json())
        assert again == cfg and again.hash == cfg.hash


def test_hash_is_a_pinned_value():
    # The hash names an architecture across versions: changing it breaks every stored measurement.
    assert B1.hash == "3ed29cc028f7" + B1.hash[12:]
    assert len(B1.hash) == 64


def test_integral_floats_hash_like_ints():
    assert B1.with_(expand_s2=6).hash == B1.with_(expand_s2=6.0).hash


def test_conditional_knobs_are_normalised_away():
    # No stem blocks: the stem expansion does not matter.
    assert B1.with_(expand_stem=2).hash == B1.hash
    assert B1.expand_stem is None
    # Without Lowtention the stride, compression and split knobs do not matter.
    mhsa = B1.with_(attention=("mhsa", "mhsa"))
    assert mhsa.with_(att_stride=(1, 1), compression=1.0, split_proj=True).hash == mhsa.hash
    # Without an MLP its ratio does not matter.
    no_mlp = B1.with_(mlp=(False, False))
    assert no_mlp.with_(mlp_ratio=(2, 3)).hash == no_mlp.hash
    # An empty stage ignores all its attention/MLP knobs.
    empty = B1.with_(depths=(0, 1, 1, 0, 5))
    assert empty.attention[0] is None and empty.with_(attention=("mhsa", "lowtention")).hash == empty.hash


def test_switching_a_parent_back_on_restores_defaults():
    cfg = B1.with_(depths=(0, 1, 1, 0, 0)).with_(depths=(1, 1, 1, 2, 2))
    assert cfg.attention == ("lowtention", "lowtention") and cfg.expand_stem == 4.0


def test_base_and_overrides_from_dict():
    cfg = config_from_dict({"base": "B3", "depths": [1, 2, 3, 4, 4], "attention": ["none", "none"],
                            "mlp": [False, False]})
    assert cfg == get_variant("E2").config


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(depths=(0, 0, 1, 5, 5)), "depths[1]"),
        (dict(depths=(0, 1, 0, 5, 5)), "depths[2]"),
        (dict(depths=(-1, 1, 1, 5, 5)), "depths[0]"),
        (dict(depths=(0, 1, 1, -2, 5)), "depths[3]"),
        (dict(depths=(0, 1, 1, 5)), "depths"),
        (dict(widths=(16, 32, 64, 128, 0)), "widths[4]"),
        (dict(widths=(16, 32, 64, 128.5, 256)), "widths[3]"),
        (dict(resolution=31), "resolution"),
        (dict(resolution="224"), "resolution"),
        (dict(attention=("lowtention", "flash")), "attention[1]"),
        (dict(attention=("mhsa", "lowtention"), widths=(16, 32, 64, 144, 256)), "widths[3]"),
        (dict(attention=("lowtention", "relu_linear"), widths=(16, 32, 64, 128, 264)), "widths[4]"),
        (dict(widths=(16, 32, 64, 96, 256), compression=0.005), "widths[3]"),
        (dict(att_stride=(3, 1)), "att_stride[0]"),
        (dict(compression=0), "compression"),
        (dict(compression=1.5), "compression"),
        (dict(mlp=(True, "yes")), "mlp[1]"),
        (dict(mlp_ratio=(4, -1)), "mlp_ratio[1]"),
        (dict(expand_s2=0), "expand_s2"),
        (dict(expand_s2=0.01), "expand_s2"),
        (dict(head_widths=(1536,)), "head_widths"),
        (dict(num_classes=0), "num_classes"),
        (dict(fused_blocks=1), "fused_blocks"),
    ],
)
def test_invalid_configs_name_the_field(changes, field):
    with pytest.raises(ConfigError) as e:
        B1.with_(**changes)
    assert e.value.field == field
    assert "\n" not in str(e.value) and str(e.value).startswith(field + ":")


def test_unknown_knob_and_malformed_json():
    with pytest.raises(ConfigError, match="^widht: unknown knob"):
        LowFormerConfig.from_dict({"widht": [1, 2, 3, 4, 5]})
    with pytest.raises(ConfigError, match="malformed JSON at line 1"):
        LowFormerConfig.from_json('{"depths": [0, 1,')
    with pytest.raises(ConfigError, match="must be a JSON object"):
        LowFormerConfig.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="^model: unknown variant 'B7'"):
        config_from_dict({"base": "B7"})


def test_config_is_immutable():
    with pytest.raises(Exception):
        B1.resolution = 256  # type: ignore[misc]


def test_stage_sizes_ceil_halve():
    from search_spaces import STAGES, count

    stages = count(B1.with_(resolution=240)).to_dict("B1")["per_stage"]
    assert [stages[s]["out_shape_CHW"][1] for s in STAGES if s != "head"] == [120, 60, 30, 15, 8]


def test_to_dict_is_plain_json():
    d = json.loads(B1.to_json())
    assert d["widths"] == [16, 32, 64, 128, 256] and d["expand_stem"] is None
