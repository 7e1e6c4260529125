"""Charts as self-contained HTML: plotly.js inlined, so a chart opens offline (there may be no CDN)."""

from __future__ import annotations

import os
import pathlib

from lowformer_common import atomic_write


def write_html(fig, path: str | os.PathLike, config: dict | None = None) -> pathlib.Path:
    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False, **(config or {})})
    return atomic_write(path, html)
