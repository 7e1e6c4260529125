"""Study ``resolution-scaling`` (Figure 8): LowFormer-B1 against its high-resolution-attention ablation (and
the MHSA ablation) from 224 to 1024 px. These are search-space configs, measured by a campaign like any
other config. The paper's finding: attending at full stage-3 resolution costs a little at 224 px (Table 8)
and a lot at high resolutions (+220 % at 1024 px on the Jetson TX2, Section 5.2)."""

from __future__ import annotations

import pandas as pd

from . import _toys
from ._base import Analysis, PaperContext, Study, fmt, ratio, times_by
from ._verdict import Finding, judge_ratio

BASELINE = "B1"
PAPER_LOW, PAPER_HIGH = 224, 1024  # the resolutions the paper gives numbers at


def _variant_time_ms(paper: PaperContext, name: str, device: str, res: int) -> float | None:
    v = paper.data.variant(name, device, "latency_ms", res)
    if v is not None:
        return v
    thr = paper.data.variant(name, device, "throughput_img_s", res)
    return 1000.0 / thr if thr else None


class ResolutionScalingStudy(Study):
    name = "resolution-scaling"
    title = "attention resolution vs input resolution"
    source = "Figure 8"

    def points(self, quick: bool = False):
        return _toys.fig8_points(quick)

    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        t = times_by(results, "name", "resolution")
        resolutions = sorted(int(r) for r in results["resolution"].unique())
        variants = [v for v in _toys.FIG8_VARIANTS if v in set(results["name"])]
        rows = []
        for res in resolutions:
            row = {"resolution": res}
            for v in variants:
                row[f"{v} here (ms)"] = fmt(t.get((v, res)), 2)
                if v != BASELINE:
                    row[f"{v} / B1 here"] = fmt(ratio(t.get((v, res)), t.get((BASELINE, res))), 2)
                dev, pt = paper.first(lambda d: _variant_time_ms(paper, v, d, res))
                if pt is not None:
                    row[f"{v} paper (ms)"] = f"{fmt(pt, 1)} ({dev})"
            rows.append(row)
        findings, paper_pts = [], []
        for v in variants:
            if v == BASELINE:
                continue
            for res in (PAPER_LOW, PAPER_HIGH):
                local = ratio(t.get((v, res)), t.get((BASELINE, res)))
                dev, p = paper.first(lambda d: paper.pct_to_time_ratio(
                    paper.data.variant(v, d, "pct_change_vs_baseline", res), d))
                note = paper.note_fallback(dev)
                if p is not None:
                    paper_pts.append((v, res, p, dev))
                if res not in resolutions:
                    note = f"{res} px not measured in this run"
                findings.append(Finding(
                    self.name, f"{v} at {res} px: time / B1's",
                    f"{v} takes {fmt(p)}x B1's time at {res} px on {dev}" if p is not None else "",
                    local, p, dev, judge_ratio(local, p), "ratio", note))
        notes = [
            f"Variants {', '.join(_toys.FIG8_VARIANTS)} (search_spaces.get_variant) at "
            f"{', '.join(map(str, resolutions))} px, measured as search-space configs by a campaign (one child "
            "process per config) and stored like any config.",
            "The paper's Figure 8 values are not in its text: only Table 8 (224 px) and the +220 % at 1024 px on "
            "the Jetson TX2 (Section 5.2) are numbers.",
        ]
        return Analysis([("Latency by resolution", pd.DataFrame(rows))], findings,
                        _chart(t, resolutions, variants, paper_pts), notes)


def _chart(t, resolutions, variants, paper_pts):
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("time here (ms)", "time / B1's: here (lines), paper (crosses)"))
    for i, v in enumerate(variants):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=resolutions, y=[t.get((v, r)) for r in resolutions], mode="lines+markers",
                                 name=v, legendgroup=v, line_color=color), 1, 1)
        if v != BASELINE:
            fig.add_trace(go.Scatter(x=resolutions, y=[ratio(t.get((v, r)), t.get((BASELINE, r))) for r in resolutions],
                                     mode="lines+markers", name=f"{v} / B1", legendgroup=v, showlegend=False,
                                     line_color=color), 1, 2)
            pts = [(r, p, d) for name, r, p, d in paper_pts if name == v]
            if pts:
                fig.add_trace(go.Scatter(x=[r for r, _, _ in pts], y=[p for _, p, _ in pts], mode="markers",
                                         marker=dict(symbol="x", size=10, color=color), hovertext=[d for *_, d in pts],
                                         name=f"{v} / B1, paper ({', '.join(sorted({d for *_, d in pts}))})",
                                         legendgroup=v), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.add_hline(y=1.0, line_dash="dash", line_color="gray", row=1, col=2)
    fig.update_xaxes(title_text="input resolution (px)")
    return fig
