"""--verify and --refine end up in report.md, and its next steps never repeat what was just done."""

from types import SimpleNamespace

from nas.search import (CountObjective, FunctionObjective, amend_report, device_objective, figures, run_search,
                        summarise, verify_front, verify_markdown)
from nas.search._charts import _read_verified
from search_spaces import count

from .conftest import settings


def test_verify_table_goes_into_the_report():
    dev = "dev0"
    objectives = [CountObjective("params"),
                  FunctionObjective(f"{dev}:latency_ms", "minimize", lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs],
                                    device=dev, metric="latency_ms")]
    res = run_search(settings(trials=30, devices=[dev], budgets_ms=[10.0]), objectives=objectives, progress=False,
                     png=False)
    # A stand-in for the harness: 'measures' 1.1x the analytic value (no timing in a unit test).
    fake = lambda cfgs, device: [SimpleNamespace(value=1.1 * (1.0 + count(c).macs / 1.5e8), status="ok", reason=None)  # noqa: E731
                                 for c in cfgs]
    rows = verify_front(res.results, 3, res.folder, measure=fake, log=lambda s: None)
    o = device_objective(res.results, None)
    amend_report(res.folder, res.results, [verify_markdown(rows, o, summarise(res.results, rows, o))], {"verify": 3})
    report = (res.folder / "report.md").read_text()
    assert "## Verification on this machine (3 front configs measured)" in report
    for r in rows:
        assert f"`{r['hash'][:12]}`" in report.split("## Verification")[1]
    assert "--verify" not in report.split("## Next steps")[1]
    # Amending again replaces the next steps, never duplicates them.
    amend_report(res.folder, res.results, [], {"verify": 3})
    assert (res.folder / "report.md").read_text().count("## Next steps") == 1

    # The verified values are drawn on the Pareto chart, beside their predictions.
    figs, _ = figures(res.results, _read_verified(res.folder))
    traces = [t for t in figs["pareto_front"].data if (t.name or "").startswith("measured here (--verify")]
    assert len(traces) == 1 and len(traces[0].x) == 3
    assert sorted(traces[0].text) == sorted(r["hash"][:12] for r in rows)
