"""The hardware studies' toy models, and every choice the paper leaves open, in one place.

The paper's facts (channel lists, MACs, resolutions, layer counts it states) are read from
``data/toy_models.csv``, a verbatim copy of the project's ``shared/data/toy_models.csv``. What the paper
does not state is a named constant below; ``CHOICES.md`` says why each value was chosen. Blocks come from
the search-space builder (``search_spaces._builder``), so a toy FusedMBConv or Lowtention is exactly the
one LowFormer uses. MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (total / 2, attention
under the math SDPA kernel), the project's counting rule (docs/architecture.md §11).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import pathlib
import re
from typing import Any, Callable, Mapping

import torch
from torch import nn

from measured import Architecture, out_of_space_hash
from search_spaces import MHSA, ConvLayer, FusedMBConv, LowFormerConfig, Lowtention, MBConv, get_variant, lowtention_heads

TOY_MODELS_CSV = pathlib.Path(__file__).parent / "data" / "toy_models.csv"
FAMILY = "toy"

# ------------------------------------------------------------------------------------------------------
# Open choices. Each is documented in CHOICES.md; change them here and nowhere else.
# ------------------------------------------------------------------------------------------------------

# Tables 1 and 2: kernel of every toy convolution (the search over {3, 5, 7} picks 3 for Table 1).
KERNEL = 3
# Table 1: which conv of a stage has stride 2: "first" (it opens the stage and changes the width) or
# "last" (the stage runs at the input resolution and its last conv downsamples). The search picks "first".
STRIDE_AT = "first"
# Table 1: layers per stage of the ungrouped model of each throughput group (A = toy#1/#2, B = toy#3/#4,
# C = toy#5/#6), found by `python -m nas.studies._toy_search` (see CHOICES.md for the search and its result).
TABLE1_DEPTHS: dict[str, tuple[int, ...]] = {"A": (2, 4, 5, 5, 5), "B": (2, 4, 5, 5, 5), "C": (1, 5, 5, 5, 3)}
# Table 1: the depthwise models have this many times the layers per stage (stated by the paper).
DEPTHWISE_DEPTH_FACTOR = 2
# Table 1: input resolution (stated: 224 in, 7 out). Quick mode (the test suite's smoke run) uses 64.
TABLE1_RESOLUTION = 224
QUICK_TABLE1_RESOLUTION = 64

# Figure 3: the grid. The paper states the ranges (channels 16..512, resolutions 7..224/256); the grid is
# every power of two of channels and every 2x step of resolution in them.
FIG3_RESOLUTIONS = (7, 14, 28, 56, 112, 224)
FIG3_CHANNELS = (16, 32, 64, 128, 256, 512)
# Figure 3: blocks stacked per model (the paper: "same layer repeated", count not stated), whether each
# block has its identity shortcut, and the block flavour (plain: the stand-alone blocks of LowFormer).
FIG3_LAYERS = 1
FIG3_RESIDUAL = False
QUICK_FIG3_RESOLUTIONS = (7, 14)
QUICK_FIG3_CHANNELS = (16, 32)

# Table 2: stride 1, padding k//2, width in = width out; the model's input is the conv stack's input.
QUICK_TABLE2_SCENARIOS = (1, 5)
QUICK_TABLE2_LAYERS = 2

# Table 3: heads and layout of the four attention variants (the paper does not state the heads).
#  MHSA: the project's reconstruction of the original MHSA (docs/architecture.md §7): heads of 32 channels, 1x1 out-projection.
#  chcompr.: as MHSA, but the input projection compresses to TABLE3_COMPRESSION x C (heads as Lowtention
#    computes them: 2 heads of 32 at 128 channels) and the out-projection restores C.
#  conv+low: Lowtention without channel compression (compression 1.0: 4 heads of 32 at 128 channels): a
#    depthwise TABLE3_DW_KERNEL conv with stride 2 before the input projection, and the output projection
#    fused with the x2 upsampling (dense ConvTranspose2d k4 s2 p1), as in LowFormer's stage 3.
#  conv+low+chcompr.: LowFormer's stage-3 Lowtention itself.
TABLE3_COMPRESSION = 0.5
TABLE3_DW_KERNEL = 5
TABLE3_STRIDE = 2
# Each stacked attention layer is a residual branch (x + att(x)), as inside a LowFormer block.
TABLE3_RESIDUAL = True
QUICK_TABLE3_RESOLUTIONS = (8, 16)
QUICK_TABLE3_LAYERS = 1

# Figure 8: the variants (search-space configs) and the input resolutions (the paper: 224 to 1024).
FIG8_VARIANTS = ("B1", "B1-highres-att", "B1-mhsa")
FIG8_RESOLUTIONS = (224, 384, 512, 640, 768, 896, 1024)
QUICK_FIG8_RESOLUTIONS = (160, 224)

TABLE3_VARIANTS = ("MHSA", "chcompr.", "conv+low", "conv+low+chcompr.")


# ------------------------------------------------------------------------------------------------------
# The paper's facts, read from the shipped copy of toy_models.csv
# ------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def toy_rows() -> dict[str, dict[str, str]]:
    """toy_models.csv as {toy_model: row}."""
    with open(TOY_MODELS_CSV, newline="", encoding="utf-8") as f:
        return {r["toy_model"]: r for r in csv.DictReader(f)}


def _ints(text: str) -> list[int]:
    """The integers a cell starts with: "8;16;32;64 (attention input)" -> [8, 16, 32, 64]."""
    head = text.split("(")[0]
    return [int(x) for x in re.findall(r"\d+", head)]


def table1_rows() -> list[dict[str, str]]:
    return [r for r in toy_rows().values() if r["source"].startswith("Table 1")]


def table2_scenarios() -> dict[int, dict[str, tuple[int, int]]]:
    """{scenario: {"hr": (channels, resolution), "hc": (channels, resolution)}} (Table 2)."""
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for name, r in toy_rows().items():
        m = re.fullmatch(r"toy-T2#(\d+)-(hr|hc)", name)
        if m:
            pair = (_ints(r["channels"])[0], _ints(r["operating_resolution"])[0])
            out.setdefault(int(m.group(1)), {})[m.group(2)] = pair
    return dict(sorted(out.items()))


def table2_layers() -> int:
    return _ints(toy_rows()["toy-T2#1-hr"]["repeated_layers"])[0]


def table3_facts() -> tuple[int, int, tuple[int, ...]]:
    """(channels, stacked layers, attention resolutions) of Table 3."""
    r = toy_rows()["MHSA"]
    return _ints(r["channels"])[0], _ints(r["repeated_layers"])[0], tuple(_ints(r["operating_resolution"]))


def fig3_facts() -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(expansion, channel range, resolution range) of Figure 3 as the paper states them."""
    r = toy_rows()["toy-Fig3-MBConv-vs-fusedMBConv"]

    def rng(cell: str) -> tuple[int, int]:
        lo, hi = re.search(r"(\d+)\.\.(\d+)", cell).groups()
        return int(lo), int(hi)

    return int(r["expansion_factor"]), rng(r["channels"]), rng(r["operating_resolution"])


