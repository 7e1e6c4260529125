"""Config files as ``lowformer-nas count --config`` and ``LowFormerConfig.from_file`` read them back."""

from __future__ import annotations

import os
import pathlib

from lowformer_common import write_json


def write_config_json(path: str | os.PathLike, config, name: str | None = None) -> pathlib.Path:
    """Write ``config`` as JSON (atomically); ``name`` is kept for humans and ignored on reading."""
    return write_json(path, {"name": name, **config.to_dict()})
