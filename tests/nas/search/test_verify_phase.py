"""--verify with a phase-normalised predictor: coverage in the canonical phase and in the phase of measurement."""

import math
import types

import pytest

from measured import fit_phase
from nas.search import CountObjective, FunctionObjective, run_search, verify_front
from search_spaces import count

from .conftest import settings

CANON = {"B0@160": 10.0, "B1-unfused": 17.7, "B0": 21.3, "B1": 30.9, "E2": 69.7, "B3": 125.7}


def latency(cs):
    return [1.0 + count(c).macs / 1.5e8 for c in cs]


def search_dev_x():
    """A 30-trial study of one device whose latency is a function of MACs (canonical phase)."""
    objectives = [CountObjective("params"),
                  FunctionObjective("dev-x:latency_ms", "minimize", latency, device="dev-x", metric="latency_ms")]
    return run_search(settings(trials=30, devices=["dev-x"], budgets_ms=[10.0]), objectives=objectives,
                      progress=False, png=False)


def test_verify_reports_coverage_in_the_canonical_and_the_current_phase(tmp_path):
    res = search_dev_x()
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
    summary = summarise(res.results, rows, o)
    line = summary.line()
    assert "in the canonical phase 3 of 3 inside" in line and "in the phase they were measured in 3 of 3" in line
    # Exactly the canonical latency: no error to share (judged in the canonical phase, not the raw slow values).
    assert summary.error_shift == pytest.approx(0, abs=0.01) and summary.error_spread == pytest.approx(0, abs=0.01)
    assert "in the canonical phase: median +0.0%, spread ±0.0%" in line
    plain = measure_rows(res.results, front, o, measure, phased=False)
    assert all("inside_canonical" not in r for r in plain)
    lines = []
    verify_front(res.results, 2, res.folder, measure=measure, log=lines.append, phased=True)  # no intervals: no coverage
    assert "canonical" not in lines[-1]


def test_a_study_predicted_now_is_verified_in_both_phases_beside_a_busy_neighbour(tmp_path):
    # The study mapped its canonical predictions into the phase of its start (--phase now, 10 % slower); verify then
    # ran beside a busy neighbour: every row paired, flagged "loaded", its phase's level set by the reference timed
    # with it (x1.6). Against the study's interval the loaded values are all outside; the predictor's own quality
    # (canonical phase) and the interval mapped into the loaded moment hold.
    from measured import fold_uncertainty
    from measured._phase import at_reference
    from nas.search._verify import device_objective, measure_rows, summarise

    res = search_dev_x()
    study = fit_phase(CANON, {k: v * 1.1 for k, v in CANON.items()}, "scale")
    o = device_objective(res.results, "dev-x")
    k = o["key"]
    res.results.settings["phases"] = {k: {"phase": "now", "fit": {
        f: getattr(study, f) for f in ("model", "a", "b", "sd", "n", "session", "canonical", "timestamp")}}}
    front = res.results.front.head(3).copy()
    canon = front[k].to_numpy(float)
    front[k], front[f"{k}_lo"], front[f"{k}_hi"] = fold_uncertainty(canon, canon * 0.95, canon * 1.05, study, 0.9)
    loaded = at_reference(study, CANON["B0"] * 1.6, CANON["B0"])

    def measure(configs, device):
        out = []
        for v in latency(configs):
            now = float(loaded.apply(v))
            out.append(types.SimpleNamespace(value=now, status="ok", reason=None, metric="latency_ms", flag="loaded",
                                             phase=loaded.to_json(), ratio=now / (CANON["B0"] * 1.6),
                                             reference_value=CANON["B0"] * 1.6))
        return out

    rows = measure_rows(res.results, front, o, measure, phased=True)
    assert not any(r["inside"] for r in rows)
    assert all(r["inside_canonical"] and r["inside_now"] for r in rows)
    # The budget (10 ms) is judged in the study's phase, the loaded value's verdict kept beside it.
    for r in rows:
        assert r["over_budget"] == (float(study.apply(r["measured_canonical"])) > 10.0)
        assert r["over_budget_as_measured"] == (r["measured"] > 10.0)
    assert [r["measured_canonical"] for r in rows] == pytest.approx(list(canon), rel=1e-6)
    assert [r["interval_canonical"][0] for r in rows] == pytest.approx(list(canon * 0.95), rel=1e-6)
    line = summarise(res.results, rows, o).line()
    assert "in the canonical phase 3 of 3 inside" in line and "3 of the 3 were timed beside a busy process" in line


def test_the_phase_uncertainty_folds_back():
    import dataclasses

    from measured import fold_uncertainty, unfold_uncertainty

    p = fit_phase(CANON, {k: math.exp(math.log(v) * 0.95 + 0.3) for k, v in CANON.items()}, "loglinear")
    p = dataclasses.replace(p, sd=0.03)
    v, lo, hi = fold_uncertainty([40.0], [36.0], [44.0], p, 0.9)
    assert hi[0] == pytest.approx(p.apply(44.0) * math.exp(1.6448536269514722 * 0.03))
    back = unfold_uncertainty(v, lo, hi, p, 0.9)
    assert [b[0] for b in back] == pytest.approx([40.0, 36.0, 44.0], rel=1e-9)


def test_verify_says_how_much_of_the_error_the_rows_share():
    # A front's rows are alike: measured 4 % above the prediction give or take 1 %, they all fall inside a ±8 %
    # interval or, with a larger shift, mostly outside it. The summary shows the shift and the spread beside the count.
    from nas.search._verify import _error_spread

    rows = [{"measured_canonical": p * math.exp(e), "predicted_canonical": p, "measured": 1.0, "predicted": 1.0}
            for p, e in zip((10.0, 20.0, 30.0, 40.0), (0.03, 0.04, 0.05, 0.04))]
    got = _error_spread(rows, canonical=True)
    assert got["error_shift"] == pytest.approx(4.0) and got["error_spread"] == pytest.approx(math.sqrt(0.5), abs=0.01)
    assert _error_spread(rows, canonical=False) == {"error_shift": 0.0, "error_spread": 0.0}  # the raw values
    assert _error_spread(rows[:2], canonical=True) == {}  # too few rows to say
