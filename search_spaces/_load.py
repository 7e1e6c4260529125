"""Config files a user writes: JSON objects of knobs, optionally starting from a named variant (``"base"``).

Apart from the config class because a base is looked up in the variant table, which is built from configs.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from lowformer_common import read_at_most

from ._config import MAX_CONFIG_BYTES, ConfigError, LowFormerConfig, parse_config_json
from ._variants import get_variant


def config_from_dict(data: Mapping[str, Any]) -> LowFormerConfig:
    """A config from knob values; ``{"base": "B3", "depths": [...]}`` starts from a named variant instead of B1."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"must be a JSON object of knobs (got {type(data).__name__})")
    data = dict(data)
    base = data.pop("base", None)
    start = get_variant(base).config if base is not None else None
    return LowFormerConfig.from_dict(data, start=start)


def config_from_json(text: str | bytes, source: str = "config") -> LowFormerConfig:
    """A config from JSON text (bounded: see :func:`search_spaces.parse_config_json`)."""
    return config_from_dict(parse_config_json(text, source))


def load_config(path: str | os.PathLike) -> LowFormerConfig:
    """The config of a JSON file (see :func:`config_from_dict`). At most MAX_CONFIG_BYTES are read, so
    ``/dev/zero`` or a multi-GB file is refused without filling the memory."""
    try:
        data = read_at_most(path, MAX_CONFIG_BYTES)
    except OSError as e:
        raise ConfigError(str(path), f"cannot read config file ({e.strerror})") from None
    return config_from_json(data, source=str(path))
