"""The LowFormer configuration: one immutable, validated value per architecture.

A config is normalised when it is created: a knob whose parent is off (the stem expansion when there
are no stem blocks, the attention stride of a stage without Lowtention, ...) is set to ``None``. Two
configs that build the same network therefore compare equal and share one content hash, which is what
lets measurements, predictions and search trials refer to an architecture across processes, machines
and package versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping

from lowformer_common import UserError

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

# Lowtention head arithmetic (docs/architecture.md §3.1): channel compression applies only when C > 80.
_COMPRESSION_MIN_WIDTH = 80
_MHSA_HEAD_DIM = 32
_RELU_LINEAR_HEAD_DIM = 16


class ConfigError(UserError, ValueError):
    """An invalid config. ``str(err)`` is one line: the field, then what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def lowtention_heads(width: int, compression: float) -> tuple[int, int]:
    """(heads, head_dim) of a Lowtention layer of ``width`` channels, as the reference code computes it."""
    r = compression if width > _COMPRESSION_MIN_WIDTH else 1.0
    heads = max(1, math.floor(width * r / 30))
    head_dim = math.floor(math.floor(width / heads) * r)
    return heads, head_dim


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_int(field: str, x: Any, lo: int, hi: int) -> int:
    if not _is_int(x):
        raise ConfigError(field, f"must be an integer in [{lo}, {hi}] (got {x!r})")
    if not lo <= x <= hi:
        raise ConfigError(field, f"must be an integer in [{lo}, {hi}] (got {x})")
    return x


def _check_ratio(field: str, x: Any, lo: float, hi: float, lo_open: bool = True) -> float:
    bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
    if not _is_number(x) or x > hi or x < lo or (lo_open and x == lo):
        raise ConfigError(field, f"must be a number in {bound} (got {x!r})")
    return float(x)


def _check_bool(field: str, x: Any) -> bool:
    if not isinstance(x, bool):
        raise ConfigError(field, f"must be true or false (got {x!r})")
    return x


def _check_seq(field: str, x: Any, n: int) -> tuple:
    if isinstance(x, (str, bytes)) or not isinstance(x, (list, tuple)) or len(x) != n:
        raise ConfigError(field, f"must be a list of {n} values (got {x!r})")
    return tuple(x)


def _canonical_number(x: Any) -> Any:
    # 4 and 4.0 must hash alike: integral floats are written as integers.
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, (list, tuple)):
        return [_canonical_number(v) for v in x]
    return x