# ------------------------------------------------------------------------------------------------------
# Counting
# ------------------------------------------------------------------------------------------------------


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass: FlopCounterMode total / 2 (docs/architecture.md §11), on the meta device (no compute)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to("meta").eval()
    x = torch.empty(input_shape, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        module(x)
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------------


def table1_layers(channels, depths, depthwise: bool, kernel: int = KERNEL, stride_at: str = STRIDE_AT):
    """The conv layers of a Table 1 model: [(cin, cout, stride, groups)], one stride-2 conv per stage.

    The width changes in the stage's first conv. A depthwise conv that widens (3 -> 30, 30 -> 60) has
    groups = cin and a channel multiplier cout / cin; every conv of a depthwise model is depthwise.
    """
    if stride_at not in ("first", "last"):
        raise ValueError(f"stride_at: first|last (got {stride_at!r})")
    layers, cin = [], 3
    for c, d in zip(channels, depths):
        for j in range(d):
            s = 2 if (j == 0 if stride_at == "first" else j == d - 1) else 1
            i = cin if j == 0 else c
            if depthwise and c % i:
                raise ValueError(f"a depthwise conv cannot map {i} to {c} channels")
            layers.append((i, c, s, i if depthwise else 1))
        cin = c
    return layers


def build_table1(channels, depths, depthwise: bool, kernel: int = KERNEL, stride_at: str = STRIDE_AT) -> nn.Sequential:
    """A Table 1 toy CNN: conv + BN + Hardswish layers (LowFormer's ConvLayer)."""
    return nn.Sequential(*[ConvLayer(i, o, kernel, s, groups=g) for i, o, s, g in
                           table1_layers(channels, depths, depthwise, kernel, stride_at)])


def build_conv_stack(channels: int, layers: int, kernel: int = KERNEL) -> nn.Sequential:
    """Table 2: the same ungrouped conv (stride 1) stacked ``layers`` times."""
    return nn.Sequential(*[ConvLayer(channels, channels, kernel) for _ in range(layers)])


def build_mbconv_stack(channels: int, fused: bool, layers: int = FIG3_LAYERS,
                       expansion: int | None = None) -> nn.Sequential:
    """Figure 3: FusedMBConv or MBConv (plain flavour, stride 1, width kept) stacked ``layers`` times."""
    e = expansion if expansion is not None else fig3_facts()[0]
    block = FusedMBConv if fused else MBConv
    return nn.Sequential(*[block(channels, channels, e, 1, residual=FIG3_RESIDUAL) for _ in range(layers)])


class CompressedMHSA(nn.Module):
    """Table 3 "chcompr.": MHSA whose input projection compresses the channels before the attention and
    whose 1x1 output projection restores them."""

    def __init__(self, c: int, compression: float = TABLE3_COMPRESSION):
        super().__init__()
        self.heads, self.head_dim = lowtention_heads(c, compression)
        self.inner = self.heads * self.head_dim
        self.qkv = nn.Conv2d(c, 3 * self.inner, 1, bias=False)
        self.proj = nn.Conv2d(self.inner, c, 1, bias=True)

    def forward(self, x):
        b, _, h, w = x.shape
        qkv = self.qkv(x).reshape(b, self.heads, 3 * self.head_dim, h * w).transpose(-1, -2)
        q, k, v = qkv.split(self.head_dim, dim=-1)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(-1, -2).reshape(b, self.inner, h, w))


