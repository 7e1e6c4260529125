"""Measurement files: CSV, CSV.gz and Parquet, one row per measurement.

A row holds every :class:`Measurement` field, optionally the architecture columns (``family``, ``name``,
``config_json``, ``params``, ``macs``, ``in_space``) and the device columns (``device_name``,
``device_kind``, ``device_fingerprint``, ``device_spec``, ``device_protocol``, ``device_source``; the
JSON ones as JSON text). ``export`` writes all of them, so an export imports into another store as it was.

An import checks every row before it writes anything and stops at the first bad one with
``FILE line N: field: reason`` (CSV lines count the header as line 1; Parquet names the row). A row
without an ``id`` gets the sha256 of its content, so importing a file twice adds nothing the second time.
Beyond each field's own check it refuses a repeated column, two rows with one id, implausible values
(:func:`check_plausible`) and rows whose device columns name another machine than the stored device they go
to (:func:`identity_mismatch`; ``force`` overrides, recorded in the rows' notes). CSV exports neutralise text
cells a spreadsheet would run as formulas (:func:`escape_cell`); CSV imports undo it.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import os
import pathlib
import re
from typing import Any, Iterable, Protocol

import pandas as pd

from lowformer_common import UserError, atomic_write, check_regular, open_regular, short
from search_spaces import ConfigError, LowFormerConfig

from . import _identity
from ._records import _FLOAT_FIELDS, _INT_FIELDS, DEVICE_KINDS, SOURCES, Architecture, Device, Measurement, RecordError, content_id
from ._schema import ARCH_COLUMNS, MEASUREMENT_COLUMNS, StoreError

DEVICE_COLUMNS = ("device_name", "device_kind", "device_fingerprint", "device_spec", "device_protocol", "device_source")
EXPORT_COLUMNS = MEASUREMENT_COLUMNS + ARCH_COLUMNS + DEVICE_COLUMNS
SUFFIXES = (".csv", ".csv.gz", ".parquet")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


class ImportFileError(StoreError):
    """A row of an imported file is invalid: ``FILE line N: field: reason``. Nothing was written."""

    def __init__(self, file: str, where: str, message: str, field: str | None = None):
        self.file, self.where = file, where
        UserError.__init__(self, f"{file} {where}: {message}")
        self.field = field


@dataclasses.dataclass
class ImportReport:
    file: str
    rows: int  # rows read
    inserted: int
    skipped: int  # already stored (a file never repeats an id: that is refused)
    devices_created: list[str]
    architectures_created: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        devs = ", ".join(self.devices_created) or "none"
        return (f"{self.file}: {self.rows} rows read, {self.inserted} inserted, {self.skipped} already stored; "
                f"new devices: {devs}; new architectures: {self.architectures_created}")


@dataclasses.dataclass
class ImportPlan:
    """What an import would write, every row already validated."""

    rows: int
    measurements: list[Measurement]
    architectures: list[Architecture]
    devices: list[Device]


class StoreLookup(Protocol):
    """What a file is checked against: which devices and architectures the store has (``Store.lookup()``, read in
    one transaction). The store calls into this module, never the other way round."""

    def known_devices(self, ids: Iterable[str]) -> set[str]: ...

    def known_archs(self, hashes: Iterable[str]) -> set[str]: ...

    def devices_by_id(self, ids: Iterable[str]) -> dict[str, Device]: ...


# ---------------------------------------------------------------------------------------------- files


def file_format(path: str | os.PathLike) -> str:
    name = os.fspath(path).lower()
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return suffix
    raise StoreError(f"{os.fspath(path)}: unknown format; allowed suffixes: {', '.join(SUFFIXES)}", "file")


def _clean(v: Any) -> Any:
    """None for every spelling of "empty" (CSV "", NaN, pandas NA); plain Python scalars otherwise."""
    if v is None:
        return None
    if isinstance(v, str):
        return v if v != "" else None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


# An imported file, decompressed, is read up to this size (all measurements of a store are a few MB): a small
# .csv.gz that unpacks to gigabytes is refused after reading this much, not after filling the memory.
MAX_IMPORT_BYTES = 128 << 20
# A line (a row: its config JSON is under 1 KB) is bounded too, before the CSV reader holds it as one string.
MAX_LINE_BYTES = 1 << 20


class _Bounded(io.RawIOBase):
    """A binary stream that stops with a StoreError once more than ``limit`` bytes were read from it, or a line
    runs longer than MAX_LINE_BYTES."""

    def __init__(self, raw, limit: int, path: pathlib.Path):
        self.raw, self.left, self.path, self.line = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(min(len(b), self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise StoreError(f"{self.path}: more than {MAX_IMPORT_BYTES >> 20} MiB of data (decompressed); split "
                             "it into smaller files", "file")
        end = data.rfind(b"\n")
        self.line = self.line + len(data) if end < 0 else len(data) - end - 1
        if self.line > MAX_LINE_BYTES:
            raise StoreError(f"{self.path}: a line longer than {MAX_LINE_BYTES >> 20} MiB; not a file of measurements",
                             "file")
        b[:len(data)] = data
        return len(data)


def _no_nul(path: pathlib.Path, where: str, row: dict[str, Any]) -> dict[str, Any]:
    """A NUL character in any text cell is refused here, for every store (PostgreSQL cannot store one)."""
    for k, v in row.items():
        if isinstance(v, str) and "\x00" in v:
            raise ImportFileError(str(path), where, f"{k}: holds a NUL character (\\x00); text may not contain one", k)
    return row


def read_rows(path: pathlib.Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """(columns, [(where, row)]) of a file; ``where`` is ``line N`` (CSV) or ``row N`` (Parquet). Only a regular
    file is read (a FIFO is refused, not waited on), at most MAX_IMPORT_BYTES of it once decompressed."""
    fmt = file_format(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file", "file")
    try:
        if fmt == ".parquet":
            check_regular(path)
            if path.stat().st_size > MAX_IMPORT_BYTES:
                raise StoreError(f"{path}: more than {MAX_IMPORT_BYTES >> 20} MiB; split it into smaller files", "file")
            df = pd.read_parquet(path)
            columns = [str(c) for c in df.columns]
            _check_header(path, "columns", columns)
            return columns, [(f"row {i + 1}", _no_nul(path, f"row {i + 1}", {k: _clean(v) for k, v in rec.items()}))
                             for i, rec in enumerate(df.to_dict("records"))]
        with open_regular(path) as raw:
            inner = gzip.GzipFile(fileobj=raw, mode="rb") if fmt == ".csv.gz" else raw
            bounded = io.BufferedReader(_Bounded(inner, MAX_IMPORT_BYTES, path))
            f = io.TextIOWrapper(bounded, encoding="utf-8", newline="")
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise StoreError(f"{path} line 1: empty file; expected a header row", "file")
            _check_header(path, "line 1", header)
            rows = []
            start = reader.line_num + 1
            for rec in reader:
                where, start = f"line {start}", reader.line_num + 1
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise ImportFileError(str(path), where, f"row: {len(rec)} fields, but the header has {len(header)}")
                rows.append((where, _no_nul(path, where, {k: _clean(unescape_cell(v)) for k, v in zip(header, rec)})))
            return header, rows
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise StoreError(f"{path}: cannot read as {fmt[1:]} ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                         "file") from None


def _check_header(path: pathlib.Path, where: str, columns: list[str]) -> None:
    """A repeated column name would let the last copy silently overwrite the first one's values."""
    seen: dict[str, int] = {}
    for i, c in enumerate(columns, start=1):
        if c in seen:
            raise ImportFileError(str(path), where, f"{c}: duplicate column (columns {seen[c]} and {i}); each column "
                                  "may appear once", c)
        seen[c] = i


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): exported text cells that
# start so get a leading apostrophe, which spreadsheets show as text and an import takes off again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(v: Any) -> Any:
    """A text cell a spreadsheet cannot run: ``'`` before one that would start a formula. Reversible: text that
    already starts with apostrophes before such a character gets one more."""
    if isinstance(v, str) and v.lstrip("'").startswith(_FORMULA_START):
        return "'" + v
    return v


