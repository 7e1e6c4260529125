"""Study ``resolution-vs-channels`` (Table 2): seven pairs of equal-MAC conv stacks, one at a high resolution
with few channels, one at a low resolution with many. The paper's finding: at equal MACs the high-resolution
configuration is usually the slower one."""

from __future__ import annotations

import pandas as pd

from . import _toys
from ._base import Analysis, PaperContext, Study, fmt, geomean, ratio, times_by
from ._verdict import Finding, judge_ratio


class ResolutionVsChannelsStudy(Study):
    name = "resolution-vs-channels"
    title = "high resolution vs high channel count at equal MACs"
    source = "Table 2"

    def points(self, quick: bool = False):
        return _toys.table2_toys(quick)

    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        t = times_by(results, "name")
        by = {(int(r["scenario"]), r["role"]): r for _, r in results.iterrows()}
        rows, findings, chart = [], [], []
        locals_, papers, paper_devs = [], [], set()
        for k in sorted({s for s, _ in by}):
            hr, hc = by.get((k, "hr")), by.get((k, "hc"))
            if hr is None or hc is None:
                continue
            local = ratio(t.get(hr["name"]), t.get(hc["name"]))
            dev, p = paper.first(lambda d: paper.relative_time(hr["name"], d, int(hr["resolution"])))
            rows.append({
                "scenario": k,
                "high-res (ch @ px)": f"{hr['channels']} @ {hr['resolution']}",
                "high-channel (ch @ px)": f"{hc['channels']} @ {hc['resolution']}",
                "MACs high-res / high-ch": fmt(hr["macs"] / hc["macs"], 2),
                "time high-res (ms)": fmt(t.get(hr["name"]), 3),
                "time high-ch (ms)": fmt(t.get(hc["name"]), 3),
                "time high-res / high-ch, here": fmt(local, 2),
                "paper": f"{fmt(p, 2)} ({dev})" if p is not None else "–",
            })
            findings.append(Finding(
                self.name, f"scenario {k}: time high-res / high-channel",
                f"the high-resolution configuration takes {fmt(p)}x the high-channel one's time on {dev}"
                if p is not None else "", local, p, dev, judge_ratio(local, p), "ratio", paper.note_fallback(dev)))
            chart.append((k, local, p, dev))
            if local is not None and p is not None:
                locals_.append(local)
                papers.append(p)
                paper_devs.add(dev)
        g_local, g_paper = geomean(locals_), geomean(papers)
        findings.append(Finding(
            self.name, f"all scenarios (geometric mean of {len(locals_)})",
            f"on average the high-resolution configuration takes {fmt(g_paper)}x the high-channel one's time"
            if g_paper is not None else "", g_local, g_paper, ", ".join(sorted(paper_devs)) or None,
            judge_ratio(g_local, g_paper), "ratio"))
        layers = _toys.QUICK_TABLE2_LAYERS if quick else _toys.table2_layers()
        notes = [
            f"Each model: {layers} stacked {_toys.KERNEL}x{_toys.KERNEL} ungrouped convs (conv + BN + Hardswish), "
            "stride 1, width kept; the input is the stack's input tensor.",
            "The paper's relative latency of the high-resolution row (relative throughput inverted on the A40).",
        ]
        return Analysis([("Scenarios", pd.DataFrame(rows))], findings, _chart(chart), notes)


def _chart(points):
    import plotly.graph_objects as go

    from nas._layout import ratio_bars

    x = [f"#{k}" for k, *_ in points]
    devices = ", ".join(sorted({d for *_, d in points if d}))
    fig = go.Figure([ratio_bars("here", x, [lc for _, lc, _, _ in points]),
                     ratio_bars(f"paper ({devices or 'no number'})", x, [p for _, _, p, _ in points])])
    fig.add_hline(y=1.0, line_dash="dash", line_color="gray")
    fig.update_layout(barmode="group", yaxis_type="log", xaxis_title="scenario",
                      yaxis_title="time high-res / high-channel (log scale; bars start at 1)")
    return fig
