"""Anchor sessions, the phase model and its choice, canonical values, and a campaign that tracks the phase.

Fake models, injected clocks and analytic "hosts" only: nothing depends on this machine's speed or load.
"""

import math

import numpy as np
import pandas as pd
import pytest

from measured import Job, Protocol, Store, Timing, local_device, make_measurement, run_campaign
from measured._phase import (
    MIN_ANCHORS,
    PhaseError,
    anchor_configs,
    canonical_frame,
    choose_model,
    fit_phase,
    fold_uncertainty,
    load_series,
    session_rows,
    time_anchor_session,
)
from search_spaces import sample_configs
from tests._fakes import QuietMonitor

CANON = {"B0@160": 10.0, "B1-unfused": 17.7, "B0": 21.3, "B1": 30.9, "E2": 69.7, "B3": 125.7}


def _phase_of(a, b, base=CANON, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return {k: math.exp(math.log(v) + a + b * math.log(v) + rng.normal(0, noise)) for k, v in base.items()}


def test_fit_recovers_a_two_parameter_phase_and_inverts_it():
    now = _phase_of(0.5, -0.1)  # small models slowed most (the 07:12 -> 08:35)
    p = fit_phase(CANON, now, "loglinear")
    assert (p.a, p.b) == (pytest.approx(0.5), pytest.approx(-0.1)) and p.sd < 1e-9 and p.n == 6
    assert p.apply(30.9) == pytest.approx(now["B1"]) and p.invert(now["B3"]) == pytest.approx(125.7)
    assert p.factor(10.0) > p.factor(125.7) > 1
    back = type(p).from_json(p.to_json())
    assert back.invert(50.0) == pytest.approx(p.invert(50.0), rel=1e-5)


def test_a_phase_is_never_fitted_from_too_few_anchors():
    two = {"B0": 21.3, "B3": 125.7}
    with pytest.raises(PhaseError, match="^phase: 2 anchors timed in both sessions; the loglinear model needs at least 3"):
        fit_phase(two, {k: v * 1.2 for k, v in two.items()}, "loglinear")
    with pytest.raises(PhaseError, match="the scale model needs at least 2"):
        fit_phase({"B0": 21.3}, {"B0": 25.0}, "scale")
    assert MIN_ANCHORS == {"scale": 2, "loglinear": 3}
    assert fit_phase(two, {k: v * 1.2 for k, v in two.items()}, "scale").a == pytest.approx(math.log(1.2))


def test_the_model_is_chosen_by_held_out_fit():
    # Uniform slow-downs with timing noise: the extra parameter buys nothing, the simpler model is kept.
    uniform = [{k: v * f * (1 + 0.003 * ((i * 7 + j) % 3 - 1)) for j, (k, v) in enumerate(CANON.items())}
               for i, f in enumerate((1.1, 1.3, 0.95))]
    model, errors = choose_model(uniform, CANON)
    assert model == "scale" and set(errors) == {"scale", "loglinear"}
    # Slow-downs that depend on the model's size: the two-parameter model predicts left-out anchors better.
    shaped = [_phase_of(0.6, -0.12, noise=0.002, seed=s) for s in range(3)]
    model, errors = choose_model(shaped, CANON)
    assert model == "loglinear" and errors["loglinear"] < errors["scale"] / 3
    assert choose_model([], CANON)[0] == "loglinear"  # nothing to compare yet: the evidence


class _Host:
    def __init__(self):
        self.t = 0.0

    def clock(self):
        return self.t


_Quiet = QuietMonitor


def test_an_anchor_session_and_a_failing_anchor():
    host = _Host()
    costs = {n: CANON[n] / 1e3 for n, _ in anchor_configs()} | {"B0": 0.0213}

    def load(protocol, name=None, config=None):
        name = name or protocol.reference
        if name == "E2":
            raise RuntimeError("refused by the backend")

        def run():
            host.t += costs[name]
        return run, "c" * 64 if name == "B0" else "d" * 64, name

    results = time_anchor_session(Protocol(warmup=0, runs=20, target_ci_pct=None), load=load, clock=host.clock,
                                  monitor=_Quiet)
    by = {r["anchor"]: r for r in results}
    assert by["E2"]["status"] == "failed" and "refused by the backend" in by["E2"]["reason"]
    assert "ratio" not in by["E2"]  # never a ratio to nothing
    assert by["B3"]["status"] == "ok" and by["B3"]["ratio"] == pytest.approx(125.7 / 21.3) and by["B3"]["n"] == 20
    rows = session_rows(results, "dev", Protocol(), source="drift")
    ref = next(r for r in rows if r["anchor"] == "B0")
    assert ref["value"] == pytest.approx(21.3) and ref["ratio"] == 1.0
    assert next(r for r in rows if r["anchor"] == "B3")["value"] == pytest.approx(125.7)
    assert len({r["session"] for r in rows}) == 1 and len(rows) == len(anchor_configs()) + 1


def _session(store, values, ts, failed=(), reference="c" * 64, protocol=Protocol()):
    results = [{"anchor": n, "config_hash": c.hash, "status": "ok", "ratio": values[n] / values["B0"],
                "ratio_lo": values[n] / values["B0"], "ratio_hi": values[n] / values["B0"], "reference": reference,
                "reference_value": values["B0"], "n": 10} if n not in failed else
               {"anchor": n, "config_hash": c.hash, "status": "failed", "reason": "crashed"}
               for n, c in anchor_configs()]
    rows = session_rows(results, local_device().device_id, protocol, source="campaign", timestamp=ts)
    store.add_anchor_timings(rows)
    return rows[0]["session"]


def test_the_series_its_canonical_session_and_the_phase_to_hold_a_budget_against(tmp_path):
    store = Store(tmp_path / "s.sqlite", seed=False)
    dev = local_device()
    store.add_device(dev)
    key = Protocol().key
    first = _session(store, CANON, "2026-12-03T07:00:00+00:00")
    _session(store, _phase_of(0.2, -0.03), "2026-12-03T07:10:00+00:00")
    _session(store, _phase_of(0.6, -0.1), "2026-12-03T08:30:00+00:00")
    _session(store, CANON, "2026-12-03T08:40:00+00:00", failed=("B0@160", "B1-unfused", "B1", "E2", "B3"))
    s = load_series(store, dev.device_id, key)
    assert s.canonical.session == first and len(s.sessions) == 4 and len(s.phases) == 3  # the last cannot fit
    assert s.latest().a == pytest.approx(0.6) and s.at("2026-12-03T07:15:00+00:00").a == pytest.approx(0.2)
    assert s.at("2026-12-03T06:00:00+00:00") is None
    assert s.pick("canonical") is None and s.pick("now") is s.latest()
    mid = float(np.median(list(CANON.values())))
    assert s.pick("slow").factor(mid) >= s.pick("typical").factor(mid) >= 1.0
    with pytest.raises(PhaseError, match="^phase: must be one of now|typical|slow|canonical"):
        s.pick("fast")


def test_sessions_paired_with_another_reference_leave_the_series(tmp_path):
    """int8 sessions stored before the int8 reference existed (paired with another B0) are not one phase series
    with those paired with the int8 B0: once a session with the new reference exists, only its kind is fitted."""
    from measured._backends import reference_id

    store = Store(tmp_path / "s.sqlite", seed=False)
    dev = local_device()
    store.add_device(dev)
    p8 = Protocol(precision="int8")
    key = p8.key
    old = reference_id("c" * 64, "fp32")
    new = reference_id("c" * 64, "int8")
    assert old == "c" * 64 and new != old and len(new) == 64 and new == reference_id("c" * 64, "int8")
    _session(store, _phase_of(0.3, 0.0), "2026-12-03T07:00:00+00:00", reference=old, protocol=p8)
    assert load_series(store, dev.device_id, key).canonical is not None  # alone, the old sessions still read
    first = _session(store, CANON, "2026-12-03T08:00:00+00:00", reference=new, protocol=p8)
    _session(store, _phase_of(0.1, 0.0), "2026-12-03T08:10:00+00:00", reference=new, protocol=p8)
    s = load_series(store, dev.device_id, key)
    assert s.canonical.session == first and len(s.sessions) == 2 and {x.reference for x in s.sessions} == {new}
    assert s.latest().a == pytest.approx(0.1)


def test_canonical_values_and_rows_without_a_phase():
    p = fit_phase(CANON, _phase_of(0.3, -0.05), "loglinear")
    df = pd.DataFrame({"value": [p.apply(40.0), 40.0, 1000.0 / p.apply(5.0)],
                       "metric": ["latency_ms", "latency_ms", "throughput_img_s"],
                       "phase": [p.to_json(), None, p.to_json()]})
    out = canonical_frame(df)
    assert out["value"].tolist() == pytest.approx([40.0, 40.0, 200.0], rel=1e-5)
    assert out["phase_normalised"].tolist() == [True, False, True]
    assert out["measured_value"].iloc[0] == pytest.approx(p.apply(40.0))


def test_the_phase_uncertainty_widens_the_interval():
    p = fit_phase(CANON, _phase_of(0.3, -0.05, noise=0.02, seed=3), "loglinear")
    pred, lo, hi = fold_uncertainty([40.0], [36.0], [44.0], p, 0.9)
    assert lo[0] < p.apply(36.0) and hi[0] > p.apply(44.0) and lo[0] < pred[0] < hi[0]
    assert fold_uncertainty([40.0], [36.0], [44.0], None)[1][0] == 36.0


class _AnchoredMeasurer:
    """A measurer whose host slows down by 5 % per anchor session; it can time the anchors."""

    sessions = 0

    def __init__(self, protocol, device_id, **kw):
        self.protocol, self.device_id = protocol, device_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def time_anchors(self):
        f = 1.05 ** type(self).sessions
        type(self).sessions += 1
        return [{"anchor": n, "config_hash": c.hash, "status": "ok", "ratio": CANON[n] / 21.3, "ratio_lo": 0.99 * CANON[n] / 21.3,
                 "ratio_hi": 1.01 * CANON[n] / 21.3, "reference": "c" * 64, "reference_value": 21.3 * f, "n": 10}
                for n, c in anchor_configs()]

    def measure(self, jobs):
        for job in jobs:
            yield job, make_measurement(job.config.hash, job.config.resolution, self.protocol, self.device_id,
                                        timing=Timing(np.full(12, 0.02), 0.0), repeat=job.repeat)


def test_a_campaign_times_the_anchors_and_stamps_each_row_with_its_phase(tmp_path):
    store = Store(tmp_path / "s.sqlite", seed=False)
    _AnchoredMeasurer.sessions = 0
    jobs = [Job(c) for c in sample_configs(7, seed=5)]
    report = run_campaign(jobs, Protocol(), local_device(), store, progress=False, measurer=_AnchoredMeasurer,
                          anchors_every=3)
    assert report.anchor_sessions == 3  # at the start, after 3 and after 6 configs
    at = store.anchor_timings(device=local_device().device_id)
    assert at["session"].nunique() == 3 and (at["status"] == "ok").all()
    phases = [json_a(m.phase) for m in report.measurements]
    assert phases == pytest.approx([0.0] * 3 + [math.log(1.05)] * 3 + [math.log(1.05 ** 2)], abs=1e-5)
    stored = store.measurements(device=local_device().device_id)
    assert stored["phase"].notna().all()
    assert "anchors timed 3x" in report.line()
    # Alone (or a measurer without anchors): nothing is timed, rows carry no phase.
    report = run_campaign([Job(c) for c in sample_configs(2, seed=9)], Protocol(pairing="alone"), local_device(),
                          store, progress=False, measurer=_AnchoredMeasurer)
    assert report.anchor_sessions == 0


def test_a_campaign_takes_a_session_timed_minutes_before_it_instead_of_timing_the_anchors_again(tmp_path):
    store = Store(tmp_path / "s.sqlite", seed=False)
    _AnchoredMeasurer.sessions = 0
    first = run_campaign([Job(c) for c in sample_configs(2, seed=5)], Protocol(), local_device(), store,
                         progress=False, measurer=_AnchoredMeasurer)
    assert first.anchor_sessions == 1
    # Within the cadence: the stored session stands for the start (the next is due when it is 300 s old).
    again = run_campaign([Job(c) for c in sample_configs(2, seed=6)], Protocol(), local_device(), store,
                         progress=False, measurer=_AnchoredMeasurer)
    assert again.anchor_sessions == 0 and "before the campaign" in again.line()
    assert [json_a(m.phase) for m in again.measurements] == pytest.approx([0.0, 0.0], abs=1e-5)
    # Older than the cadence (here a nanosecond): timed anew at the start, and again after the first config.
    later = run_campaign([Job(c) for c in sample_configs(2, seed=7)], Protocol(), local_device(), store,
                         progress=False, measurer=_AnchoredMeasurer, anchors_every_s=1e-9)
    assert later.anchor_sessions == 2
    assert store.anchor_timings(device=local_device().device_id)["session"].nunique() == 3


def json_a(text):
    import json

    return json.loads(text)["a"]


def test_noise_shows_canonical_and_ratio_cv_beside_the_raw_cv():
    from measured import noise_report

    # Three repeats of two configs in three phases: the raw medians move with the phase, the canonical values
    # and the ratios do not.
    rows = []
    for i, (a, b) in enumerate(((0.0, 0.0), (0.3, -0.05), (0.5, -0.08))):
        p = fit_phase(CANON, _phase_of(a, b), "loglinear")
        for h, ms in (("x" * 64, 40.0), ("y" * 64, 90.0)):
            rows.append({"protocol": "p", "config_hash": h, "value": float(p.apply(ms)), "metric": "latency_ms",
                         "phase": p.to_json(), "ratio": ms / 21.3 * (1 + 0.001 * i), "n": 20, "notes": None})
    r = noise_report(pd.DataFrame(rows))["p"]
    assert r["cv_median_pct"] > 5
    assert r["canonical"]["cv_median_pct"] < 0.01 and r["canonical"]["raw_cv_median_pct"] == pytest.approx(r["cv_median_pct"])
    assert r["ratio"]["cv_median_pct"] < 0.2 and r["ratio"]["configs"] == 2


def test_data_phase_prints_the_series_and_writes_an_offline_chart(tmp_path, capsys):
    from nas.cli import main

    url = tmp_path / "s.sqlite"
    store = Store(url, seed=False)
    dev = local_device()
    store.add_device(dev)
    _session(store, CANON, "2026-12-03T07:00:00+00:00")
    _session(store, _phase_of(0.4, -0.07), "2026-12-03T08:00:00+00:00", failed=("E2",))
    html = tmp_path / "phase.html"
    assert main(["data", "phase", "--device", dev.device_id, "--store", str(url), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "2 anchor sessions; phase model loglinear" in out and "failed" in out and "B3" in out
    assert html.exists() and "cdn.plot.ly" not in html.read_text()
    assert main(["data", "phase", "--device", dev.device_id, "--store", str(url), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["sessions"][0]["canonical"] and data["sessions"][1]["a"] == pytest.approx(0.4, abs=0.05)
    assert main(["data", "phase", "--device", "other-dev", "--store", str(url)]) == 2
    assert "no anchor timings of 'other-dev'" in capsys.readouterr().err


def test_a_paired_row_carries_the_phase_at_its_own_moment():
    from measured._phase import at_reference

    # The session says small models slow most (b < 0); the host slowed by a further 20 % when the config ran:
    # B0 timed in its pairs says so, and the row's canonical value stays put.
    session = fit_phase(CANON, _phase_of(0.3, -0.05), "loglinear")
    later = _phase_of(0.3 + math.log(1.2), -0.05)
    moment = at_reference(session, later["B0"], CANON["B0"])
    config_now = math.exp(math.log(50.0) + 0.3 + math.log(1.2) - 0.05 * math.log(50.0))
    assert moment.invert(config_now) == pytest.approx(50.0, rel=1e-9) and moment.b == session.b
    assert abs(session.invert(config_now) / 50.0 - 1) > 0.15  # the session alone is 20 % off


def test_a_paired_row_is_normalised_through_its_pair_ratio():
    from measured._phase import at_reference

    # The load changed within the timing: the medians of config and reference come from different halves, their
    # ratio is off; the median of the pair ratios (2.0) is not. The canonical value uses the latter.
    p = at_reference(fit_phase(CANON, CANON, "scale"), 25.0, CANON["B0"])
    df = pd.DataFrame({"value": [60.0], "metric": ["latency_ms"], "phase": [p.to_json()], "ratio": [2.0],
                       "reference_value": [25.0]})
    assert canonical_frame(df)["value"].iloc[0] == pytest.approx(2.0 * CANON["B0"])


def test_the_worker_times_anchors_on_request(monkeypatch):
    import dataclasses
    import json

    from measured import Measurer, _phase
    from measured._worker import serve

    monkeypatch.setattr(_phase, "time_anchor_session", lambda protocol: [{"anchor": "B1", "status": "ok",
                                                                           "runs": protocol.runs}])
    replies = []
    request = {"op": "anchors", "id": 7, "protocol": dataclasses.asdict(Protocol(runs=17))}
    serve([json.dumps(request)], replies.append)
    assert replies == [{"id": 7, "anchors": [{"anchor": "B1", "status": "ok", "runs": 17}]}]
    assert Measurer(Protocol(), "dev", fresh_process=True).time_anchors() is None  # no worker to time them in


class _LoadedLater(_AnchoredMeasurer):
    """The second anchor session runs beside a busy process: every anchor refused (as time_anchor_session does)."""

    def time_anchors(self):
        rows = super().time_anchors()
        if type(self).sessions > 1:
            rows = [{"anchor": r["anchor"], "config_hash": r["config_hash"], "status": "failed",
                     "reason": "loaded: timed beside other processes"} for r in rows]
        return rows


def test_a_session_without_a_phase_keeps_the_latest_phase_for_the_rows(tmp_path):
    store = Store(tmp_path / "s.sqlite", seed=False)
    _LoadedLater.sessions = 0
    jobs = [Job(c) for c in sample_configs(4, seed=5)]
    report = run_campaign(jobs, Protocol(), local_device(), store, progress=False, measurer=_LoadedLater,
                          anchors_every=2)
    assert report.anchor_sessions == 2
    assert [json_a(m.phase) for m in report.measurements] == pytest.approx([0.0] * 4, abs=1e-5)