def unescape_cell(v: Any) -> Any:
    """The text :func:`escape_cell` was given."""
    if isinstance(v, str) and v.startswith("'") and v[1:].lstrip("'").startswith(_FORMULA_START):
        return v[1:]
    return v


def _bool(field: str, v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise RecordError(field, f"must be true or false (got {v!r})")


def _int(field: str, v: Any) -> int | None:
    if v is None:
        return None
    try:
        f = float(v)
        if not f.is_integer() or f < 0:
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise RecordError(field, f"must be a non-negative integer (got {v!r})") from None


def _json_object(field: str, v: Any) -> dict:
    if v is None:
        return {}
    try:
        obj = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise RecordError(field, f"must be a JSON object (got {str(v)[:40]!r})")
    return obj




# ---------------------------------------------------------------------------------------------- import


@dataclasses.dataclass
class _Parsed:
    """The rows of a file as measurements, with where each came from and the columns beside them."""

    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    where_of: list[str] = dataclasses.field(default_factory=list)
    arch_info: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)  # hash -> first
    device_info: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)  # id -> first
    configs: dict[str, LowFormerConfig] = dataclasses.field(default_factory=dict)


def read_and_plan(known: StoreLookup, path: str | os.PathLike, *, device_id: str | None = None,
                  source: str = "import", create_device_kind: str | None = None, force: bool = False) -> ImportPlan:
    """Read and validate a whole file against what the store has (``known``); write nothing.

    ``force`` imports rows whose device columns name another machine than the stored device they go to
    (normally refused); each such row says so in its ``notes``.
    """
    path = pathlib.Path(path)
    columns, rows = read_rows(path)
    _check_columns(path, columns)
    if create_device_kind is not None and create_device_kind not in DEVICE_KINDS:
        raise StoreError(f"must be one of {'|'.join(DEVICE_KINDS)} (got {create_device_kind!r})", "device_kind")
    overrides = _check_device_identity(known, path, rows, device_id, force)
    parsed = _parse_rows(path, rows, device_id, source, "source_ref" in columns, overrides)
    _check_unique_ids(path, parsed)
    archs = _new_architectures(known, path, parsed)
    devices = _new_devices(known, path, parsed, create_device_kind, source)
    return ImportPlan(len(rows), parsed.measurements, archs, devices)


