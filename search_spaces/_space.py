"""The searchable domain of every knob, flat: one table read by the random sampler, the Optuna search
and the docs. Every named B/E variant is a point of this domain, so searches can enqueue them.

Flat and unconditional on purpose: a search suggests every knob on every trial and the config ignores
those whose parent is off. NSGA-II's crossover then always sees the same parameters (conditional
suggestions would be resampled at random instead of crossed over).
"""

from __future__ import annotations

import dataclasses
import random
import types
from typing import Any, Iterator, Mapping, Sequence

from ._config import ATTENTION_TYPES, ConfigError, LowFormerConfig


@dataclasses.dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple
    doc: str

    @property
    def int_range(self) -> tuple[int, int, int] | None:
        """(low, high, step) when the choices are an arithmetic run of integers (ordinal for samplers)."""
        c = self.choices
        if len(c) < 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in c):
            return None
        step = c[1] - c[0]
        if step <= 0 or any(b - a != step for a, b in zip(c, c[1:])):
            return None
        return c[0], c[-1], step


RESOLUTIONS = tuple(range(160, 289, 16))

SPACE: tuple[Knob, ...] = (
    Knob("resolution", RESOLUTIONS, "input resolution (px)"),
    Knob("width0", (16, 20, 24, 32), "stem width"),
    Knob("width1", (32, 40, 48, 64), "stage-1 width"),
    Knob("width2", (64, 80, 96, 128), "stage-2 width"),
    Knob("width3", tuple(range(96, 321, 32)), "stage-3 width"),
    Knob("width4", tuple(range(192, 513, 64)), "stage-4 width"),
    Knob("depth0", (0, 1, 2), "extra stem blocks"),
    Knob("depth1", (1, 2, 3), "stage-1 blocks incl. the stride-2 block"),
    Knob("depth2", (1, 2, 3, 4), "stage-2 blocks incl. the stride-2 block"),
    Knob("depth3", tuple(range(0, 9)), "stage-3 LowFormer blocks"),
    Knob("depth4", tuple(range(0, 9)), "stage-4 LowFormer blocks"),
    Knob("expand_stem", (2.0, 4.0), "expansion of stem blocks"),
    Knob("expand_s2", (4.0, 6.0), "expansion of stride-2 blocks"),
    Knob("expand_s1", (2.0, 4.0, 6.0), "expansion of stride-1 blocks in stages 1-2"),
    Knob("expand_local", (2.0, 3.0, 4.0, 6.0), "expansion of the local conv in LowFormer blocks"),
    Knob("fused_blocks", (True, False), "stand-alone blocks fused (FusedMBConv) or not (MBConv)"),
    Knob("fusion_threshold", (0, 128, 192, 256, 320, 384, 512, 1024), "local conv fused when width < T"),
    Knob("attention3", ATTENTION_TYPES, "stage-3 attention"),
    Knob("attention4", ATTENTION_TYPES, "stage-4 attention"),
    Knob("att_stride3", (1, 2, 4), "stage-3 Lowtention downsampling"),
    Knob("att_stride4", (1, 2), "stage-4 Lowtention downsampling"),
    Knob("compression", (0.25, 0.5, 1.0), "Lowtention channel compression"),
    Knob("split_proj", (False, True), "Lowtention output: 1x1 conv + depthwise transposed conv"),
    Knob("mlp3", (True, False), "stage-3 MLP (and attention pre-norm)"),
    Knob("mlp4", (True, False), "stage-4 MLP (and attention pre-norm)"),
    Knob("mlp_ratio3", (2.0, 3.0, 4.0), "stage-3 MLP hidden ratio"),
    Knob("mlp_ratio4", (2.0, 3.0, 4.0), "stage-4 MLP hidden ratio"),
    Knob("head0", (1024, 1536, 2304), "head conv width"),
    Knob("head1", (1280, 1600, 2560), "head hidden width"),
)
KNOBS = {k.name: k for k in SPACE}

# A flat knob's place in the config (docs, config files): (config field, index), stage 3/4 pairs indexed from 0.
_CONFIG_PLACE = {**{f"width{i}": ("widths", i) for i in range(5)}, **{f"depth{i}": ("depths", i) for i in range(5)},
                 **{f"{k}{s}": (f, s - 3) for k, f in (("attention", "attention"), ("att_stride", "att_stride"),
                                                        ("mlp", "mlp"), ("mlp_ratio", "mlp_ratio")) for s in (3, 4)},
                 "head0": ("head_widths", 0), "head1": ("head_widths", 1)}