def attention_layer(variant: str, c: int) -> nn.Module:
    """One Table 3 attention layer of ``c`` channels."""
    if variant == "MHSA":
        return MHSA(c)
    if variant == "chcompr.":
        return CompressedMHSA(c, TABLE3_COMPRESSION)
    if variant == "conv+low":
        return Lowtention(c, TABLE3_STRIDE, TABLE3_DW_KERNEL, 1.0, split_proj=False)
    if variant == "conv+low+chcompr.":
        return Lowtention(c, TABLE3_STRIDE, TABLE3_DW_KERNEL, TABLE3_COMPRESSION, split_proj=False)
    raise ValueError(f"variant: {'|'.join(TABLE3_VARIANTS)} (got {variant!r})")


class Stack(nn.Module):
    """The same kind of layer stacked, each as a residual branch or plain."""

    def __init__(self, layers: list[nn.Module], residual: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.residual = residual

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x) if self.residual else layer(x)
        return x


def build_attention_stack(variant: str, channels: int, layers: int) -> Stack:
    return Stack([attention_layer(variant, channels) for _ in range(layers)], TABLE3_RESIDUAL)


# ------------------------------------------------------------------------------------------------------
# Toy model records
# ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ToyModel:
    """One toy model of a study: what to build, at which input, and its identity in the store.

    ``spec`` describes the structure completely (JSON); its digest is part of the config hash, so a toy
    whose definition changes is a new architecture and never mixes with old measurements.
    """

    study: str
    name: str  # the paper's model name: toy#1, toy-T2#3-hc, MHSA, ...
    resolution: int  # the resolution the paper lists it under (input, operating or attention input)
    input_chw: tuple[int, int, int]
    spec: Mapping[str, Any]
    meta: Mapping[str, Any]
    builder: Callable[[], nn.Module] = dataclasses.field(repr=False)

    kind = "toy"

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return self.builder().eval()

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        return (batch, *self.input_chw)

    @functools.cached_property
    def spec_digest(self) -> str:
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def config_hash(self) -> str:
        return out_of_space_hash(FAMILY, f"{self.study}:{self.name}:{self.spec_digest}", self.resolution)

    @functools.cached_property
    def macs(self) -> int:
        return count_macs(self.builder(), self.input_shape(1))

    @functools.cached_property
    def params(self) -> int:
        return count_params(self.builder())

    def architecture(self) -> Architecture:
        return Architecture(self.config_hash, FAMILY, self.name, None, self.resolution, self.params, self.macs,
                            in_space=False)


@dataclasses.dataclass(frozen=True, eq=False)
class ConfigPoint:
    """A search-space config measured by a study (Figure 8): measured like any config, by a campaign."""

    study: str
    name: str  # variant name
    config: LowFormerConfig
    meta: Mapping[str, Any]

    kind = "config"

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def config_hash(self) -> str:
        return self.config.hash

    @functools.cached_property
    def macs(self) -> int:
        from search_spaces import count

        return count(self.config).macs

    @functools.cached_property
    def params(self) -> int:
        from search_spaces import count

        return count(self.config).params

    def architecture(self) -> Architecture:
        return Architecture.from_config(self.config, self.name)


