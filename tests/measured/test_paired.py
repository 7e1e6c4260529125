"""Paired timing (config and reference in A B | B A order), what a paired row stores, and the store's migration.

Every timing here runs on an injected clock and fake models: the figures are exact on a busy machine.
"""

import sqlite3

import numpy as np
import pytest

from lowformer_common import UserError
from measured import Measurement, RecordError, Store
from measured._harness import (
    PairedTiming,
    Protocol,
    ReferenceFailed,
    _signed_rank_lower,
    block_log_ratios,
    hodges_lehmann,
    make_measurement,
    measure_runner,
    paired_floor,
    paired_ratio,
    reference_runner,
    time_paired,
)
from measured._records import content_id

from .conftest import arch, cpu_device, measurement
from tests._fakes import QuietMonitor


_Quiet = QuietMonitor


class _Host:
    """A simulated host: each model call advances the clock by its cost times the host's current slowness,
    which follows ``slowness(call index)`` (a drift, a neighbour that starts mid-way)."""

    def __init__(self, slowness):
        self.t, self.calls, self.slowness, self.order = 0.0, 0, slowness, []

    def clock(self) -> float:
        return self.t

    def model(self, name: str, cost_s: float):
        def run():
            self.t += cost_s * self.slowness(self.calls)
            self.calls += 1
            self.order.append(name)
        return run


def test_pairs_alternate_abba_and_the_ratio_holds_through_a_drift():
    # The host slows down by 60 % over the run (the 12.1 -> 18.2 ms): the absolute median moves, the
    # median pair ratio stays at the true 2.0 within 1 %.
    host = _Host(lambda i: 1.0 + 0.6 * i / 200)
    t = time_paired(host.model("A", 0.02), host.model("B", 0.01), 0, 100, clock=host.clock, monitor=_Quiet)
    assert host.order[:8] == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert t.n == 100 and t.ratio == pytest.approx(2.0, rel=0.01)
    lo, hi = t.ratio_ci
    assert lo <= t.ratio <= hi
    assert np.median(t.times_s) > 0.02 * 1.25  # the absolute median carries the drift


def test_adaptive_stop_on_the_ratio_interval():
    from measured._harness import time_runner

    def wobble(i):  # the host's speed wobbles by ±30 %, both models alike
        return 1.0 + 0.3 * np.sin(i / 60)

    host = _Host(wobble)
    t = time_paired(host.model("A", 0.03), host.model("B", 0.01), 2, 100, min_runs=10, target_ci_pct=1.0,
                    clock=host.clock, monitor=_Quiet)
    assert t.n < 100 and t.ratio_ci_half_pct <= 1.0 and t.ratio == pytest.approx(3.0, rel=0.02)
    alone = _Host(wobble)
    a = time_runner(alone.model("A", 0.03), 2, 100, min_runs=10, target_ci_pct=1.0, clock=alone.clock, monitor=_Quiet)
    assert a.n == 100 and a.ci_half_pct > 1.0  # alone, the same host never settles


def test_the_signed_rank_interval_uses_the_published_critical_values():
    # Two-sided 5 % critical values of the Wilcoxon signed-rank statistic (n = 6..20; any statistics table):
    # the interval's lower rank is the critical value + 1, and below 6 values no interval reaches 95 %.
    critical = {6: 0, 7: 2, 8: 3, 9: 5, 10: 8, 11: 10, 12: 13, 13: 17, 14: 21, 15: 25, 16: 29, 17: 34, 18: 40,
                19: 46, 20: 52}
    assert {m: _signed_rank_lower(m) - 1 for m in critical} == critical
    assert [_signed_rank_lower(m) for m in range(1, 6)] == [0] * 5
    assert paired_floor() == 12  # 6 ABBA blocks


