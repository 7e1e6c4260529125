"""The study journal's compact records: a set of distributions in full once per file, later trials refer to it by
digest. Sizes are bytes, deterministic for a seed: bounded here; the 3,000-trial folder is measured by
tests/benchmarks/bench_study_size.py."""

import json
import pathlib
import shutil

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas.search import SearchError, open_storage, open_study, run_search
from nas.search._storage import SyncLaterJournalBackend

from tests.conftest import DATA
from .conftest import proxy_objectives, settings

JOURNAL = pathlib.Path("runs/s/study.journal")
# A 10-trial study written by main at b3f6b5f (Optuna's plain form: every trial with its 29 distributions), made with
# this folder's proxy_objectives() and settings(trials=10, study="old"), run_search(..., outputs=False).
PLAIN = DATA / "plain_journal" / "study.journal"
# Bytes per trial record of a proxy-objective study, on average after the first (about 1,100 measured: 1,040 a
# sampled trial, 1,520 a named variant with its enqueued knobs; Optuna's plain form: about 4,200).
TRIAL_RECORD_BYTES = 1_250


def _records(path) -> list[dict]:
    return [json.loads(line) for line in pathlib.Path(path).read_bytes().splitlines()]


def _trial_lines(path) -> list[bytes]:
    return [line for line in pathlib.Path(path).read_bytes().splitlines() if line.startswith(b'{"op_code":4,')]


def test_distributions_are_written_once_per_study():
    run_search(settings(trials=60), objectives=proxy_objectives(), progress=False, outputs=False)
    trials = [r for r in _records(JOURNAL) if r["op_code"] == 4]
    assert len(trials) == 60 and isinstance(trials[0]["distributions"], dict) and len(trials[0]["distributions"]) == 29
    refs = {r["distributions"] for r in trials[1:]}
    assert len(refs) == 1 and next(iter(refs)).startswith("sha256:")
    # Read back, every trial has all its distributions, equal to the first's.
    stored = open_study("s").get_trials()
    assert len(stored) == 60 and all(t.distributions == stored[0].distributions for t in stored)


def test_bytes_per_trial_are_bounded():
    run_search(settings(trials=60), objectives=proxy_objectives(), progress=False, outputs=False)
    lines = _trial_lines(JOURNAL)
    assert len(lines) == 60 and sum(map(len, lines[1:])) / 59 <= TRIAL_RECORD_BYTES


def test_a_plain_copy_opens_with_optunas_own_backend(tmp_path):
    """Tools that read journal files themselves (dashboards) get a plain copy through Optuna's copy_study."""
    run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, outputs=False)
    plain = JournalStorage(JournalFileBackend(str(tmp_path / "plain.journal")))
    optuna.copy_study(from_study_name="s", from_storage=open_storage(None, JOURNAL.parent, create=False),
                      to_storage=plain, to_study_name="s")
    copy = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "plain.journal"))))
    orig = open_study("s").get_trials()
    assert [(t.params, t.values, t.user_attrs) for t in copy.trials] == [(t.params, t.values, t.user_attrs) for t in orig]
    assert all(isinstance(r.get("distributions"), dict) for r in _records(tmp_path / "plain.journal") if r["op_code"] == 4)


def test_a_study_written_by_main_resumes_and_keeps_its_picks():
    folder = pathlib.Path("runs/old")
    folder.mkdir(parents=True)
    shutil.copy(PLAIN, folder / "study.journal")
    before = open_study("old").get_trials()
    old_front = list(run_search(settings(trials=10, study="old"), objectives=proxy_objectives(), progress=False,
                                outputs=False).results.front["hash"])
    r = run_search(settings(trials=40, study="old"), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == 40 and r.ran == 30
    after = open_study("old").get_trials()
    assert [(t.number, t.params, t.values, t.user_attrs, t.system_attrs) for t in after[:10]] == \
        [(t.number, t.params, t.values, t.user_attrs, t.system_attrs) for t in before]
    assert all(t.distributions == before[0].distributions for t in after)
    # Appended, never rewritten: main's records stay byte for byte; the new trials refer to main's distributions.
    data = (folder / "study.journal").read_bytes()
    assert data.startswith(PLAIN.read_bytes())
    new = [r for r in _records(folder / "study.journal")[len(PLAIN.read_bytes().splitlines()):] if r["op_code"] == 4]
    assert len(new) == 30 and all(isinstance(r["distributions"], str) for r in new)
    # A pick of the old front still names the same config (ids are config hashes).
    table = r.results.table.set_index("hash")
    assert all(h in table.index for h in old_front)


def test_a_reference_to_no_earlier_record_is_one_line():
    run_search(settings(trials=5), objectives=proxy_objectives(), progress=False, outputs=False)
    lines = JOURNAL.read_bytes().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith(b'{"op_code":4,'))
    JOURNAL.write_bytes(b"".join(lines[:first] + lines[first + 1:]))  # the record that held the set in full is gone
    with pytest.raises(SearchError) as e:
        open_study("s")
    assert str(e.value).startswith("study: runs/s/study.journal: cannot read it as an Optuna journal (a trial record "
                                   "refers to distributions 'sha256:") and "\n" not in str(e.value)


def test_a_reader_from_a_later_record_learns_the_sets_first():
    run_search(settings(trials=8), objectives=proxy_objectives(), progress=False, outputs=False)
    n = len(JOURNAL.read_bytes().splitlines())
    tail = list(SyncLaterJournalBackend(str(JOURNAL)).read_logs(n - 1))
    assert len(tail) == 1 and isinstance(tail[0]["distributions"], dict) and len(tail[0]["distributions"]) == 29