def _check_columns(path: pathlib.Path, columns: list[str]) -> None:
    allowed = set(EXPORT_COLUMNS)
    for c in columns:
        if c not in allowed:
            raise ImportFileError(str(path), "line 1" if file_format(path) != ".parquet" else "columns",
                                  f"{c}: unknown column; allowed: {', '.join(EXPORT_COLUMNS)}", c)


def _parse_rows(path: pathlib.Path, rows: list[tuple[str, dict[str, Any]]], device_id: str | None, source: str,
                has_source_ref: bool, overrides: dict[str, str]) -> _Parsed:
    """Every row as a validated, plausible measurement; stops at the first bad row."""
    file = str(path)
    out = _Parsed()
    for where, row in rows:
        try:
            m = _measurement(path, where, row, device_id, source, has_source_ref, overrides)
            _check_arch_columns(m, row, out.configs)
        except (RecordError, ConfigError) as e:
            raise ImportFileError(file, where, str(e), getattr(e, "field", None)) from None
        out.measurements.append(m)
        out.where_of.append(where)
        arch = {k: row.get(k) for k in ARCH_COLUMNS if row.get(k) is not None}
        if arch:
            first = out.arch_info.setdefault(m.config_hash, (where, arch))
            for k in ("family", "name", "in_space"):
                if k in arch and k in first[1] and str(arch[k]) != str(first[1][k]):
                    raise ImportFileError(file, where, f"{k}: differs from {first[0]} for the same config_hash "
                                          f"({arch[k]!r} vs {first[1][k]!r})", k)
        dev = {k: row.get(k) for k in DEVICE_COLUMNS if row.get(k) is not None}
        if dev:
            out.device_info.setdefault(m.device_id, (where, dev))
    return out


