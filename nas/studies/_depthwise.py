"""Study ``depthwise`` (Table 1): six 5-stage toy CNNs, three pairs of an ungrouped model and a depthwise one
with about a tenth of its MACs. The paper's finding: the depthwise models are far slower than their MACs
suggest, and on several devices slower outright."""

from __future__ import annotations

import pandas as pd

from . import _toys
from ._base import Analysis, PaperContext, Study, fmt, ratio, times_by
from ._verdict import Finding, judge_ratio


class DepthwiseStudy(Study):
    name = "depthwise"
    title = "depthwise vs ungrouped convolutions"
    source = "Table 1"

    def points(self, quick: bool = False):
        return _toys.table1_toys(quick)

    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        t = times_by(results, "name")
        paper_res = _toys.TABLE1_RESOLUTION
        rows, by_group = [], {}
        for _, r in results.iterrows():
            dev, pt = paper.first(lambda d, m=r["name"]: paper.toy_time_ms(m, d, paper_res))
            by_group.setdefault(r["group"], {})[bool(r["depthwise"])] = r
            rows.append({
                "model": r["name"], "group": r["group"], "conv": "depthwise" if r["depthwise"] else "ungrouped",
                "channels": r["channels"], "layers per stage": r["depths"],
                "MACs (M)": fmt(r["macs"] / 1e6, 1), "paper MACs (M)": fmt(r["paper_macs_m"], 0),
                "MAC error": fmt((r["macs"] / 1e6 / r["paper_macs_m"] - 1) * 100, 1, "%") if not quick else "(quick)",
                "params (M)": fmt(r["params"] / 1e6, 3),
                "time here (ms)": fmt(t.get(r["name"]), 3),
                "paper (ms)": f"{fmt(pt, 2)} ({dev})" if pt is not None else "–",
            })
        findings, pairs = [], []
        for g in sorted(by_group):
            ug, dw = by_group[g].get(False), by_group[g].get(True)
            if ug is None or dw is None:
                continue
            mac_ratio = dw["macs"] / ug["macs"]
            paper_mac_ratio = dw["paper_macs_m"] / ug["paper_macs_m"]
            local = ratio(t.get(dw["name"]), t.get(ug["name"]))
            dev, p = paper.first(lambda d: ratio(paper.toy_time_ms(dw["name"], d, paper_res),
                                                 paper.toy_time_ms(ug["name"], d, paper_res)))
            pair = f"group {g} ({dw['name']} vs {ug['name']})"
            findings.append(Finding(
                self.name, f"{pair}: time depthwise / ungrouped", (
                    f"the depthwise model, with {paper_mac_ratio:.0%} of the MACs, takes "
                    f"{fmt(p)}x the ungrouped model's time on {dev}" if p is not None else ""),
                local, p, dev, judge_ratio(local, p), "ratio", paper.note_fallback(dev)))
            per_mac = ratio(local, mac_ratio) if local is not None else None
            paper_per_mac = ratio(p, paper_mac_ratio) if p is not None else None
            findings.append(Finding(
                self.name, f"{pair}: time per MAC depthwise / ungrouped", (
                    f"a depthwise MAC costs {fmt(paper_per_mac, 1)}x an ungrouped MAC on {dev}"
                    if paper_per_mac is not None else ""),
                per_mac, paper_per_mac, dev, judge_ratio(per_mac, paper_per_mac), "ratio", paper.note_fallback(dev)))
            pairs.append((g, mac_ratio, local, p, dev))
        notes = [
            f"Layers per stage, kernel and stride placement are open choices (nas/studies/CHOICES.md): ungrouped "
            f"models {_toys.TABLE1_DEPTHS} per group, depthwise x{_toys.DEPTHWISE_DEPTH_FACTOR}, "
            f"{_toys.KERNEL}x{_toys.KERNEL} convs, stride 2 in the {_toys.STRIDE_AT} conv of each stage.",
            "Paper times per image: latency, or 1000 / throughput for the A40.",
        ]
        if quick:
            notes.append(f"Quick mode measures at {_toys.QUICK_TABLE1_RESOLUTION} px; the paper's numbers are at "
                         f"{paper_res} px.")
        return Analysis([("Models", pd.DataFrame(rows))], findings, _chart(pairs), notes)


def _chart(pairs):
    import plotly.graph_objects as go

    from nas._layout import ratio_bars

    groups = [f"group {g}" for g, *_ in pairs]
    devices = ", ".join(sorted({d for *_, d in pairs if d}))
    fig = go.Figure([
        ratio_bars("MACs depthwise / ungrouped", groups, [m for _, m, *_ in pairs]),
        ratio_bars("time depthwise / ungrouped, here", groups, [lc for _, _, lc, *_ in pairs]),
        ratio_bars(f"time depthwise / ungrouped, paper ({devices or 'no number'})", groups, [p for *_, p, _ in pairs]),
    ])
    fig.add_hline(y=1.0, line_dash="dash", line_color="gray")
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="ratio (log scale; bars start at 1)")
    return fig
