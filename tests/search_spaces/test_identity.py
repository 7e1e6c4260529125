"""One network, one hash: configs that build the same network share a hash, and only those.

"Same network" is judged by the op graph (every layer's op, shapes, kernel, stride, groups, params, MACs,
inputs) and, on a subset including every collision kind, by the torch model's modules and parameter shapes.
"""

import collections
import json
import random

import pytest

from search_spaces import (
    CONFIG_IDENTITY,
    ConfigError,
    LowFormerConfig,
    build_op_graph,
    get_variant,
    sample_configs,
    variant_names,
)

B1 = LowFormerConfig()


def signature(cfg: LowFormerConfig) -> tuple:
    """The built network: every block's stage, module path, repeat count and layers (with shapes and params)."""
    g = build_op_graph(cfg)
    return tuple((b.stage, b.prefix, b.first, b.repeats, tuple(p.layers for p in b.parts)) for b in g.blocks)


def _random_ratio(rng: random.Random) -> float:
    return round(rng.uniform(0.5, 8.0), rng.choice((0, 1, 2, 3)))


# Variations of one knob: values of the search space, values just beside them (same hidden widths or not),
# and arbitrary ones. Each returns the changes for one config.
def _variations(cfg: LowFormerConfig, rng: random.Random) -> list[dict]:
    out = []
    w = cfg.widths
    for t in rng.sample([0, 1, 96, 128, 129, 160, 192, 255, 256, 257, 320, 384, 448, 512, 1024, 4096], 3):
        out.append({"fusion_threshold": t})
    out.append({"fusion_threshold": rng.randint(0, 5000)})
    out.append({"fusion_threshold": min(w[3], w[4]) + rng.choice((0, 1))})
    for r in rng.sample([0.1, 0.25, 0.26, 0.3, 0.33, 0.5, 0.51, 0.55, 0.75, 0.97, 0.98, 1.0], 3):
        out.append({"compression": r})
    out.append({"compression": round(rng.uniform(0.05, 1.0), rng.choice((1, 2, 3)))})
    for knob in ("expand_stem", "expand_s2", "expand_s1", "expand_local"):
        e = rng.choice((2.0, 3.0, 4.0, 6.0))
        out.append({knob: e})
        out.append({knob: e + rng.choice((0.001, 0.003, 0.01, -0.002))})  # mostly the same hidden widths
        out.append({knob: _random_ratio(rng)})
    r = rng.choice((2.0, 3.0, 4.0))
    out.append({"mlp_ratio": (r, r)})
    out.append({"mlp_ratio": (r + rng.choice((0.001, 0.004, -0.003)), r)})
    out.append({"mlp_ratio": (_random_ratio(rng), _random_ratio(rng))})
    out.append({"att_stride": (rng.choice((1, 2, 4)), rng.choice((1, 2)))})
    out.append({"split_proj": not cfg.split_proj, "fused_blocks": not cfg.fused_blocks})
    return out


_NETWORKS: dict[tuple, int] = {}


def network_id(cfg: LowFormerConfig) -> int:
    """A small int per distinct signature (hashing the big signature tuple once per config)."""
    return _NETWORKS.setdefault(signature(cfg), len(_NETWORKS))


@pytest.fixture(scope="module")
def population() -> list[tuple[LowFormerConfig, int]]:
    """(config, network id) of 2,000 sampled configs and targeted variations of their knobs (about 20,000)."""
    rng = random.Random(12)
    configs = [get_variant(n).config for n in variant_names()]
    for cfg in sample_configs(2000, seed=3):
        configs.append(cfg)
        for changes in rng.sample(_variations(cfg, rng), 9):
            try:
                configs.append(cfg.with_(**changes))
            except ConfigError:
                pass
    return [(c, network_id(c)) for c in configs]


def test_equal_networks_have_equal_hashes_and_only_they(population):
    by_sig: dict[int, set] = collections.defaultdict(set)
    by_hash: dict[str, set] = collections.defaultdict(set)
    knobs_of_sig: dict[int, set] = collections.defaultdict(set)
    legacy: dict[int, set] = collections.defaultdict(set)
    for cfg, s in population:
        by_sig[s].add(cfg.hash)
        by_hash[cfg.hash].add(s)
        knobs_of_sig[s].add(cfg.to_json(indent=None))
        legacy[s].add(cfg.legacy_hash)
    assert len(population) >= 18_000
    assert not [s for s, hashes in by_sig.items() if len(hashes) > 1], "one network, several hashes"
    assert not [h for h, sigs in by_hash.items() if len(sigs) > 1], "one hash, several networks"
    # The property is not vacuous: many networks were reached by several knob settings, and the hash of the
    # knobs as typed (identity version 1) tells them apart.
    assert sum(len(k) > 1 for k in knobs_of_sig.values()) > 1000
    assert sum(len(v) > 1 for v in legacy.values()) > 1000


def test_the_canonical_config_builds_the_same_network_and_is_its_own(population):
    for cfg, s in population[::7]:
        can = cfg.canonical()
        assert network_id(can) == s
        assert can.canonical().to_dict() == can.to_dict() and can.hash == cfg.hash
        again = LowFormerConfig.from_json(cfg.canonical_json())  # the hashed form is a valid config file
        assert again.to_dict() == can.to_dict()
        assert again.canonical() is again  # a fresh search finds nothing simpler: canonical is idempotent


