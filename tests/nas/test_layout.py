"""Log-axis ticks that read as the numbers they are; labels placed clear of each other and of the points."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from nas._layout import PlotArea, format_tick, honest_log_axes, log_ticks, place_labels, ratio_bars


@pytest.mark.parametrize("lo, hi", [(0.05, 1.6), (0.7, 1.6), (0.2, 600), (0.01, 2000), (0.08, 1.3e5), (0.95, 1.1),
                                    (25, 1400), (1e-5, 1e5), (3e5, 5e9)])
def test_log_ticks_are_round_numbers_in_range(lo, hi):
    ticks = log_ticks(lo, hi)
    assert 2 <= len(ticks) <= 10 and ticks == sorted(ticks) and lo <= ticks[0] and ticks[-1] <= hi * (1 + 1e-9)
    for t in ticks:  # round numbers: at most three significant digits
        digits = f"{t / 10 ** math.floor(math.log10(t)):.9f}".rstrip("0").replace(".", "")
        assert len(digits) <= 3, t


def test_tick_labels_are_the_numbers():
    assert [format_tick(v) for v in (0.3, 0.05, 1, 20, 500, 2000, 20000, 1e5, 3e6, 2e9, 1e-5)] == [
        "0.3", "0.05", "1", "20", "500", "2000", "20k", "100k", "3M", "2G", "1e-05"]


def test_a_bar_at_0_34_is_not_read_as_3():
    fig = go.Figure([ratio_bars("here", ["a", "b", "c"], [0.34, 1.5, None])])
    fig.add_hline(y=1.0)
    fig.update_layout(yaxis_type="log")
    honest_log_axes(fig)
    y = fig.layout.yaxis
    assert [float(t) for t in y.ticktext] == pytest.approx(list(y.tickvals))  # every label is its value
    assert "3" not in y.ticktext and min(y.tickvals) < 0.5 and max(y.tickvals) > 1
    lo, hi = (10**v for v in y.range)
    assert lo < 0.34 and hi > 1.5  # the bars (from 1 to their ratio) and the reference line fit
    bar = fig.data[0]
    assert bar.base == 1.0 and list(bar.customdata) == [0.34, 1.5, None] and list(bar.text) == ["0.34", "1.50", ""]


def test_axes_with_their_own_ticks_are_kept():
    fig = go.Figure(go.Scatter(x=[8, 16, 32, 64], y=[0.3, 3, 30, 300]))
    fig.update_xaxes(type="log", tickvals=[8, 16, 32, 64])
    fig.update_yaxes(type="log")
    honest_log_axes(fig)
    assert list(fig.layout.xaxis.tickvals) == [8, 16, 32, 64] and fig.layout.xaxis.ticktext is None
    y = fig.layout.yaxis
    assert [float(t) for t in y.ticktext] == pytest.approx(list(y.tickvals)) and "1" in y.ticktext


def _box(area, x, y, p, font_px=12):
    px, py = area.to_px([x], [y])
    half_w, half_h = 0.31 * font_px * len(p.text) + 2, font_px * 0.65 + 1
    cx, cy = px[0] + p.dx, py[0] + p.dy
    return cx - half_w, cx + half_w, cy - half_h, cy + half_h


def test_crowded_labels_do_not_collide():
    # A dense band of 1,300 points (a latency-vs-MACs cloud) with eight named points close together in it.
    rng = np.random.default_rng(0)
    macs = 10 ** rng.uniform(2.3, 4.7, 1300)
    lat = macs * 0.02 * 10 ** rng.normal(0, 0.04, 1300)
    names = ["B0", "B1", "E1", "B1.5", "B2", "E2", "B3r192", "E3"]
    xs = np.array([944, 1411, 1348, 2574, 3689, 3789, 4480, 4866], dtype=float)
    ys = xs * 0.02
    area = PlotArea((math.log10(50), math.log10(1e5)), (math.log10(0.5), math.log10(3000)), 1280, 520, True, True)
    placed = place_labels(area, xs, ys, names, (np.r_[macs, xs], np.r_[lat, ys]), marker_px=8)
    assert [p.text for p in placed] == names
    boxes = [_box(area, x, y, p) for x, y, p in zip(xs, ys, placed)]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[1] <= 1280 and 0 <= a[2] and a[3] <= 520
        for b in boxes[i + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2], (a, b)
    px, py = area.to_px(np.r_[macs, xs], np.r_[lat, ys])
    for (x0, x1, y0, y1), p in zip(boxes, placed):
        assert p.overlaps == 0 and not np.any((px > x0) & (px < x1) & (py > y0) & (py < y1))
