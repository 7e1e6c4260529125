"""The built torch model agrees with the analytic counts: a property test over random configs."""

from unittest import mock

import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from search_spaces import (  # noqa: E402
    STAGES,
    build_model,
    check_against_graph,
    count,
    get_variant,
    sample_configs,
    set_drop_path,
    variant_names,
)
from search_spaces._builder import LowFormer, LowFormerBackbone  # noqa: E402

pytestmark = pytest.mark.torch


def _hardswish(x, inplace=False):
    return x if inplace else torch.empty_like(x)


def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    # The shape check the real op makes: one statistic per channel.
    for t in (running_mean, running_var, weight, bias):
        if t is not None and tuple(t.shape) != (x.shape[1],):
            raise RuntimeError(f"batch_norm: {tuple(t.shape)} statistics for {x.shape[1]} channels")
    return torch.empty_like(x)


def _meta_counts(cfg):
    # On the meta device nothing is computed: FlopCounterMode only needs shapes. Attention under the MATH
    # backend, because FlopCounterMode scores the CPU's fused SDPA kernel as 0 FLOPs. Hardswish and BatchNorm
    # keep the shape and count no FLOPs, but on meta they run through torch's Python decompositions (half of this
    # test's CPU): stand-ins of the same shape (and BatchNorm's channel check) instead; `macs == c.macs` below
    # would fail if either counted.
    with torch.device("meta"):
        model = LowFormer(cfg).eval()
        x = torch.empty(1, 3, cfg.resolution, cfg.resolution)
    check_against_graph(model)
    with (mock.patch.object(F, "hardswish", _hardswish), mock.patch.object(F, "batch_norm", _batch_norm),
          torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc):
        feats = model.forward_features(x)
        logits = model.head(feats["stage_final"])
    params = sum(p.numel() for p in model.parameters())
    return params, fc.get_total_flops() // 2, feats, logits


@pytest.mark.parametrize("chunk", range(4))
def test_random_configs_params_macs_shapes(chunk):
    # 4 x 55 = 220 random configs over the whole space.
    for cfg in list(sample_configs(220, seed=11))[chunk * 55 : (chunk + 1) * 55]:
        c = count(cfg)
        params, macs, feats, logits = _meta_counts(cfg)
        assert params == c.params, cfg.to_json(None)
        assert macs == c.macs, cfg.to_json(None)
        for key, stage in zip(LowFormerBackbone.FEATURE_KEYS, STAGES):
            assert tuple(feats[key].shape[1:]) == c.out_shapes[stage]
        assert tuple(logits.shape) == (1, 1000)


@pytest.mark.parametrize("name", variant_names())
def test_named_variants_build_exactly(name):
    cfg = get_variant(name).config
    params, macs, _, _ = _meta_counts(cfg)
    c = count(cfg)
    assert (params, macs) == (c.params, c.macs)


def test_real_forward_and_feature_dict():
    model = build_model(get_variant("B0").config.with_(resolution=160))
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 160, 160))
        logits = model(torch.randn(2, 3, 160, 160))
    assert list(feats) == ["stage0", "stage1", "stage2", "stage3", "stage_final"]
    assert [tuple(v.shape[1:]) for v in feats.values()] == [(16, 80, 80), (32, 40, 40), (64, 20, 20), (128, 10, 10), (256, 5, 5)]
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("res", [32, 33, 47, 97, 240])
def test_any_resolution_from_32(res):
    model = build_model(get_variant("B1").config.with_(resolution=res, depths=(0, 1, 1, 1, 1)))
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, res, res))
    c = count(model.config)
    assert tuple(feats["stage_final"].shape[1:]) == c.out_shapes["stage4"]


def test_init_zeroes_last_gamma_of_identity_residuals_only():
    model = build_model(get_variant("B3").config)
    stem_res = model.backbone.stem[1]
    opener = model.backbone.stage3[0]
    assert stem_res.residual and float(stem_res.point.norm.weight.detach().abs().sum()) == 0
    assert not opener.residual and float(opener.point.norm.weight.detach().abs().sum()) > 0
    assert float(model.backbone.stage3[1].local.point.norm.weight.detach().abs().sum()) == 0


def test_drop_path_schedule():
    model = build_model(get_variant("B1").config)
    rates = set_drop_path(model, 0.05, skip=0)
    # B1: 5 + 5 LowFormer blocks with att, mlp and local residuals; stage 1/2 have no residual block.
    assert len(rates) == 30 and rates[0] == pytest.approx(0.05 / 30) and rates[-1] == pytest.approx(0.05)
    rates = set_drop_path(model, 0.1, skip=2)
    assert rates[:2] == [0.0, 0.0] and rates[2] == pytest.approx(0.1 / 28)


def test_check_detects_a_drifted_builder():
    model = build_model(get_variant("B1").config)
    model.backbone.stage3[1].att.qkv = torch.nn.Conv2d(128, 200, 1, bias=False)
    with pytest.raises(AssertionError, match="stage3.1.att.qkv"):
        check_against_graph(model)
