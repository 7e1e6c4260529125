import pathlib

import optuna
import pytest
from optuna.storages import JournalStorage

from nas.search import SearchError, check_study_name, open_storage, open_study, run_search
from nas.search._storage import SyncLaterJournalBackend, mask_url

from .conftest import proxy_objectives, settings


def test_journal_is_optunas_format():
    """The study file is an Optuna journal: Optuna's JournalStorage opens it through the study's backend (which puts
    back the distributions later records refer to; a plain copy for other tools: test_journal_size.py)."""
    run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, outputs=False)
    study = optuna.load_study(study_name="s", storage=JournalStorage(SyncLaterJournalBackend("runs/s/study.journal")))
    assert len(study.trials) == 30 and all("hash" in t.user_attrs for t in study.trials)


def test_sqlite_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    r = run_search(settings(trials=25, storage=url), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == 25
    assert len(optuna.load_study(study_name="s", storage=open_storage(url, create=False)).trials) == 25


def test_open_storage_errors(tmp_path):
    with pytest.raises(SearchError, match="^study: no study in"):
        open_storage(None, tmp_path / "none", create=False)
    with pytest.raises(SearchError, match="^storage: 'redis://h': give a database URL"):
        open_storage("redis://h", create=True)
    assert mask_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"


@pytest.mark.parametrize("name", ["ok", "jetson_tx2-12ms", "a.b-c_d", "x" * 100])
def test_good_study_names(name):
    assert check_study_name(name) == name


# ---------------------------------------------------------------------------------------------- journal repair

JOURNAL = pathlib.Path("runs/s/study.journal")


@pytest.fixture
def journal():
    """A finished 30-trial study's journal; its bytes."""
    run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, outputs=False)
    return JOURNAL.read_bytes()


def _plain_optuna_load():
    """Optuna reading the file without the repair (what `search` and `plot` did before it)."""
    return optuna.load_study(study_name="s", storage=JournalStorage(SyncLaterJournalBackend(str(JOURNAL))))


def _backups():
    return sorted(JOURNAL.parent.glob("study.journal.bak-*"))


def test_torn_last_record_is_dropped_with_a_backup(journal, capsys):
    lines = journal.splitlines(keepends=True)
    JOURNAL.write_bytes(journal + lines[-1][: len(lines[-1]) // 2])  # killed mid-write: no newline
    study = open_study("s")
    assert len(study.trials) == 30 and JOURNAL.read_bytes() == journal
    [backup] = _backups()
    assert backup.read_bytes().startswith(journal) and len(backup.read_bytes()) > len(journal)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "repaired runs/s/study.journal: dropped 1 incomplete or unreadable line(s) (line " \
        f"{len(lines) + 1}), kept {len(lines)} records; the original is {backup.name}" in err
    # The study resumes on the repaired journal.
    r = run_search(settings(trials=40), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == 40


def test_a_search_resumed_on_a_torn_journal_says_so_in_its_result(journal):
    lines = journal.splitlines(keepends=True)
    JOURNAL.write_bytes(journal + lines[-1][:10])
    r = run_search(settings(trials=35), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == 35
    assert [n for n in r.notes if n.startswith("repaired runs/s/study.journal: dropped 1 incomplete")]


def test_a_record_glued_onto_a_torn_one_is_kept(journal, capsys):
    """A process killed mid-write, then the next append on the same line: Optuna's JSONDecodeError."""
    lines = journal.splitlines(keepends=True)
    torn = lines[:-2] + [lines[-2][:20] + lines[-1]]  # the record before the last was cut after 20 bytes
    JOURNAL.write_bytes(b"".join(torn) + lines[-1])
    with pytest.raises(ValueError):  # what `search` and `plot` printed as a traceback
        _plain_optuna_load()
    study = open_study("s")
    assert len(study.trials) == 30
    assert JOURNAL.read_bytes() == b"".join(lines[:-2] + [lines[-1], lines[-1]])
    assert "dropped 1 incomplete or unreadable line(s)" in capsys.readouterr().err


def test_a_garbage_line_is_dropped(journal, capsys):
    lines = journal.splitlines(keepends=True)
    mid = len(lines) // 2
    JOURNAL.write_bytes(b"".join(lines[:mid] + [b"\x00\xffgarbage {\n", b'{"not": "a record"}\n'] + lines[mid:]))
    with pytest.raises((ValueError, KeyError)):
        _plain_optuna_load()
    assert len(open_study("s").trials) == 30 and JOURNAL.read_bytes() == journal
    assert f"(line {mid + 1}, {mid + 2})" in capsys.readouterr().err


def test_a_whole_journal_is_left_alone(journal, capsys):
    assert len(open_study("s").trials) == 30
    assert JOURNAL.read_bytes() == journal and _backups() == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("content, says", [
    (b"", "runs/s/study.journal is empty: no study was recorded in it"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "runs/s/study.journal is not an Optuna journal of a study"),
    (b'{"a": 1}\n{"b": 2}\n', "runs/s/study.journal is not an Optuna journal of a study"),
])
def test_empty_or_foreign_journal_is_one_line(content, says, capsys):
    JOURNAL.parent.mkdir(parents=True)
    JOURNAL.write_bytes(content)
    with pytest.raises(SearchError) as e:
        open_study("s")
    assert str(e.value).startswith(f"study: {says}") and "\n" not in str(e.value)
    assert JOURNAL.read_bytes() == content and _backups() == []
    from nas.cli import main

    for argv in (["plot", "--study", "s", "--no-png"], ["search", "--study", "s", "--trials", "5", "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err


def test_another_studys_journal_is_one_line(journal):
    JOURNAL.parent.rename("runs/t")
    with pytest.raises(SearchError, match=r"^study: runs/t/study.journal holds study 's', not 't'; it is another"):
        open_study("t")
