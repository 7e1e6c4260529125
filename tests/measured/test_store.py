"""The store contract, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp

import pytest
import sqlalchemy as sa

from measured import Architecture, Measurement, RecordError, Store, StoreError, out_of_space_hash, protocol_key
from measured._store import _SEED_PREFIX, load_manifest
from tests.measured.conftest import arch, cpu_device, measurement


@pytest.fixture
def store(store_url):
    s = Store(store_url, seed=False)
    yield s
    s.close()


def test_default_location_env_and_plain_path(tmp_path, monkeypatch):
    s = Store(seed=False)
    assert s.url == f"sqlite:///{tmp_path / 'home' / 'store.sqlite'}"
    assert (tmp_path / "home" / "store.sqlite").exists()
    monkeypatch.setenv("LOWFORMER_NAS_STORE", str(tmp_path / "env.sqlite"))
    assert Store(seed=False).url == f"sqlite:///{tmp_path / 'env.sqlite'}"
    assert Store(tmp_path / "sub" / "plain.sqlite", seed=False).url.endswith("/sub/plain.sqlite")


@pytest.mark.parametrize("url, says", [
    ("mysql://u@localhost/db", "unsupported database 'mysql'"),
    ("postgresql://nobody@127.0.0.1:1/none", "cannot open"),
    ("sqlite:////proc/no/such/dir/x.sqlite", "store:"),
])
def test_bad_url_is_one_line_error(url, says):
    with pytest.raises(StoreError) as e:
        Store(url, seed=False)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_sqlite_settings(sqlite_url):
    s = Store(sqlite_url, seed=False)
    with s._engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_schema(store):
    names = set(sa.inspect(store._engine).get_table_names())
    assert {"devices", "architectures", "measurements", "meta"} <= names
    cols = {c["name"] for c in sa.inspect(store._engine).get_columns("measurements")}
    assert cols == set(Measurement.fields())
    indexes = {tuple(i["column_names"]) for i in sa.inspect(store._engine).get_indexes("measurements")}
    assert ("device_id", "metric", "status") in indexes and ("device_id", "config_hash") in indexes


def test_devices_insert_if_absent(store):
    d = cpu_device()
    assert store.add_device(d) is True
    assert store.add_device(d) is False
    # A different fingerprint under the same id never overwrites the stored one.
    assert store.add_device(dataclasses.replace(d, fingerprint={"cpu": "Other"})) is False
    assert store.device("local_cpu") == d
    assert store.devices() == [d]
    assert store.device("nope") is None
    with pytest.raises(RecordError, match="kind"):
        store.add_device(dataclasses.replace(d, device_id="x", kind="toaster"))


def test_architectures_insert_if_absent(store):
    a, b = arch("B1"), arch("B3", 384)
    oos = Architecture(out_of_space_hash("FastViT", "FastViT-T8", 256), "FastViT", "FastViT-T8", None, 256,
                       3_600_000, 700_000_000, False)
    assert store.add_architectures([a, b, a, oos]) == 3
    assert store.add_architectures([a, b]) == 0
    assert store.architecture(a.config_hash) == a and store.architecture(oos.config_hash) == oos
    assert store.architecture("0" * 64) is None
    bad = dataclasses.replace(a, config_hash="f" * 64)
    with pytest.raises(RecordError, match="config_hash"):
        store.add_architectures([arch("B0"), bad])
    assert len(store.architectures()) == 3


def test_add_measurements_is_all_or_nothing(store):
    store.add_device(cpu_device())
    a, b = arch("B0"), arch("B1")
    good = [measurement(a, value=10.0), measurement(b, value=11.0)]
    bad = dataclasses.replace(measurement(a), value=-1.0)
    with pytest.raises(RecordError, match="value"):
        store.add_measurements(good + [bad], archs=[a, b])
    assert store.count() == 0 and store.architectures() == []
    with pytest.raises(StoreError, match="device_id: unknown device 'gone'"):
        store.add_measurements(good + [measurement(a, device_id="gone")], archs=[a, b])
    with pytest.raises(StoreError, match="config_hash: unknown architecture"):
        store.add_measurements(good, archs=[a])
    assert store.count() == 0 and store.architectures() == []
    assert store.add_measurements(good, archs=[a, b]) == 2
    assert store.add_measurements(good) == 0  # same ids: nothing new
    assert store.add_measurements(good + [measurement(b, value=12.0)]) == 1
    assert store.count() == 3


def _populate(store: Store) -> tuple[Architecture, Architecture]:
    return _populate_rows(store)[:2]


def _populate_rows(store: Store) -> tuple[Architecture, Architecture, list[Measurement]]:
    store.add_device(cpu_device())
    store.add_device(cpu_device("other_cpu"))
    a, b = arch("B0"), arch("B1")
    rows = [
        measurement(a, value=10.0),
        measurement(a, value=10.5, threads=1),
        measurement(b, value=20.0),
        measurement(b, value=0.0, status="failed", reason="out of memory"),
        measurement(b, value=21.0, status="busy", reason="machine busy (40%)"),
        measurement(a, value=99.0, flag="anomaly"),
        measurement(a, metric="throughput_img_s", value=300.0, batch=8),
        measurement(b, device_id="other_cpu", value=30.0, backend="torch", source="import"),
        measurement(a, value=None, status="failed", reason="timeout", threads=None, warmup=None, n=None,
                    resolution=None, campaign=None),
    ]
    store.add_measurements(rows, archs=[a, b])
    return a, b, rows


def test_rows_convert_back_to_the_stored_records(store):
    *_, rows = _populate_rows(store)
    df = store.measurements(status=None, include_flagged=True)
    back = {m.id: m for m in (Measurement.from_mapping(r) for r in df.to_dict("records"))}
    assert back == {m.id: m for m in rows}
    assert df["value"].dtype == "float64" and df["batch"].dtype == "int64"


def test_measurements_query(store):
    a, b = _populate(store)
    df = store.measurements()
    assert len(df) == 5  # ok, unflagged
    assert {"family", "name", "config_json", "params", "macs", "in_space", "protocol"} <= set(df.columns)
    assert set(Measurement.fields()) <= set(df.columns)
    r = df[(df.config_hash == a.config_hash) & (df.metric == "latency_ms") & (df.threads == 2)].iloc[0]
    assert (r["name"], r["params"], r["macs"], bool(r["in_space"])) == ("B0", a.params, a.macs, True)
    assert r["protocol"] == protocol_key("latency_ms", "onnxruntime", "fp32", 1, 2)
    assert r["value"] == 10.0 and r["timestamp"] == "2026-11-21T10:00:00+00:00"
    assert len(store.measurements(device="local_cpu", metric="latency_ms")) == 3
    assert len(store.measurements(device=["local_cpu", "other_cpu"], metric="latency_ms")) == 4
    assert len(store.measurements(status=None)) == 8
    assert len(store.measurements(status=None, include_flagged=True)) == 9
    assert set(store.measurements(status="failed")["reason"]) == {"out of memory", "timeout"}
    assert len(store.measurements(include_flagged=True)) == 6
    assert len(store.measurements(backend="torch")) == 1 and len(store.measurements(source="import")) == 1
    p = protocol_key("latency_ms", "onnxruntime", "fp32", 1, 1)
    sel = store.measurements(protocol=p)
    assert len(sel) == 1 and sel.iloc[0]["value"] == 10.5
    empty = store.measurements(device="nope")
    assert empty.empty and "protocol" in empty.columns


def test_summary(store):
    _populate(store)
    s = store.summary()
    assert list(s.columns) == ["device_id", "backend", "metric", "configs", "measurements", "failed", "busy", "flagged"]
    row = s[(s.device_id == "local_cpu") & (s.metric == "latency_ms")].iloc[0]
    assert (row.configs, row.measurements, row.failed, row.busy, row.flagged) == (2, 3, 2, 1, 1)
    assert len(s) == 3


def test_seeding_is_recorded_and_not_repeated(store_url, monkeypatch):
    s = Store(store_url)
    n = s.count()
    entries = load_manifest()
    assert n > 0 and set(s.seeded()) == {e["file"] for e in entries}
    # A seeded store opens without importing anything again.
    monkeypatch.setattr(Store, "_seed_dataset", lambda *a: pytest.fail("seeded twice"))
    assert Store(store_url).count() == n
    # A changed shipped file (here: a forgotten digest) is imported again; its rows are already there.
    monkeypatch.undo()
    with s._write() as c:
        c.execute(sa.text("DELETE FROM meta WHERE key LIKE :k"), {"k": _SEED_PREFIX + "%"})
    assert Store(store_url).count() == n


# ---------------------------------------------------------------------------------------------- two processes


def _writer(url: str, barrier, tag: str, results) -> None:
    try:
        barrier.wait(timeout=600)  # a hang guard: spawning and importing may be slow on a busy machine
        store = Store(url, seed=True)  # both seed a fresh store at the same moment
        store.add_device(cpu_device())
        archs = [arch("B0"), arch("B1"), arch("B2")]
        inserted = 0
        for batch in range(5):
            shared = [measurement(archs[i % 3], value=1.0 + i, id=f"shared-{batch}-{i}") for i in range(20)]
            own = [measurement(archs[i % 3], value=2.0 + i, id=f"{tag}-{batch}-{i}") for i in range(20)]
            inserted += store.add_measurements(shared + own, archs=archs)
        results.put((tag, inserted))
    except BaseException as e:  # the parent reports it
        results.put((tag, f"{type(e).__name__}: {e}"))


def test_two_processes_lose_and_duplicate_nothing(store_url):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, barrier, tag, results)) for tag in ("p1", "p2")]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=900) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(v, int) for v in got.values()), got
    # 100 shared rows once, 100 own rows per process: every row exactly once.
    assert sum(got.values()) == 300
    store = Store(store_url, seed=False)
    df = store.measurements(device="local_cpu", status=None, include_flagged=True)
    assert len(df) == 300 and df["id"].is_unique
    # The shipped datasets (the paper's and the local one), seeded once although both processes opened the store.
    every = store.measurements(status=None, include_flagged=True)
    seeded = every[every["device_id"] != "local_cpu"]
    assert seeded["id"].is_unique and len(seeded) == store.count() - 300
    assert set(seeded["source"]) == {"paper", "harness"}


# ---------------------------------------------------------------------------------------------- foreign and lost databases


def _engine(url: str, **kw) -> sa.Engine:
    from measured import with_installed_driver

    return sa.create_engine(with_installed_driver(sa.engine.make_url(url)), **kw)


def test_a_foreign_database_is_refused(store_url):
    """`--store` at an Optuna database silently added our tables and seeded 2,235 rows into it."""
    import optuna

    engine = _engine(store_url)
    optuna.storages.RDBStorage(engine.url.render_as_string(hide_password=False)).get_all_studies()  # Optuna's schema
    before = set(sa.inspect(engine).get_table_names())
    with pytest.raises(StoreError) as e:
        Store(store_url)
    text = str(e.value)
    assert "\n" not in text and text.startswith("store: Store(") and "holds another application's tables (" in text
    assert "alembic_version" in text and "and no lowformer-nas store; give an empty database" in text
    assert set(sa.inspect(engine).get_table_names()) == before  # nothing added
    engine.dispose()


def test_a_store_with_a_table_of_its_own_still_opens(store_url):
    Store(store_url, seed=False).close()
    engine = _engine(store_url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    engine.dispose()
    assert Store(store_url, seed=False).count() == 0


def test_a_lost_connection_is_one_line_and_a_rerun_resumes(postgres_server, postgres_url):
    """PostgreSQL going away mid-campaign was a 37-frame traceback; now one line, and the rerun completes."""
    db = postgres_url.rsplit("/", 1)[1]
    admin = _engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    store = Store(postgres_url, seed=False)
    store.add_device(cpu_device())
    archs = [arch(n) for n in ("B0", "B1", "B2", "B3")]
    # A campaign's loop: one transaction per config, deterministic ids.
    rows = [measurement(a, value=10.0 + i, id=f"run-{i}") for i, a in enumerate(archs)]

    def campaign() -> int:
        done = 0
        for a, m in zip(archs, rows):
            done += store.add_measurements([m], archs=[a])
            if done == 2 and stop:
                with admin.connect() as c:  # the server stops taking connections and drops ours
                    c.exec_driver_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
                    c.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        return done

    stop = True
    try:
        with pytest.raises(StoreError) as e:
            campaign()
        text = str(e.value)
        assert "\n" not in text and text.startswith("store: ") and "run the command again" in text
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
    stop = False
    assert campaign() == 2  # the rerun stores only what is missing
    df = store.measurements()
    assert sorted(df["id"]) == [f"run-{i}" for i in range(4)]
    store.close()
    admin.dispose()
