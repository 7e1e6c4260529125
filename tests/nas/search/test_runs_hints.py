"""Where studies live (the home's runs folder, ./runs still found) and what a search suggests next."""

import os
import pathlib

from nas.search import default_runs_dir, find_study_dir, next_steps, open_study, run_search, study_folder

from .conftest import proxy_objectives, settings


def test_new_studies_go_to_the_home_and_are_found_from_anywhere():
    r = run_search(settings(trials=30, runs_dir=None, study="h"), objectives=proxy_objectives(), progress=False, png=False)
    home = pathlib.Path(os.environ["LOWFORMER_NAS_HOME"]) / "runs"
    assert default_runs_dir() == home and r.folder == home / "h" and (home / "h" / "report.md").is_file()
    os.makedirs("sub")
    os.chdir("sub")
    assert find_study_dir("h") == home / "h" and open_study("h").study_name == "h"
    assert find_study_dir("h", "runs") is None  # an explicit --runs-dir is the only place looked at
    assert study_folder("new") == home / "new"


def test_local_runs_come_first():
    run_search(settings(trials=20, study="l"), objectives=proxy_objectives(), progress=False, png=False)  # ./runs
    assert find_study_dir("l") == pathlib.Path("runs/l")
    r = run_search(settings(trials=25, study="l", runs_dir=None), objectives=proxy_objectives(), progress=False, png=False)
    assert r.folder == pathlib.Path("runs/l") and r.n_trials == 25 and r.ran == 5  # resumed where it was


def test_seed_is_drawn_recorded_and_kept():
    r = run_search(settings(trials=20, seed=None), objectives=proxy_objectives(), progress=False, png=False)
    assert r.seed_drawn and isinstance(r.seed, int)
    again = run_search(settings(trials=25, seed=None), objectives=proxy_objectives(), progress=False, png=False)
    assert again.seed == r.seed and not again.seed_drawn
    assert f"seed {r.seed}" in (pathlib.Path("runs/s") / "report.md").read_text()


def test_next_steps():
    r = run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, png=False)
    steps = next_steps(r.results, this_machine="jetson_tx2")  # pretend this machine is the study's device
    ident = r.results.front.iloc[0]["hash"][:12]
    assert steps[0].startswith("export the best pick") and f"lowformer-nas export --study s --pick {ident}" in steps[0]
    assert "--torch" in steps[0]
    assert any("--verify 10" in s and "--refine 2" in s for s in steps)
    # Never what was just done: after --verify, refine; after --refine without --verify, verify; after both, nothing.
    after = next_steps(r.results, this_machine="jetson_tx2", done={"verify": 20})
    assert not any("--verify" in s for s in after) and any("--refine 2" in s for s in after)
    after = next_steps(r.results, this_machine="jetson_tx2", done={"refine": 2})
    assert not any("--refine" in s for s in after) and any("--verify 20" in s for s in after)
    assert len(next_steps(r.results, this_machine="jetson_tx2", done={"refine": 2, "verify": 5})) == 1
    elsewhere = next_steps(r.results, this_machine="some-other-host")
    assert any("jetson_tx2" in s and ("onboard" in s or "predictors update --device jetson_tx2" in s) for s in elsewhere)
    assert "## Next steps" in (pathlib.Path("runs/s") / "report.md").read_text()
