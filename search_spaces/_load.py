"""Config files a user writes: JSON objects of knobs, optionally starting from a named variant (``"base"``).

Apart from the config class because a base is looked up in the variant table, which is built from configs.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from ._config import ConfigError, LowFormerConfig
from ._variants import get_variant


def config_from_dict(data: Mapping[str, Any]) -> LowFormerConfig:
    """A config from knob values; ``{"base": "B3", "depths": [...]}`` starts from a named variant instead of B1."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"must be a JSON object of knobs (got {type(data).__name__})")
    data = dict(data)
    base = data.pop("base", None)
    start = get_variant(base).config if base is not None else None
    return LowFormerConfig.from_dict(data, start=start)


def config_from_json(text: str, source: str = "config") -> LowFormerConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(source, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    return config_from_dict(data)


def load_config(path: str | os.PathLike) -> LowFormerConfig:
    """The config of a JSON file (see :func:`config_from_dict`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(str(path), f"cannot read config file ({e.strerror})") from None
    return config_from_json(text, source=str(path))
