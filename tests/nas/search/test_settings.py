"""The search settings declared once (nas/_search_settings.py): the argparse of `search`, the fixed settings and the
stored ones come from the fields; a study written before (tests/data/search_before_phase) resumes."""

import dataclasses
import json
import pathlib
import shutil

import pytest

from nas._search_settings import FIXED, LEGACY, SearchSettings, settings_from_args, stored_settings
from nas.cli import build_parser
from nas.search import SearchError, open_study, run_search

from .conftest import proxy_objectives

OLD_STUDY = pathlib.Path(__file__).resolve().parents[2] / "data" / "search_before_phase"


def parse(*argv):
    return build_parser("search").parse_args(["search", *argv])


def test_every_flagged_field_is_an_option_and_units_parse():
    args = parse("--device", "jetson_tx2", "--device", "rpi5_arm_cpu", "--budget-ms", "12ms", "--budget-ms", "0.02s",
                 "--max-params", "5M", "--max-macs", "2G", "--trials", "40", "--confidence", "0.8", "--extrapolate",
                 "--phase", "slow", "--seed", "7", "--population-size", "12")
    s = settings_from_args(args)
    assert s.devices == ["jetson_tx2", "rpi5_arm_cpu"] and s.budgets_ms == [12.0, 20.0]
    assert (s.max_params, s.max_macs, s.trials, s.confidence, s.seed) == (5e6, 2e9, 40, 0.8, 7)
    assert s.extrapolate is True and s.phase == "slow" and s.population_size == 12
    # Nothing given: every field keeps its default (None: the stored study's value, else the default).
    assert settings_from_args(parse()) == SearchSettings()
    flags = {f.metadata["flag"] for f in dataclasses.fields(SearchSettings)} - {None}
    options = {o for a in build_parser("search")._subparsers._group_actions[0].choices["search"]._actions
               for o in a.option_strings}
    assert flags <= options


def test_fixed_and_legacy_settings_come_from_the_fields():
    assert FIXED == ("devices", "budgets_ms", "sampler", "objective", "max_params", "max_macs", "risk", "confidence",
                     "extrapolate", "phase")
    assert LEGACY == {"risk": "mean", "confidence": 0.9, "extrapolate": True, "phase": "canonical"}
    stored = stored_settings(SearchSettings(devices=("a",), budgets_ms=(3,), study="x", storage="sqlite:///x.db"))
    assert stored["devices"] == ["a"] and stored["budgets_ms"] == [3] and stored["study"] == "x"
    assert "storage" not in stored and "runs_dir" not in stored and "round" not in stored  # written by the run


@pytest.mark.parametrize("argv, starts", [
    (["--phase", "later"], "lowformer-nas search: error: argument --phase: invalid choice: 'later'"),
    (["--budget-ms", "12parsecs"], "lowformer-nas search: error: argument --budget-ms:"),
    (["--max-macs", "lots"], "lowformer-nas search: error: argument --max-macs: expected a number such as"),
])
def test_bad_options_are_argparse_one_liners(capsys, argv, starts):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(starts) and err.count("\n") == 1


def _old_study(tmp_path) -> str:
    runs = tmp_path / "runs"
    shutil.copytree(OLD_STUDY / "old", runs / "old")
    return str(runs)


def test_a_study_written_before_resumes_with_its_settings(tmp_path):
    runs = _old_study(tmp_path)
    before = open_study("old", runs).user_attrs["lowformer_nas"]
    assert "phase" not in before and "phases" not in before  # the previous format
    r = run_search(SearchSettings(study="old", runs_dir=runs, trials=14), objectives=proxy_objectives(),
                   progress=False, png=False)
    assert r.n_trials == 14 and r.ran == 6 and r.seed == 0
    s = json.loads((pathlib.Path(runs) / "old" / "settings.json").read_text())
    assert s["devices"] == ["jetson_tx2"] and s["budgets_ms"] == [12.0] and s["max_params"] == 5e6
    assert s["risk"] == "bound" and s["population_size"] == 4 and s["created"] == before["created"]
    # Scored before phases existed: with the values as given, and it says so.
    assert s["phase"] == "canonical" and s["phases"] == {}
    assert "| phase | phase canonical: the predictors' own values |" in (pathlib.Path(runs) / "old" / "report.md").read_text()


@pytest.mark.parametrize("change, starts", [
    ({"phase": "now"}, "phase: study 'old' was made with --phase canonical, not now"),
    ({"max_params": 4e6}, "max-params: study 'old' was made with --max-params 5000000, not 4000000"),
    ({"budgets_ms": [10.0]}, "budget-ms: study 'old' was made with --budget-ms 12, not 10"),
])
def test_a_study_written_before_keeps_its_fixed_settings(tmp_path, change, starts):
    runs = _old_study(tmp_path)
    with pytest.raises(SearchError) as e:
        run_search(SearchSettings(study="old", runs_dir=runs, **change), objectives=proxy_objectives(),
                   progress=False, png=False)
    assert str(e.value).startswith(starts)


def test_every_size_limit_is_a_settings_field_of_its_name():
    # make_constraints receives the settings' size limits by their SIZE_LIMITS key: a new limit is a field and a row.
    from nas._search_settings import option_name
    from nas.search._constraints import SIZE_LIMITS, make_constraints

    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    for key, limit in SIZE_LIMITS.items():
        assert key in fields and option_name(key) == limit.flag
    with pytest.raises(TypeError, match="unknown size limit 'max_bytes'"):
        make_constraints([], {}, max_bytes=1e6)
