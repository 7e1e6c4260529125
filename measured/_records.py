"""The records every part of the project exchanges: devices, architectures and measurements.

A measurement row carries its whole provenance (device, backend and version, protocol, machine load,
package versions, OS, time). ``validate`` checks one row the same way for the harness, the importers
and the store, and names the field that is wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import re
import uuid
from typing import Any, Mapping

from lowformer_common import UserError, utc_now
from search_spaces import LowFormerConfig, count

STATUSES = ("ok", "failed", "busy")
PAIRINGS = ("paired", "alone")
PRECISIONS = ("fp32", "fp16", "int8", "unknown")
SOURCES = ("harness", "paper", "bundle", "import")
DEVICE_KINDS = ("cpu", "gpu", "edge", "mobile", "dataset")
# Metrics with a physical meaning; the paper's relative and percentage figures keep their own names.
METRICS = (
    "latency_ms",
    "throughput_img_s",
    "fps",
    "power_w",
    "top1_pct",
    "macs_m",
    "params_m",
    "map_pct",
    "map50_pct",
    "map75_pct",
    "map_small_pct",
    "map_medium_pct",
    "map_large_pct",
    "miou_pct",
    "auc_pct",
    "precision_pct",
    "relative_latency",
    "relative_throughput",
    "relative_macs",
    "pct_change_vs_mhsa",
    "avg_pct_change_vs_mhsa",
    "pct_change_vs_baseline",
    "top1_delta_pp",
    "mlp_share_of_macs_pct",
)
# Pseudo-device for accuracy figures (they belong to a dataset, not a machine).
ACCURACY_DEVICE = "imagenet1k"


class RecordError(UserError):
    """A record field is invalid. ``str(err)`` names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


# A median of fewer timed runs is a smoke test (`study --quick`, `measure --runs 3`): kept, but never
# counted as the result of a config, never trained on, never a repeat in the noise figures.
MIN_TIMED_RUNS = 10


def full_results(df):
    """The rows of a measurements frame (``Store.measurements``) that are full results of the protocol:
    timed results need at least MIN_TIMED_RUNS runs; rows without a run count (the paper's) qualify."""
    import pandas as pd

    if df.empty or "n" not in df:
        return df
    n = pd.to_numeric(df["n"], errors="coerce")
    return df[n.isna() | (n >= MIN_TIMED_RUNS)]



def new_id() -> str:
    return uuid.uuid4().hex


def protocol_key(metric: str, backend: str, precision: str, batch: int, threads: int | None) -> str:
    """What makes two measurements of one architecture on one device comparable (and a campaign resumable)."""
    return f"{metric}|{backend}|{precision}|b{batch}|t{threads if threads is not None else '-'}"


def out_of_space_hash(family: str, model: str, resolution: int | None) -> str:
    """Stable id of an architecture outside the search space (other families, toy models)."""
    return hashlib.sha256(f"out-of-space:{family}:{model}:{resolution}".encode()).hexdigest()


@dataclasses.dataclass
class Device:
    device_id: str
    name: str
    kind: str
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)  # CPU/GPU model, cores, memory, OS
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)  # published hardware figures
    protocol: dict[str, Any] = dataclasses.field(default_factory=dict)  # metric, batch, iterations, framework, ...
    source: str = "harness"

    def validate(self) -> "Device":
        check_device_id(self.device_id, "device_id")
        _require_str("name", self.name)
        _choice("kind", self.kind, DEVICE_KINDS)
        _choice("source", self.source, SOURCES)
        for f in ("fingerprint", "spec", "protocol"):
            if not isinstance(getattr(self, f), dict):
                raise RecordError(f, "must be a JSON object")
        return self


