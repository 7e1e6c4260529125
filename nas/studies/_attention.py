"""Study ``attention`` (Table 3): MHSA vs channel compression vs convolutional down/up-sampling vs both,
4 stacked layers of 128 channels at attention inputs of 8x8 to 64x64. The paper's finding: both changes cut
the time, the down/up-sampling ever more as the resolution grows, and their combination the most."""

from __future__ import annotations

import pandas as pd

from . import _toys
from ._base import Analysis, PaperContext, Study, fmt, ratio, times_by
from ._verdict import Finding, judge_ratio

BASELINE = "MHSA"


def _pct(r: float | None) -> float | None:
    return None if r is None else (r - 1.0) * 100.0


class AttentionStudy(Study):
    name = "attention"
    title = "attention variants vs resolution"
    source = "Table 3"

    def points(self, quick: bool = False):
        return _toys.table3_toys(quick)

    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        t = times_by(results, "name", "resolution")
        resolutions = sorted(int(r) for r in results["resolution"].unique())
        variants = [v for v in _toys.TABLE3_VARIANTS if v in set(results["name"])]
        rows, findings, series = [], [], {}
        for v in variants:
            local_pcts, paper_pcts = [], []
            for res in resolutions:
                tl = t.get((v, res))
                local = ratio(tl, t.get((BASELINE, res)))
                dev, pt = paper.first(lambda d: paper.toy_time_ms(v, d, res))
                row = {"variant": v, "attention input": f"{res}x{res}", "time here (ms)": fmt(tl, 3),
                       "paper time (ms)": f"{fmt(pt, 2)} ({dev})" if pt is not None else "–"}
                if v != BASELINE:
                    pdev, pr = paper.first(lambda d: paper.pct_to_time_ratio(
                        paper.data.toy(v, d, "pct_change_vs_mhsa", res), d))
                    row.update({"vs MHSA here": fmt(_pct(local), 0, "%"),
                                "vs MHSA paper": f"{fmt(_pct(pr), 0, '%')} ({pdev})" if pr is not None else "–"})
                    findings.append(Finding(
                        self.name, f"{v} at {res}x{res}: time / MHSA's",
                        f"{v} changes the time by {fmt(_pct(pr), 0, '%')} vs MHSA on {pdev}" if pr is not None else "",
                        local, pr, pdev, judge_ratio(local, pr), "ratio", paper.note_fallback(pdev)))
                    local_pcts.append(_pct(local))
                    paper_pcts.append(_pct(pr))
                rows.append(row)
            series[v] = [(res, t.get((v, res))) for res in resolutions]
            if v != BASELINE:
                vals = [x for x in local_pcts if x is not None]
                avg_local = sum(vals) / len(vals) if len(vals) == len(resolutions) and vals else None
                dev, avg_paper = paper.first(lambda d: paper.data.toy(v, d, "avg_pct_change_vs_mhsa", None))
                lr = None if avg_local is None else 1 + avg_local / 100
                pr = paper.pct_to_time_ratio(avg_paper, dev) if dev else None
                note = paper.note_fallback(dev)
                if quick or set(resolutions) != set(_toys.table3_facts()[2]):
                    note = "the paper averages over 8x8..64x64; here only " + ", ".join(f"{r}x{r}" for r in resolutions)
                findings.append(Finding(
                    self.name, f"{v}: average change vs MHSA", f"{v} changes the time by {fmt(avg_paper, 0, '%')} on "
                    f"average on {dev}" if avg_paper is not None else "", lr, pr, dev, judge_ratio(lr, pr), "ratio",
                    note))
                series[v + " %"] = list(zip(resolutions, local_pcts, paper_pcts))
        c, layers, _ = _toys.table3_facts()
        layers = _toys.QUICK_TABLE3_LAYERS if quick else layers
        notes = [
            f"Each model: {layers} stacked attention layers of {c} channels"
            f"{' as residual branches' if _toys.TABLE3_RESIDUAL else ''}; the input is the attention input. Heads "
            "and layout of the variants are open choices (CHOICES.md): MHSA 4 heads x 32, chcompr. 2 x 32, conv+low "
            f"= Lowtention without compression (dw {_toys.TABLE3_DW_KERNEL}x{_toys.TABLE3_DW_KERNEL} stride "
            f"{_toys.TABLE3_STRIDE}, ConvTranspose k4 s2), conv+low+chcompr. = LowFormer's stage-3 Lowtention.",
            "Paper percentages are the paper's printed ones; a time ratio = 1 + % / 100.",
        ]
        return Analysis([("Variants", pd.DataFrame(rows))], findings, _chart(series, variants), notes)


def _chart(series, variants):
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2,
                        subplot_titles=("time here (ms)", "time change vs MHSA (%): here solid, paper dotted"))
    resolutions = sorted({r for r, _ in series[variants[0]]}) if variants else []
    for i, v in enumerate(variants):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        pts = series[v]
        fig.add_trace(go.Scatter(x=[r for r, _ in pts], y=[y for _, y in pts], mode="lines+markers", name=v,
                                 legendgroup=v, line_color=color), 1, 1)
        if v != BASELINE:
            pts = series[v + " %"]
            fig.add_trace(go.Scatter(x=[r for r, *_ in pts], y=[lc for _, lc, _ in pts], mode="lines+markers",
                                     name=f"{v} here", legendgroup=v, showlegend=False, line_color=color), 1, 2)
            fig.add_trace(go.Scatter(x=[r for r, *_ in pts], y=[p for *_, p in pts], mode="lines+markers",
                                     line_dash="dot", name=f"{v} paper", legendgroup=v, line_color=color), 1, 2)
    fig.update_xaxes(title_text="attention input (px)", type="log", tickvals=resolutions)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.add_hline(y=0, line_dash="dash", line_color="gray", row=1, col=2)
    return fig