def table1_toys(quick: bool = False) -> list[ToyModel]:
    res = QUICK_TABLE1_RESOLUTION if quick else TABLE1_RESOLUTION
    out = []
    for r in table1_rows():
        channels = tuple(_ints(r["channels_c0_c4"].replace(";", " ")))
        dw = r["depthwise"].strip().lower() == "true"
        group = r["throughput_group"]
        depths = tuple(d * (DEPTHWISE_DEPTH_FACTOR if dw else 1) for d in TABLE1_DEPTHS[group])
        spec = dict(kind="table1", channels=channels, depths=depths, depthwise=dw, kernel=KERNEL,
                    stride_at=STRIDE_AT, block="conv-bn-hardswish")
        out.append(ToyModel(
            "depthwise", r["toy_model"], res, (3, res, res), spec,
            dict(group=group, depthwise=dw, channels=";".join(map(str, channels)), depths=";".join(map(str, depths)),
                 paper_macs_m=float(r["macs_m"])),
            functools.partial(build_table1, channels, depths, dw, KERNEL, STRIDE_AT),
        ))
    return out


def table2_toys(quick: bool = False) -> list[ToyModel]:
    layers = QUICK_TABLE2_LAYERS if quick else table2_layers()
    out = []
    for k, pair in table2_scenarios().items():
        if quick and k not in QUICK_TABLE2_SCENARIOS:
            continue
        for role in ("hr", "hc"):
            c, res = pair[role]
            spec = dict(kind="table2", channels=c, resolution=res, layers=layers, kernel=KERNEL,
                        block="conv-bn-hardswish")
            out.append(ToyModel(
                "resolution-vs-channels", f"toy-T2#{k}-{role}", res, (c, res, res), spec,
                dict(scenario=k, role=role, channels=c),
                functools.partial(build_conv_stack, c, layers, KERNEL),
            ))
    return out


def fig3_toys(quick: bool = False) -> list[ToyModel]:
    resolutions = QUICK_FIG3_RESOLUTIONS if quick else FIG3_RESOLUTIONS
    channels = QUICK_FIG3_CHANNELS if quick else FIG3_CHANNELS
    e = fig3_facts()[0]
    out = []
    for res in resolutions:
        for c in channels:
            # A cell needs both blocks: the runner's MAC cap looks at the costlier (fused) one for both.
            cell_macs = count_macs(build_mbconv_stack(c, True, FIG3_LAYERS, e), (1, c, res, res))
            for fused in (True, False):
                block = "fused" if fused else "unfused"
                spec = dict(kind="fig3", block=block, channels=c, resolution=res, layers=FIG3_LAYERS, expansion=e,
                            residual=FIG3_RESIDUAL)
                out.append(ToyModel(
                    "fused-mbconv", f"{block}-MBConv c{c} r{res}", res, (c, res, res), spec,
                    dict(block=block, channels=c, cell_macs=cell_macs),
                    functools.partial(build_mbconv_stack, c, fused, FIG3_LAYERS, e),
                ))
    return out


def table3_toys(quick: bool = False) -> list[ToyModel]:
    c, layers, resolutions = table3_facts()
    if quick:
        layers, resolutions = QUICK_TABLE3_LAYERS, QUICK_TABLE3_RESOLUTIONS
    out = []
    for res in resolutions:
        for v in TABLE3_VARIANTS:
            spec = dict(kind="table3", variant=v, channels=c, layers=layers, resolution=res,
                        compression=TABLE3_COMPRESSION, dw_kernel=TABLE3_DW_KERNEL, stride=TABLE3_STRIDE,
                        residual=TABLE3_RESIDUAL)
            out.append(ToyModel(
                "attention", v, res, (c, res, res), spec, dict(variant=v, channels=c),
                functools.partial(build_attention_stack, v, c, layers),
            ))
    return out


def fig8_points(quick: bool = False) -> list[ConfigPoint]:
    resolutions = QUICK_FIG8_RESOLUTIONS if quick else FIG8_RESOLUTIONS
    return [ConfigPoint("resolution-scaling", v, get_variant(v).config.with_(resolution=r), dict(variant=v))
            for r in resolutions for v in FIG8_VARIANTS]
