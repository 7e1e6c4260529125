"""Writing files so that a crash never leaves half of one: the one helper every package uses."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import uuid
from typing import Any, Callable


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
    return atomic_write(path, json.dumps(data, indent=indent) + "\n", fsync=fsync)


def read_at_most(path: str | os.PathLike, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of ``path`` at most: a caller refuses the file when it gets more than ``limit``.
    Reading, not ``stat``, bounds it: a FIFO or ``/dev/zero`` reports size 0 and never ends. OSError propagates."""
    with open(path, "rb") as f:
        return f.read(limit + 1)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
