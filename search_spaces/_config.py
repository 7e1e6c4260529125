"""The LowFormer configuration: one immutable, validated value per architecture.

A config is normalised when it is created: a knob whose parent is off (the stem expansion when there
are no stem blocks, the attention stride of a stage without Lowtention, ...) is set to ``None``. Its
hash names the network that is built, not the knobs as typed: it is taken of :meth:`LowFormerConfig.canonical`,
where every knob that reaches the network only through a rounded or thresholded effect (fusion threshold,
expansion and MLP ratios, compression) takes the simplest value with the same effect (see ``_identity.py``).
Two configs that build the same network therefore compare equal and share one content hash, which is what
lets measurements, predictions and search trials refer to an architecture across processes, machines
and package versions; each config still keeps (and writes) the values it was given.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Mapping

from lowformer_common import MAX_ERROR_LINE_CHARS, UserError, short, strict_loads

from ._identity import (
    canonical_compression,
    canonical_ratio,
    canonical_threshold,
    lowtention_heads,
)

ATTENTION_TYPES = ("lowtention", "mhsa", "relu_linear", "none")
ATT_STRIDES = (1, 2, 4)
MIN_RESOLUTION = 32
MAX_RESOLUTION = 4096
MAX_WIDTH = 4096
MAX_DEPTH = 64

# Depth semantics (docs/architecture.md §1): d1/d2 include their stride-2 block, the others count extras.
_MIN_DEPTH = (0, 1, 1, 0, 0)
_DEPTH_MEANING = (
    "d0 counts extra stem blocks (>= 0)",
    "d1 counts all stage-1 blocks including the stride-2 block (>= 1)",
    "d2 counts all stage-2 blocks including the stride-2 block (>= 1)",
    "d3 counts stage-3 LowFormer blocks after the stride-2 opener (>= 0)",
    "d4 counts stage-4 LowFormer blocks after the stride-2 opener (>= 0)",
)

# A config is a few hundred bytes of JSON two levels deep; files and cells far beyond that are refused unread.
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_DEPTH = 16
_MHSA_HEAD_DIM = 32
_RELU_LINEAR_HEAD_DIM = 16


class ConfigError(UserError, ValueError):
    """An invalid config. ``str(err)`` is one line: the field, then what is allowed (cut to MAX_ERROR_CHARS:
    a message quotes what the user gave, and that may be a 2-million-item list)."""

    def __init__(self, field: str, message: str):
        self.field = short(field, 80)
        self.message = short(message, MAX_ERROR_LINE_CHARS)
        super().__init__(f"{self.field}: {self.message}")


def _shown(x: Any) -> str:
    """``repr(x)`` for an error message, cut short: the value may be a list of millions of items."""
    try:
        if isinstance(x, (list, tuple)) and len(x) > 8:
            return short(repr(list(x[:8]))[:-1] + f", … ({len(x)} items)]", 80)
        return short(repr(x), 80)
    except RecursionError:  # a value nested deeper than repr can go
        return f"a deeply nested {type(x).__name__}"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_int(field: str, x: Any, lo: int, hi: int) -> int:
    if not _is_int(x):
        raise ConfigError(field, f"must be an integer in [{lo}, {hi}] (got {_shown(x)})")
    if not lo <= x <= hi:
        raise ConfigError(field, f"must be an integer in [{lo}, {hi}] (got {x})")
    return x


def _check_ratio(field: str, x: Any, lo: float, hi: float, lo_open: bool = True) -> float:
    bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
    if not _is_number(x) or x > hi or x < lo or (lo_open and x == lo):
        raise ConfigError(field, f"must be a number in {bound} (got {_shown(x)})")
    return float(x)


def _check_bool(field: str, x: Any) -> bool:
    if not isinstance(x, bool):
        raise ConfigError(field, f"must be true or false (got {_shown(x)})")
    return x


def _check_seq(field: str, x: Any, n: int) -> tuple:
    if isinstance(x, (str, bytes)) or not isinstance(x, (list, tuple)) or len(x) != n:
        raise ConfigError(field, f"must be a list of {n} values (got {_shown(x)})")
    return tuple(x)


def _canonical_number(x: Any) -> Any:
    # 4 and 4.0 must hash alike: integral floats are written as integers.
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, (list, tuple)):
        return [_canonical_number(v) for v in x]
    return x


# The searchable input resolutions (px).
RESOLUTIONS = tuple(range(160, 289, 16))


def _knob(default: Any, domain: tuple, doc: Any, *, flat: tuple[str, int] | None = None) -> Any:
    """A knob of the search space: the field's ``default`` (B1's value), its searchable ``domain`` and ``doc`` (a
    few words for the docs). A tuple field gives one domain and one doc per element and ``flat``, its flat names'
    stem and first index (``("mlp", 3)``: ``mlp3``, ``mlp4``). ``_space.SPACE`` is read off these fields."""
    return dataclasses.field(default=default, metadata={"domain": domain, "doc": doc, "flat": flat})


@dataclasses.dataclass(frozen=True)
class LowFormerConfig:
    """One point of the LowFormer design space (see search_spaces/README.md, "Knobs").

    Stage-3/4 knobs are pairs ``(stage 3, stage 4)``. Defaults reproduce LowFormer-B1.
    """

    resolution: int = _knob(224, RESOLUTIONS, "input resolution (px)")
    widths: tuple[int, int, int, int, int] = _knob(
        (16, 32, 64, 128, 256),
        ((16, 20, 24, 32), (32, 40, 48, 64), (64, 80, 96, 128), tuple(range(96, 321, 32)), tuple(range(192, 513, 64))),
        ("stem width", "stage-1 width", "stage-2 width", "stage-3 width", "stage-4 width"), flat=("width", 0))
    depths: tuple[int, int, int, int, int] = _knob(
        (0, 1, 1, 5, 5), ((0, 1, 2), (1, 2, 3), (1, 2, 3, 4), tuple(range(0, 9)), tuple(range(0, 9))),
        ("extra stem blocks", "stage-1 blocks incl. the stride-2 block", "stage-2 blocks incl. the stride-2 block",
         "stage-3 LowFormer blocks", "stage-4 LowFormer blocks"), flat=("depth", 0))
    expand_stem: float | None = _knob(4.0, (2.0, 4.0), "expansion of stem blocks")
    expand_s2: float = _knob(6.0, (4.0, 6.0), "expansion of stride-2 blocks")
    expand_s1: float | None = _knob(4.0, (2.0, 4.0, 6.0), "expansion of stride-1 blocks in stages 1-2")
    expand_local: float | None = _knob(4.0, (2.0, 3.0, 4.0, 6.0), "expansion of the local conv in LowFormer blocks")
    fused_blocks: bool = _knob(True, (True, False), "stand-alone blocks fused (FusedMBConv) or not (MBConv)")
    fusion_threshold: int | None = _knob(256, (0, 128, 192, 256, 320, 384, 512, 1024), "local conv fused when width < T")
    attention: tuple[str | None, str | None] = _knob(("lowtention", "lowtention"), (ATTENTION_TYPES, ATTENTION_TYPES),
                                                     ("stage-3 attention", "stage-4 attention"), flat=("attention", 3))
    att_stride: tuple[int | None, int | None] = _knob(
        (2, 1), ((1, 2, 4), (1, 2)), ("stage-3 Lowtention downsampling", "stage-4 Lowtention downsampling"),
        flat=("att_stride", 3))
    compression: float | None = _knob(0.5, (0.25, 0.5, 1.0), "Lowtention channel compression")
    split_proj: bool | None = _knob(False, (False, True), "Lowtention output: 1x1 conv + depthwise transposed conv")
    mlp: tuple[bool | None, bool | None] = _knob(
        (True, True), ((True, False), (True, False)),
        ("stage-3 MLP (and attention pre-norm)", "stage-4 MLP (and attention pre-norm)"), flat=("mlp", 3))
    mlp_ratio: tuple[float | None, float | None] = _knob(
        (4.0, 4.0), ((2.0, 3.0, 4.0), (2.0, 3.0, 4.0)), ("stage-3 MLP hidden ratio", "stage-4 MLP hidden ratio"),
        flat=("mlp_ratio", 3))
    head_widths: tuple[int, int] = _knob((1536, 1600), ((1024, 1536, 2304), (1280, 1600, 2560)),
                                         ("head conv width", "head hidden width"), flat=("head", 0))
    num_classes: int = 1000

    def __post_init__(self) -> None:
        # Validation and normalisation in the order the knobs depend on each other: a stage's knobs need its
        # depth, the attention knobs need the stage's attention type, the head arithmetic needs compression.
        self._fill_switched_on_defaults()
        self._check_shape()
        self._check_conv_knobs()
        self._check_stage_blocks()
        self._check_attention_knobs()
        self._check_head()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: only the validation steps may normalise

    def _fill_switched_on_defaults(self) -> None:
        # A conditional knob left None (or normalised away earlier) takes its default once its parent is on,
        # so `cfg.with_(depths=...)` can switch a stage back on.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                self._set(f.name, f.default)
            elif isinstance(f.default, tuple) and isinstance(value, (list, tuple)) and len(value) == len(f.default):
                self._set(f.name, tuple(f.default[i] if v is None else v for i, v in enumerate(value)))

    def _check_shape(self) -> None:
        """Resolution, widths and depths: every other knob depends on them."""
        self._set("resolution", _check_int("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION))
        widths = _check_seq("widths", self.widths, 5)
        for i, w in enumerate(widths):
            _check_int(f"widths[{i}]", w, 1, MAX_WIDTH)
        self._set("widths", widths)
        depths = _check_seq("depths", self.depths, 5)
        for i, d in enumerate(depths):
            if not _is_int(d) or not _MIN_DEPTH[i] <= d <= MAX_DEPTH:
                raise ConfigError(
                    f"depths[{i}]",
                    f"must be an integer in [{_MIN_DEPTH[i]}, {MAX_DEPTH}] (got {_shown(d)}); {_DEPTH_MEANING[i]}",
                )
        self._set("depths", depths)

    def _check_conv_knobs(self) -> None:
        """Expansions and fusion; a knob of blocks that do not exist is normalised to None."""
        d0, d1, d2, d3, d4 = self.depths
        w0, w1, w2, w3, w4 = self.widths
        self._set("expand_s2", _check_ratio("expand_s2", self.expand_s2, 0, 16))
        self._set("expand_stem", _check_ratio("expand_stem", self.expand_stem, 0, 16) if d0 > 0 else None)
        has_s1 = d1 > 1 or d2 > 1
        self._set("expand_s1", _check_ratio("expand_s1", self.expand_s1, 0, 16) if has_s1 else None)
        has_lowformer = d3 > 0 or d4 > 0
        self._set("expand_local", _check_ratio("expand_local", self.expand_local, 0, 16) if has_lowformer else None)
        self._set("fused_blocks", _check_bool("fused_blocks", self.fused_blocks))
        self._set(
            "fusion_threshold",
            _check_int("fusion_threshold", self.fusion_threshold, 0, 1 << 20) if has_lowformer else None,
        )
        # Every hidden width must be at least one channel.
        for field, e, cins in (
            ("expand_stem", self.expand_stem, (w0,)),
            ("expand_s2", self.expand_s2, (w0, w1, w2, w3)),
            ("expand_s1", self.expand_s1, (w1, w2)),
            ("expand_local", self.expand_local, (w3, w4)),
        ):
            if e is not None and min(round(c * e) for c in cins) < 1:
                raise ConfigError(field, f"{e} leaves a block with no hidden channel; use a larger expansion")

    def _check_stage_blocks(self) -> None:
        """Per stage 3/4: attention type, its stride, the MLP and its ratio; all None for a stage without blocks."""
        attention = _check_seq("attention", self.attention, 2)
        att_stride = _check_seq("att_stride", self.att_stride, 2)
        mlp = _check_seq("mlp", self.mlp, 2)
        mlp_ratio = _check_seq("mlp_ratio", self.mlp_ratio, 2)
        att_n, stride_n, mlp_n, ratio_n = [], [], [], []
        for i in range(2):
            stage = i + 3
            if self.depths[stage] == 0:
                att_n.append(None), stride_n.append(None), mlp_n.append(None), ratio_n.append(None)
                continue
            a = attention[i]
            if a not in ATTENTION_TYPES:
                raise ConfigError(f"attention[{i}]", f"stage {stage}: must be one of {'|'.join(ATTENTION_TYPES)} (got {_shown(a)})")
            att_n.append(a)
            if a == "lowtention":
                s = att_stride[i]
                if s not in ATT_STRIDES or not _is_int(s):
                    raise ConfigError(f"att_stride[{i}]", f"stage {stage}: must be one of {ATT_STRIDES} (got {_shown(s)})")
                stride_n.append(s)
            else:
                stride_n.append(None)
            m = _check_bool(f"mlp[{i}]", mlp[i])
            mlp_n.append(m)
            ratio_n.append(_check_ratio(f"mlp_ratio[{i}]", mlp_ratio[i], 0, 16) if m else None)
            if m and round(self.widths[stage] * ratio_n[-1]) < 1:
                raise ConfigError(f"mlp_ratio[{i}]", f"{mlp_ratio[i]} leaves the MLP with no hidden channel")
        self._set("attention", tuple(att_n))
        self._set("att_stride", tuple(stride_n))
        self._set("mlp", tuple(mlp_n))
        self._set("mlp_ratio", tuple(ratio_n))

    def _check_attention_knobs(self) -> None:
        """Lowtention's compression and output projection, then the head arithmetic of every attention type."""
        any_low = "lowtention" in self.attention
        self._set("compression", _check_ratio("compression", self.compression, 0, 1) if any_low else None)
        self._set("split_proj", _check_bool("split_proj", self.split_proj) if any_low else None)
        # Every attention type must be able to split its width into heads.
        for i, a in enumerate(self.attention):
            c = self.widths[i + 3]
            field = f"widths[{i + 3}]"
            if a == "lowtention":
                heads, head_dim = lowtention_heads(c, self.compression)
                if head_dim < 1:
                    raise ConfigError(
                        field, f"{c} channels give Lowtention heads of {head_dim} channels; use a width >= 2/compression"
                    )
            elif a == "mhsa" and c % _MHSA_HEAD_DIM:
                raise ConfigError(field, f"MHSA splits {c} channels into heads of {_MHSA_HEAD_DIM}; use a multiple of {_MHSA_HEAD_DIM}")
            elif a == "relu_linear" and c % _RELU_LINEAR_HEAD_DIM:
                raise ConfigError(
                    field,
                    f"ReLU-linear attention splits {c} channels into heads of {_RELU_LINEAR_HEAD_DIM}; use a multiple of {_RELU_LINEAR_HEAD_DIM}",
                )

    def _check_head(self) -> None:
        head = _check_seq("head_widths", self.head_widths, 2)
        for i, h in enumerate(head):
            _check_int(f"head_widths[{i}]", h, 1, 1 << 16)
        self._set("head_widths", head)
        self._set("num_classes", _check_int("num_classes", self.num_classes, 1, 1 << 20))

    # ------------------------------------------------------------------ derived facts

    def local_fused(self, stage: int) -> bool:
        """Whether the local conv of a stage-3/4 LowFormer block is a FusedMBConv (docs/architecture.md §2.4)."""
        return self.fusion_threshold is not None and self.widths[stage] < self.fusion_threshold

    def with_(self, **changes: Any) -> "LowFormerConfig":
        """A copy with some knobs changed (validated and normalised again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON and hash

    def to_dict(self) -> dict[str, Any]:
        """Every knob, lists for tuples; normalised-away knobs are ``None``."""
        return {f.name: _canonical_number(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def knob_json(self) -> str:
        """The knobs as given, in the hashed form's layout: sorted keys, no whitespace, integral floats as ints,
        ``None`` knobs left out (so a later knob that is off by default leaves existing JSON unchanged).

        Before identity version 2 the hash was taken of exactly this text (see :attr:`legacy_hash`).
        """
        # Per-stage pairs keep their Nones: they mark an empty stage by position.
        d = {k: v for k, v in self.to_dict().items() if v is not None}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def canonical(self) -> "LowFormerConfig":
        """The config of the same network whose every knob takes the simplest value with its effect: the fusion
        threshold a power of two (0 without fused blocks), ratios and compression on the coarsest decimal grid.

        Configs that build the same network have one canonical config; an already canonical config is its own.
        """
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> "LowFormerConfig":
        # cached_property writes the instance dict directly, which a frozen dataclass allows.
        w, d = self.widths, self.depths
        local = tuple(w[s] for s in (3, 4) if d[s] > 0)
        lowtention = tuple(w[s] for s in (3, 4) if self.attention[s - 3] == "lowtention")
        wanted = {
            "fusion_threshold": canonical_threshold(self.fusion_threshold, self.fused_blocks, local),
            "expand_stem": canonical_ratio(self.expand_stem, (w[0],), (w[0],)),
            "expand_s2": canonical_ratio(self.expand_s2, w[:4], w[:4]),
            "expand_s1": canonical_ratio(self.expand_s1, tuple(w[s] for s in (1, 2) if d[s] > 1), (w[1], w[2])),
            "expand_local": canonical_ratio(self.expand_local, local, (w[3], w[4])),
            "mlp_ratio": tuple(canonical_ratio(r, (w[s],), (w[s],)) for s, r in zip((3, 4), self.mlp_ratio)),
            "compression": canonical_compression(self.compression, lowtention),
        }
        changes = {k: v for k, v in wanted.items() if v != getattr(self, k)}
        if not changes:
            return self
        canonical = dataclasses.replace(self, **changes)
        object.__setattr__(canonical, "_canonical", canonical)  # its own canonical: no second search
        return canonical

    def canonical_json(self) -> str:
        """The hashed form: :meth:`knob_json` of :meth:`canonical`. A valid config file: it loads as the
        canonical config (same network, same hash)."""
        return self.canonical().knob_json()

    @functools.cached_property
    def hash(self) -> str:
        """sha256 of :meth:`canonical_json` (hex): one hash per network. The first 12 characters are enough
        for display."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    # Equality is identity of the built network, like the hash (two thresholds that fuse the same stages are
    # one architecture); compare ``to_dict()`` for the knobs as typed.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LowFormerConfig):
            return NotImplemented
        return self.hash == other.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def legacy_hash(self) -> str:
        """The hash of identity version 1 (the knobs as typed): what stores, datasets and predictor sidecars
        written before version 2 call this config. For migrations and tolerant reads only."""
        return hashlib.sha256(self.knob_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], start: "LowFormerConfig | None" = None) -> "LowFormerConfig":
        """A config from knob values; unknown keys are an error, missing ones take ``start``'s values (B1's
        by default). A ``"base"`` key naming a variant is resolved by :func:`search_spaces.config_from_dict`."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", f"must be a JSON object of knobs (got {type(data).__name__})")
        data = dict(data)
        data.pop("name", None)  # files written by `lowformer-nas export` carry the name for humans
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key == "base":
                raise ConfigError(key, "a named base is resolved by search_spaces.config_from_dict and load_config")
            if key not in known:
                import difflib

                near = difflib.get_close_matches(str(key).lower(), sorted(known), n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ConfigError(key, f"unknown knob{hint}; allowed: base, {', '.join(sorted(known))}")
        return dataclasses.replace(start, **data) if start is not None else cls(**data)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "LowFormerConfig":
        """A config from stored JSON (``canonical_json``, ``to_json``)."""
        return cls.from_dict(parse_config_json(text, source))


def _nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of JSON text (strings skipped), without recursing."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_config_json(text: str | bytes, source: str = "config") -> Any:
    """The JSON value of a config text, bounded: at most MAX_CONFIG_BYTES, UTF-8, nested at most
    MAX_CONFIG_DEPTH deep, no NaN/Infinity. Every violation is a one-line ConfigError naming ``source``."""
    if isinstance(text, bytes):
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(source, f"more than {MAX_CONFIG_BYTES // 1024} KiB; a config is a small JSON object of knobs")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(source, f"not UTF-8 text (byte 0x{text[e.start]:02x} at offset {e.start}); "
                                      "a config is a JSON object of knobs") from None
    if not isinstance(text, str):
        raise ConfigError(source, f"must be JSON text (got {type(text).__name__})")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, f"more than {MAX_CONFIG_BYTES // 1024} KiB; a config is a small JSON object of knobs")
    # Counting brackets first keeps the character scan off the common path (a config has about ten).
    if text.count("[") + text.count("{") > MAX_CONFIG_DEPTH and _nesting_depth(text) > MAX_CONFIG_DEPTH:
        raise ConfigError(source, f"JSON nested more than {MAX_CONFIG_DEPTH} levels deep; a config is a JSON object of knobs")
    try:
        return strict_loads(text)  # a key given twice is refused, not silently the last one
    except json.JSONDecodeError as e:
        raise ConfigError(source, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise ConfigError(source, f"malformed JSON: {e}") from None
