"""--verify with a phase-normalised predictor: coverage in the canonical phase and in the phase of measurement."""

import math
import types

import pytest

from measured import fit_phase
from nas.search import CountObjective, FunctionObjective, run_search, verify_front
from search_spaces import count

from .conftest import settings

CANON = {"B0@160": 10.0, "B1-unfused": 17.7, "B0": 21.3, "B1": 30.9, "E2": 69.7, "B3": 125.7}


def test_verify_reports_coverage_in_the_canonical_and_the_current_phase(tmp_path):
    def latency(cs):
        return [1.0 + count(c).macs / 1.5e8 for c in cs]

    objectives = [CountObjective("params"),
                  FunctionObjective("dev-x:latency_ms", "minimize", latency, device="dev-x", metric="latency_ms")]
    res = run_search(settings(trials=30, devices=["dev-x"], budgets_ms=[10.0]), objectives=objectives,
                     progress=False, png=False)
    slow = fit_phase(CANON, {k: math.exp(math.log(v) * 0.95 + 0.3) for k, v in CANON.items()}, "loglinear")

    def measure(configs, device):
        # Measured in a slow phase: exactly the canonical latency mapped into it.
        return [types.SimpleNamespace(value=float(slow.apply(v)), status="ok", reason=None, metric="latency_ms",
                                      phase=slow.to_json()) for v in latency(configs)]

    from nas.search._verify import device_objective, measure_rows, summarise

    o = device_objective(res.results, "dev-x")
    front = res.results.front.head(3).copy()
    k = o["key"]
    front[f"{k}_lo"], front[f"{k}_hi"] = front[k] * 0.95, front[k] * 1.05  # a predictor's 90 % interval
    rows = measure_rows(res.results, front, o, measure, phased=True)
    assert all(r["inside_canonical"] and r["inside_now"] for r in rows)  # the interval mapped into the slow phase
    assert not any(r["inside"] for r in rows)  # the raw measurement against the canonical interval: all outside
    assert all(r["measured_canonical"] == pytest.approx(r["predicted"], rel=1e-4) for r in rows)
    line = summarise(res.results, rows, o).line()
    assert "in the canonical phase 3 of 3 inside" in line and "in the phase they were measured in 3 of 3" in line
    plain = measure_rows(res.results, front, o, measure, phased=False)
    assert all("inside_canonical" not in r for r in plain)
    lines = []
    verify_front(res.results, 2, res.folder, measure=measure, log=lines.append, phased=True)  # no intervals: no coverage
    assert "canonical" not in lines[-1]