def _measurement(path: pathlib.Path, where: str, row: dict[str, Any], device_id: str | None, source: str,
                 has_source_ref: bool, overrides: dict[str, str]) -> Measurement:
    moved = device_id is not None and row.get("device_id") != device_id
    if device_id is not None:
        row = {**row, "device_id": device_id}
    if row.get("source") is None:
        row = {**row, "source": source}
    note = overrides.get(str(row.get("device_id")))
    if note is not None:  # provenance of an identity check the user overrode (--force)
        row = {**row, "notes": f"{row['notes']} | {note}" if row.get("notes") else note}
    m = Measurement.from_mapping({k: row.get(k) for k in MEASUREMENT_COLUMNS if k != "source_ref"} | {
        "id": row.get("id") or "pending"})
    # A row moved to another device is another measurement record: its id follows its content.
    if row.get("id") is None or moved or note is not None:
        m = dataclasses.replace(m, id=content_id(m, row.get("timestamp") is not None))
    # A file without the column gets its own name and line; an exported file keeps what it says.
    m.source_ref = row.get("source_ref") if has_source_ref else f"{path.name} {where}"
    if m.source_ref is not None:
        m.source_ref = str(m.source_ref)
    check_plausible(m)
    return m


# Latency beyond this (about 2.8 hours per image) is a unit or parsing error, not a measurement.
MAX_LATENCY_MS = 1e7
# The median of timed runs lies between their 10th and 90th percentiles; allow for decimal rounding.
_REL_TOL = 1e-9


def check_plausible(m: Measurement) -> None:
    """Refuse values no measurement can have: percentiles around the wrong side of the median, negative
    times, a machine more than fully busy, latency outside (0, 1e7) ms. A RecordError naming the field."""
    for f in ("p10", "p90"):
        v = getattr(m, f)
        if v is not None and v < 0:
            raise RecordError(f, f"must be >= 0 (got {v})")
    if m.busy_pct is not None and not 0.0 <= m.busy_pct <= 100.0:
        raise RecordError("busy_pct", f"must be in [0, 100] % of the machine (got {m.busy_pct})")
    if m.metric == "latency_ms":
        if m.value is not None and not 0.0 < m.value < MAX_LATENCY_MS:
            raise RecordError("value", f"latency must be in (0, {MAX_LATENCY_MS:.0e}) ms (got {m.value})")
        for f in ("p10", "p90"):
            v = getattr(m, f)
            if v is not None and v >= MAX_LATENCY_MS:
                raise RecordError(f, f"latency must be below {MAX_LATENCY_MS:.0e} ms (got {v})")

    def tol(x: float) -> float:
        return abs(x) * _REL_TOL

    if m.p10 is not None and m.p90 is not None and m.p10 > m.p90 + tol(m.p90):
        raise RecordError("p10", f"must be <= p90 (got p10 {m.p10}, p90 {m.p90})")
    if m.value is not None:
        if m.p10 is not None and m.p10 > m.value + tol(m.value):
            raise RecordError("p10", f"must be <= value, the median (got p10 {m.p10}, value {m.value})")
        if m.p90 is not None and m.value > m.p90 + tol(m.p90):
            raise RecordError("p90", f"must be >= value, the median (got value {m.value}, p90 {m.p90})")


def _check_unique_ids(path: pathlib.Path, parsed: _Parsed) -> None:
    """Two rows with one id would silently keep only one of them: refuse the file, naming both lines."""
    seen: dict[str, str] = {}
    for m, where in zip(parsed.measurements, parsed.where_of):
        first = seen.setdefault(m.id, where)
        if first != where:
            raise ImportFileError(str(path), where, f"id: same id as {first} ({m.id[:16]}…); every row must be "
                                  "a measurement of its own (a repeated row, or a copied id)", "id")


def _new_architectures(lookup: StoreLookup, path: pathlib.Path, parsed: _Parsed) -> list[Architecture]:
    """Architectures the store lacks, built from their columns; an unknown hash without columns is an error."""
    file = str(path)
    first_where: dict[str, str] = {}
    by_where = dict(zip(parsed.where_of, parsed.measurements))
    for m, where in zip(parsed.measurements, parsed.where_of):
        first_where.setdefault(m.config_hash, where)
    known = lookup.known_archs(first_where)
    archs: list[Architecture] = []
    for h, where in first_where.items():
        if h in known:
            continue
        if h not in parsed.arch_info:
            raise ImportFileError(
                file, where, f"config_hash: unknown architecture {h[:12]}…; give config_json (or family, name "
                "and in_space=false for a model outside the search space)", "config_hash")
        awhere, cols = parsed.arch_info[h]
        try:
            archs.append(_build_arch(h, cols, by_where[awhere], parsed.configs))
        except (RecordError, ConfigError) as e:
            raise ImportFileError(file, awhere, str(e), getattr(e, "field", None)) from None
    return archs


