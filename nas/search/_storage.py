"""Where a study lives: its name, its run folder, its Optuna storage, atomic writes of its outputs."""

from __future__ import annotations

import json
import os
import pathlib
import re
import weakref
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from sqlalchemy.engine import make_url

from lowformer_common import UserError, one_line
from measured import with_installed_driver

JOURNAL_FILE = "study.journal"
SETTINGS_FILE = "settings.json"
# Letters, digits, '_', '-', '.': the name is a folder under the runs dir, so no separators or '..'.
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_RDB_BACKENDS = ("postgresql", "mysql", "sqlite")


class SearchError(UserError):
    """A search, study or output problem. ``str(err)`` is one line: the field, then what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


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
    """Optuna's journal file, flushed to the OS on every record but fsync'ed only when :meth:`sync` is called.

    Optuna fsyncs every record; on a busy disk that alone costs several ms per trial. A record in the OS page
    cache already survives the process being killed (SIGKILL, Ctrl-C); the search fsyncs once per batch, so a
    power cut can lose at most the last batch. Same file format and lock as Optuna's backend, so Optuna's own
    tools (and other processes with the plain backend) read and share the file.
    """

    def __init__(self, file_path: str):
        self._path = file_path
        self._file_lock = JournalFileSymlinkLock(file_path)  # Optuna's default lock: shared with its clients
        super().__init__(file_path, lock_obj=self._file_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._file_lock.acquire()
        try:
            with open(self._path, "ab") as f:
                f.write(data)
        finally:
            self._file_lock.release()

    def sync(self) -> None:
        with open(self._path, "ab") as f:
            os.fsync(f.fileno())


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
        from optuna.storages import JournalStorage

        backend = SyncLaterJournalBackend(str(path))
        storage = JournalStorage(backend)
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
