"""--verify closes the loop: the front's configs measured on this machine, predictions beside them."""

import json

import pytest

from nas.search import CountObjective, FunctionObjective, run_search, verify_front
from search_spaces import count

from .conftest import settings

pytestmark = pytest.mark.torch


def test_verify_measures_the_front_here(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from measured import Protocol, Store, local_device_id
    from measured._measurer import Measurer

    # No phase-anchor session (six models timed: a third of this test's CPU): these objectives have no interval, so
    # verify reads no phase, and nothing here asserts one; the campaign treats this engine as one that cannot time
    # anchors (measured._campaign.PhaseTracker). Sessions are timed for real by tests/measured/test_campaign.py.
    monkeypatch.setattr(Measurer, "time_anchors", lambda self: None)

    device = local_device_id()
    # An analytic 'latency' on this machine's device id (real counts); the budget keeps the small configs.
    objectives = [CountObjective("params"),
                  FunctionObjective(f"{device}:latency_ms", "minimize",
                                    lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs], device=device,
                                    metric="latency_ms")]
    res = run_search(settings(trials=40, devices=[device], budgets_ms=[10.0]), objectives=objectives,
                     progress=False, png=False)
    # Unseeded: the shipped local dataset may hold this very machine's device id (verify would reuse it).
    store = Store(str(tmp_path / "store.sqlite"), seed=False)
    rows = verify_front(res.results, 2, res.folder, store=store, log=lambda s: None,
                        protocol=Protocol(runs=10, warmup=1, busy_threshold_pct=100))
    assert len(rows) == 2
    front = res.results.front.head(2)
    assert [r["hash"] for r in rows] == list(front["hash"])
    for r in rows:
        assert r["status"] == "ok" and r["measured"] > 0 and r["over_budget"] in (True, False)
    saved = json.loads((res.folder / "verify.json").read_text())
    assert saved["device"] == device and len(saved["rows"]) == 2
    # The measurements are in the store, with the harness's provenance.
    stored = store.measurements(device=device)
    assert set(stored["config_hash"]) == set(front["hash"]) and set(stored["source"]) == {"harness"}