def test_hodges_lehmann_estimate_and_interval():
    x = np.array([0.1, 0.3, -0.2, 0.05, 0.15, 0.0, 0.25, -0.1])
    est, lo, hi = hodges_lehmann(x)
    walsh = [(x[i] + x[j]) / 2 for i in range(len(x)) for j in range(i, len(x))]
    assert est == pytest.approx(np.median(walsh)) and lo < est < hi
    assert (lo, hi) == (sorted(walsh)[3], sorted(walsh)[-4])  # n = 8: the 4th Walsh average from each end
    assert hodges_lehmann(x[:4])[1:] == (x[:4].min(), x[:4].max())  # too few: the Walsh averages' full range
    # One wild value (a neighbour's spike) barely moves it; the mean moves 12x as far.
    spiked = np.append(x, 5.0)
    assert abs(hodges_lehmann(spiked)[0] - est) < abs(spiked.mean() - x.mean()) / 12


def test_blocks_cancel_the_cost_of_switching_models():
    # The first run after the other model ran is 4 % slower (cold caches). Per pair, the config's ratio then
    # alternates between 2.0 x 1.04 and 2.0 / 1.04; each ABBA block holds one of each, so its ratio is 2.0.
    a = np.array([0.02 * (1.0 if k % 2 == 0 else 1.04) for k in range(20)])  # A warm in A B, cold in B A
    b = np.array([0.01 * (1.04 if k % 2 == 0 else 1.0) for k in range(20)])
    assert np.ptp(np.log(a / b)) == pytest.approx(2 * np.log(1.04))
    assert np.allclose(block_log_ratios(a, b), np.log(2.0))
    ratio, lo, hi = paired_ratio(a, b)
    assert ratio == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    assert len(block_log_ratios(a[:5], b[:5])) == 2  # the trailing pair of an odd count is left out
    assert block_log_ratios(a[:1], b[:1]) == pytest.approx(np.log(2.0 * 1.0 / 1.04))  # unless it is the only one


def test_an_adaptive_paired_timing_stops_after_whole_blocks_and_not_before_the_floor():
    host = _Host(lambda i: 1.0)  # a perfectly steady host: the interval is 0 from the first pair
    t = time_paired(host.model("A", 0.02), host.model("B", 0.01), 0, 100, min_runs=3, target_ci_pct=2.0,
                    clock=host.clock, monitor=_Quiet)
    assert t.n == 12 and t.ratio == pytest.approx(2.0)
    jitter = np.random.default_rng(3).normal(0, 0.03, 1000)
    host = _Host(lambda i: 1.0 + jitter[i])
    t = time_paired(host.model("A", 0.02), host.model("B", 0.01), 0, 100, min_runs=10, target_ci_pct=1.0,
                    clock=host.clock, monitor=_Quiet)
    assert t.n % 2 == 0 and t.n > 12 and t.ratio_ci_half_pct <= 1.0


def _reference(host, cost=0.01):
    return host.model("B", cost), "b" * 64, "B0"


def test_a_reference_warmed_up_in_this_process_is_warmed_up_once_per_config():
    host = _Host(lambda i: 1.0)
    ref = _reference(host)
    p = Protocol(runs=10, warmup=3, target_ci_pct=None)
    for _ in range(2):
        host.order.clear()
        measure_runner(host.model("A", 0.02), p, reference=ref, clock=host.clock, monitor=_Quiet)
        warm = host.order[: len(host.order) - 20]  # the 10 pairs come last
        assert len(host.order) - len(warm) == 20
    assert warm == ["A", "A", "A", "B"]  # the second config: the config 3 times, the warm reference once
    host.order.clear()
    time_paired(host.model("A", 0.02), host.model("B", 0.01), 2, 4, clock=host.clock, monitor=_Quiet)
    assert host.order[:4] == ["A", "A", "B", "B"]  # a reference of its own: the full warm-up