def _torch_structure(cfg):
    from search_spaces import build_model

    model = build_model(cfg, init=False, check=False)
    mods = [(n, type(m).__name__, m.extra_repr(), getattr(m, "heads", None), getattr(m, "head_dim", None),
             getattr(m, "residual", None)) for n, m in model.named_modules()]
    params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    return mods, params


def test_torch_models_of_one_hash_are_identical(population):
    pytest.importorskip("torch")
    groups: dict[str, dict[str, LowFormerConfig]] = collections.defaultdict(dict)
    for cfg, _ in population:
        groups[cfg.hash].setdefault(cfg.to_json(indent=None), cfg)
    # One collision pair per kind of knob that differs (fusion, ratios, compression, several at once).
    pairs: dict[tuple, tuple] = {}
    for g in groups.values():
        if len(g) < 2:
            continue
        a, b = list(g.values())[:2]
        differ = tuple(k for k, v in a.to_dict().items() if b.to_dict()[k] != v)
        pairs.setdefault(differ, (a, b))
    assert {("fusion_threshold",), ("compression",), ("expand_local",), ("mlp_ratio",)} <= set(pairs)
    small = sorted(pairs.values(), key=lambda p: sum(p[0].depths))[:8]
    for a, b in small:
        assert _torch_structure(a) == _torch_structure(b), (a.to_dict(), b.to_dict())
    # And two configs of different hashes really differ as torch models.
    x = B1.with_(fusion_threshold=129)
    assert x.hash != B1.with_(fusion_threshold=128).hash
    assert _torch_structure(x) != _torch_structure(B1.with_(fusion_threshold=128))


def test_fusion_threshold_is_hashed_by_which_stages_fuse():
    # The case: stage-3/4 widths <= 192, thresholds 320/384/1024 fuse both local convs.
    narrow = B1.with_(widths=(16, 32, 64, 160, 192))
    hashes = {narrow.with_(fusion_threshold=t).hash for t in (320, 384, 1024)}
    assert len(hashes) == 1
    assert narrow.with_(fusion_threshold=320) == narrow.with_(fusion_threshold=1024)
    assert narrow.with_(fusion_threshold=192).hash not in hashes  # 192 does not fuse the 192-wide stage
    # Without fused blocks the threshold does nothing.
    unfused = B1.with_(fused_blocks=False)
    assert len({unfused.with_(fusion_threshold=t).hash for t in (0, 128, 256, 1024)}) == 1
    # A stage without blocks has no local conv to fuse.
    one_stage = B1.with_(depths=(0, 1, 1, 4, 0), widths=(16, 32, 64, 128, 512))
    assert one_stage.with_(fusion_threshold=256).hash == one_stage.with_(fusion_threshold=512).hash


def test_ratios_and_compression_are_hashed_by_their_effect():
    assert B1.with_(expand_local=4.001).hash == B1.hash  # round(128 * 4.001) == 512
    assert B1.with_(expand_local=4.01).hash != B1.hash  # round(128 * 4.01) == 513
    assert B1.with_(mlp_ratio=(4.002, 4.0)).hash == B1.hash
    assert B1.with_(compression=0.51).hash == B1.hash  # the same heads and head size
    assert B1.with_(compression=0.6).hash != B1.hash
    narrow = B1.with_(widths=(16, 32, 64, 80, 80))  # no Lowtention layer is compressed at <= 80 channels
    assert narrow.with_(compression=0.25).hash == narrow.with_(compression=1.0).hash


def test_configs_keep_their_values_and_the_usual_values_are_canonical():
    cfg = B1.with_(widths=(16, 32, 64, 160, 192), fusion_threshold=384, compression=0.51)
    assert cfg.fusion_threshold == 384 and cfg.compression == 0.51
    assert json.loads(cfg.to_json())["fusion_threshold"] == 384
    assert json.loads(cfg.canonical_json())["fusion_threshold"] == 256
    assert json.loads(cfg.knob_json())["fusion_threshold"] == 384
    # Every named variant is canonical: its hash did not change with identity version 2.
    for name in variant_names():
        v = get_variant(name).config
        assert v.canonical().to_dict() == v.to_dict() and v.hash == v.legacy_hash, name
    assert CONFIG_IDENTITY == 2


def test_equality_and_sets_follow_the_network():
    a, b = B1.with_(fusion_threshold=200), B1.with_(fusion_threshold=256)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.to_dict() != b.to_dict()
    assert a != B1.with_(fusion_threshold=100)
    assert (B1 == "B1") is False


def test_sample_configs_unique_means_unique_networks():
    cfgs = list(sample_configs(400, seed=5))
    assert len({signature(c) for c in cfgs}) == 400


def test_canonical_configs_of_the_space_map_back_to_its_knobs():
    from search_spaces import config_to_knobs, knobs_to_config

    for cfg in sample_configs(200, seed=9):
        can = cfg.canonical()  # e.g. fusion threshold 64, which the space lists as 0
        assert knobs_to_config(config_to_knobs(can)) == cfg