@dataclasses.dataclass
class Architecture:
    config_hash: str
    family: str = "LowFormer"
    name: str | None = None  # variant name, or the paper's model name for out-of-space rows
    config_json: str | None = None  # canonical config JSON; None outside the search space
    resolution: int | None = None
    params: int | None = None
    macs: int | None = None
    in_space: bool = True

    @classmethod
    def from_config(cls, config: LowFormerConfig, name: str | None = None) -> "Architecture":
        c = count(config)
        return cls(config.hash, "LowFormer", name, config.canonical_json(), config.resolution, c.params, c.macs, True)

    def config(self) -> LowFormerConfig | None:
        return LowFormerConfig.from_json(self.config_json) if self.config_json else None

    def validate(self) -> "Architecture":
        _require_hash("config_hash", self.config_hash)
        _require_str("family", self.family)
        if self.in_space:
            if not self.config_json:
                raise RecordError("config_json", "required for an architecture of the search space")
            cfg = LowFormerConfig.from_json(self.config_json, source="config_json")
            if cfg.hash != self.config_hash:
                raise RecordError("config_hash", f"does not match config_json (its hash is {cfg.hash[:12]}…)")
        for f in ("resolution", "params", "macs"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise RecordError(f, f"must be a non-negative integer (got {v!r})")
        return self


@dataclasses.dataclass
class Measurement:
    device_id: str
    config_hash: str
    metric: str
    value: float | None
    backend: str
    batch: int
    resolution: int | None
    status: str = "ok"
    reason: str | None = None  # why a run failed or was marked busy
    backend_version: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    warmup: int | None = None
    n: int | None = None  # timed runs
    p10: float | None = None
    p90: float | None = None
    busy_pct: float | None = None  # CPU used by other processes while timing (% of the machine)
    source: str = "harness"
    source_ref: str | None = None  # paper table, campaign, imported file
    versions: str | None = None  # JSON object of package versions
    os: str | None = None
    timestamp: str = dataclasses.field(default_factory=utc_now)
    campaign: str | None = None
    notes: str | None = None
    flag: str | None = None  # "anomaly" / "suspect" / "loaded" (paired beside a busy process): never train on it
    # Paired timing (measured/README.md, Paired timing): how the runs were ordered ("paired" with a reference
    # model, "alone"; None: before pairing existed), the median of the adjacent pairs' ratios config/reference
    # and its 95 % CI, the reference's config hash and its median (in the metric's unit).
    pairing: str | None = None
    ratio: float | None = None
    ratio_lo: float | None = None
    ratio_hi: float | None = None
    reference: str | None = None
    reference_value: float | None = None
    # The device's phase when it was measured (JSON: the anchor session and the phase model's parameters
    # against the device's canonical session); None: not phase-normalised (measured before phases existed,
    # imported without anchor timings).
    phase: str | None = None
    id: str = dataclasses.field(default_factory=new_id)

    @property
    def protocol(self) -> str:
        return protocol_key(self.metric, self.backend, self.precision, self.batch, self.threads)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def validate(self) -> "Measurement":
        check_device_id(self.device_id, "device_id")
        _require_hash("config_hash", self.config_hash)
        _choice("metric", self.metric, METRICS)
        _choice("status", self.status, STATUSES)
        if self.status == "ok":
            if not _is_number(self.value):
                raise RecordError("value", f"must be a finite number for status ok (got {self.value!r})")
            if self.metric in ("latency_ms", "throughput_img_s", "fps", "power_w") and self.value <= 0:
                raise RecordError("value", f"must be > 0 for {self.metric} (got {self.value})")
        elif self.value is not None and not _is_number(self.value):
            raise RecordError("value", f"must be a finite number or empty (got {self.value!r})")
        if self.status == "failed" and not self.reason:
            raise RecordError("reason", "a failed measurement must say why")
        _require_str("backend", self.backend)
        _positive_int("batch", self.batch)
        for f in ("resolution", "threads", "n"):
            if getattr(self, f) is not None:
                _positive_int(f, getattr(self, f))
        if self.warmup is not None and (not isinstance(self.warmup, int) or self.warmup < 0):
            raise RecordError("warmup", f"must be a non-negative integer (got {self.warmup!r})")
        _choice("precision", self.precision, PRECISIONS)
        _choice("source", self.source, SOURCES)
        for f in ("p10", "p90", "busy_pct"):
            v = getattr(self, f)
            if v is not None and not _is_number(v):
                raise RecordError(f, f"must be a finite number or empty (got {v!r})")
        if self.versions is not None:
            try:
                if not isinstance(json.loads(self.versions), dict):
                    raise ValueError
            except (ValueError, TypeError):
                raise RecordError("versions", "must be a JSON object of package versions") from None
        try:
            ts = _dt.datetime.fromisoformat(self.timestamp)
        except (TypeError, ValueError):
            raise RecordError("timestamp", f"must be an ISO 8601 time (got {self.timestamp!r})") from None
        if ts.tzinfo is None:
            raise RecordError("timestamp", f"must carry a time zone, e.g. 2026-11-21T10:00:00+00:00 (got {self.timestamp!r})")
        self._validate_pairing()
        _require_id("id", self.id)
        return self

    def _validate_pairing(self) -> None:
        if self.pairing is not None:
            _choice("pairing", self.pairing, PAIRINGS)
        for f in ("ratio", "ratio_lo", "ratio_hi", "reference_value"):
            v = getattr(self, f)
            if v is not None and (not _is_number(v) or v <= 0):
                raise RecordError(f, f"must be a positive finite number or empty (got {v!r})")
        if self.ratio is not None:
            # Never a ratio to nothing: a ratio names its reference and the reference's median.
            if self.reference is None or self.reference_value is None:
                raise RecordError("reference", "a ratio needs its reference's config hash and median")
            lo, hi = self.ratio_lo, self.ratio_hi
            if lo is not None and hi is not None and not lo <= self.ratio <= hi:
                raise RecordError("ratio", f"must lie in [ratio_lo, ratio_hi] (got {self.ratio} in [{lo}, {hi}])")
        if self.reference is not None:
            _require_hash("reference", self.reference)
        if self.phase is not None:
            try:
                if not isinstance(json.loads(self.phase), dict):
                    raise ValueError
            except (ValueError, TypeError):
                raise RecordError("phase", "must be a JSON object (the anchor session and the phase parameters)") from None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> "Measurement":
        """A measurement from loosely typed values (CSV strings, NaN for empty), converted and validated."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in row:
                continue
            v = row[f.name]
            if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
                v = None
            elif f.name in _INT_FIELDS:
                v = _to_int(f.name, v)
            elif f.name in _FLOAT_FIELDS:
                v = _to_float(f.name, v)
            else:
                v = str(v)
            if v is not None or f.name not in _DEFAULTED:
                kwargs[f.name] = v
        for required in ("device_id", "config_hash", "metric", "backend", "batch"):
            if kwargs.get(required) is None:
                raise RecordError(required, "missing")
        kwargs.setdefault("value", None)
        kwargs.setdefault("resolution", None)
        return cls(**kwargs).validate()


_INT_FIELDS = {"batch", "resolution", "threads", "warmup", "n"}
_FLOAT_FIELDS = {"value", "p10", "p90", "busy_pct", "ratio", "ratio_lo", "ratio_hi", "reference_value"}
# Fields added with paired timing and phases: left out of a row's content id while empty, so the ids of rows
# imported before they existed stay what they were.
PHASE_FIELDS = ("pairing", "ratio", "ratio_lo", "ratio_hi", "reference", "reference_value", "phase")
_DEFAULTED = {f.name for f in dataclasses.fields(Measurement) if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}  # type: ignore[misc]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _to_int(field: str, v: Any) -> int:
    try:
        f = float(v)
        if not f.is_integer():
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise RecordError(field, f"must be an integer (got {v!r})") from None


def _to_float(field: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise RecordError(field, f"must be a number (got {v!r})") from None
    if not math.isfinite(f):
        raise RecordError(field, f"must be a finite number (got {v!r})")
    return f


def _choice(field: str, v: Any, allowed: tuple) -> None:
    if v not in allowed:
        raise RecordError(field, f"must be one of {'|'.join(allowed)} (got {v!r})")


def _require_str(field: str, v: Any) -> None:
    if not isinstance(v, str) or not v.strip():
        raise RecordError(field, f"must be a non-empty string (got {v!r})")


# A device id names folders (predictors/<device>/, runs/measured/...), so it must never be a path.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}")


def check_device_id(device_id: Any, field: str = "device") -> str:
    """``device_id`` if it is a safe device id: 1-80 letters, digits, ``_ . + -``, starting with a letter or
    digit, no ``..``; else a one-line RecordError naming ``field``."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id) or ".." in device_id:
        shown = repr(device_id)[:60]
        raise RecordError(field, f"{shown} is not a device id; use 1-80 letters, digits, '_', '.', '+' or '-', "
                                 "starting with a letter or digit (no '/', no '..')")
    return device_id


def _require_id(field: str, v: Any) -> None:
    _require_str(field, v)
    if len(v) > 200 or any(c in v for c in "\n\r\t"):
        raise RecordError(field, f"must be a single-line id of at most 200 characters (got {v[:40]!r})")


def _require_hash(field: str, v: Any) -> None:
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise RecordError(field, f"must be a 64-character sha256 hex digest (got {str(v)[:20]!r})")


def _positive_int(field: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise RecordError(field, f"must be a positive integer (got {v!r})")


def content_id(m: Measurement, timestamp_given: bool = True) -> str:
    """Deterministic id of an imported row that has none: sha256 of its canonical content.

    A time the row did not state (filled in at import) is left out, so a re-import finds the same id.
    """
    d = m.to_dict()
    d.pop("id")
    for f in PHASE_FIELDS:
        if d.get(f) is None:
            d.pop(f, None)
    if not timestamp_given:
        d.pop("timestamp")
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
