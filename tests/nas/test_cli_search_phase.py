"""`search --phase` on the command line: shown in the summary and --json; a device without a phase series."""

import json

import pytest

import nas.onboard._phase as onboard_phase
from measured import fit_phase
from nas.onboard._phase import PhaseChoice
from tests.nas.search.test_phase import CANON, SLOW_NOW, PhasedPredictor
from tests.nas.test_cli_search import BASE, analytic_predictors, run  # noqa: F401  (the autouse fixture)

ARGS = ["search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "30", "--objective", "params", *BASE]


def test_without_a_phase_series_the_default_says_so_and_now_is_refused(capsys):
    code, out, err = run(capsys, *ARGS, "--study", "a")
    assert code == 0, err
    assert "phase canonical: jetson_tx2:latency_ms: no phase series (the predictor's values as measured)" in out
    code, out, err = run(capsys, *ARGS, "--study", "b", "--phase", "canonical", "--json")
    assert code == 0, err
    assert json.loads(out)["phase"]["phase"] == "canonical" and "no phase series" in err
    code, out, err = run(capsys, *ARGS, "--study", "c", "--phase", "now")
    assert code == 2 and err == ("lowformer-nas: error: phase: jetson_tx2 has no phase series (its predictor is not "
                                 "phase-normalised), so there is no 'now' phase; use --phase canonical or leave "
                                 "--phase out\n")


@pytest.fixture
def phased(monkeypatch):
    phase = fit_phase(CANON, SLOW_NOW, "loglinear", session="s1", timestamp="2026-12-03T12:00:00")
    monkeypatch.setattr("nas.search._objectives.default_loader", lambda: PhasedPredictor)
    monkeypatch.setattr(onboard_phase, "predictor_phase",
                        lambda store, pred, which="now", **kw: PhaseChoice(which, phase, f"{which}: 30-40 % slower"))


def test_the_phase_is_in_the_summary_and_the_json(capsys, phased):
    code, out, err = run(capsys, *ARGS, "--study", "p", "--phase", "typical", "--json")
    assert code == 0, err
    j = json.loads(out)
    assert j["phase"]["phase"] == "typical" and j["phase"]["objectives"]["jetson_tx2:latency_ms"]["fit"]["session"] == "s1"
    assert "phase typical: jetson_tx2:latency_ms: typical: 30-40 % slower" in err
    code, out, err = run(capsys, *ARGS, "--study", "p", "--phase", "slow")
    assert code == 2 and err.startswith("lowformer-nas: error: phase: study 'p' was made with --phase typical, not slow")
