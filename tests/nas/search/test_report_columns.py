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