def _new_devices(lookup: StoreLookup, path: pathlib.Path, parsed: _Parsed, create_device_kind: str | None,
                 source: str) -> list[Device]:
    """Devices the store lacks: from the device columns, else from ``create_device_kind``."""
    first_where: dict[str, str] = {}
    for m, where in zip(parsed.measurements, parsed.where_of):
        first_where.setdefault(m.device_id, where)
    known = lookup.known_devices(first_where)
    devices: list[Device] = []
    for d, where in first_where.items():
        if d in known:
            continue
        dwhere, cols = parsed.device_info.get(d, (where, {}))
        try:
            devices.append(_build_device(d, cols, create_device_kind, source))
        except RecordError as e:
            raise ImportFileError(str(path), dwhere, str(e), e.field) from None
    return devices


# ---------------------------------------------------------------------------------------------- device identity

# What names a machine in a fingerprint (the harness's and the bundle runner's): not its OS, load or versions.
_IDENTITY_KEYS = ("arch", "cpu_model", "board", "gpu")
# Words that name a vendor or a class of part, not a device: "Nvidia Jetson TX2" is known by "jetson".
_GENERIC_WORDS = {"nvidia", "apple", "intel", "amd", "arm", "qualcomm", "the", "gpu", "cpu", "soc", "board"}


def identity_facts(fingerprint: dict[str, Any] | None) -> dict[str, str]:
    """The facts of a fingerprint that name the machine (architecture, CPU model, board, GPU), normalised."""
    fp = fingerprint or {}
    gpu = fp.get("gpu")
    raw = {"arch": fp.get("arch"), "cpu_model": fp.get("cpu_model"), "board": fp.get("board"),
           "gpu": gpu.get("name") if isinstance(gpu, dict) else fp.get("gpu_name", gpu)}
    return {k: " ".join(v.split()).lower() for k, v in raw.items() if isinstance(v, str) and v.strip()}


def _describe(name: Any, facts: dict[str, str]) -> str:
    shown = [str(name)] if name else []
    shown += [facts[k] for k in _IDENTITY_KEYS if k in facts and facts[k] != str(name or "").lower()]
    return short(", ".join(shown) or "no name", 120)


def identity_mismatch(stored: Device, name: Any, fingerprint: dict[str, Any]) -> str | None:
    """Why a file's device columns (``name``, ``fingerprint``) describe another machine than ``stored``;
    None when they agree or there is nothing to compare.

    Facts both fingerprints state (architecture, CPU model, board, GPU) must be equal. A stored device without
    such facts (the paper's, say) but with a real name is compared by its name's key word ("jetson" for "Nvidia
    Jetson TX2 8GB developer kit"), which the file's name or fingerprint must mention.
    """
    file_facts = identity_facts(fingerprint)
    if not file_facts and not name:
        return None
    stored_facts = identity_facts(stored.fingerprint)
    common = [k for k in _IDENTITY_KEYS if k in stored_facts and k in file_facts]
    for k in common:
        if stored_facts[k] != file_facts[k]:
            return f"{k} {file_facts[k]!r}, the device's is {stored_facts[k]!r}"
    if common or stored.name == stored.device_id:
        return None
    words = [w for w in re.split(r"[^a-z0-9]+", stored.name.lower()) if w and w not in _GENERIC_WORDS]
    if not words:
        return None
    text = " ".join([str(name or "")] + list(file_facts.values())).lower()
    if words[0] not in re.split(r"[^a-z0-9]+", text):
        return f"{_describe(name, file_facts)!r}, which does not name a {words[0]!r}"
    return None