def test_pairs_that_disagree_are_measured_again_then_flagged():
    # A neighbour that starts half-way through each timing and slows only the config: the halves disagree.
    host = _Host(lambda i: 1.0)
    state = {"n": 0}

    def config():
        state["n"] += 1
        host.t += 0.02 * (1.5 if state["n"] % 20 > 10 else 1.0)

    p = Protocol(runs=20, warmup=0, target_ci_pct=None, pair_bound_pct=5.0)
    timing, status, reason = measure_runner(config, p, reference=_reference(host), clock=host.clock, monitor=_Quiet)
    assert status == "ok" and isinstance(timing, PairedTiming) and timing.remeasured == 1
    m = make_measurement("a" * 64, 224, p, "dev", timing=timing, notes="x")
    assert m.flag == "suspect" and "pairs disagree" in m.notes and m.ratio is not None

    steady = Protocol(runs=20, warmup=0, target_ci_pct=None)
    host2 = _Host(lambda i: 1.0)
    t2, _, _ = measure_runner(host2.model("A", 0.02), steady, reference=_reference(host2), clock=host2.clock,
                              monitor=_Quiet)
    m2 = make_measurement("a" * 64, 224, steady, "dev", timing=t2)
    assert t2.remeasured == 0 and m2.flag is None
    assert (m2.pairing, m2.reference, m2.ratio) == ("paired", "b" * 64, pytest.approx(2.0))
    assert m2.reference_value == pytest.approx(10.0) and m2.value == pytest.approx(20.0)
    assert "20 pairs with B0" in m2.notes and "ratio 95% CI" in m2.notes


def test_a_row_timed_alone_says_so():
    host = _Host(lambda i: 1.0)
    p = Protocol(runs=10, warmup=0, pairing="alone")
    timing, _, _ = measure_runner(host.model("A", 0.02), p, clock=host.clock, monitor=_Quiet)
    m = make_measurement("a" * 64, 224, p, "dev", timing=timing)
    assert m.pairing == "alone" and m.ratio is None and m.reference is None


def test_protocol_pairing_defaults_and_validation():
    assert Protocol().paired and not Protocol(pairing="alone").paired
    assert not Protocol(backend="torch_cuda").paired  # GPUs: alone unless asked
    assert Protocol(backend="torch_cuda", pairing="paired").paired
    assert Protocol().key == Protocol(pairing="alone").key  # one protocol key: stored rows stay comparable
    with pytest.raises(UserError, match="^pairing: must be one of auto|paired|alone"):
        Protocol(pairing="abab")
    with pytest.raises(UserError, match="^pair_bound_pct"):
        Protocol(pair_bound_pct=0)


def test_a_reference_that_fails_fails_the_config(monkeypatch):
    from measured import _harness

    class Broken:
        runs_onnx = False

        def load_config(self, config, batch):
            raise RuntimeError("refused by the backend")

    monkeypatch.setattr(_harness, "get_backend", lambda *a, **k: Broken())
    monkeypatch.setattr(_harness, "_LOADED", {})
    with pytest.raises(ReferenceFailed, match="^reference B0 failed: RuntimeError: refused by the backend"):
        reference_runner(Protocol())

    class Crashing:
        runs_onnx = False

        def load_config(self, config, batch):
            def run():
                raise RuntimeError("crashed mid-run")
            return run

    monkeypatch.setattr(_harness, "get_backend", lambda *a, **k: Crashing())
    run, _, _ = reference_runner(Protocol(batch=2))
    with pytest.raises(ReferenceFailed, match="reference B0 failed: RuntimeError: crashed mid-run"):
        run()


def test_never_a_ratio_to_nothing():
    a = arch("B1")
    with pytest.raises(RecordError, match="^reference: a ratio needs its reference"):
        measurement(a, ratio=1.5)
    with pytest.raises(RecordError, match="^ratio: must lie in"):
        measurement(a, ratio=1.5, ratio_lo=1.6, ratio_hi=1.7, reference="b" * 64, reference_value=10.0)
    with pytest.raises(RecordError, match="^pairing: must be one of paired|alone"):
        measurement(a, pairing="both")
    with pytest.raises(RecordError, match="^phase: must be a JSON object"):
        measurement(a, phase="[1]")
    m = measurement(a, pairing="paired", ratio=1.5, ratio_lo=1.4, ratio_hi=1.6, reference="b" * 64, reference_value=8.0)
    assert Measurement.from_mapping(m.to_dict() | {"ratio": "1.5"}).ratio == 1.5


