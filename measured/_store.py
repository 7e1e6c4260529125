"""The measurement store: devices, architectures and append-only measurements in SQLite or PostgreSQL.

One SQLAlchemy Core schema serves both databases. Every write is one transaction that inserts only
what is absent (``ON CONFLICT DO NOTHING``), so re-importing a file, resuming a campaign or two
processes writing at once never duplicate or lose a row. SQLite runs in WAL mode and takes the write
lock at the start of a write transaction (``BEGIN IMMEDIATE``), which makes concurrent writers queue
behind a 30 s busy timeout instead of failing half-way.

A store opened with ``seed=True`` imports the shipped datasets listed in ``measured/data/datasets.json``
that it has not seen yet (recorded in ``meta`` by file name and sha256), so the paper's measurements are
there from the first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import sqlite3
import time
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from lowformer_common import home_dir, one_line, sha256_file, utc_now
from search_spaces import CONFIG_IDENTITY

from . import _identity, _io
from ._records import Architecture, Device, Measurement, protocol_key
from ._schema import (
    ARCH_COLUMNS,
    StoreError,
    _column,
    anchor_timings_table,
    architectures_table,
    devices_table,
    measurements_table,
    meta_table,
    metadata,
)

# 2: config hashes of identity version 2 (one hash per network); a version-1 store is upgraded on open.
SCHEMA_VERSION = "2"
STORE_ENV = "LOWFORMER_NAS_STORE"
DATA_DIR = pathlib.Path(__file__).parent / "data"
MANIFEST = DATA_DIR / "datasets.json"
_BUSY_TIMEOUT_S = 30
# Any constant works: it only has to be the same for every process that creates or seeds the schema.
_PG_LOCK_KEY = 0x10F0_4E45
_SEED_PREFIX = "seeded:"
# meta: the store has the paired-timing columns and the anchor_timings table (added in place to an older store,
# its rows kept with those columns empty: not phase-normalised).
PHASE_KEY = "schema:paired_timing"


# ---------------------------------------------------------------------------------------------- URLs


def default_url() -> str:
    """``$LOWFORMER_NAS_STORE``, else ``sqlite:///$LOWFORMER_NAS_HOME/store.sqlite``."""
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return f"sqlite:///{home_dir() / 'store.sqlite'}"


def resolve_url(url: str | os.PathLike | None = None) -> str:
    """A database URL from a URL, a plain file path (SQLite) or ``None`` (the default store)."""
    if url is None:
        url = default_url()
    url = os.fspath(url)
    if "://" not in url:
        url = f"sqlite:///{pathlib.Path(url).expanduser().resolve()}"
    return url


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    # We emit BEGIN ourselves (see _sqlite_on_begin); the driver's implicit transactions would defer it.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
    # Switching a fresh file to WAL needs an exclusive lock and SQLite does not wait for it (no busy
    # handler), so a second process opening the new store at the same moment retries.
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
    # Another application's database (tables, none of them ours) is refused by Store._refuse_foreign: it is left
    # in its own journal mode, never switched to WAL on the way.
    tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "meta" not in tables:
        mode = "wal"
    while mode.lower() != "wal":
        try:
            mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break  # "memory" for an in-memory database: keep what SQLite can do
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front: two writers queue instead of one failing
    # when it upgrades a read lock. Reads stay deferred and never block writers (WAL).
    write = conn.get_execution_options().get("lowformer_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def with_installed_driver(u):
    """A ``postgresql://`` URL with a driver that is installed: SQLAlchemy 2.1 defaults to psycopg 3, the
    postgres extra installs psycopg2. Other URLs come back unchanged."""
    if u.drivername == "postgresql":
        import importlib.util

        driver = next((d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d) is not None), None)
        if driver is not None:
            u = u.set(drivername=f"postgresql+{driver}")
    return u


