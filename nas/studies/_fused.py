"""Study ``fused-mbconv`` (Figure 3): FusedMBConv vs MBConv (expansion 4) over resolutions x channels.

The paper publishes Figure 3 (A40 throughput) only as a chart, so no number of it is in the shipped data.
Its findings are checked as the design rule the paper derives from it (docs/architecture.md §2.4): the fused block's extra
MACs cost less time than their share, it is the faster block below 256 channels (where LowFormer fuses),
and the slower one from 256 channels (where LowFormer keeps the depthwise MBConv)."""

from __future__ import annotations

import math

import pandas as pd

from search_spaces import LowFormerConfig

from . import _toys
from ._base import Analysis, PaperContext, Study, fmt, ratio
from ._verdict import Finding, beyond_noise, judge_share

# The width from which LowFormer uses the unfused MBConv as local conv (docs/architecture.md §2.4): B1's config.
FUSION_THRESHOLD = LowFormerConfig().fusion_threshold


class FusedMBConvStudy(Study):
    name = "fused-mbconv"
    title = "fused vs unfused MBConv"
    source = "Figure 3"

    def points(self, quick: bool = False):
        return _toys.fig3_toys(quick)

    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        cells = {}
        for _, r in results.iterrows():
            cell = cells.setdefault((int(r["resolution"]), int(r["channels"])), {})
            cell[r["block"]] = (r["time_ms"] if r["status"] == "ok" else math.nan, r["macs"])
        grid = []
        for (res, c), cell in sorted(cells.items()):
            (tf, mf), (tu, mu) = cell.get("fused", (math.nan, math.nan)), cell.get("unfused", (math.nan, math.nan))
            grid.append(dict(resolution=res, channels=c, rel_time=ratio(tf, tu), rel_macs=ratio(mf, mu),
                             time_fused_ms=tf, time_unfused_ms=tu))
        g = pd.DataFrame(grid)
        resolutions = sorted(g["resolution"].unique())
        channels = sorted(g["channels"].unique())

        def pivot(col, digits):
            t = {}
            for res in resolutions:
                row = {"resolution": res}
                for c in channels:
                    v = g[(g.resolution == res) & (g.channels == c)][col]
                    row[f"c{c}"] = fmt(v.iloc[0] if len(v) else None, digits)
                t[res] = row
            return pd.DataFrame(list(t.values()))

        measured = g.dropna(subset=["rel_time", "rel_macs"])

        def share(frame, test):
            return (sum(bool(test(r)) for _, r in frame.iterrows()) / len(frame)) if len(frame) else None

        narrow = measured[measured.channels < FUSION_THRESHOLD]
        wide = measured[measured.channels >= FUSION_THRESHOLD]
        s1 = share(measured, lambda r: beyond_noise(r.rel_time / r.rel_macs, -1))
        s2 = share(narrow, lambda r: beyond_noise(r.rel_time, -1))
        s3 = share(wide, lambda r: beyond_noise(r.rel_time, +1))
        why = "Figure 3 is published only as a chart (A40); the claim is the design rule the paper derives from it"
        findings = [
            Finding(self.name, f"relative time < relative MACs ({len(measured)} cells)",
                    "the fused block's extra MACs cost less time than their share: time ratio below MAC ratio",
                    s1, None, None, judge_share(s1), "share", why),
            Finding(self.name, f"fused faster below {FUSION_THRESHOLD} channels ({len(narrow)} cells)",
                    f"fused MBConv is the faster block below {FUSION_THRESHOLD} channels (LowFormer fuses there)",
                    s2, None, None, judge_share(s2), "share", why),
            Finding(self.name, f"unfused faster from {FUSION_THRESHOLD} channels ({len(wide)} cells)",
                    f"from {FUSION_THRESHOLD} channels the depthwise MBConv is faster (LowFormer keeps it there)",
                    s3, None, None, judge_share(s3), "share", why),
        ]
        notes = [
            f"Each model: {_toys.FIG3_LAYERS} block(s) of width C (in = out), stride 1, expansion "
            f"{_toys.fig3_facts()[0]}, plain flavour (docs/architecture.md §2.1, §2.2), residual "
            f"{_toys.FIG3_RESIDUAL}; the input is the block's input tensor.",
            "relative = fused / unfused. The paper's figure uses the A40 (throughput, batch 200).",
        ]
        tables = [("Relative time (fused / unfused)", pivot("rel_time", 2)),
                  ("Relative MACs (fused / unfused)", pivot("rel_macs", 2))]
        return Analysis(tables, findings, _chart(g, resolutions, channels), notes)


def _chart(g: pd.DataFrame, resolutions, channels):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("relative time (fused / unfused)",
                                                        "relative MACs (fused / unfused)"), horizontal_spacing=0.2)
    ticks = [2.0 ** k for k in range(-4, 5)]  # the colour scale is log2 of the ratio, labelled as ratios
    x = [str(c) for c in channels]
    y = [str(r) for r in resolutions]
    for col, (field, scale, bar_x) in enumerate((("rel_time", "RdBu_r", 0.41), ("rel_macs", "Viridis", 1.01)), 1):
        z, text = [], []
        for res in resolutions:
            zr, tr = [], []
            for c in channels:
                v = g[(g.resolution == res) & (g.channels == c)][field]
                v = v.iloc[0] if len(v) else None
                ok = v is not None and isinstance(v, float) and math.isfinite(v)
                zr.append(math.log2(v) if ok else None)
                tr.append(f"{v:.2f}" if ok else "skipped")
            z.append(zr)
            text.append(tr)
        fig.add_trace(go.Heatmap(
            x=x, y=y, z=z, text=text, texttemplate="%{text}", colorscale=scale, zmid=0 if field == "rel_time" else None,
            colorbar=dict(title="ratio", x=bar_x, tickvals=[math.log2(t) for t in ticks],
                          ticktext=[f"{t:g}" for t in ticks]),
            hovertemplate="C=%{x}, %{y} px: %{text}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="channels", type="category", row=1, col=col)
        fig.update_yaxes(title_text="resolution (px)", type="category", row=1, col=col)
    return fig
