"""Workers that share one study draw different candidates: each claims a worker slot and samples from the seed
stream of that slot.

Two processes on one study with one stored seed replayed each other's candidates (two workers on 6,000 trials
found 3,072 distinct architectures where one alone found 4,665). A slot is the lowest index no running worker
holds: a lock file in the study's folder (``.worker-<i>.lock``; the journal and SQLite, one machine) or a
PostgreSQL advisory lock (workers on several machines). Slot 0, the first or only worker, samples exactly as a
single search always did, so ``--seed S`` still repeats a study run by one process; slot i > 0 draws from
``SeedSequence([seed, done, round, i])``. Each trial records its slot in the system attribute ``STREAM_ATTR``.
A MySQL study has no slot service here: its workers draw random slots (still different, not reproducible).
"""

from __future__ import annotations

import os
import pathlib
import secrets
import zlib
from typing import Any, Callable

STREAM_ATTR = "lowformer:seed_stream"
MAX_SLOTS = 4096  # workers at once on one study


class WorkerSlot:
    """A claimed slot: its index, held until :meth:`close`."""

    def __init__(self, index: int, release: Callable[[], None] = lambda: None):
        self.index = index
        self._release = release

    def close(self) -> None:
        release, self._release = self._release, lambda: None
        release()

    def __enter__(self) -> "WorkerSlot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def claim_slot(storage: Any, study: str, folder: pathlib.Path) -> WorkerSlot:
    """The lowest free worker slot of ``study`` (see the module's doc)."""
    engine = getattr(storage, "engine", None)
    dialect = engine.dialect.name if engine is not None else None
    if dialect == "postgresql":
        return _postgres_slot(engine, study)
    if dialect not in (None, "sqlite"):
        return WorkerSlot(1 + secrets.randbelow(2**31))
    return _file_slot(pathlib.Path(folder))


def _file_slot(folder: pathlib.Path) -> WorkerSlot:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(MAX_SLOTS):
        fd = os.open(folder / f".worker-{i}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return WorkerSlot(i, lambda fd=fd: os.close(fd))  # closing the file drops the lock
    return WorkerSlot(1 + secrets.randbelow(2**31))


def _postgres_slot(engine: Any, study: str) -> WorkerSlot:
    from sqlalchemy import text

    key = zlib.crc32(f"lowformer-nas:{study}".encode()) - 2**31  # advisory locks take two int4 keys
    conn = engine.connect()
    try:
        for i in range(MAX_SLOTS):
            if conn.execute(text("SELECT pg_try_advisory_lock(:k, :i)"), {"k": key, "i": i}).scalar():
                conn.commit()

                def release(conn=conn, i=i) -> None:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:k, :i)"), {"k": key, "i": i})
                    finally:
                        conn.invalidate()  # the session ends: no pooled connection keeps the lock

                return WorkerSlot(i, release)
    except Exception:
        conn.invalidate()
        raise
    conn.invalidate()
    return WorkerSlot(1 + secrets.randbelow(2**31))
