"""Where study folders live: ``$LOWFORMER_NAS_HOME/runs/<study>/`` by default (beside the store and the trained
predictors, so ``plot --study`` and ``export --study`` work from any folder), or under ``--runs-dir DIR``. A study
made in ``./runs`` (earlier versions, or ``--runs-dir runs``) is still found there first."""

from __future__ import annotations

import os
import pathlib

from lowformer_common import home_dir

from ._storage import JOURNAL_FILE, study_dir

LOCAL_RUNS = "runs"


def default_runs_dir() -> pathlib.Path:
    return home_dir() / "runs"


def search_dirs(runs_dir: str | os.PathLike | None) -> list[pathlib.Path]:
    """Where an existing study is looked for, in order: ``runs_dir`` alone when given, else ./runs, then the
    home's runs folder."""
    if runs_dir is not None:
        return [pathlib.Path(runs_dir)]
    return [pathlib.Path(LOCAL_RUNS), default_runs_dir()]


def find_study_dir(name: str, runs_dir: str | os.PathLike | None = None, marker: str = JOURNAL_FILE) -> pathlib.Path | None:
    """The folder of an existing study (one holding ``marker``), or None."""
    for root in search_dirs(runs_dir):
        folder = study_dir(root, name)
        if (folder / marker).is_file():
            return folder
    return None


def study_folder(name: str, runs_dir: str | os.PathLike | None = None, marker: str = JOURNAL_FILE) -> pathlib.Path:
    """An existing study's folder, else where a new one goes (``runs_dir``, default the home's runs folder)."""
    found = find_study_dir(name, runs_dir, marker)
    if found is not None:
        return found
    return study_dir(runs_dir if runs_dir is not None else default_runs_dir(), name)


def searched_line(runs_dir: str | os.PathLike | None) -> str:
    """The folders searched, for error messages."""
    return " or ".join(p.as_posix() for p in search_dirs(runs_dir))
