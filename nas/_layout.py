"""Chart layout that plotly leaves to us: log-axis ticks that read as the numbers they are, and text labels
placed beside their points without covering each other or other points.

Plotly labels the minor ticks of a log axis with their first digit only ("2 … 9" between 0.1 and 1), so a
bar at 0.34 appears to sit at "3". ``honest_log_axes`` replaces them with full numbers on a 1-2-5-like
grid. ``place_labels`` works in pixels, so it needs the figure's fixed size (``PlotArea``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

# Finest first: the first grid with at most ``max_ticks`` ticks in the range is used.
_LOG_GRIDS = ((1, 1.5, 2, 3, 4, 5, 7), (1, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,))


def format_tick(v: float) -> str:
    """A tick label as a plain number: 0.05, 0.3, 1, 20, 500, 2000, 20k, 3M (never '2' standing for 0.2)."""
    a = abs(v)
    for at, div, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if a >= at:
            return f"{v / div:g}{suffix}"
    return f"{v:g}" if a >= 1e-4 or a == 0 else f"{v:.0e}"


def _linear_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round linear steps (1, 2, 2.5, 5 x 10^k) for a range narrower than one 1-2-5 step of a log grid."""
    span = hi - lo
    for k in range(math.floor(math.log10(span / max_ticks)) - 1, math.ceil(math.log10(span)) + 1):
        for m in (1, 2, 2.5, 5):
            step = m * 10.0**k
            first = math.ceil(lo / step - 1e-9)
            vals = [round((first + i) * step, 12) for i in range(int((hi - first * step) / step + 1e-9) + 1)]
            if 2 <= len(vals) <= max_ticks:
                return vals
    return [lo, hi]


def log_ticks(lo: float, hi: float, max_ticks: int = 10) -> list[float]:
    """Tick values between ``lo`` and ``hi`` (> 0) for a log axis: round linear steps within a decade, else as
    fine a 1-2-5-like grid as fits in ``max_ticks``, or whole decades (every k-th) for very wide ranges."""
    if not (lo > 0 and hi > lo):
        raise ValueError(f"log_ticks: need 0 < lo < hi (got {lo}, {hi})")
    if hi / lo < 10:  # less than a decade: the grid would leave gaps, linear steps read better
        return [float(f"{v:.12g}") for v in _linear_ticks(lo, hi, max_ticks)]
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for grid in _LOG_GRIDS:
        vals = [m * 10.0**e for e in range(e0, e1 + 1) for m in grid if lo <= m * 10.0**e <= hi * (1 + 1e-9)]
        if len(vals) <= max_ticks:
            break
    else:
        step = math.ceil((e1 - e0 + 1) / max_ticks)
        vals = [10.0**e for e in range(e0, e1 + 1) if e % step == 0 and lo <= 10.0**e <= hi]
    return [float(f"{v:.12g}") for v in vals]


def _axis_ref(name: str) -> str:
    """Layout axis name ('yaxis2') to a trace/shape reference ('y2')."""
    return name[0] + name[5:]


def _positive(values) -> list[float]:
    out = []
    if values is None:
        return out
    for v in np.asarray(values, dtype=object).ravel():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f > 0:
            out.append(f)
    return out


def _axis_values(fig, name: str) -> list[float]:
    """The positive numbers plotted on a layout axis: trace coordinates (with bar bases and error bars) and
    reference lines (shapes)."""
    ref, letter = _axis_ref(name), name[0]
    vals: list[float] = []
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) != ref:
            continue
        coords = getattr(t, letter, None)
        if t.type == "bar" and getattr(t, "base", None) is not None and coords is not None:
            base = np.broadcast_to(np.asarray(t.base, dtype=float), np.shape(coords))
            vals += _positive(base) + _positive(base + np.asarray(coords, dtype=float))  # bars span base..base+y
            continue
        vals += _positive(coords)
        err = getattr(t, f"error_{letter}", None)
        if err is not None and err.array is not None:
            raw = np.asarray(getattr(t, letter), dtype=float)
            plus = np.asarray(err.array, dtype=float)
            minus = np.asarray(err.arrayminus, dtype=float) if err.arrayminus is not None else plus
            vals += _positive(raw + plus) + _positive(raw - minus)
    for s in fig.layout.shapes or ():
        if getattr(s, f"{letter}ref", None) == ref:
            vals += _positive([getattr(s, f"{letter}0"), getattr(s, f"{letter}1")])
    return vals


