"""search --phase: a study's time objectives predicted in the chosen device phase, fixed for the study."""

import json
import math

import numpy as np
import pytest

import nas.onboard._phase as onboard_phase
from measured import fit_phase
from nas.onboard._phase import PhaseChoice
from nas.search import SearchError, run_search

from .conftest import AnalyticPredictor, settings

CANON = {"B0@160": 10.0, "B1-unfused": 17.7, "B0": 21.3, "B1": 30.9, "E2": 69.7, "B3": 125.7}
# A slow phase: every anchor 30-40 % slower, with a little scatter (sd > 0: the intervals widen).
SLOW_NOW = {k: v * (1.3 + 0.02 * i) for i, (k, v) in enumerate(CANON.items())}


class PhasedPredictor(AnalyticPredictor):
    """An analytic predictor trained on phase-normalised rows: its values are the canonical phase's."""

    def __init__(self, device, metric=None):
        super().__init__(device, metric)
        self.meta = {"phase": {"anchors": {}, "canonical_session": "s0"}, "protocol": {"key": "k"}}


@pytest.fixture
def phased(monkeypatch):
    """Phased predictors whose anchor sessions give SLOW_NOW as the phase; ``asked`` records the phases asked for."""
    phase = fit_phase(CANON, SLOW_NOW, "loglinear", session="s1", timestamp="2026-12-03T12:00:00")
    asked = []

    def predictor_phase(store, pred, which="now", **kw):
        asked.append(which)
        return PhaseChoice(which, None if which == "canonical" else phase, f"{which}: 30-40 % slower")

    monkeypatch.setattr(onboard_phase, "predictor_phase", predictor_phase)

    def load(device, metric=None):
        return PhasedPredictor(device, metric)

    load.phase, load.asked = phase, asked
    return load


def _search(loader, tmp_path, **kw):
    base = dict(devices=["jetson_tx2"], trials=30, population_size=10, runs_dir=str(tmp_path / "runs"))
    return run_search(settings(**{**base, **kw}), loader=loader, progress=False, png=False)


def test_budgets_are_held_against_the_current_phase_by_default(phased, tmp_path):
    res = _search(phased, tmp_path, objective="params")
    s = res.results.settings
    assert s["phase"] == "now" and phased.asked == ["now"]
    rec = s["phases"]["jetson_tx2:latency_ms"]
    assert rec["phase"] == "now" and rec["fit"]["session"] == "s1"
    t = res.results.table
    canon = np.array([AnalyticPredictor("jetson_tx2")._ms(_count(c)) for c in t["config"]])
    assert np.allclose(t["jetson_tx2:latency_ms"], phased.phase.apply(canon), rtol=1e-9)
    # The interval: the predictor's +-5 % mapped into the phase, widened by the phase model's own uncertainty.
    widen = math.exp(1.6448536 * phased.phase.sd)
    assert phased.phase.sd > 0
    assert np.allclose(t["jetson_tx2:latency_ms_hi"], phased.phase.apply(canon * 1.05) * widen, rtol=1e-6)
    # Shown in every output.
    folder = res.folder
    assert "| phase | phase now: jetson_tx2:latency_ms: now: 30-40 % slower |" in (folder / "report.md").read_text()
    assert json.loads((folder / "front.json").read_text())["phase"]["phase"] == "now"
    assert "study s, phase now" in (folder / "pareto_front.html").read_text()


def _count(cfg):
    from search_spaces import LowFormerConfig, count

    return count(LowFormerConfig.from_dict(cfg))


def test_a_resumed_study_keeps_the_phase_it_was_scored_in(phased, tmp_path):
    first = _search(phased, tmp_path, phase="slow", objective="params")
    assert first.results.settings["phase"] == "slow"
    phased.asked.clear()
    res = _search(phased, tmp_path, trials=40, objective="params")  # no --phase: the study's
    assert res.n_trials == 40 and phased.asked == []  # the stored fit, not a new anchor session
    assert res.results.settings["phases"] == first.results.settings["phases"]
    with pytest.raises(SearchError, match="phase: study 's' was made with --phase slow, not canonical"):
        _search(phased, tmp_path, trials=50, phase="canonical", objective="params")


def test_canonical_phase_keeps_the_predictors_values(phased, tmp_path):
    res = _search(phased, tmp_path, phase="canonical", objective="params")
    t = res.results.table
    canon = np.array([AnalyticPredictor("jetson_tx2")._ms(_count(c)) for c in t["config"]])
    assert np.allclose(t["jetson_tx2:latency_ms"], canon)
    assert res.results.settings["phases"]["jetson_tx2:latency_ms"]["fit"] is None


def test_a_device_without_a_phase_series(loader, tmp_path):
    # The default and --phase canonical: the predictor's own values, and the outputs say there is no series.
    res = _search(loader, tmp_path, objective="params")
    s = res.results.settings
    assert s["phase"] == "canonical" and "no phase series" in s["phases"]["jetson_tx2:latency_ms"]["words"]
    assert "study s, phase canonical (no phase series)" in (res.folder / "pareto_front.html").read_text()
    for which in ("now", "typical", "slow"):
        with pytest.raises(SearchError) as e:
            _search(loader, tmp_path, study=f"x-{which}", phase=which, objective="params")
        assert str(e.value) == (f"phase: jetson_tx2 has no phase series (its predictor is not phase-normalised), so "
                                f"there is no '{which}' phase; use --phase canonical or leave --phase out")
        assert not (tmp_path / "runs" / f"x-{which}").exists()  # refused before anything is written
