"""PNG charts without a browser: a plotly figure drawn again with matplotlib, from the figure's own data.

kaleido 1.x renders plotly figures in a Chrome/Chromium that a plain ``pip install`` does not bring; kaleido
0.2.1 bundled one but plotly >= 6 refuses it (``plotly.io._kaleido.kaleido_available`` requires kaleido >= 1),
and it is unmaintained since 2021. matplotlib is maintained, installs from PyPI as wheels and needs no
browser. The charts stay defined once, as plotly figures (nas.search._charts); this module reads what those
figures contain (scatter markers, lines, text and error bars, bars, reference lines, annotations with leader
lines, log axes, side-by-side subplots, title, legend) and draws the same on an Agg canvas. Hover text, which a
PNG cannot show, is left out.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

_SYMBOLS = {"circle": "o", "diamond": "D", "square": "s", "cross": "P", "x": "X", "triangle-up": "^",
            "triangle-down": "v", "star": "*"}
_DASH = {"dash": "--", "dot": ":", "dashdot": "-.", "solid": "-", None: "-"}
_DPI = 100


def _colour(c: Any, default: str = "#1f77b4"):
    """A plotly colour (name, hex, 'rgb(…)', 'rgba(…)') as matplotlib takes it."""
    if c is None:
        return default
    if isinstance(c, str):
        m = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", c)
        if m:
            parts = [float(x) for x in m.group(1).split(",")]
            rgb = [v / 255 for v in parts[:3]]
            return (*rgb, parts[3] if len(parts) > 3 else 1.0)
        return c
    return default


def _text(s: Any) -> str:
    """Plotly's HTML-ish text as plain text: <br> is a new line, other tags are dropped."""
    s = re.sub(r"<br\s*/?>", "\n", str(s or ""))
    return re.sub(r"<[^>]+>", "", s)


def _axes_of(fig) -> dict[str, Any]:
    """Layout axis names ('xaxis', 'xaxis2', …) by trace reference ('x', 'x2', …)."""
    layout = fig.layout.to_plotly_json()
    return {("x" if k == "xaxis" else "x" + k[5:]): k for k in layout if k.startswith("xaxis")} or {"x": "xaxis"}


def _make_axes(fig, mfig, width: int, height: int) -> dict[str, Any]:
    """One matplotlib axes per plotly x axis, placed by its domain inside the figure's margins."""
    margin = fig.layout.margin
    ml, mr = (margin.l if margin.l is not None else 80), (margin.r if margin.r is not None else 80)
    mt, mb = (margin.t if margin.t is not None else 100), (margin.b if margin.b is not None else 80)
    left, right = ml / width, 1 - mr / width
    bottom, top = mb / height, 1 - mt / height
    out = {}
    for ref, name in sorted(_axes_of(fig).items()):
        d0, d1 = fig.layout[name].domain or (0, 1)
        yname = "yaxis" + name[5:]
        e0, e1 = (fig.layout[yname].domain if yname in fig.layout and fig.layout[yname].domain else (0, 1))
        x0, x1 = left + d0 * (right - left), left + d1 * (right - left)
        y0, y1 = bottom + e0 * (top - bottom), bottom + e1 * (top - bottom)
        out[ref] = mfig.add_axes((x0, y0, x1 - x0, y1 - y0))
    return out


def _style_axes(fig, axes: dict[str, Any]) -> None:
    from matplotlib.ticker import NullLocator

    for ref, ax in axes.items():
        for letter, set_scale, set_lim, set_label in (("x", ax.set_xscale, ax.set_xlim, ax.set_xlabel),
                                                       ("y", ax.set_yscale, ax.set_ylim, ax.set_ylabel)):
            name = f"{letter}axis{ref[1:]}"
            if name not in fig.layout:
                continue
            a = fig.layout[name]
            log = a.type == "log"
            if log:
                set_scale("log")
            if a.range is not None:
                set_lim(*[10**v if log else v for v in a.range])
            if a.title and a.title.text:
                set_label(_text(a.title.text))
            if a.tickvals is not None:
                (ax.set_xticks if letter == "x" else ax.set_yticks)(list(a.tickvals),
                                                                    labels=list(a.ticktext or a.tickvals))
                (ax.xaxis if letter == "x" else ax.yaxis).set_minor_locator(NullLocator())
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def _array(v) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=object)


