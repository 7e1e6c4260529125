"""Writing charts: HTML that opens offline, and PNG (kaleido when a Chrome/Chromium is installed, else
matplotlib, which needs no browser: nas._png).

Every HTML chart loads plotly.js from a file ``plotly-<version>.min.js`` (4.8 MB) by a relative path: one copy
in ``$LOWFORMER_NAS_HOME`` for every chart under it (studies, ``plot measured``), else one copy per folder. A
chart opens offline (there may be no CDN) without carrying plotly.js in every file or every study folder. The
version is in the name, so charts written by another plotly version keep theirs.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from typing import Sequence

from lowformer_common import atomic_write, one_line


def plotlyjs_name() -> str:
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def write_plotlyjs(folder: str | os.PathLike) -> pathlib.Path:
    """``folder/plotly-<version>.min.js``, written unless an identical copy is there."""
    from plotly.offline import get_plotlyjs

    path = pathlib.Path(folder) / plotlyjs_name()
    js = get_plotlyjs()
    try:
        if path.stat().st_size == len(js.encode()) and path.read_text(encoding="utf-8") == js:
            return path
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: (re)write it
    return atomic_write(path, js)


def plotlyjs_folder(chart: pathlib.Path) -> pathlib.Path:
    """Where the plotly.js of a chart at ``chart`` lives: ``$LOWFORMER_NAS_HOME`` when the chart is under it (one
    copy for every study), else the chart's own folder."""
    from lowformer_common import home_dir

    folder = chart.parent.resolve()
    home = home_dir().resolve()
    return home if folder == home or home in folder.parents else chart.parent


def write_html(fig, path: str | os.PathLike, config: dict | None = None) -> pathlib.Path:
    """``fig`` as HTML loading plotly.js by a relative path (see the module docstring)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    js = write_plotlyjs(plotlyjs_folder(path))
    src = pathlib.Path(os.path.relpath(js.resolve(), path.parent.resolve())).as_posix()
    html = fig.to_html(include_plotlyjs=src, full_html=True, config={"displaylogo": False, **(config or {})})
    return atomic_write(path, html)


# kaleido drives a headless browser through choreographer; both log through `logging` (the browser's own
# stderr included), and choreographer logs harmless protocol hiccups with a traceback ("JSONError decoding
# message. Ignoring") from threads that may outlive the export. With no handler configured, Python prints
# such records to stderr. They are kept here instead, and shown only when an export fails.
_BROWSER_LOGGERS = ("choreographer", "kaleido", "logistro", "browser_proc", "chrome_wrapper")
_KEPT = 20


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records = (self.records + [record])[-_KEPT:]


_keeper = _Keep()


def _quiet_browser_logs() -> _Keep:
    """Route the browser stack's log records to ``_keeper`` for the rest of the process (idempotent)."""
    for name in _BROWSER_LOGGERS:
        log = logging.getLogger(name)
        if _keeper not in log.handlers:
            log.addHandler(_keeper)
        log.propagate = False
    return _keeper


def png_hint() -> str:
    return ("no Chrome/Chromium found for kaleido (install one, e.g. `apt install chromium` or `plotly_get_chrome`, "
            "or point BROWSER_PATH at one)")


PNG_ENV = "LOWFORMER_NAS_PNG"  # kaleido | matplotlib: force one renderer (default: kaleido when a browser is found)


def browser_found() -> bool:
    import shutil

    return bool(os.environ.get("BROWSER_PATH")) or any(
        shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"))


def write_pngs(figs: Sequence, paths: Sequence[str | os.PathLike], width: int,
               heights: Sequence[int]) -> tuple[list[pathlib.Path], str | None]:
    """Each figure as PNG: through kaleido when a Chrome/Chromium is installed (the browser's rendering), else, or
    when kaleido fails, drawn by matplotlib from the same figures (nas._png; no browser). ``$LOWFORMER_NAS_PNG``
    (kaleido|matplotlib) forces one. Returns (written paths, None or a one-line note); nothing leaks to stderr,
    no half-written file is left."""
    choice = os.environ.get(PNG_ENV, "").strip().lower()
    if choice == "matplotlib" or (choice != "kaleido" and not browser_found()):
        return _write_pngs_matplotlib(figs, paths, width, heights, why="no Chrome/Chromium for kaleido")
    written, note = _write_pngs_kaleido(figs, paths, width, heights)
    if written or choice == "kaleido":
        return written, note
    return _write_pngs_matplotlib(figs, paths, width, heights, why=note.removeprefix("PNG charts skipped: "))


def _write_pngs_matplotlib(figs: Sequence, paths: Sequence[str | os.PathLike], width: int, heights: Sequence[int],
                           why: str) -> tuple[list[pathlib.Path], str | None]:
    from nas import _png

    if not _png.available():
        return [], f"PNG charts skipped: {why}, and matplotlib is not installed (pip install matplotlib)"
    out = []
    try:
        for fig, path, h in zip(figs, paths, heights):
            path = pathlib.Path(path)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                _png.write_png(fig, tmp, width, h)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            out.append(path)
    except Exception as e:  # noqa: BLE001 (a chart matplotlib cannot draw must not fail the command)
        return out, f"PNG charts: matplotlib could not draw every chart ({one_line(e)[:200]}); the HTML charts are complete"
    return out, None


def _write_pngs_kaleido(figs: Sequence, paths: Sequence[str | os.PathLike], width: int,
                        heights: Sequence[int]) -> tuple[list[pathlib.Path], str | None]:
    """Each figure as PNG through kaleido (one browser session for all). Returns (written paths, None) or ([], a
    one-line note saying why none was written); nothing leaks to stderr, no half-written file is left."""
    paths = [pathlib.Path(p) for p in paths]
    tmps = [p.with_name(f".{p.name}.tmp") for p in paths]
    keeper = _quiet_browser_logs()
    keeper.records = []
    try:
        import plotly.io as pio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pio.write_images(list(figs), tmps, format="png", width=width, height=list(heights))
        for tmp, path in zip(tmps, paths):
            tmp.replace(path)
        return paths, None
    except Exception as e:  # noqa: BLE001 (kaleido: no browser, browser crash, timeouts)
        why = one_line(e)
        if "requires" in why and "chrome" in why.lower():
            return [], f"PNG charts skipped: {png_hint()}; the HTML charts are complete"
        if keeper.records:
            why += f"; browser log: {one_line(keeper.records[-1].getMessage())[:120]}"
        return [], f"PNG charts skipped: kaleido could not render them ({why[:300]}); the HTML charts are complete"
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
