"""Where a study lives: its name, its run folder, its Optuna storage, atomic writes of its outputs.

A journal file is repaired before Optuna reads it: a record torn by a crash mid-write (and a record a later
append glued onto it) or a garbage line would otherwise stop every later ``search`` and ``plot`` with a
JSONDecodeError. The original is kept beside it as ``study.journal.bak-<UTC time>``.

A trial record names its distributions in full once per file: later records refer to the first one that did
(:class:`SyncLaterJournalBackend`), which cuts a study's journal to about a quarter.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import sys
import time
import weakref
from typing import Any, Iterator

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from sqlalchemy.engine import make_url

from lowformer_common import atomic_write, one_line
from measured import with_installed_driver

from ._errors import SearchError

JOURNAL_FILE = "study.journal"
SETTINGS_FILE = "settings.json"
# Letters, digits, '_', '-', '.': the name is a folder under the runs dir, so no separators or '..'.
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_RDB_BACKENDS = ("postgresql", "mysql", "sqlite")


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _STUDY_NAME.match(name) or ".." in name:
        raise SearchError(
            "study", f"{name!r} is not a valid name; use 1-100 letters, digits, '_', '-' or '.' (no path characters)"
        )
    return name


def study_dir(runs_dir: str | os.PathLike, name: str) -> pathlib.Path:
    return pathlib.Path(runs_dir) / check_study_name(name)


def mask_url(url: str) -> str:
    """The URL without its password, for reports and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (not a URL at all)
        return "<not a database URL>"


