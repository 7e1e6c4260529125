"""Chart files: plotly.js once per folder (offline), PNG export that never leaks the browser's log to stderr."""

import logging
import pathlib
import re
import threading

import plotly.graph_objects as go
import pytest

from nas._html import plotlyjs_name, write_html, write_pngs

PNG = b"\x89PNG\r\n\x1a\n"


def _fig():
    return go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))


def test_plotlyjs_is_written_once_per_folder(tmp_path):
    a, b = write_html(_fig(), tmp_path / "a.html"), write_html(_fig(), tmp_path / "b.html")
    js = tmp_path / plotlyjs_name()
    assert re.fullmatch(r"plotly-\d+\.\d+\.\d+\.min\.js", js.name) and js.stat().st_size > 1_000_000
    mtime = js.stat().st_mtime_ns
    write_html(_fig(), tmp_path / "a.html")
    assert js.stat().st_mtime_ns == mtime  # an identical copy is kept, not rewritten
    for page in (a, b):
        html = page.read_text()
        # The only script loaded is the folder's plotly.js: the chart opens offline, from its folder.
        assert re.findall(r'<script[^>]*\bsrc="([^"]+)"', html) == [js.name]
        assert "Plotly.newPlot" in html and len(html) < 100_000
    js.write_text("tampered")
    write_html(_fig(), tmp_path / "c.html")
    assert js.stat().st_size > 1_000_000  # a damaged copy is replaced


def _fake_kaleido(monkeypatch, fail=None):
    """plotly.io.write_images stand-in that logs like choreographer does (a traceback from the pipe reader,
    also from a thread that outlives the call) and writes PNG bytes, or raises ``fail``."""
    import plotly.io as pio

    late = []

    def write_images(figs, paths, **kw):
        log = logging.getLogger("choreographer.channels.pipe")
        try:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        except ValueError:
            log.exception("JSONError decoding message. Ignoring")
        logging.getLogger("browser_proc").warning("[WARNING:gpu_init.cc] something from chromium")
        t = threading.Thread(target=lambda: logging.getLogger("kaleido.kaleido").error("late browser shutdown"))
        late.append(t)
        if fail is not None:
            raise fail
        for p in paths:
            pathlib.Path(p).write_bytes(PNG)

    monkeypatch.setattr(pio, "write_images", write_images)
    return late


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_png_export_never_leaks_the_browser_log(tmp_path, monkeypatch, capfd):
    # A handler of our own on the root logger, not caplog: pytest also hangs caplog's handler on every
    # non-propagating logger, so caplog would see the records this test proves never reach the root.
    root = _Collect()
    monkeypatch.setattr(logging.getLogger(), "handlers", [*logging.getLogger().handlers, root])
    late = _fake_kaleido(monkeypatch)
    monkeypatch.setenv("LOWFORMER_NAS_PNG", "kaleido")
    paths, note = write_pngs([_fig(), _fig()], [tmp_path / "a.png", tmp_path / "b.png"], width=400, heights=[300, 300])
    for t in late:
        t.start()
        t.join()
    assert note is None and [p.read_bytes()[:8] for p in paths] == [PNG, PNG]
    assert not list(tmp_path.glob(".*.tmp"))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # Not even to the root logger (where, with no handler configured, Python prints records to stderr).
    assert not [r for r in root.records if r.name.split(".")[0] in ("choreographer", "kaleido", "browser_proc")]


def test_failed_png_export_is_one_note(tmp_path, monkeypatch, capfd):
    _fake_kaleido(monkeypatch, fail=RuntimeError("browser crashed\nwith a long story"))
    monkeypatch.setenv("LOWFORMER_NAS_PNG", "kaleido")  # kaleido only: no fallback
    paths, note = write_pngs([_fig()], [tmp_path / "a.png"], width=400, heights=[300])
    assert paths == [] and not list(tmp_path.iterdir())
    assert note.startswith("PNG charts skipped: kaleido could not render them (browser crashed")
    assert "\n" not in note and note.endswith("the HTML charts are complete")
    assert capfd.readouterr().err == ""


def test_no_browser_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWFORMER_NAS_PNG", "kaleido")
    _fake_kaleido(monkeypatch, fail=RuntimeError("\n\nKaleido requires Google Chrome to be installed.\n\n"
                                                 "Either download and install Chrome yourself ..."))
    paths, note = write_pngs([_fig()], [tmp_path / "a.png"], width=400, heights=[300])
    assert paths == [] and note.startswith("PNG charts skipped: no Chrome/Chromium found for kaleido (install one")
    assert "BROWSER_PATH" in note


@pytest.mark.slow
def test_png_with_a_real_browser(tmp_path, capfd):
    import os
    import shutil

    if not (os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("kaleido needs a Chrome/Chromium: apt-get install -y chromium, or set BROWSER_PATH "
                    "(PNGs without one come from matplotlib: test_png_without_a_browser)")
    paths, note = write_pngs([_fig()] * 3, [tmp_path / f"{i}.png" for i in range(3)], width=600, heights=[400] * 3)
    assert note is None and all(p.read_bytes()[:8] == PNG for p in paths)
    assert capfd.readouterr().err == ""


def test_one_plotlyjs_for_every_chart_under_the_home(tmp_path):
    """Charts under $LOWFORMER_NAS_HOME share one plotly.js there (a study folder does not carry 4.8 MB), linked by a
    relative path, so they still open offline."""
    from lowformer_common import home_dir

    home = home_dir()
    a = write_html(_fig(), home / "runs" / "s1" / "a.html")
    b = write_html(_fig(), home / "runs" / "s2" / "b.html")
    assert (home / plotlyjs_name()).stat().st_size > 1_000_000
    assert not list((home / "runs").rglob("plotly-*.js"))
    for page in (a, b):
        src = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text())
        assert src == [f"../../{plotlyjs_name()}"] and (page.parent / src[0]).resolve() == (home / plotlyjs_name()).resolve()


def test_png_without_a_browser(tmp_path, monkeypatch, capfd):
    """No Chrome/Chromium (a plain pip install): the PNGs are drawn by matplotlib from the same figures."""
    import nas._html as html

    monkeypatch.setattr(html, "browser_found", lambda: False)
    monkeypatch.delenv("LOWFORMER_NAS_PNG", raising=False)
    paths, note = write_pngs([_fig(), _fig()], [tmp_path / "a.png", tmp_path / "b.png"], width=500, heights=[300, 400])
    assert note is None and [p.read_bytes()[:8] for p in paths] == [PNG, PNG]
    from PIL import Image

    assert [Image.open(p).size for p in paths] == [(500, 300), (500, 400)]
    assert not list(tmp_path.glob(".*.tmp")) and capfd.readouterr().err == ""


def test_a_failing_browser_falls_back_to_matplotlib(tmp_path, monkeypatch):
    import nas._html as html

    monkeypatch.setattr(html, "browser_found", lambda: True)
    monkeypatch.delenv("LOWFORMER_NAS_PNG", raising=False)
    _fake_kaleido(monkeypatch, fail=RuntimeError("browser crashed"))
    paths, note = write_pngs([_fig()], [tmp_path / "a.png"], width=400, heights=[300])
    assert note is None and paths[0].read_bytes()[:8] == PNG
