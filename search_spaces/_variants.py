"""The paper's named LowFormer variants: one table, the only place they are defined (docs/architecture.md §6-§8)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._config import ConfigError, LowFormerConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    config: LowFormerConfig
    description: str
    aliases: tuple[str, ...] = ()
    # How the paper's measurement table names it: model, and variant_note for the B1 ablations.
    paper_model: str | None = None
    paper_note: str | None = None
    # Training-time settings of the release (docs/architecture.md §10); not part of the architecture or its hash.
    drop_path: float = 0.0
    drop_path_skip: int = 0
    # Families the search reports as fixed points on its Pareto front.
    series: str = "ablation"  # "B" | "E" | "ablation"


_B1 = LowFormerConfig()  # the config defaults are B1
_B15 = _B1.with_(widths=(20, 40, 80, 160, 320), depths=(0, 1, 1, 6, 6), head_widths=(2304, 2560))
_B3 = _B1.with_(widths=(32, 64, 128, 256, 512), depths=(1, 2, 3, 6, 6), expand_stem=4)
_NO_MLP = dict(mlp=(False, False))
_CONV_ONLY = dict(attention=("none", "none"), mlp=(False, False))
_B1_ABLATION = "B1 ablation: "

# name, config, description, extras
_TABLE: list[tuple[str, LowFormerConfig, str, dict[str, Any]]] = [
    ("B0", _B1.with_(depths=(0, 1, 1, 3, 4), expand_s2=4), "LowFormer-B0",
     dict(paper_model="LowFormer-B0", drop_path=0.05, series="B")),
    ("B1", _B1, "LowFormer-B1", dict(paper_model="LowFormer-B1", drop_path=0.05, series="B")),
    ("B1.5", _B15, "LowFormer-B1.5", dict(paper_model="LowFormer-B1.5", drop_path=0.1, series="B")),
    ("B2", _B15.with_(widths=(24, 48, 96, 192, 384)), "LowFormer-B2",
     dict(paper_model="LowFormer-B2", drop_path=0.1, drop_path_skip=2, series="B")),
    ("B3", _B3, "LowFormer-B3", dict(paper_model="LowFormer-B3", drop_path=0.1, drop_path_skip=2, series="B")),
    ("B3r192", _B3.with_(resolution=192), "LowFormer-B3 at 192 px",
     dict(paper_model="LowFormer-B3r192", drop_path=0.1, drop_path_skip=2, series="B")),
    ("E1", _B15.with_(depths=(0, 1, 1, 4, 4), **_CONV_ONLY), "edge variant: B1.5, conv only, shallow",
     dict(aliases=("B1.5-conv-shallow",), drop_path=0.1, series="E")),
    ("E2", _B3.with_(depths=(1, 2, 3, 4, 4), **_CONV_ONLY), "edge variant: B3, conv only, shallow",
     dict(aliases=("B3-conv-shallow",), drop_path=0.1, drop_path_skip=1, series="E")),
    ("E3", _B3.with_(**_NO_MLP), "edge variant: B3 without MLPs (and their pre-norms)",
     dict(aliases=("B3-mlpless",), drop_path=0.1, drop_path_skip=2, series="E")),
    ("B1-unfused", _B1.with_(fused_blocks=False, fusion_threshold=0, split_proj=True),
     "B1 ablation: every FusedMBConv unfused, attention output projection split",
     dict(paper_model="LowFormer-B1", paper_note=_B1_ABLATION + "unfused MBConv", drop_path=0.05)),
    ("B1-relu-linear", _B1.with_(attention=("relu_linear", "relu_linear"), **_NO_MLP),
     "B1 ablation: EfficientViT ReLU-linear attention, no MLP",
     dict(paper_model="LowFormer-B1", paper_note=_B1_ABLATION + "relu-linear att", drop_path=0.05)),
    ("B1-mhsa", _B1.with_(attention=("mhsa", "mhsa")), "B1 ablation: original MHSA (reconstructed)",
     dict(paper_model="LowFormer-B1", paper_note=_B1_ABLATION + "original MHSA", drop_path=0.05)),
    ("B1-highres-att", _B1.with_(att_stride=(1, 1)), "B1 ablation: stage-3 attention at full resolution",
     dict(paper_model="LowFormer-B1", paper_note=_B1_ABLATION + "high-res attention", drop_path=0.05)),
    ("B1-no-compression", _B1.with_(compression=1.0), "B1 ablation: no channel compression in attention",
     dict(paper_model="LowFormer-B1", paper_note=_B1_ABLATION + "no channel compr.", drop_path=0.05)),
    ("B1-mlpless", _B1.with_(**_NO_MLP), "B1 without MLPs", dict(drop_path=0.05)),
    ("B1-mlpless-shallow", _B1.with_(depths=(0, 1, 1, 3, 3), **_NO_MLP),
     "B1 without MLPs, 3+3 LowFormer blocks (depths assumed, docs/architecture.md §8)", dict(drop_path=0.05)),
    ("B1.5-mlpless", _B15.with_(**_NO_MLP), "B1.5 without MLPs", dict(drop_path=0.1)),
    ("B1.5-mlpless-shallow", _B15.with_(depths=(0, 1, 1, 4, 4), **_NO_MLP), "B1.5 without MLPs, shallow",
     dict(drop_path=0.1)),
    ("B3-mlpless-shallow", _B3.with_(depths=(1, 2, 3, 4, 4), **_NO_MLP), "B3 without MLPs, shallow",
     dict(drop_path=0.1, drop_path_skip=2)),
]

VARIANTS: dict[str, Variant] = {
    name: Variant(name=name, config=cfg, description=desc, **extra) for name, cfg, desc, extra in _TABLE
}
# The B1 ablation baseline row of the paper is B1 itself.
PAPER_ALIASES = {("LowFormer-B1", _B1_ABLATION + "baseline"): "B1"}
_ALIASES = {alias: v.name for v in VARIANTS.values() for alias in v.aliases}


def variant_names(include_aliases: bool = False) -> list[str]:
    names = list(VARIANTS)
    return names + list(_ALIASES) if include_aliases else names


def get_variant(name: str) -> Variant:
    """A named variant by name or alias (``B1.5-conv-shallow`` is E1)."""
    key = _ALIASES.get(name, name)
    if key not in VARIANTS:
        raise ConfigError("model", f"unknown variant {name!r}; allowed: {', '.join(variant_names(True))}")
    return VARIANTS[key]


def named_series(series: str = "BE") -> list[Variant]:
    """The fixed points a search reports: B0-B3 and E1-E3 (``B3r192`` is B3 at another resolution)."""
    return [v for v in VARIANTS.values() if v.series in series and v.name != "B3r192"]