class SyncLaterJournalBackend(JournalFileBackend):
    """Optuna's journal file, flushed to the OS on every record but fsync'ed only when :meth:`sync` is called, and
    each set of distributions written in full once per file.

    Optuna fsyncs every record; on a busy disk that alone costs several ms per trial. A record in the OS page
    cache already survives the process being killed (SIGKILL, Ctrl-C); the search fsyncs once per batch, so a
    power cut can lose at most the last batch.

    Optuna's trial record repeats the distribution of every parameter (29 knobs: 3.2 KB of a 4.4 KB record, 13 MB
    of a 3,000-trial study), the same in every trial. The first record of a set keeps Optuna's form; a later one
    holds ``"distributions": "sha256:<16 hex>"``, the digest of that set, which reading puts back before Optuna
    sees the record. A digest is only written once its set is in the file (read from it, or appended by this
    process before), so a reference follows its definition whichever processes share the file; journals in
    Optuna's plain form (every one written before) read as before. Lines, lock and repair stay Optuna's; a tool
    that reads journal files itself gets a plain copy with ``optuna.copy_study`` (nas/README.md).
    """

    def __init__(self, file_path: str):
        self._path = file_path
        self._file_lock = JournalFileSymlinkLock(file_path)  # Optuna's default lock: shared with its clients
        self._dists: dict[str, dict[str, Any]] = {}  # digest -> a set of distributions that a record in the file holds
        super().__init__(file_path, lock_obj=self._file_lock)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        for log in super().read_logs(log_number_from):
            yield self._expand(log)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        logs, defined = self._compact(logs)
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._file_lock.acquire()
        try:
            with open(self._path, "ab") as f:
                f.write(data)
        finally:
            self._file_lock.release()
        self._dists.update(defined)  # in the file now: later records may refer to them

    def sync(self) -> None:
        with open(self._path, "ab") as f:
            os.fsync(f.fileno())

    def _compact(self, logs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """The records to write (sets already in the file as their digests) and the sets they hold in full."""
        out, defined = [], {}
        for log in logs:
            dists = log.get("distributions")
            if isinstance(dists, dict) and dists:
                key = _digest(dists)
                if key in self._dists or key in defined:  # in defined: an earlier record of this batch holds it
                    log = {**log, "distributions": key}
                else:
                    defined[key] = dists
            out.append(log)
        return out, defined

    def _expand(self, log: Any) -> Any:
        """A record as Optuna wrote it: a digest replaced by its set (remembered from the records before)."""
        dists = log.get("distributions") if isinstance(log, dict) else None
        if isinstance(dists, dict):
            self._dists.setdefault(_digest(dists), dists)
        elif isinstance(dists, str):
            if dists not in self._dists:  # read from a later record on (JournalStorage never does): learn the sets
                for earlier in JournalFileBackend.read_logs(self, 0):
                    held = earlier.get("distributions") if isinstance(earlier, dict) else None
                    if isinstance(held, dict):
                        self._dists.setdefault(_digest(held), held)
            if dists not in self._dists:
                raise ValueError(f"a trial record refers to distributions {dists[:40]!r} that no record before it "
                                 "holds")
            log["distributions"] = self._dists[dists]
        return log


def _digest(dists: dict[str, Any]) -> str:
    """The name of a set of distributions in the journal: 64 bits of its SHA-256 (a study holds one or a few)."""
    blob = json.dumps(dists, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return _DIGEST_PREFIX + hashlib.sha256(blob).hexdigest()[:16]


_DIGEST_PREFIX = "sha256:"


# ---------------------------------------------------------------------------------------------- journal repair

# Optuna writes each record as json.dumps({"op_code": ..., "worker_id": ..., ...}) on a line of its own.
_RECORD_START = b'{"op_code":'
# How much of the file's end the quick check reads to find its last line.
_TAIL_BYTES = 1 << 16


def _record(line: bytes) -> bool:
    """Whether ``line`` is one whole Optuna journal record."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; a line nested 200,000 deep
        return False
    op = obj.get("op_code") if isinstance(obj, dict) else None
    return isinstance(op, int) and not isinstance(op, bool) and isinstance(obj.get("worker_id"), str)


def _salvage(line: bytes) -> bytes | None:
    """The whole record at the end of a bad line: a process killed mid-write leaves a torn record without its
    newline, and the next append lands on the same line."""
    i = line.rfind(_RECORD_START)
    while i > 0:
        if _record(line[i:]):
            return line[i:]
        i = line.rfind(_RECORD_START, 0, i)
    return None


def _looks_whole(path: pathlib.Path) -> bool:
    """Quick check (the last line only, read from the end): the file ends with a whole record and its newline.
    Optuna itself skips a bad last line silently, and the next append would then glue a record onto it."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        tail, pos = b"", end
        while pos > 0 and b"\n" not in tail[:-1]:
            step = min(_TAIL_BYTES, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
    if not tail.endswith(b"\n"):
        return False
    return _record(tail[:-1].rsplit(b"\n", 1)[-1])


def repair_journal(path: str | os.PathLike) -> str | None:
    """Drop the torn and garbage lines of a journal file (keeping a backup); what was done, or None if it was
    whole. Call it holding the journal's lock. A file with no Optuna record at all is refused, untouched."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a record cut short
    kept: list[bytes] = []
    dropped: list[int] = []
    for n, line in enumerate(lines, start=1):
        if _record(line):
            kept.append(line)
            continue
        dropped.append(n)
        whole = _salvage(line)
        if whole is not None:
            kept.append(whole)
    if tail:
        dropped.append(len(lines) + 1)
    if not dropped:
        return None
    if not kept or json.loads(kept[0]).get("op_code") != 0:  # 0: CREATE_STUDY, every journal's first record
        raise SearchError("study", f"{path} is not an Optuna journal of a study (no study record in it); move it "
                                   "away or start a new --study")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    k = 1
    while backup.exists():
        k += 1
        backup = path.with_name(f"{path.name}.bak-{stamp}-{k}")
    shutil.copy2(path, backup)
    atomic_write(path, b"".join(line + b"\n" for line in kept), fsync=True)
    shown = ", ".join(map(str, dropped[:5])) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
    return (f"repaired {path}: dropped {len(dropped)} incomplete or unreadable line(s) (line {shown}), kept "
            f"{len(kept)} records; the original is {backup.name}")


def _journal_storage(path: pathlib.Path, create: bool) -> tuple[optuna.storages.BaseStorage, list[str]]:
    """Optuna's storage over a journal file, repaired first when needed; (storage, notes on what was done)."""
    from optuna.storages import JournalStorage

    if not path.exists() or path.stat().st_size == 0:
        if not create:
            raise SearchError("study", f"{path} is empty: no study was recorded in it (a search stopped before its "
                                       "first record?); delete it and run the search again")
        backend = SyncLaterJournalBackend(str(path))
        return JournalStorage(backend), []
    notes: list[str] = []
    backend = SyncLaterJournalBackend(str(path))
    for attempt in range(2):
        if attempt or not _looks_whole(path):
            # Under the journal's lock: a writer appending right now is never mistaken for a torn record.
            backend._file_lock.acquire()
            try:
                note = repair_journal(path)
            finally:
                backend._file_lock.release()
            if note is not None:
                notes.append(note)
                print(f"lowformer-nas: {note}", file=sys.stderr)
            backend = SyncLaterJournalBackend(str(path))
        try:
            return JournalStorage(backend), notes
        except (ValueError, KeyError, TypeError, AssertionError, AttributeError, RecursionError) as e:
            if attempt:
                raise SearchError("study", f"{path}: cannot read it as an Optuna journal ({one_line(e)}); move it "
                                           "away or start a new --study") from None
    raise AssertionError("unreachable")


def _check_holds_study(storage: optuna.storages.BaseStorage, path: pathlib.Path, name: str) -> None:
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        held = f"study {names[0]!r}" if len(names) == 1 else f"{len(names)} studies" if names else "no study"
        raise SearchError("study", f"{path} holds {held}, not {name!r}; it is another study's journal")


def storage_notes(storage: optuna.storages.BaseStorage) -> list[str]:
    """What opening the storage repaired (for a search's result notes); empty when nothing was."""
    backend = _JOURNALS.get(storage)
    return list(getattr(backend, "repairs", []))


def sync_storage(storage: optuna.storages.BaseStorage) -> None:
    """Make what the study wrote durable (journal files; databases commit every write themselves)."""
    backend = _JOURNALS.get(storage)
    if backend is not None:
        backend.sync()


_JOURNALS: "weakref.WeakKeyDictionary[Any, SyncLaterJournalBackend]" = weakref.WeakKeyDictionary()


def open_storage(url: str | None, folder: pathlib.Path | None = None, *, create: bool) -> optuna.storages.BaseStorage:
    """The study's Optuna storage: a journal file in ``folder`` by default, or an RDB URL shared by workers.

    The journal file is Optuna's own format (append-only, file-locked), so several local processes may share it.
    """
    if url is None:
        if folder is None:
            raise SearchError("storage", "a journal study needs its folder")
        path = pathlib.Path(folder) / JOURNAL_FILE
        if not create and not path.exists():
            raise SearchError("study", f"no study in {folder} (no {JOURNAL_FILE}); run `lowformer-nas search` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        storage, notes = _journal_storage(path, create)
        if not create:  # the folder is named after its study (study_dir)
            _check_holds_study(storage, path, pathlib.Path(folder).name)
        backend = storage._backend
        backend.repairs = notes
        _JOURNALS[storage] = backend
        return storage
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 (ArgumentError, ValueError)
        u = None
    if u is None or u.get_backend_name() not in _RDB_BACKENDS:
        raise SearchError("storage", f"{mask_url(url) if u else url!r}: give a database URL "
                                     "(postgresql://user@host/db, sqlite:///file.db)")
    engine_kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        u = with_installed_driver(u)
    try:
        return optuna.storages.RDBStorage(u.render_as_string(hide_password=False), engine_kwargs=engine_kwargs)
    except (ModuleNotFoundError, ImportError) as e:
        raise SearchError("storage", f"{mask_url(url)} needs its database driver ({one_line(e)}); install the "
                                     "postgres extra: pip install 'lowformer-nas[postgres]'") from None
    except Exception as e:  # noqa: BLE001 (SQLAlchemy/driver errors of every kind: unreachable, auth, schema)
        raise SearchError("storage", f"cannot open {mask_url(url)}: {one_line(e)}") from None