def _check_device_identity(known: StoreLookup, path: pathlib.Path, rows: list[tuple[str, dict[str, Any]]],
                           device_id: str | None, force: bool) -> dict[str, str]:
    """Refuse rows whose device columns name another machine than the device they are stored under (the
    same within the file, and the stored device's). With ``force``: {device id: note for each row's notes}."""
    file = str(path)
    first: dict[str, tuple[str, Any, dict[str, Any], dict[str, str]]] = {}  # device -> (where, name, fp, facts)
    for where, row in rows:
        target = device_id if device_id is not None else row.get("device_id")
        if target is None or (row.get("device_name") is None and row.get("device_fingerprint") is None):
            continue
        try:
            fp = _json_object("device_fingerprint", row.get("device_fingerprint"))
        except RecordError as e:
            raise ImportFileError(file, where, str(e), e.field) from None
        facts = identity_facts(fp)
        if str(target) not in first:
            first[str(target)] = (where, row.get("device_name"), fp, facts)
            continue
        fwhere, _, _, ffacts = first[str(target)]
        for k in _IDENTITY_KEYS:
            if k in ffacts and k in facts and ffacts[k] != facts[k]:
                raise ImportFileError(file, where, f"device_fingerprint: {k} {facts.get(k)!r} differs from "
                                      f"{fwhere}'s {ffacts.get(k)!r}: rows of two machines cannot go to one device "
                                      f"{target!r}", "device_fingerprint")
    stored = known.devices_by_id(first)
    notes: dict[str, str] = {}
    for target, (where, name, fp, _) in first.items():
        dev = stored.get(target)
        why = None if dev is None else identity_mismatch(dev, name, fp)
        if why is None:
            continue
        if not force:
            raise ImportFileError(file, where, f"device_fingerprint: measured on {why}; not device {target!r} "
                                  f"({short(dev.name, 80)}). Check --device, or give --force to import anyway "
                                  "(recorded in each row's notes)", "device_fingerprint")
        notes[target] = f"imported with --force: measured on {why}"
    return notes


def _config(text: str, configs: dict[str, LowFormerConfig]) -> LowFormerConfig:
    if text not in configs:
        configs[text] = LowFormerConfig.from_json(text, source="config_json")
    return configs[text]


def _check_arch_columns(m: Measurement, row: dict[str, Any], configs: dict[str, LowFormerConfig]) -> None:
    in_space = _bool("in_space", row.get("in_space"))
    for f in ("params", "macs"):
        _int(f, row.get(f))
    text = row.get("config_json")
    if text is None or in_space is False:
        return
    cfg = _config(str(text), configs)
    if cfg.hash != m.config_hash and not _identity.upgrade_row(m, cfg):  # a file written before identity 2
        raise RecordError("config_hash", f"does not match config_json (its hash is {cfg.hash[:12]}…)")
    if m.resolution is not None and m.resolution != cfg.resolution:
        raise RecordError("resolution", f"{m.resolution} differs from config_json's resolution {cfg.resolution}")


def _build_arch(h: str, cols: dict[str, Any], m: Measurement, configs: dict[str, LowFormerConfig]) -> Architecture:
    in_space = _bool("in_space", cols.get("in_space"))
    text = cols.get("config_json")
    if in_space is None:
        in_space = text is not None
    if in_space:
        if text is None:
            raise RecordError("config_json", "required for an architecture of the search space (in_space true)")
        cfg = _config(str(text), configs)
        arch = Architecture.from_config(cfg, cols.get("name"))
        if cols.get("family") is not None:
            arch.family = str(cols["family"])
        return arch.validate()
    family = cols.get("family")
    if family is None:
        raise RecordError("family", "required for an architecture outside the search space")
    return Architecture(h, str(family), None if cols.get("name") is None else str(cols["name"]),
                        None if text is None else str(text), m.resolution, _int("params", cols.get("params")),
                        _int("macs", cols.get("macs")), False).validate()


