"""The drift check: anchors measured once per host and day, compared with the predictor's interval (or
±10 %), a drifted machine told to onboard; only this machine's ids with a predictor are checked."""

import types

import numpy as np
import pytest

from nas.onboard import ANCHORS, drift_check, drift_disabled, is_this_machine

PROTOCOL = {"key": "latency_ms|onnxruntime|fp32|b1|t1", "backend": "onnxruntime", "batch": 1, "precision": "fp32",
            "threads": 1}


class FakePredictor:
    metric, model_type, version = "latency_ms", "additive", 3
    meta = {"protocol": PROTOCOL}

    def predict(self, configs):
        return np.array([10.0 * (i + 1) for i in range(len(configs))])


class WithInterval(FakePredictor):
    def predict_interval(self, configs, coverage):
        p = self.predict(configs)
        return types.SimpleNamespace(lo=p * 0.7, hi=p * 1.3)


def _measure(factor, calls):
    def measure(protocol, device_id):
        calls.append((protocol.key, device_id))
        return {n: 10.0 * (i + 1) * factor for i, n in enumerate(ANCHORS)}

    return measure


def test_a_machine_slower_than_its_predictor_is_told_to_onboard():
    calls = []
    r = drift_check("dev-a", predictor=FakePredictor(), measure=_measure(1.7, calls), today="2026-12-01")
    assert r.drifted and not r.cached and calls == [(PROTOCOL["key"], "dev-a")]
    lines = r.lines()
    assert lines[0].startswith("drift: this machine no longer runs as the dev-a predictor (additive v3) says: 4 of 4")
    assert "lowformer-nas onboard" in lines[1] and all("\n" not in line for line in lines)
    # The same host and day: from the cache, nothing measured again.
    again = drift_check("dev-a", predictor=FakePredictor(), measure=_measure(1.7, calls), today="2026-12-01")
    assert again.cached and again.drifted and len(calls) == 1
    # Another day: measured afresh.
    drift_check("dev-a", predictor=FakePredictor(), measure=_measure(1.0, calls), today="2026-12-02")
    assert len(calls) == 2


def test_within_the_band_is_no_drift_and_the_interval_is_used_when_there_is_one():
    calls = []
    ok = drift_check("dev-b", predictor=FakePredictor(), measure=_measure(1.04, calls), today="2026-12-01")
    assert not ok.drifted and ok.lines()[0].startswith("drift check: dev-b runs as its predictor says (4 of 4")
    # 1.2x is beyond ±10 % but inside a ±30 % prediction interval.
    assert drift_check("dev-c", predictor=FakePredictor(), measure=_measure(1.2, calls), today="2026-12-01").drifted
    wide = drift_check("dev-d", predictor=WithInterval(), measure=_measure(1.2, calls), today="2026-12-01")
    assert not wide.drifted and "interval" in wide.band


def test_one_outlier_is_noise_and_failed_anchors_are_skipped():
    def measure(protocol, device_id):
        values = {n: 10.0 * (i + 1) for i, n in enumerate(ANCHORS)}
        values[ANCHORS[0]] *= 2
        values[ANCHORS[1]] = None  # failed or busy
        return values

    r = drift_check("dev-e", predictor=FakePredictor(), measure=measure, today="2026-12-01")
    assert not r.drifted and len(r.measured) == 3


def test_only_this_machine_is_checked(monkeypatch):
    from measured import local_device_id

    assert is_this_machine(local_device_id()) and not is_this_machine("jetson_tx2")
    # A device that is not this machine, or has no predictor: nothing measured.
    assert drift_check("jetson_tx2", measure=lambda p, d: pytest.fail("measured")) is None
    assert drift_check(local_device_id(), measure=lambda p, d: pytest.fail("measured")) is None  # no predictor
    monkeypatch.setenv("LOWFORMER_NAS_DRIFT_CHECK", "off")
    assert drift_disabled()


def test_timing_the_anchors_is_announced_before_it_starts_and_not_when_cached():
    calls, said = [], []

    def measure(protocol, device_id):
        assert said, "the line comes before the anchors are timed"
        return _measure(1.0, calls)(protocol, device_id)

    drift_check("dev-e", predictor=FakePredictor(), measure=measure, today="2026-12-01", log=said.append)
    assert len(said) == 1 and said[0].startswith("drift check: timing 4 anchor models on dev-e (once a day")
    drift_check("dev-e", predictor=FakePredictor(), measure=measure, today="2026-12-01", log=said.append)
    assert len(said) == 1  # from the day's cache: nothing timed, nothing said
