"""Writing files so that a crash never leaves half of one: the one helper every package uses."""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib
import stat
import uuid
from typing import Any, Callable

from ._json import strict_dumps


def atomic_write(
    path: str | os.PathLike,
    data: str | bytes | None = None,
    *,
    writer: Callable[[pathlib.Path], Any] | None = None,
    fsync: bool = False,
) -> pathlib.Path:
    """Write ``data`` (or let ``writer(tmp_path)`` write) to a unique temporary file beside ``path``, then
    rename it over ``path``: readers see the old file or the new one, never a part. Creates the folder.

    OSError (a missing permission, a full disk) propagates with the filename; the CLI prints it as one line.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two processes writing one target never share a temporary file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if writer is not None:
            writer(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, fsync: bool = False) -> pathlib.Path:
    """``data`` as strict JSON (a NaN or infinity is a ValueError naming where, never written), atomically."""
    return atomic_write(path, strict_dumps(data, indent=indent) + "\n", fsync=fsync)


class NotRegularFileError(OSError):
    """A FIFO, a device, a socket or a folder where a file was expected: never read (a FIFO blocks forever)."""


def read_at_most(path: str | os.PathLike, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of ``path`` at most: a caller refuses the file when it gets more than ``limit``.
    Only a regular file is read: opened without blocking (a FIFO with no writer would block the open itself), then
    checked with fstat; anything else is a NotRegularFileError (an OSError with the filename). OSError propagates."""
    with open_regular(path) as f:
        return f.read(limit + 1)


def check_regular(path: str | os.PathLike) -> None:
    """A NotRegularFileError unless ``path`` is a regular file (links followed); for readers that stream a file
    themselves (a CSV import), checked on the open file by :func:`open_regular`."""
    with open_regular(path):
        pass


def open_regular(path: str | os.PathLike):
    """``path`` opened for binary reading, when it is a regular file (see :func:`read_at_most`)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