def _build_device(device_id: str, cols: dict[str, Any], kind: str | None, source: str) -> Device:
    if not cols and kind is None:
        raise RecordError("device_id", f"unknown device {device_id!r}; add device columns (device_name, device_kind, "
                          "device_fingerprint) or give its kind (--device-kind "
                          f"{'|'.join(DEVICE_KINDS)})")
    dev_kind = cols.get("device_kind") or kind
    if dev_kind is None:
        raise RecordError("device_kind", f"missing for new device {device_id!r}; allowed: {'|'.join(DEVICE_KINDS)}")
    dev_source = cols.get("device_source") or (source if source in SOURCES else "import")
    return Device(
        device_id, str(cols.get("device_name") or device_id), str(dev_kind),
        _json_object("device_fingerprint", cols.get("device_fingerprint")),
        _json_object("device_spec", cols.get("device_spec")),
        _json_object("device_protocol", cols.get("device_protocol")), str(dev_source),
    ).validate()


# ---------------------------------------------------------------------------------------------- export


def _json_text(d: dict | None) -> str | None:
    return None if d is None else json.dumps(d, sort_keys=True, separators=(",", ":"))


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A frame of export columns with the record types (nullable ints, floats, booleans, text)."""
    df = pd.DataFrame(list(records), columns=list(EXPORT_COLUMNS))
    for c in EXPORT_COLUMNS:
        if c in _INT_FIELDS or c in ("params", "macs"):
            df[c] = pd.array([None if _clean(v) is None else int(v) for v in df[c]], dtype="Int64")
        elif c in _FLOAT_FIELDS:
            df[c] = pd.array([math.nan if _clean(v) is None else float(v) for v in df[c]], dtype="float64")
        elif c == "in_space":
            df[c] = pd.array([None if _clean(v) is None else bool(v) for v in df[c]], dtype="boolean")
        else:
            df[c] = pd.Series([None if _clean(v) is None else str(v) for v in df[c]], dtype=object, index=df.index)
    return df


def device_columns(d: Device | None) -> dict[str, Any]:
    if d is None:
        return {}
    return dict(device_name=d.name, device_kind=d.kind, device_fingerprint=_json_text(d.fingerprint),
                device_spec=_json_text(d.spec), device_protocol=_json_text(d.protocol), device_source=d.source)


def arch_columns(a: Architecture | None) -> dict[str, Any]:
    if a is None:
        return {}
    return dict(family=a.family, name=a.name, config_json=a.config_json, params=a.params, macs=a.macs,
                in_space=a.in_space)


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a frame as CSV, CSV.gz (reproducible bytes) or Parquet, atomically (temp file + rename)."""
    path = pathlib.Path(path)
    fmt = file_format(path)

    def write(tmp: pathlib.Path) -> None:
        if fmt == ".parquet":
            frame.to_parquet(tmp, index=False)
            return
        safe = _escaped(frame)
        # Minimal quoting quotes a cell with the line terminator (\n) but not one with a bare \r, which a reader
        # takes for a line end: such a file quotes every text cell.
        has_cr = any(safe[c].map(lambda v: isinstance(v, str) and "\r" in v).any()
                     for c in safe.columns if safe[c].dtype == object)
        quoting = csv.QUOTE_NONNUMERIC if has_cr else csv.QUOTE_MINIMAL
        text = safe.to_csv(index=False, lineterminator="\n", quoting=quoting).encode("utf-8")
        with open(tmp, "wb") as f:
            if fmt == ".csv.gz":
                # No name and time in the gzip header: the same rows give the same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                    gz.write(text)
            else:
                f.write(text)

    try:
        atomic_write(path, writer=write)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {e.strerror or e}", "file") from None


def _escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell made safe to open in a spreadsheet (numbers are never formulas)."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = pd.Series([escape_cell(v) for v in out[c]], dtype=object, index=out.index)
    return out


def export(df: pd.DataFrame, devices: Iterable[Device], path: str | os.PathLike) -> int:
    """Write measurements (a frame of ``Store.measurements``) with architecture and device columns; returns rows
    written."""
    file_format(path)
    devices = {d.device_id: d for d in devices}
    records = []
    for rec in df.to_dict("records"):
        r = {k: rec[k] for k in MEASUREMENT_COLUMNS + ARCH_COLUMNS}
        r.update(device_columns(devices.get(rec["device_id"])))
        records.append(r)
    write_table(records_frame(records), path)
    return len(records)