def test_content_ids_of_rows_without_pairing_are_unchanged():
    # The id of an imported row without one is the hash of its content: the new empty columns stay out of it,
    # so a file imported before keeps its ids.
    import hashlib
    import json

    m = measurement(arch("B1"))
    d = m.to_dict()
    d.pop("id")
    for f in ("pairing", "ratio", "ratio_lo", "ratio_hi", "reference", "reference_value", "phase"):
        d.pop(f)
    assert content_id(m) == hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_a_store_without_the_paired_columns_is_upgraded_in_place(tmp_path):
    url = tmp_path / "old.sqlite"
    with Store(url, seed=False) as s:
        s.add_device(cpu_device())
        s.add_measurements([measurement(arch("B1"), value=30.0)], archs=[arch("B1")])
    con = sqlite3.connect(url)  # as an earlier version wrote it: no paired columns, no anchor table
    for col in ("pairing", "ratio", "ratio_lo", "ratio_hi", "reference", "reference_value", "phase"):
        con.execute(f"ALTER TABLE measurements DROP COLUMN {col}")
    con.execute("DROP TABLE anchor_timings")
    con.execute("DELETE FROM meta WHERE key = 'schema:paired_timing'")
    con.commit()
    con.close()
    with Store(url, seed=False) as s:
        df = s.measurements()
        assert len(df) == 1 and df["value"].iloc[0] == 30.0 and df["ratio"].isna().all() and df["phase"].isna().all()
        paired = measurement(arch("B0"), value=20.0, pairing="paired", ratio=1.0, ratio_lo=0.99, ratio_hi=1.01,
                             reference=arch("B0").config_hash, reference_value=20.0)
        assert s.add_measurements([paired], archs=[arch("B0")]) == 1
        assert s.anchor_timings().empty
    with Store(url, seed=False) as s:
        assert len(s.measurements()) == 2


