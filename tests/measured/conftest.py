"""Store fixtures: a SQLite file and a real PostgreSQL server (started once per session).

PostgreSQL runs from Debian's binaries (/usr/lib/postgresql/*/bin) as user ``postgres`` when the tests run
as root (initdb refuses root), on 127.0.0.1 and a free port with trust authentication. Without the
binaries the PostgreSQL cases skip, except under ``CI=true``, where they fail: CI installs PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

from measured import Architecture, Device, Measurement
from search_spaces import get_variant


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run: {reason} (CI must install postgresql)")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _pg_bindir() -> str | None:
    def version(path):
        v = path.split("/")[-2]
        return int(v) if v.isdigit() else 0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """``postgresql://postgres@127.0.0.1:PORT`` of a throw-away server (no database part)."""
    bindir = _pg_bindir()
    if bindir is None:
        _missing("no initdb/pg_ctl found")
    try:
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        _missing("psycopg2 is not installed (pip install -e '.[test]')")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="lowformer-nas-pg-")
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no 'postgres' user to run initdb as")
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")

    def run(*args: str) -> None:
        res = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=120)
        if res.returncode:
            tail = ""
            if os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-2000:]
            raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()} {tail}")

    port = _free_port()
    try:
        run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=100")
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start")
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        try:
            run(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server; dropped after the test."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(f"{postgres_server.replace('postgresql:', 'postgresql+psycopg2:')}/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request):
    """The same contract on both databases (PostgreSQL is only started when a test asks for it)."""
    return request.getfixturevalue(f"{request.param}_url")


# ---------------------------------------------------------------------------------------------- records

TS = "2026-11-21T10:00:00+00:00"


def cpu_device(device_id: str = "local_cpu", **fingerprint) -> Device:
    return Device(device_id, f"test machine {device_id}", "cpu", fingerprint or {"cpu": "Test CPU", "cores": 2},
                  {}, {"metric": "latency_ms"}, "harness")


def arch(name: str = "B1", resolution: int | None = None) -> Architecture:
    cfg = get_variant(name).config
    if resolution is not None:
        cfg = cfg.with_(resolution=resolution)
    return Architecture.from_config(cfg, name)


def measurement(a: Architecture, device_id: str = "local_cpu", value: float = 12.5, **fields) -> Measurement:
    base = dict(device_id=device_id, config_hash=a.config_hash, metric="latency_ms", value=value,
                backend="onnxruntime", batch=1, resolution=a.resolution, threads=2, warmup=5, n=20,
                p10=None if value is None else value * 0.9, p90=None if value is None else value * 1.1, busy_pct=3.5, backend_version="1.20.0", versions='{"numpy": "2.0"}', os="Linux",
                timestamp=TS, campaign="c1")
    base.update(fields)
    return Measurement(**base).validate()
