"""The studies' analysis on given times (a pure function of its inputs): the times below are test inputs,
never stored or reported; the paper's figures are the paper's (Table 1, rpi5_arm_cpu)."""

import math

import pandas as pd
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from nas.studies import HOLDS, NA, REVERSED, WEAKER, PaperContext, PaperData, get_study, preferred_devices  # noqa: E402
from tests.nas.studies.conftest import paper_value  # noqa: E402

def results_for(points, times: dict) -> pd.DataFrame:
    rows = []
    for p in points:
        t = times.get((p.name, p.resolution), math.nan)
        rows.append(dict(name=p.name, resolution=p.resolution, kind=p.kind, config_hash=p.config_hash, macs=p.macs,
                         params=p.params, **dict(p.meta), status="ok" if math.isfinite(t) else "failed",
                         reason=None if math.isfinite(t) else "test", time_ms=t))
    return pd.DataFrame(rows)


@pytest.fixture
def ctx(paper_store):
    return lambda: PaperContext(PaperData.load(paper_store), preferred_devices("cpu", "latency_ms"))


def test_depthwise_findings(ctx, paper_rows):
    study = get_study("depthwise")
    pts = study.points()
    res = results_for(pts, {("toy#1", 224): 10.0, ("toy#2", 224): 20.0})
    a = study.analyse(res, ctx())
    by_key = {f.key: f for f in a.findings}
    f = by_key["group A (toy#2 vs toy#1): time depthwise / ungrouped"]
    toy1, toy2 = (paper_value(paper_rows, m, "rpi5_arm_cpu", "latency_ms", 224) for m in ("toy#1", "toy#2"))
    assert f.local == pytest.approx(2.0) and f.paper == pytest.approx(toy2 / toy1) and f.verdict == HOLDS
    assert f.paper_device == "rpi5_arm_cpu"
    g = by_key["group B (toy#4 vs toy#3): time depthwise / ungrouped"]
    assert g.local is None and g.verdict == NA
    table = a.tables[0][1]
    assert list(table["model"]) == [f"toy#{i}" for i in range(1, 7)]
    assert table.loc[0, "paper (ms)"] == f"{toy1:.2f} (rpi5_arm_cpu)" and table.loc[0, "MAC error"] == "-0.1%"
    assert a.figure.data  # a plotly figure


def test_fused_share_findings(ctx):
    study = get_study("fused-mbconv")
    pts = study.points(quick=True)  # channels 16, 32 at 7, 14 px
    # fused twice as fast everywhere: the time ratio is below 1 and below the MAC ratio in every cell
    times = {(p.name, p.resolution): (1.0 if p.meta["block"] == "fused" else 2.0) for p in pts}
    a = study.analyse(results_for(pts, times), ctx(), quick=True)
    f1, f2, f3 = a.findings
    assert (f1.local, f1.verdict) == (1.0, HOLDS)
    assert (f2.local, f2.verdict) == (1.0, HOLDS)
    assert f3.local is None and f3.verdict == NA  # no cell of 256 channels or more in the quick grid
    times = {(p.name, p.resolution): (3.0 if p.meta["block"] == "fused" else 2.0) for p in pts}
    assert study.analyse(results_for(pts, times), ctx(), quick=True).findings[1].verdict == REVERSED
    assert [t for t, _ in a.tables] == ["Relative time (fused / unfused)", "Relative MACs (fused / unfused)"]


def test_resolution_vs_channels_uses_the_high_res_row(ctx, paper_rows):
    study = get_study("resolution-vs-channels")
    pts = study.points(quick=True)
    times = {("toy-T2#1-hr", 224): 1.1, ("toy-T2#1-hc", 28): 1.0}
    a = study.analyse(results_for(pts, times), ctx(), quick=True)
    f = a.findings[0]
    paper = paper_value(paper_rows, "toy-T2#1-hr", "rpi5_arm_cpu", "relative_latency")
    assert f.local == pytest.approx(1.1) and f.paper == pytest.approx(paper)
    # The paper's 1.42x (Raspberry Pi 5) against 1.1x: the same way, under half the effect (log scale).
    assert paper == pytest.approx(1.42) and f.verdict == WEAKER
    assert a.findings[-1].key.startswith("all scenarios")


def test_attention_and_scaling_analyse_partial_results(ctx):
    for name in ("attention", "resolution-scaling"):
        study = get_study(name)
        pts = study.points(quick=True)
        a = study.analyse(results_for(pts, {(p.name, p.resolution): 1.0 + i for i, p in enumerate(pts)}), ctx(), True)
        assert a.findings and a.tables and a.figure.data