@dataclasses.dataclass(frozen=True)
class LowFormerConfig:
    """One point of the LowFormer design space (see README, "Knobs").

    Stage-3/4 knobs are pairs ``(stage 3, stage 4)``. Defaults reproduce LowFormer-B1.
    """

    resolution: int = 224
    widths: tuple[int, int, int, int, int] = (16, 32, 64, 128, 256)
    depths: tuple[int, int, int, int, int] = (0, 1, 1, 5, 5)
    expand_stem: float | None = 4.0
    expand_s2: float = 6.0
    expand_s1: float | None = 4.0
    expand_local: float | None = 4.0
    fused_blocks: bool = True
    fusion_threshold: int | None = 256
    attention: tuple[str | None, str | None] = ("lowtention", "lowtention")
    att_stride: tuple[int | None, int | None] = (2, 1)
    compression: float | None = 0.5
    split_proj: bool | None = False
    mlp: tuple[bool | None, bool | None] = (True, True)
    mlp_ratio: tuple[float | None, float | None] = (4.0, 4.0)
    head_widths: tuple[int, int] = (1536, 1600)
    num_classes: int = 1000

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        # A conditional knob left None (or normalised away earlier) takes its default once its parent is on,
        # so `cfg.with_(depths=...)` can switch a stage back on.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                set_(f.name, f.default)
            elif isinstance(f.default, tuple) and isinstance(value, (list, tuple)) and len(value) == len(f.default):
                set_(f.name, tuple(f.default[i] if v is None else v for i, v in enumerate(value)))

        set_("resolution", _check_int("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION))
        widths = _check_seq("widths", self.widths, 5)
        for i, w in enumerate(widths):
            _check_int(f"widths[{i}]", w, 1, MAX_WIDTH)
        set_("widths", widths)
        depths = _check_seq("depths", self.depths, 5)
        for i, d in enumerate(depths):
            if not _is_int(d) or not _MIN_DEPTH[i] <= d <= MAX_DEPTH:
                raise ConfigError(
                    f"depths[{i}]",
                    f"must be an integer in [{_MIN_DEPTH[i]}, {MAX_DEPTH}] (got {d!r}); {_DEPTH_MEANING[i]}",
                )
        set_("depths", depths)
        d0, d1, d2, d3, d4 = depths
        w0, w1, w2, w3, w4 = widths

        set_("expand_s2", _check_ratio("expand_s2", self.expand_s2, 0, 16))
        set_("expand_stem", _check_ratio("expand_stem", self.expand_stem, 0, 16) if d0 > 0 else None)
        has_s1 = d1 > 1 or d2 > 1
        set_("expand_s1", _check_ratio("expand_s1", self.expand_s1, 0, 16) if has_s1 else None)
        has_lowformer = d3 > 0 or d4 > 0
        set_("expand_local", _check_ratio("expand_local", self.expand_local, 0, 16) if has_lowformer else None)
        set_("fused_blocks", _check_bool("fused_blocks", self.fused_blocks))
        set_(
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

        stage_depth = (d3, d4)
        attention = _check_seq("attention", self.attention, 2)
        att_stride = _check_seq("att_stride", self.att_stride, 2)
        mlp = _check_seq("mlp", self.mlp, 2)
        mlp_ratio = _check_seq("mlp_ratio", self.mlp_ratio, 2)
        att_n, stride_n, mlp_n, ratio_n = [], [], [], []
        for i in range(2):
            stage = i + 3
            if stage_depth[i] == 0:
                att_n.append(None), stride_n.append(None), mlp_n.append(None), ratio_n.append(None)
                continue
            a = attention[i]
            if a not in ATTENTION_TYPES:
                raise ConfigError(f"attention[{i}]", f"stage {stage}: must be one of {'|'.join(ATTENTION_TYPES)} (got {a!r})")
            att_n.append(a)
            if a == "lowtention":
                s = att_stride[i]
                if s not in ATT_STRIDES or not _is_int(s):
                    raise ConfigError(f"att_stride[{i}]", f"stage {stage}: must be one of {ATT_STRIDES} (got {s!r})")
                stride_n.append(s)
            else:
                stride_n.append(None)
            m = _check_bool(f"mlp[{i}]", mlp[i])
            mlp_n.append(m)
            ratio_n.append(_check_ratio(f"mlp_ratio[{i}]", mlp_ratio[i], 0, 16) if m else None)
            if m and round(widths[stage] * ratio_n[-1]) < 1:
                raise ConfigError(f"mlp_ratio[{i}]", f"{mlp_ratio[i]} leaves the MLP with no hidden channel")
        set_("attention", tuple(att_n))
        set_("att_stride", tuple(stride_n))
        set_("mlp", tuple(mlp_n))
        set_("mlp_ratio", tuple(ratio_n))

        any_low = "lowtention" in att_n
        set_("compression", _check_ratio("compression", self.compression, 0, 1) if any_low else None)
        set_("split_proj", _check_bool("split_proj", self.split_proj) if any_low else None)

        # Head arithmetic: every attention type must be able to split its width into heads.
        for i, a in enumerate(att_n):
            c = widths[i + 3]
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

        head = _check_seq("head_widths", self.head_widths, 2)
        for i, h in enumerate(head):
            _check_int(f"head_widths[{i}]", h, 1, 1 << 16)
        set_("head_widths", head)
        set_("num_classes", _check_int("num_classes", self.num_classes, 1, 1 << 20))

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

    def canonical_json(self) -> str:
        """The hashed form: sorted keys, no whitespace, integral floats as ints, ``None`` knobs left out.

        Leaving ``None`` out keeps hashes stable when a later version adds a knob that is off by default.
        """
        # Per-stage pairs keep their Nones: they mark an empty stage by position.
        d = {k: v for k, v in self.to_dict().items() if v is not None}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 of :meth:`canonical_json` (hex). The first 12 characters are enough for display."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

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
                raise ConfigError(key, f"unknown knob; allowed: base, {', '.join(sorted(known))}")
        return dataclasses.replace(start, **data) if start is not None else cls(**data)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "LowFormerConfig":
        """A config from stored JSON (``canonical_json``, ``to_json``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(source, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        return cls.from_dict(data)
