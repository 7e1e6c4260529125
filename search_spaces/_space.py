"""The searchable domain of every knob, flat: one table read by the random sampler, the Optuna search
and the docs, derived from the config's fields (each knob's field declares its domain: ``_config._knob``), so a
new knob is a field of ``LowFormerConfig``, not a line here too. Every named B/E variant is a point of this
domain, so searches can enqueue them.

Flat and unconditional on purpose: a search suggests every knob on every trial and the config ignores
those whose parent is off. NSGA-II's crossover then always sees the same parameters (conditional
suggestions would be resampled at random instead of crossed over).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Iterator, Mapping, Sequence

from ._config import ConfigError, LowFormerConfig


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


def _knobs_of(cls) -> Iterator[tuple[Knob, str, int | None]]:
    """Every knob of the config's fields in field order (``_config._knob``), with its place: (field, index in a
    tuple field or None)."""
    for f in dataclasses.fields(cls):
        domain = f.metadata.get("domain")
        if domain is None:
            continue
        flat = f.metadata["flat"]
        if flat is None:
            yield Knob(f.name, tuple(domain), f.metadata["doc"]), f.name, None
            continue
        stem, first = flat
        for i, (d, doc) in enumerate(zip(domain, f.metadata["doc"], strict=True)):
            yield Knob(f"{stem}{first + i}", tuple(d), doc), f.name, i


_PLACES = tuple(_knobs_of(LowFormerConfig))
# The searchable domain, read off the config's fields: ints with an arithmetic run are ordinal for the samplers.
SPACE: tuple[Knob, ...] = tuple(k for k, _, _ in _PLACES)
KNOBS = {k.name: k for k in SPACE}
# A flat knob's place in the config (docs, config files): (config field, index), stage 3/4 pairs indexed from 0.
_CONFIG_PLACE = {k.name: (field, i) for k, field, i in _PLACES if i is not None}
_STAGE_PAIRS = {f.name for f in dataclasses.fields(LowFormerConfig) if (f.metadata.get("flat") or ("", 0))[1] == 3}


def config_knob_name(knob: str) -> str:
    """The name a config file uses for a flat search knob: ``depth2`` -> ``depths[2]``, ``attention3`` ->
    ``attention[0]`` (stage 3), ``head1`` -> ``head_widths[1]``; other knobs keep their name."""
    place = _CONFIG_PLACE.get(knob)
    if place is None:
        return knob
    field, i = place
    return f"{field}[{i}]" + (f" (stage {i + 3})" if field in _STAGE_PAIRS else "")


def knobs_to_config(values: Mapping[str, Any], num_classes: int = 1000) -> LowFormerConfig:
    """The config of one flat knob assignment (irrelevant knobs are normalised away)."""
    missing = [k for k in KNOBS if k not in values]
    if missing:
        raise ConfigError(missing[0], f"missing knob; all of {', '.join(KNOBS)} are needed")
    fields: dict[str, Any] = {}
    for k, field, i in _PLACES:
        if i is None:
            fields[field] = values[k.name]
        else:
            fields[field] = fields.get(field, ()) + (values[k.name],)
    return LowFormerConfig(**fields, num_classes=num_classes)


def config_to_knobs(config: LowFormerConfig) -> dict[str, Any]:
    """The flat knob values of a config; knobs it ignores take B1's value. Raises ConfigError when a value
    lies outside the searchable domain."""
    c = config
    # Field defaults, not LowFormerConfig(): the latter has its own ignored knobs normalised to None.
    default = {f.name: f.default for f in dataclasses.fields(LowFormerConfig)}
    values: dict[str, Any] = {}
    for k, field, i in _PLACES:
        x, d = (getattr(c, field), default[field]) if i is None else (getattr(c, field)[i], default[field][i])
        values[k.name] = d if x is None else x
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