def test_the_bundle_runner_pairs_with_the_same_interval_and_warns_when_the_reference_moves(capsys):
    import importlib.util
    import pathlib
    import types

    import measured

    spec = importlib.util.spec_from_file_location("run_bundle", pathlib.Path(measured.__file__).parent / "bundle_runner.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    from measured._harness import median_ci

    x = sorted(np.linspace(1.0, 2.0, 37))
    assert runner._order_ci(x) == median_ci(x)  # the same order statistics as the harness
    a, b = types.SimpleNamespace(run=lambda: sum(range(3000))), types.SimpleNamespace(run=lambda: sum(range(1000)))
    out = runner.measure_paired(a, b, 1, 12)
    assert len(out) == 8 and out[5] <= out[4] <= out[6] and out[7] > 0
    state = {"first_ref": None, "warned": False}
    runner._phase_warning({"status": "ok", "reference_value": 20.0}, state)
    runner._phase_warning({"status": "ok", "reference_value": 21.0}, state)
    assert state["first_ref"] == 20.0 and "warning" not in capsys.readouterr().out
    runner._phase_warning({"status": "ok", "reference_value": 23.0}, state)
    runner._phase_warning({"status": "ok", "reference_value": 24.0}, state)
    assert capsys.readouterr().out.count("the device's phase moved") == 1  # one line, not one per row
    manifest = {"models": [{"name": "B0", "input_shape": [1, 3, 64, 64]}, {"name": "B0", "input_shape": [1, 3, 224, 224]}]}
    assert runner.reference_entry(manifest)["input_shape"][2] == 224
    assert "pairing" in runner.FIELDS and "ratio" in runner.FIELDS


def test_measure_protocol_flag():
    from nas.cli import build_parser

    args = build_parser().parse_args(["measure", "--model", "B0", "--protocol", "alone"])
    assert args.protocol == "alone"
    assert build_parser().parse_args(["measure", "--model", "B0"]).protocol == "paired"


def test_pair_jitter_on_a_busy_host_is_not_a_disagreement():
    rng = np.random.default_rng(4)
    jitter = rng.uniform(0.8, 1.2, 400)  # every run ±20 %, at random: wide intervals, no step between the halves
    host = _Host(lambda i: jitter[i % 400])
    p = Protocol(runs=10, warmup=0, target_ci_pct=None)
    timing, status, _ = measure_runner(host.model("A", 0.02), p, reference=_reference(host), clock=host.clock,
                                       monitor=_Quiet)
    assert timing.remeasured == 0 and make_measurement("a" * 64, 224, p, "dev", timing=timing).flag is None


class _Loaded(QuietMonitor):
    """A load monitor that reports another process using 50 % of the machine (one core of two spinning)."""

    calls = 0

    def __enter__(self):
        type(self).calls += 1
        return self

    other_pct = 50.0


def test_pairs_timed_beside_a_busy_process_keep_their_ratio_flagged_loaded():
    # The neighbour slows both halves of each pair alike (x1.8): the ratio holds, the absolute value is the loaded
    # one. Kept at once (no retries: a neighbour that keeps running would triple every row's time), stored ok,
    # flagged "loaded" (never trained on) with its busy_pct and a note saying what the value is.
    _Loaded.calls = 0
    host = _Host(lambda i: 1.8)
    p = Protocol(runs=20, warmup=0, target_ci_pct=None, retries=2, retry_pause_s=0.0)
    timing, status, reason = measure_runner(host.model("A", 0.02), p, reference=_reference(host), clock=host.clock,
                                            monitor=_Loaded)
    assert status == "ok" and _Loaded.calls == 1 and "ratio kept" in reason
    assert timing.ratio == pytest.approx(2.0) and timing.median_s == pytest.approx(0.036)
    m = make_measurement("a" * 64, 224, p, "dev", timing=timing, status=status, reason=reason)
    assert m.flag == "loaded" and m.busy_pct == 50.0 and m.ratio == pytest.approx(2.0)
    assert "loaded phase" in m.notes and m.value == pytest.approx(36.0)


def test_loaded_pairs_are_refused_when_asked_and_timings_alone_stay_refused():
    for p, ref in ((Protocol(runs=10, warmup=0, target_ci_pct=None, retries=1, retry_pause_s=0.0,
                             keep_loaded_pairs=False), True),
                   (Protocol(runs=10, warmup=0, target_ci_pct=None, retries=1, retry_pause_s=0.0, pairing="alone"),
                    False)):
        _Loaded.calls = 0
        host = _Host(lambda i: 1.8)
        timing, status, reason = measure_runner(host.model("A", 0.02), p, reference=_reference(host) if ref else None,
                                                clock=host.clock, monitor=_Loaded)
        assert status == "busy" and _Loaded.calls == 2 and reason.startswith("machine busy")
        m = make_measurement("a" * 64, 224, p, "dev", timing=timing, status=status, reason=reason)
        assert m.flag is None and m.status == "busy" and m.busy_pct == 50.0


def test_loaded_pairs_that_disagree_are_not_kept():
    # A neighbour that slows only the config's second half: the pairs disagree twice, so the load is not trusted.
    host = _Host(lambda i: 1.0)
    state = {"n": 0}

    def config():
        state["n"] += 1
        host.t += 0.02 * (1.5 if state["n"] % 20 > 10 else 1.0)

    p = Protocol(runs=20, warmup=0, target_ci_pct=None, retries=0, retry_pause_s=0.0)
    timing, status, _ = measure_runner(config, p, reference=_reference(host), clock=host.clock, monitor=_Loaded)
    assert status == "busy" and timing.disagreement_pct > p.pair_bound_pct
