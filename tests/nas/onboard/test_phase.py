"""Predictors learn canonical-phase costs; predictions "now" map them into the device's current phase.

Anchor sessions are written into a store directly (no timing); "now" refreshes through an injected function.
"""

import math
import types

import numpy as np
import pandas as pd
import pytest

from lowformer_common import UserError
from measured import Protocol, Store, anchor_configs, anchor_hashes, fit_phase, local_device, session_rows
from nas.onboard._phase import check_anchors, in_phase, predictor_phase
from predictors import training_data
from search_spaces import sample_configs

CANON = {"B0@160": 10.0, "B1-unfused": 17.7, "B0": 21.3, "B1": 30.9, "E2": 69.7, "B3": 125.7}


def _phase_of(a, b):
    return {k: math.exp(math.log(v) + a + b * math.log(v)) for k, v in CANON.items()}


def _session(store, device, values, ts):
    results = [{"anchor": n, "config_hash": c.hash, "status": "ok", "ratio": values[n] / values["B0"],
                "ratio_lo": values[n] / values["B0"], "ratio_hi": values[n] / values["B0"], "reference": "c" * 64,
                "reference_value": values["B0"], "n": 10} for n, c in anchor_configs()]
    rows = session_rows(results, device, Protocol(), source="campaign", timestamp=ts)
    store.add_anchor_timings(rows)
    return rows[0]["session"]


def _frame(configs, values, phases):
    return pd.DataFrame({"device_id": "dev", "metric": "latency_ms", "value": values, "status": "ok", "flag": None,
                         "n": 20, "config_hash": [c.hash for c in configs], "config_json": [c.canonical_json() for c in configs],
                         "name": None, "macs": None, "params": None, "resolution": [c.resolution for c in configs],
                         "protocol": Protocol().key, "backend": "onnxruntime", "precision": "fp32", "batch": 1,
                         "threads": 1, "source": "harness", "p10": None, "p90": None, "phase": phases})


def test_training_learns_canonical_costs_and_says_what_was_not_normalised():
    cfgs = list(sample_configs(6, seed=3))
    slow = fit_phase(CANON, _phase_of(0.3, -0.05), "loglinear", session="s2", canonical_session="s1")
    other = fit_phase(CANON, _phase_of(0.1, 0.0), "loglinear", session="s9", canonical_session="s0")
    truth = [20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    measured = [float(slow.apply(v)) for v in truth[:4]] + [truth[4], float(other.apply(truth[5]))]
    phases = [slow.to_json()] * 4 + [None, other.to_json()]
    data = training_data(_frame(cfgs, measured, phases), "dev", "latency_ms")
    by_hash = dict(zip([c.hash for c in data.configs], data.values))
    assert [by_hash[c.hash] for c in cfgs[:5]] == pytest.approx(truth[:5], rel=1e-5)
    assert by_hash[cfgs[5].hash] == pytest.approx(measured[5])  # another canonical session: kept as measured
    assert data.phase == {"canonical_session": "s1", "anchors": anchor_hashes(), "normalised_rows": 4,
                          "not_normalised_rows": 2}
    plain = training_data(_frame(cfgs, truth, [None] * 6), "dev", "latency_ms")
    assert plain.phase is None


def _pred(device, canonical, anchors=None):
    meta = {"phase": {"canonical_session": canonical, "anchors": anchors or anchor_hashes(), "normalised_rows": 30,
                      "not_normalised_rows": 0},
            "protocol": {"key": Protocol().key, "backend": "onnxruntime", "batch": 1, "threads": 1}}
    return types.SimpleNamespace(meta=meta, device=device, metric="latency_ms")


def test_now_typical_slow_and_a_stale_session_refreshed(tmp_path):
    store = Store(tmp_path / "s.sqlite", seed=False)
    dev = local_device()
    store.add_device(dev)
    first = _session(store, dev.device_id, CANON, "2026-12-03T07:00:00+00:00")
    _session(store, dev.device_id, _phase_of(0.5, -0.08), "2026-12-03T08:00:00+00:00")
    calls = []

    def refresh(protocol, device):
        calls.append(device)
        _session(store, device, _phase_of(0.2, -0.03), "2099-01-01T00:00:00+00:00")

    pred = _pred(dev.device_id, first)
    now = predictor_phase(store, pred, "now", refresh=refresh)
    assert calls == [dev.device_id] and now.phase.a == pytest.approx(0.2) and now.words.startswith("now: loglinear")
    again = predictor_phase(store, pred, "now", refresh=refresh)
    assert len(calls) == 1 and again.phase.session == now.phase.session  # the fresh session is reused
    assert predictor_phase(store, pred, "canonical").phase is None
    mid = 30.0
    assert predictor_phase(store, pred, "slow").phase.factor(mid) >= predictor_phase(store, pred, "typical").phase.factor(mid)
    v, lo, hi = in_phase([40.0], [36.0], [44.0], "latency_ms", now, 0.9)
    assert v[0] == pytest.approx(now.phase.apply(40.0)) and lo[0] < v[0] < hi[0]
    t, tlo, thi = in_phase([100.0], [90.0], [110.0], "throughput_img_s", now, 0.9)
    assert tlo[0] < t[0] < thi[0] and t[0] == pytest.approx(1e3 / now.phase.apply(10.0))
    with pytest.raises(UserError, match="^phase: .* no anchor session against the canonical one"):
        predictor_phase(store, _pred(dev.device_id, "another-session"), "now", refresh=refresh)


def test_other_anchors_are_refused_in_one_line_unless_forced():
    pred = _pred("dev", "s1", anchors=anchor_hashes() | {"B3": "f" * 64})
    with pytest.raises(UserError, match=r"^phase: the dev predictor was trained against other anchors/reference than "
                                        r"this version times \(B3\); retrain it .* or pass --force"):
        check_anchors(pred)
    assert "(B3)" in check_anchors(pred, force=True)
    assert check_anchors(_pred("dev", "s1")) is None


def test_a_predictor_without_phases_predicts_as_measured():
    pred = types.SimpleNamespace(meta={}, device="dev", metric="latency_ms")
    c = predictor_phase(None, pred, "now")
    assert c.phase is None and "not phase-normalised" in c.words
    assert in_phase([1.0], [0.9], [1.1], "latency_ms", c)[0][0] == 1.0
    assert np.isfinite(in_phase([1.0], [0.9], [1.1], "latency_ms", c)[2][0])