def config_knob_name(knob: str) -> str:
    """The name a config file uses for a flat search knob: ``depth2`` -> ``depths[2]``, ``attention3`` ->
    ``attention[0]`` (stage 3), ``head1`` -> ``head_widths[1]``; other knobs keep their name."""
    place = _CONFIG_PLACE.get(knob)
    if place is None:
        return knob
    field, i = place
    return f"{field}[{i}]" + (f" (stage {i + 3})" if field in ("attention", "att_stride", "mlp", "mlp_ratio") else "")


def knobs_to_config(values: Mapping[str, Any], num_classes: int = 1000) -> LowFormerConfig:
    """The config of one flat knob assignment (irrelevant knobs are normalised away)."""
    missing = [k for k in KNOBS if k not in values]
    if missing:
        raise ConfigError(missing[0], f"missing knob; all of {', '.join(KNOBS)} are needed")
    v = values
    return LowFormerConfig(
        resolution=v["resolution"],
        widths=tuple(v[f"width{i}"] for i in range(5)),
        depths=tuple(v[f"depth{i}"] for i in range(5)),
        expand_stem=v["expand_stem"],
        expand_s2=v["expand_s2"],
        expand_s1=v["expand_s1"],
        expand_local=v["expand_local"],
        fused_blocks=v["fused_blocks"],
        fusion_threshold=v["fusion_threshold"],
        attention=(v["attention3"], v["attention4"]),
        att_stride=(v["att_stride3"], v["att_stride4"]),
        compression=v["compression"],
        split_proj=v["split_proj"],
        mlp=(v["mlp3"], v["mlp4"]),
        mlp_ratio=(v["mlp_ratio3"], v["mlp_ratio4"]),
        head_widths=(v["head0"], v["head1"]),
        num_classes=num_classes,
    )


def config_to_knobs(config: LowFormerConfig) -> dict[str, Any]:
    """The flat knob values of a config; knobs it ignores take B1's value. Raises ConfigError when a value
    lies outside the searchable domain."""
    c = config
    # Field defaults, not LowFormerConfig(): the latter has its own ignored knobs normalised to None.
    default = types.SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(LowFormerConfig)})
    pick = lambda x, d: d if x is None else x  # noqa: E731
    values: dict[str, Any] = {"resolution": c.resolution}
    for i in range(5):
        values[f"width{i}"] = c.widths[i]
        values[f"depth{i}"] = c.depths[i]
    for name in ("expand_stem", "expand_s2", "expand_s1", "expand_local", "fusion_threshold", "compression", "split_proj"):
        values[name] = pick(getattr(c, name), getattr(default, name))
    values["fused_blocks"] = c.fused_blocks
    for i, s in enumerate((3, 4)):
        values[f"attention{s}"] = pick(c.attention[i], default.attention[i])
        values[f"att_stride{s}"] = pick(c.att_stride[i], default.att_stride[i])
        values[f"mlp{s}"] = pick(c.mlp[i], default.mlp[i])
        values[f"mlp_ratio{s}"] = pick(c.mlp_ratio[i], default.mlp_ratio[i])
    values["head0"], values["head1"] = c.head_widths
    for name, value in list(values.items()):
        if value not in KNOBS[name].choices:
            # A canonical config (a stored one, say) may use a value the space does not list for a network it
            # does contain: fusion threshold 64 where the space says 0. Any listed value of the same network will do.
            same = next((v for v in KNOBS[name].choices if knobs_to_config({**values, name: v}, c.num_classes) == c), None)
            if same is None:
                raise ConfigError(name, f"{value!r} is outside the search space; allowed: {KNOBS[name].choices}")
            values[name] = same
    return values


def sample_config(rng: random.Random | int | None = None, resolutions: Sequence[int] | None = None) -> LowFormerConfig:
    """A random valid config drawn uniformly knob by knob from :data:`SPACE` (seeded: int or Random)."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    values = {k.name: rng.choice(k.choices) for k in SPACE}
    if resolutions:
        values["resolution"] = rng.choice(list(resolutions))
    return knobs_to_config(values)


def sample_configs(
    n: int, seed: int = 0, resolutions: Sequence[int] | None = None, unique: bool = True
) -> Iterator[LowFormerConfig]:
    """``n`` random configs from one seed; with ``unique`` no network repeats (one hash per network: two knob
    settings that build the same network count once)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    made = 0
    while made < n:
        cfg = sample_config(rng, resolutions)
        if unique:
            if cfg.hash in seen:
                continue
            seen.add(cfg.hash)
        made += 1
        yield cfg