def honest_log_axes(fig, max_ticks: int = 10, pad_decades: float = 0.04):
    """Give every log axis of ``fig`` full-number tick labels and a range that fits its data (padded by
    ``pad_decades`` on each side, or 4 % of the span if that is more). Axes with ticks of their own are
    left alone. Returns ``fig``."""
    for name in [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        axis = fig.layout[name]
        if axis.type != "log" or axis.tickvals is not None:
            continue
        vals = _axis_values(fig, name)
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        if hi / lo < 1.02:
            lo, hi = lo / 1.05, hi * 1.05
        span = math.log10(hi) - math.log10(lo)
        pad = max(pad_decades, 0.04 * span)
        r0, r1 = math.log10(lo) - pad, math.log10(hi) + pad
        ticks = log_ticks(10**r0, 10**r1, max_ticks)
        axis.update(range=[r0, r1], tickvals=ticks, ticktext=[format_tick(v) for v in ticks], minor={"showgrid": False})
    return fig


def ratio_bars(name: str, x: Sequence, ratios: Sequence[float | None], **kw):
    """Bars of ratios on a log axis, drawn from 1: a bar's length is the log of its ratio, up for > 1, down
    for < 1 (a log axis has no zero for bars to stand on). Labelled with the ratio."""
    import plotly.graph_objects as go

    r = [v if v is not None and math.isfinite(v) and v > 0 else None for v in ratios]
    return go.Bar(name=name, x=list(x), y=[None if v is None else v - 1.0 for v in r], base=1.0, customdata=r,
                  text=["" if v is None else f"{v:.2f}" for v in r], textposition="outside",
                  hovertemplate="%{x}: %{customdata:.3f}<extra>" + name + "</extra>", **kw)


# --------------------------------------------------------------------------------------------- labels


@dataclasses.dataclass(frozen=True)
class PlotArea:
    """The pixel geometry of one subplot: its axis ranges (log10 units on log axes, as plotly keeps them) and
    its size in pixels. Only valid for a figure with a fixed width, height and margins."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width_px: float
    height_px: float
    x_log: bool = False
    y_log: bool = False

    def to_px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions, origin at the bottom left, y upwards."""
        x = np.log10(np.asarray(x, dtype=float)) if self.x_log else np.asarray(x, dtype=float)
        y = np.log10(np.asarray(y, dtype=float)) if self.y_log else np.asarray(y, dtype=float)
        (a, b), (c, d) = self.x_range, self.y_range
        return (x - a) / (b - a) * self.width_px, (y - c) / (d - c) * self.height_px


@dataclasses.dataclass(frozen=True)
class Placement:
    text: str
    dx: float  # text centre relative to its point, pixels, right
    dy: float  # pixels, up
    overlaps: int  # points of the chart the text still covers (0 unless the chart is too crowded)


def _candidates(radii: Sequence[float], directions: int) -> list[tuple[float, float]]:
    # Straight up first, then round both ways: a label above or below its point reads best.
    angles = [90.0]
    for k in range(1, directions // 2 + 1):
        step = 360.0 / directions * k
        angles += [90.0 - step, 90.0 + step] if k < directions // 2 else [270.0]
    return [(r * math.cos(math.radians(a)), r * math.sin(math.radians(a))) for r in radii for a in angles]


def place_labels(area: PlotArea, xs: Iterable[float], ys: Iterable[float], texts: Sequence[str],
                 obstacles: tuple[Iterable[float], Iterable[float]] = ((), ()), *, font_px: float = 12,
                 marker_px: float = 9, radii: Sequence[float] = (16, 26, 40, 60, 85, 115, 150, 190),
                 directions: int = 16) -> list[Placement]:
    """Text positions for labels of the points (xs, ys): no label overlaps another label, leaves the plot
    area, or covers a point (the labelled ones and ``obstacles``) where any of the candidate offsets avoids
    that. Greedy, most crowded point first; the text is joined to its point by a leader line when drawn
    with ``annotate``."""
    px, py = area.to_px(list(xs), list(ys))
    ox, oy = area.to_px(np.asarray(list(obstacles[0]), dtype=float), np.asarray(list(obstacles[1]), dtype=float))
    # Every point a label must not cover, its own included; in pixels.
    ax_, ay_ = np.concatenate([ox, px]), np.concatenate([oy, py])
    keep = np.isfinite(ax_) & np.isfinite(ay_)
    ax_, ay_ = ax_[keep], ay_[keep]
    half_h = font_px * 0.65 + 1
    r = marker_px / 2 + 1
    boxes: list[tuple[float, float, float, float]] = []
    out: dict[int, Placement] = {}

    def covered(x0: float, x1: float, y0: float, y1: float) -> int:
        return int(np.sum((ax_ > x0 - r) & (ax_ < x1 + r) & (ay_ > y0 - r) & (ay_ < y1 + r)))

    def crowd(i: int) -> int:
        return int(np.sum((np.abs(ax_ - px[i]) < 80) & (np.abs(ay_ - py[i]) < 40)))

    for i in sorted(range(len(texts)), key=lambda i: (-crowd(i), px[i])):
        half_w = 0.31 * font_px * len(texts[i]) + 2
        best = None
        for dx, dy in _candidates(radii, directions):
            cx, cy = px[i] + dx, py[i] + dy
            x0, x1, y0, y1 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
            if x0 < 0 or y0 < 0 or x1 > area.width_px or y1 > area.height_px:
                continue
            if any(x0 < b1 + 2 and b0 - 2 < x1 and y0 < d1 + 2 and d0 - 2 < y1 for b0, b1, d0, d1 in boxes):
                continue
            hits = covered(x0, x1, y0, y1)
            if best is None or hits < best[0]:
                best = (hits, dx, dy, (x0, x1, y0, y1))
            if hits == 0:
                break
        if best is None:  # no free spot within the largest radius: straight above it, over whatever is there
            dx, dy = 0.0, float(radii[-1])
            box = (px[i] - half_w, px[i] + half_w, py[i] + dy - half_h, py[i] + dy + half_h)
            best = (covered(*box), dx, dy, box)
        hits, dx, dy, box = best
        boxes.append(box)
        out[i] = Placement(texts[i], float(dx), float(dy), hits)
    return [out[i] for i in range(len(texts))]


def annotate(fig, area: PlotArea, xs, ys, placements: Sequence[Placement], *, font_px: float = 12,
             marker_px: float = 9, xref: str = "x", yref: str = "y") -> None:
    """Draw placed labels as annotations with a thin leader line to their point."""
    for x, y, p in zip(xs, ys, placements):
        fig.add_annotation(
            x=math.log10(x) if area.x_log else x, y=math.log10(y) if area.y_log else y, xref=xref, yref=yref,
            text=p.text, showarrow=True, arrowhead=0, arrowwidth=1, arrowcolor="#444", standoff=marker_px / 2,
            ax=p.dx, ay=-p.dy, font={"size": font_px, "color": "#000"}, bgcolor="rgba(255,255,255,0.85)",
            borderpad=1, xanchor="center", yanchor="middle")
