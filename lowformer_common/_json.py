"""Strict JSON, both ways: what a user hands us is parsed with no duplicate keys, no NaN/Infinity and bounded
nesting; what we print or write never holds NaN/Infinity (Python's json writes them, and no other reader takes
them). One place, so every file and every ``--json`` output follows the same rules."""

from __future__ import annotations

import json
import math
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object gives one key twice (json.loads would silently keep the last)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKeyError(f"key {key[:60]!r} given twice in one object")
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a finite JSON number")


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses duplicate keys and NaN/Infinity, and turns too deep nesting into a ValueError.
    Bytes must be UTF-8 (a UnicodeDecodeError is a ValueError too)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def non_finite_path(obj: Any, path: str = "") -> str | None:
    """Where ``obj`` holds a NaN or an infinity (``interval[1]``, ``rows[3].p90``), else None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "value")
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for k, v in items:
        key = k if isinstance(k, str) and k.startswith("[") else f".{k}" if path else str(k)
        found = non_finite_path(v, path + key)
        if found:
            return found
    return None


def strict_dumps(obj: Any, *, indent: int | None = None, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity: a ValueError names the first such number's path."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False, **kwargs)
    except ValueError:
        where = non_finite_path(obj)
        if where is None:
            raise
        raise ValueError(f"{where} is not a finite number; JSON has no NaN or Infinity") from None