def _floats(v) -> np.ndarray:
    return np.array([np.nan if x is None else float(x) for x in np.asarray(v, dtype=object).ravel()], dtype=float)


def _scatter(ax, t) -> list:
    x, y = _floats(t.x if t.x is not None else []), _floats(t.y if t.y is not None else [])
    mode = t.mode or "markers"
    handles = []
    if "lines" in mode and len(x):
        shape = (t.line.shape if t.line else None) or "linear"
        ds = {"hv": "steps-post", "vh": "steps-pre"}.get(shape, "default")
        handles.append(ax.plot(x, y, drawstyle=ds, color=_colour(t.line.color if t.line else None, "#111"),
                               linewidth=(t.line.width or 1.5) * 0.75, linestyle=_DASH.get(t.line.dash, "-"),
                               zorder=2)[0])
    for err, is_x in ((t.error_x, True), (t.error_y, False)):
        if err is not None and err.array is not None and len(x):
            plus = _floats(err.array)
            minus = _floats(err.arrayminus) if err.arrayminus is not None else plus
            kw = {"xerr" if is_x else "yerr": np.vstack([minus, plus])}
            ax.errorbar(x, y, fmt="none", ecolor=_colour(err.color, "#999"), elinewidth=(err.thickness or 1) * 0.75,
                        capsize=(err.width or 0) * 0.5, zorder=1, **kw)
    if "markers" in mode and len(x):
        m = t.marker
        size = _floats(m.size) if m.size is not None and np.ndim(m.size) else np.full(len(x), float(m.size or 6))
        symbols = np.asarray(m.symbol if m.symbol is not None else "circle", dtype=object)
        colours = np.asarray(m.color if m.color is not None else "#1f77b4", dtype=object)
        edge = _colour(m.line.color if m.line else None, "none") if m.line and (m.line.width or 0) > 0 else "none"
        for sym in set(symbols.ravel().tolist()):
            sel = np.ones(len(x), bool) if symbols.ndim == 0 else symbols == sym
            hollow = str(sym).endswith("-open")
            face = [_colour(c) for c in (np.broadcast_to(colours, (len(x),))[sel])]
            h = ax.scatter(x[sel], y[sel], s=(size[sel] * 0.75) ** 2, marker=_SYMBOLS.get(str(sym).removesuffix("-open"), "o"),
                           c=None if hollow else face, facecolors="none" if hollow else None,
                           edgecolors=face if hollow and edge == "none" else edge,
                           linewidths=(m.line.width or 1) * 0.75 if m.line else 0.5, alpha=m.opacity, zorder=3)
            handles.append(h)
    if "text" in mode and t.text is not None:
        pos = np.broadcast_to(np.asarray(t.textposition or "top center", dtype=object), (len(x),))
        for xi, yi, s, p in zip(x, y, np.broadcast_to(np.asarray(t.text, dtype=object), (len(x),)), pos):
            dy = 9 if "top" in p else (-9 if "bottom" in p else 0)
            dx = 9 if "right" in p else (-9 if "left" in p else 0)
            ha = "left" if dx > 0 else ("right" if dx < 0 else "center")
            ax.annotate(_text(s), (xi, yi), xytext=(dx, dy), textcoords="offset points", ha=ha, va="center",
                        fontsize=9, zorder=5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    return handles


def _bar(ax, t) -> list:
    colour = _colour(t.marker.color if t.marker else None)
    if t.orientation == "h":
        return [ax.barh([str(v) for v in t.y], _floats(t.x), color=colour, zorder=2)]
    base = _floats(np.broadcast_to(np.asarray(t.base if t.base is not None else 0.0, dtype=object), (len(t.x),)))
    return [ax.bar([str(v) for v in t.x], _floats(t.y), bottom=base, color=colour, zorder=2)]


def _room_for_bar_labels(fig, axes) -> None:
    """Horizontal bars are labelled left of the axes (plotly's automargin makes room; here the axes shrink)."""
    width = fig.layout.width or 1400
    for t in fig.data:
        if t.type == "bar" and t.orientation == "h" and t.y is not None:
            ax = axes.get(getattr(t, "xaxis", None) or "x")
            need = (7.5 * max((len(str(v)) for v in t.y), default=0) + 10) / width
            b = ax.get_position()
            if need > 0.06:
                ax.set_position((b.x0 + need - 0.04, b.y0, b.width - need + 0.04, b.height))


def _shapes(fig, axes) -> None:
    for s in fig.layout.shapes or ():
        if s.type != "line":
            continue
        xref, yref = (s.xref or "x").split(" ")[0], (s.yref or "y").split(" ")[0]
        ax = axes.get(xref) or axes.get("x" + yref[1:])
        if ax is None:
            continue
        kw = {"color": _colour(s.line.color if s.line else None, "#d62728"), "linestyle": _DASH.get(s.line.dash, "-"),
              "linewidth": (s.line.width or 1) * 0.75, "zorder": 1}
        if "domain" in (s.xref or ""):
            ax.axhline(s.y0, **kw)
        elif "domain" in (s.yref or ""):
            ax.axvline(s.x0, **kw)
        else:
            ax.plot([s.x0, s.x1], [s.y0, s.y1], **kw)


def _annotations(fig, axes, width: int) -> None:
    for a in fig.layout.annotations or ():
        text = _text(a.text)
        xref, yref = (a.xref or "x").split(" ")[0], (a.yref or "y").split(" ")[0]
        if xref == "paper" and yref == "paper":  # a subplot title (make_subplots): above the axes under it
            px = _paper_x(fig, a.x, width)
            for ax in axes.values():
                b = ax.get_position()
                if b.x0 - 0.01 <= px <= b.x1 + 0.01:
                    ax.set_title(text, fontsize=11)
                    break
            continue
        ax = axes.get(xref)
        if ax is None:
            continue
        colour = _colour(a.font.color if a.font else None, "#000")
        xlog, ylog = ax.get_xscale() == "log", ax.get_yscale() == "log"
        x = 10**a.x if xlog and "domain" not in (a.xref or "") else a.x
        y = 10**a.y if ylog and "domain" not in (a.yref or "") else a.y
        coords = ("axes fraction" if "domain" in (a.xref or "") else "data",
                  "axes fraction" if "domain" in (a.yref or "") else "data")
        if a.showarrow and a.ax is not None:
            ax.annotate(text, (x, y), xycoords=coords, xytext=(a.ax * 0.75, -a.ay * 0.75), textcoords="offset points",
                        ha="center", va="center", fontsize=9, color=colour, zorder=6,
                        arrowprops={"arrowstyle": "-", "color": "#444", "linewidth": 0.6},
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
        else:
            ax.annotate(text, (x, y), xycoords=coords, fontsize=9, color=colour, zorder=6, ha="left", va="bottom")


def _paper_x(fig, x: float | None, width: int) -> float:
    margin = fig.layout.margin
    ml, mr = (margin.l if margin.l is not None else 80), (margin.r if margin.r is not None else 80)
    return ml / width + (x or 0) * (1 - (ml + mr) / width)


def write_png(fig, path: str | os.PathLike, width: int, height: int) -> None:
    """``fig`` (plotly) as a PNG of ``width`` x ``height`` pixels, drawn by matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    mfig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    axes = _make_axes(fig, mfig, width, height)
    _style_axes(fig, axes)
    handles, labels = [], []
    for t in fig.data:
        ax = axes.get(getattr(t, "xaxis", None) or "x") or next(iter(axes.values()))
        drawn = _bar(ax, t) if t.type == "bar" else _scatter(ax, t) if t.type == "scatter" else []
        if drawn and t.showlegend is not False and t.name and t.name not in labels:
            handles.append(drawn[-1])
            labels.append(t.name)
    _room_for_bar_labels(fig, axes)
    _shapes(fig, axes)
    _annotations(fig, axes, width)
    title = fig.layout.title.text if fig.layout.title else None
    if title:
        mfig.text(0.01, 0.99, _text(title), ha="left", va="top", fontsize=12)
    if len(labels) > 1:  # inside the first plot where it covers the fewest points (plotly's sits below the axes)
        next(iter(axes.values())).legend(handles, labels, loc="best", fontsize=8, framealpha=0.85)
    mfig.savefig(path, format="png", dpi=_DPI)


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


__all__ = ["available", "write_png"]