def _make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise StoreError(
            f"not a database URL or file path: {url!r}; use sqlite:///PATH, postgresql://USER@HOST:PORT/DB or a file path",
            "store",
        ) from None
    shown = u.render_as_string(hide_password=True)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            try:
                pathlib.Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the directory of {shown}: {e.strerror}", "store") from None
        engine = sa.create_engine(u, connect_args={"timeout": _BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif backend == "postgresql":
        u = with_installed_driver(u)
        try:
            engine = sa.create_engine(u, pool_pre_ping=True)
        except ModuleNotFoundError as e:
            raise StoreError(
                f"{shown} needs the {e.name} driver; install the postgres extra: pip install 'lowformer-nas[postgres]'",
                "store",
            ) from None
    else:
        raise StoreError(f"unsupported database {backend!r} in {shown}; use sqlite or postgresql", "store")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(f"cannot open {shown}: {one_line(e)}", "store") from None
    return engine


# ---------------------------------------------------------------------------------------------- helpers


def _json(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _device_row(d: Device) -> dict[str, Any]:
    return dict(device_id=d.device_id, name=d.name, kind=d.kind, fingerprint=_json(d.fingerprint), spec=_json(d.spec),
                protocol=_json(d.protocol), source=d.source, created_at=utc_now())


def _device_from_row(r: Any) -> Device:
    return Device(r.device_id, r.name, r.kind, json.loads(r.fingerprint), json.loads(r.spec), json.loads(r.protocol),
                  r.source)


def _arch_row(a: Architecture) -> dict[str, Any]:
    return dict(config_hash=a.config_hash, family=a.family, name=a.name, config_json=a.config_json,
                resolution=a.resolution, params=a.params, macs=a.macs, in_space=bool(a.in_space), created_at=utc_now())


def _arch_from_row(r: Any) -> Architecture:
    return Architecture(r.config_hash, r.family, r.name, r.config_json, r.resolution, r.params, r.macs, bool(r.in_space))


def _as_list(v: str | Iterable[str] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)  # cached on (path, mtime, size): the shipped datasets are checked at every open


def _sha256(path: pathlib.Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_mtime_ns, st.st_size)


def load_manifest(manifest: pathlib.Path = MANIFEST) -> list[dict[str, Any]]:
    """The shipped datasets in load order: ``[{"name", "file", "devices", "description"}, ...]``."""
    if not manifest.exists():
        return []
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["datasets"]
        for e in entries:
            if not isinstance(e.get("file"), str):
                raise KeyError("file")
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{manifest} is malformed ({e}); expected {{\"datasets\": [{{\"file\": ..., \"devices\": ...}}]}}",
                         "datasets") from None
    return entries


def load_devices_file(path: pathlib.Path) -> list[Device]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        return [Device(**item).validate() for item in items]
    except (OSError, ValueError, TypeError) as e:
        raise StoreError(f"{path}: not a JSON list of devices ({one_line(e)})", "devices") from None


def _add_missing_columns(conn: Connection) -> None:
    """Add the measurement columns a store written by an earlier version lacks (ALTER TABLE ... ADD COLUMN, in
    the caller's transaction): its rows keep every value, the new columns empty."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("measurements")}
    for col in measurements_table.columns:
        if col.name not in have:
            kind = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f'ALTER TABLE measurements ADD COLUMN "{col.name}" {kind}')


# ---------------------------------------------------------------------------------------------- the store


class Store:
    """Devices, architectures and measurements in one database (SQLite file or PostgreSQL server).

    ``url`` is a SQLAlchemy URL (``sqlite:///path``, ``postgresql://user@host:port/db``), a plain file path
    (SQLite) or ``None``: ``$LOWFORMER_NAS_STORE``, else ``$LOWFORMER_NAS_HOME/store.sqlite``.
    """

    def __init__(self, url: str | os.PathLike | None = None, *, seed: bool = True):
        self.url = resolve_url(url)
        self._engine = _make_engine(self.url)
        self.dialect = self._engine.dialect.name
        try:
            self._prepare(seed)
        except sa.exc.SQLAlchemyError as e:
            self._engine.dispose()
            raise StoreError(f"cannot prepare {self}: {one_line(e)}", "store") from None
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    __str__ = __repr__

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(lowformer_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The store's boundary: a database that went away (PostgreSQL stopped, a network cut, SQLite locked
        past its timeout) ends the command with one line instead of the driver's traceback. The transaction
        was rolled back, so a rerun resumes from what was stored."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as e:
            raise StoreError(f"{self} failed: {one_line(e)}; this transaction was rolled back, everything stored "
                             "before it is kept: run the command again when the database is back", "store") from None
        except sa.exc.DBAPIError as e:
            if not e.connection_invalidated:
                raise
            raise StoreError(f"lost the connection to {self}: {one_line(e)}; this transaction was rolled back: run "
                             "the command again when the database is back", "store") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (SQLite: holding the write lock from its first statement)."""
        with self._translated(), self._transaction(write=True) as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translated(), self._transaction(write=False) as conn:
            yield conn

    def _insert_ignore(self, table: sa.Table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table).on_conflict_do_nothing()

    # ------------------------------------------------------------------ schema and seeding

    def _meta(self, conn: Connection) -> dict[str, str]:
        return {k: v for k, v in conn.execute(sa.select(meta_table.c.key, meta_table.c.value))}

    def _pending_datasets(self, meta: dict[str, str]) -> list[tuple[dict[str, Any], str]]:
        pending = []
        for entry in load_manifest():
            files = [DATA_DIR / entry["file"]] + ([DATA_DIR / entry["devices"]] if entry.get("devices") else [])
            missing = [str(p) for p in files if not p.exists()]
            if missing:
                raise StoreError(f"shipped dataset file missing: {missing[0]} (listed in {MANIFEST})", "datasets")
            digest = "+".join(_sha256(p) for p in files)
            if meta.get(_SEED_PREFIX + entry["file"]) != digest:
                pending.append((entry, digest))
        return pending

    def _prepare(self, seed: bool) -> None:
        # Fast path: an existing, seeded store costs one SELECT.
        try:
            with self._transaction(write=False) as conn:
                meta = self._meta(conn)
        except sa.exc.SQLAlchemyError:
            meta = {}
        if meta:
            self._check_version(meta)
            if (not _identity.needs_upgrade(meta) and PHASE_KEY in meta
                    and (not seed or not self._pending_datasets(meta))):
                return
        with self._transaction(write=True) as conn:
            if self.dialect == "postgresql":
                # DDL and seeding of two fresh processes must not interleave.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            self._refuse_foreign(conn)
            metadata.create_all(conn, checkfirst=True)
            meta = self._meta(conn)
            if "schema_version" not in meta:
                conn.execute(meta_table.insert(), [{"key": "schema_version", "value": SCHEMA_VERSION},
                                                   {"key": _identity.IDENTITY_KEY, "value": str(CONFIG_IDENTITY)},
                                                   {"key": "created_at", "value": utc_now()},
                                                   {"key": PHASE_KEY, "value": utc_now()}])
            else:
                self._check_version(meta)
                # The paired-timing columns first: the identity upgrade below moves rows with every column.
                if PHASE_KEY not in meta:
                    _add_missing_columns(conn)
                    conn.execute(meta_table.insert(), [{"key": PHASE_KEY, "value": utc_now()}])
                # Hashes written before identity version 2 move to the new ones, in this transaction.
                _identity.upgrade_store(conn, meta, SCHEMA_VERSION)
            if seed:
                for entry, digest in self._pending_datasets(meta):
                    self._seed_dataset(conn, entry, digest)

    def _refuse_foreign(self, conn: Connection) -> None:
        """A database of another application (an Optuna study database, say) is never turned into a store:
        adding our tables and 2,235 seed rows to it would be hard to undo. An empty database is fine."""
        tables = set(sa.inspect(conn).get_table_names())
        ours = set(metadata.tables)
        if "meta" in tables and "schema_version" in self._meta(conn):
            return
        foreign = sorted(tables - ours)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise StoreError(f"{self} holds another application's tables ({shown}) and no lowformer-nas store; "
                             "give an empty database, a new SQLite file, or an existing store", "store")

    def _check_version(self, meta: dict[str, str]) -> None:
        v = meta.get("schema_version")
        if v is not None and v != SCHEMA_VERSION and v not in _identity.LEGACY_SCHEMA_VERSIONS:
            raise StoreError(f"{self} has schema version {v}; this lowformer-nas reads version {SCHEMA_VERSION}", "store")

    def _seed_dataset(self, conn: Connection, entry: dict[str, Any], digest: str) -> None:
        devices = load_devices_file(DATA_DIR / entry["devices"]) if entry.get("devices") else []
        self._insert_devices(conn, devices)
        plan = _io.read_and_plan(_Lookup(self, conn), DATA_DIR / entry["file"], source=entry.get("source", "import"))
        self._insert(conn, plan.devices, plan.architectures, plan.measurements)
        key = _SEED_PREFIX + entry["file"]
        conn.execute(meta_table.delete().where(meta_table.c.key == key))
        conn.execute(meta_table.insert(), [{"key": key, "value": digest}])

    def seeded(self) -> dict[str, str]:
        """Shipped dataset files imported into this store: file name -> sha256 of its files."""
        with self._read() as conn:
            return {k[len(_SEED_PREFIX):]: v for k, v in self._meta(conn).items() if k.startswith(_SEED_PREFIX)}

    # ------------------------------------------------------------------ lookups used inside transactions

    def _known(self, conn: Connection, column: sa.Column, keys: Iterable[str]) -> set[str]:
        keys = sorted(set(keys))
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            found.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
        return found

    def _known_devices(self, conn: Connection, ids: Iterable[str]) -> set[str]:
        return self._known(conn, devices_table.c.device_id, ids)

    def _known_archs(self, conn: Connection, hashes: Iterable[str]) -> set[str]:
        return self._known(conn, architectures_table.c.config_hash, hashes)

    def _devices_by_id(self, conn: Connection, ids: Iterable[str]) -> dict[str, Device]:
        ids = sorted(set(ids))
        found: dict[str, Device] = {}
        for i in range(0, len(ids), 500):
            q = sa.select(devices_table).where(devices_table.c.device_id.in_(ids[i : i + 500]))
            found.update((r.device_id, _device_from_row(r)) for r in conn.execute(q))
        return found

    def _insert_device_ids(self, conn: Connection, devices: Sequence[Device]) -> list[str]:
        """Insert devices whose id is new; the ids inserted. An existing device row is never changed."""
        if not devices:
            return []
        stmt = self._insert_ignore(devices_table).returning(devices_table.c.device_id)
        unique = {d.device_id: d for d in devices}
        rows = [_device_row(unique[i]) for i in sorted(unique)]
        return sorted(conn.execute(stmt, rows).scalars())

    def _insert_devices(self, conn: Connection, devices: Sequence[Device]) -> int:
        return len(self._insert_device_ids(conn, devices))

    def _insert_archs(self, conn: Connection, archs: Sequence[Architecture]) -> int:
        if not archs:
            return 0
        unique = {a.config_hash: a for a in archs}
        # Sorted keys give every writer the same lock order (no deadlock on PostgreSQL).
        rows = [_arch_row(unique[h]) for h in sorted(unique)]
        stmt = self._insert_ignore(architectures_table).returning(architectures_table.c.config_hash)
        return len(conn.execute(stmt, rows).all())

    def _insert(self, conn: Connection, devices: Sequence[Device], archs: Sequence[Architecture],
                rows: Sequence[Measurement]) -> tuple[int, int, int]:
        """Devices, architectures and measurements, each insert-if-absent, in the caller's transaction."""
        n_dev = self._insert_devices(conn, devices)
        given_archs = {a.config_hash for a in archs}
        missing_dev = {m.device_id for m in rows} - self._known_devices(conn, {m.device_id for m in rows})
        if missing_dev:
            d = sorted(missing_dev)[0]
            raise StoreError(f"unknown device {d!r}; add it first (Store.add_device, or `lowformer-nas import "
                             f"--device-kind`)", "device_id")
        needed = {m.config_hash for m in rows} - given_archs
        missing_arch = needed - self._known_archs(conn, needed)
        if missing_arch:
            h = sorted(missing_arch)[0]
            raise StoreError(f"unknown architecture {h[:12]}…; pass it in archs (Architecture.from_config)",
                             "config_hash")
        n_arch = self._insert_archs(conn, archs)
        if not rows:
            return n_dev, n_arch, 0
        unique = {m.id: m for m in rows}
        payload = [unique[i].to_dict() for i in sorted(unique)]
        stmt = self._insert_ignore(measurements_table).returning(measurements_table.c.id)
        n = len(conn.execute(stmt, payload).all())
        return n_dev, n_arch, n

    # ------------------------------------------------------------------ writing

    def add_device(self, device: Device) -> bool:
        """Insert a device if its id is new (True); an existing row is kept as it is (False)."""
        device.validate()
        with self._write() as conn:
            return self._insert_devices(conn, [device]) == 1

    def add_architectures(self, archs: Iterable[Architecture]) -> int:
        """Insert architectures whose hash is new; returns how many were new."""
        archs = [a.validate() for a in archs]
        with self._write() as conn:
            return self._insert_archs(conn, archs)

    def add_measurements(self, rows: Sequence[Measurement], archs: Iterable[Architecture] = ()) -> int:
        """Validate every row, then write ``archs`` and ``rows`` in one transaction (all or nothing).

        A row's device must exist and its architecture must exist or be among ``archs``. Rows whose id is
        already stored are skipped, so writing the same rows twice adds nothing. Returns rows inserted.
        """
        rows = list(rows)
        archs = list(archs)
        for i, m in enumerate(rows):
            if not isinstance(m, Measurement):
                raise StoreError(f"row {i} is a {type(m).__name__}, not a Measurement", "rows")
            m.validate()
        for a in archs:
            a.validate()
        with self._write() as conn:
            return self._insert(conn, [], archs, rows)[2]

    def import_file(self, path: str | os.PathLike, *, device_id: str | None = None, source: str = "import",
                    create_device_kind: str | None = None, force: bool = False):
        """Import a CSV, CSV.gz or Parquet file of measurements (see :mod:`measured._io`); an ImportReport.

        Rows whose device columns name another machine than the stored device they go to are refused, unless
        ``force`` (then each such row's ``notes`` records it)."""
        with self.lookup() as known:
            plan = _io.read_and_plan(known, path, device_id=device_id, source=source,
                                     create_device_kind=create_device_kind, force=force)
        devices, n_arch, n = self.write_plan(plan)
        return _io.ImportReport(os.fspath(path), plan.rows, n, plan.rows - n, devices, n_arch)

    @contextlib.contextmanager
    def lookup(self) -> Iterator["_Lookup"]:
        """Which devices and architectures the store has, read in one transaction (what an import checks against)."""
        with self._read() as conn:
            yield _Lookup(self, conn)

    def write_plan(self, plan: _io.ImportPlan) -> tuple[list[str], int, int]:
        """Write a validated import plan in one transaction: (device ids created, architectures, rows inserted)."""
        with self._write() as conn:
            devices = self._insert_device_ids(conn, plan.devices)
            _, n_arch, n = self._insert(conn, [], plan.architectures, plan.measurements)
        return devices, n_arch, n

    def export(self, path: str | os.PathLike, *, status: str | Iterable[str] | None = None, include_flagged: bool = True,
               **filters: Any) -> int:
        """Write measurements with their architecture and device columns; returns rows written.

        ``filters`` are those of :meth:`measurements`; by default every status and flagged rows too.
        """
        _io.file_format(path)  # a wrong suffix is refused before the store is read
        df = self.measurements(status=status, include_flagged=include_flagged, **filters)
        return _io.export(df, self.devices(), path)

    # ------------------------------------------------------------------ reading

    def devices(self) -> list[Device]:
        with self._read() as conn:
            return [_device_from_row(r) for r in conn.execute(sa.select(devices_table).order_by(devices_table.c.device_id))]

    def device(self, device_id: str) -> Device | None:
        with self._read() as conn:
            r = conn.execute(sa.select(devices_table).where(devices_table.c.device_id == device_id)).first()
        return _device_from_row(r) if r is not None else None

    def architecture(self, config_hash: str) -> Architecture | None:
        with self._read() as conn:
            r = conn.execute(
                sa.select(architectures_table).where(architectures_table.c.config_hash == config_hash)
            ).first()
        return _arch_from_row(r) if r is not None else None

    def architectures(self, in_space: bool | None = None) -> list[Architecture]:
        q = sa.select(architectures_table).order_by(architectures_table.c.config_hash)
        if in_space is not None:
            q = q.where(architectures_table.c.in_space == in_space)
        with self._read() as conn:
            return [_arch_from_row(r) for r in conn.execute(q)]

    def measurements(
        self,
        device: str | Iterable[str] | None = None,
        metric: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = "ok",
        protocol: str | Iterable[str] | None = None,
        backend: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None,
        include_flagged: bool = False,
    ) -> pd.DataFrame:
        """Measurements joined with their architecture (family, name, config_json, params, macs, in_space)
        and a ``protocol`` column (:func:`protocol_key`). ``status=None``: any status. Flagged rows
        (``flag`` set: anomaly/suspect) only with ``include_flagged``."""
        m, a = measurements_table, architectures_table
        q = sa.select(*m.c, *[a.c[c] for c in ARCH_COLUMNS]).join(a, m.c.config_hash == a.c.config_hash)
        for col, v in ((m.c.device_id, device), (m.c.metric, metric), (m.c.status, status), (m.c.backend, backend),
                       (m.c.source, source)):
            values = _as_list(v)
            if values is not None:
                q = q.where(col.in_(values))
        if not include_flagged:
            q = q.where(m.c.flag.is_(None))
        q = q.order_by(m.c.device_id, m.c.metric, m.c.timestamp, m.c.id)
        with self._read() as conn:
            result = conn.execute(q)
            keys, rows = list(result.keys()), result.all()
        df = pd.DataFrame({k: _column(k, [r[i] for r in rows]) for i, k in enumerate(keys)})
        df["protocol"] = pd.Series(
            [protocol_key(*t) for t in zip(df["metric"], df["backend"], df["precision"], df["batch"], df["threads"])],
            dtype=object, index=df.index)
        protocols = _as_list(protocol)
        if protocols is not None:
            df = df[df["protocol"].isin(protocols)].reset_index(drop=True)
        return df

    def summary(self) -> pd.DataFrame:
        """Per device, backend and metric: ``configs`` (distinct architectures with usable rows),
        ``measurements`` (ok, unflagged), ``failed``, ``busy`` and ``flagged`` rows."""
        m = measurements_table
        usable = sa.and_(m.c.status == "ok", m.c.flag.is_(None))

        def n(cond):
            return sa.func.sum(sa.case((cond, 1), else_=0))

        q = (
            sa.select(
                m.c.device_id, m.c.backend, m.c.metric,
                sa.func.count(sa.distinct(sa.case((usable, m.c.config_hash), else_=None))).label("configs"),
                n(usable).label("measurements"),
                n(m.c.status == "failed").label("failed"),
                n(m.c.status == "busy").label("busy"),
                n(m.c.flag.is_not(None)).label("flagged"),
            )
            .group_by(m.c.device_id, m.c.backend, m.c.metric)
            .order_by(m.c.device_id, m.c.backend, m.c.metric)
        )
        with self._read() as conn:
            result = conn.execute(q)
            df = pd.DataFrame(result.all(), columns=list(result.keys()))
        for c in ("configs", "measurements", "failed", "busy", "flagged"):
            df[c] = df[c].astype("int64")
        return df

    def add_anchor_timings(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store anchor timings (dicts with the columns of ``anchor_timings``), insert-if-absent, one transaction."""
        columns = anchor_timings_table.c.keys()
        rows = [{c: r.get(c) for c in columns} | {k: v for k, v in r.items() if k not in columns} for r in rows]
        if not rows:
            return 0
        for r in rows:
            missing = [c for c in ("id", "device_id", "protocol", "session", "timestamp", "anchor", "config_hash",
                                   "status", "source") if not r.get(c)]
            if missing:
                raise StoreError(f"an anchor timing needs {missing[0]}", missing[0])
            unknown = set(r) - set(anchor_timings_table.c.keys())
            if unknown:
                raise StoreError(f"unknown anchor timing column {sorted(unknown)[0]!r}", "anchor_timings")
        with self._write() as conn:
            if self._known_devices(conn, {r["device_id"] for r in rows}) != {r["device_id"] for r in rows}:
                raise StoreError("unknown device; add it first (Store.add_device)", "device_id")
            stmt = self._insert_ignore(anchor_timings_table).returning(anchor_timings_table.c.id)
            return len(conn.execute(stmt, rows).all())

    def anchor_timings(self, device: str | None = None, protocol: str | None = None) -> pd.DataFrame:
        """The anchor timings (the device's state over time), oldest first."""
        t = anchor_timings_table
        q = sa.select(t).order_by(t.c.device_id, t.c.protocol, t.c.timestamp, t.c.anchor, t.c.id)
        if device is not None:
            q = q.where(t.c.device_id == device)
        if protocol is not None:
            q = q.where(t.c.protocol == protocol)
        with self._read() as conn:
            result = conn.execute(q)
            return pd.DataFrame(result.all(), columns=list(result.keys()))

    def count(self) -> int:
        """Number of stored measurements (any status)."""
        with self._read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(measurements_table)).scalar_one()


class _Lookup:
    """The store's answers to an import's questions, inside one read transaction (see measured._io.StoreLookup)."""

    def __init__(self, store: Store, conn: Connection):
        self._store, self._conn = store, conn

    def known_devices(self, ids: Iterable[str]) -> set[str]:
        return self._store._known_devices(self._conn, ids)

    def known_archs(self, hashes: Iterable[str]) -> set[str]:
        return self._store._known_archs(self._conn, hashes)

    def devices_by_id(self, ids: Iterable[str]) -> dict[str, Device]:
        return self._store._devices_by_id(self._conn, ids)
