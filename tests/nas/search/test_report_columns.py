"""report.md: columns that fit (long device ids shortened, the full id once), how the front is ranked, ids."""

from nas.search import CountObjective, FunctionObjective, run_search
from search_spaces import count

from .conftest import settings

LONG = "x86_64-intel-r-xeon-r-processor-2c-24g-0261"


def test_long_device_ids_are_short_in_columns_and_named_once():
    objectives = [CountObjective("params"),
                  FunctionObjective(f"{LONG}:latency_ms", "minimize", lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs],
                                    device=LONG, metric="latency_ms")]
    res = run_search(settings(trials=20, devices=[LONG], budgets_ms=[10.0]), objectives=objectives, progress=False,
                     png=False)
    report = (res.folder / "report.md").read_text()
    header = next(ln for ln in report.splitlines() if ln.startswith("| # |"))
    assert LONG not in header and "x86_64-inte…-0261:latency_ms (ms)" in header
    assert f"`x86_64-inte…-0261` = `{LONG}`" in report
    assert "**Ranking**" in report and "the **id**" in report and "| id |" in header.replace("| # | id |", "| id |")



def test_charts_name_knobs_as_the_config_and_label_named_variants_clear_of_markers():
    from nas.search import figures

    objectives = [CountObjective("params"),
                  FunctionObjective("dev0:latency_ms", "minimize", lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs],
                                    device="dev0", metric="latency_ms")]
    res = run_search(settings(trials=40, devices=["dev0"], budgets_ms=[10.0]), objectives=objectives, progress=False,
                     png=False)
    figs, _ = figures(res.results)
    knobs = [k for t in figs["importance"].data for k in t.y]
    assert any(k.startswith("depths[") or k.startswith("widths[") for k in knobs)
    assert not any(k in ("depth2", "head1", "width3") for k in knobs)
    for name in ("pareto_front", "macs_vs_latency"):
        fig = figs[name]
        labels = {a.text for a in fig.layout.annotations}
        assert {"B0", "B1", "B3"} <= labels  # placed annotations with leader lines, not text under markers
        assert all("text" not in (t.mode or "") for t in fig.data)
    front = next(t for t in figs["pareto_front"].data if (t.name or "").startswith("Pareto front"))
    assert "front #1" in str(front.customdata[0]) or any("front #1" in str(c) for c in front.customdata)
    pareto_labels = {a.text for a in figs["pareto_front"].layout.annotations}
    if len(res.results.front) <= 8:  # a small front: every unnamed front config labelled by its id
        unnamed = res.results.front[res.results.front["named"] == ""]
        assert {h[:12] for h in unnamed["hash"]} <= pareto_labels
