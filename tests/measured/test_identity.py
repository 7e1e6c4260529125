"""Identity version 2 (one hash per network): stores, exported files and the shipped data move to it once,
keeping every measurement, value and provenance; only hashes and the ids derived from them change."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import pathlib

import pandas as pd
import pytest
import sqlalchemy as sa

from measured import Architecture, Measurement, Store, measurement_id, protocol_key
from measured._identity import MIGRATION_KEY, _content_id, _read_csv, _write_csv, migrate_dataset, plan_ids
from measured._schema import architectures_table, measurements_table, meta_table
from measured._store import DATA_DIR, load_manifest
from search_spaces import LowFormerConfig, get_variant
from tests.measured.conftest import TS, cpu_device, measurement

B1 = get_variant("B1").config
PROTO = protocol_key("latency_ms", "onnxruntime", "fp32", 1, 2)
# Two knob settings of B1's network (B1 itself is canonical), and two of a narrow network neither of which is.
B1_T200 = B1.with_(fusion_threshold=200)
NARROW = B1.with_(widths=(16, 32, 64, 160, 192))
N320, N384 = NARROW.with_(fusion_threshold=320), NARROW.with_(fusion_threshold=384)


def _legacy_arch(cfg: LowFormerConfig, name=None) -> dict:
    """An architecture row as identity version 1 wrote it: the hash of the knobs as typed."""
    a = Architecture.from_config(cfg, name)
    return dict(config_hash=cfg.legacy_hash, family="LowFormer", name=name, config_json=cfg.knob_json(),
                resolution=a.resolution, params=a.params, macs=a.macs, in_space=True, created_at=TS)


def _harness_row(cfg_hash: str, repeat: int, value: float, **fields) -> Measurement:
    m = measurement(Architecture(cfg_hash, resolution=224), value=value, **fields)
    m.id = measurement_id("local_cpu", PROTO, cfg_hash, repeat, m.status, m.n)
    return m


def _legacy_store(url: str) -> tuple[Store, list[Measurement]]:
    """A store as a version-1 lowformer-nas left it: old hashes, ids derived from them, schema version 1."""
    s = Store(url, seed=False)
    s.add_device(cpu_device())
    rows = [
        _harness_row(B1.hash, 0, 10.0, timestamp="2026-11-21T10:00:00+00:00"),
        _harness_row(B1_T200.legacy_hash, 0, 10.2, timestamp="2026-11-21T10:01:00+00:00"),
        _harness_row(N320.legacy_hash, 0, 8.0, timestamp="2026-11-21T10:02:00+00:00"),
        _harness_row(N384.legacy_hash, 0, 8.1, timestamp="2026-11-21T10:03:00+00:00"),
        _harness_row(N384.legacy_hash, 1, 8.2, timestamp="2026-11-21T10:04:00+00:00"),
        _harness_row(N320.legacy_hash, 0, None, status="failed", reason="timeout", n=None, p10=None, p90=None,
                     timestamp="2026-11-21T10:05:00+00:00"),
        dataclasses.replace(measurement(Architecture(N320.legacy_hash, resolution=224), value=8.3, status="busy",
                                        reason="machine busy"), id="b" * 64),
        measurement(Architecture(N320.legacy_hash, resolution=224), value=7.9, source="import", id="given-by-a-file"),
    ]
    imported = measurement(Architecture(N384.legacy_hash, resolution=224), value=7.7, source="import", id="x")
    imported.id = _content_id(imported, True)  # the importer's id of a row without one
    rows.append(imported)
    with s._write() as conn:
        conn.execute(architectures_table.insert(), [_legacy_arch(B1, "B1"), _legacy_arch(B1_T200),
                                                    _legacy_arch(N320), _legacy_arch(N384)])
        conn.execute(measurements_table.insert(), [m.to_dict() for m in rows])
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="1"))
        conn.execute(meta_table.delete().where(meta_table.c.key == "config_identity"))
    s.close()
    return s, rows


def test_a_version_1_store_is_upgraded_once_keeping_every_measurement(store_url):
    _, rows = _legacy_store(store_url)
    s = Store(store_url, seed=False)
    df = s.measurements(status=None, include_flagged=True)
    assert len(df) == len(rows)
    # Values and provenance untouched; every row under its network's hash.
    assert sorted(df["value"].dropna()) == sorted(m.value for m in rows if m.value is not None)
    assert set(df["config_hash"]) == {B1.hash, NARROW.with_(fusion_threshold=256).hash}
    assert {a.config_hash for a in s.architectures()} == {B1.hash, N320.hash}
    assert all(a.validate() for a in s.architectures())
    ids = set(df["id"])
    # Harness ids are re-derived, so a resumed campaign finds them; merged networks get distinct repeats:
    # B1's own row keeps repeat 0, the threshold-200 row (same network) takes repeat 1.
    assert measurement_id("local_cpu", PROTO, B1.hash, 0, "ok", 20) in ids
    assert measurement_id("local_cpu", PROTO, B1.hash, 1, "ok", 20) in ids
    # N320 (10:02) keeps repeat 0, N384's repeat 0 (10:03) and 1 (10:04) become 1 and 2.
    assert {measurement_id("local_cpu", PROTO, N320.hash, r, "ok", 20) for r in range(3)} <= ids
    assert measurement_id("local_cpu", PROTO, N320.hash, 0, "failed", None) in ids
    # Busy marks and ids given by a file stay; the importer's content id follows the new hash.
    assert {"b" * 64, "given-by-a-file"} <= ids
    moved = df[df["value"] == 7.7].iloc[0]
    assert moved["id"] == _content_id(Measurement.from_mapping({**moved.to_dict(), "source_ref": None}), True)
    with s._read() as conn:
        meta = s._meta(conn)
    assert meta["schema_version"] == "2" and meta["config_identity"] == "2"
    summary = json.loads(meta[MIGRATION_KEY])
    assert summary["measurements_moved"] == 8 and summary["architectures_moved"] == 3
    assert summary["merged"] == {B1.hash: sorted([B1.hash, B1_T200.legacy_hash]),
                                 N320.hash: sorted([N320.legacy_hash, N384.legacy_hash])}
    assert summary["ids"] == {"harness": 2, "harness-merged": 3, "content": 1, "kept": 2}
    s.close()
    # Opening again changes nothing.
    again = Store(store_url, seed=False)
    assert sorted(again.measurements(status=None, include_flagged=True)["id"]) == sorted(ids)
    again.close()


def test_an_upgrade_is_one_transaction(sqlite_url, monkeypatch):
    from measured import _identity

    _legacy_store(sqlite_url)
    real = _identity.plan_ids
    monkeypatch.setattr(_identity, "plan_ids", lambda *a: [*real(*a)[:-1], ("x", None, "boom")])
    with pytest.raises(Exception):
        Store(sqlite_url, seed=False)
    monkeypatch.setattr(_identity, "plan_ids", real)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:  # nothing half-written: still version 1 with its old hashes
        assert conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar() == "1"
        hashes = set(conn.execute(sa.select(measurements_table.c.config_hash)).scalars())
    engine.dispose()
    assert N384.legacy_hash in hashes
    assert Store(sqlite_url, seed=False).count() == 9


def test_a_newer_schema_is_refused(sqlite_url):
    s = Store(sqlite_url, seed=False)
    with s._write() as conn:
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="9"))
    with pytest.raises(Exception, match="schema version 9"):
        Store(sqlite_url, seed=False)


def _export_rows(rows: list[dict]) -> str:
    from measured import EXPORT_COLUMNS

    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def test_files_exported_before_identity_2_import_under_the_new_hashes(sqlite_url, tmp_path):
    s = Store(sqlite_url, seed=False)
    s.add_device(cpu_device())
    old = _harness_row(N384.legacy_hash, 0, 8.1)
    no_id = {**measurement(Architecture(N320.legacy_hash, resolution=224), value=7.0).to_dict(), "id": ""}
    arch = lambda cfg: dict(family="LowFormer", config_json=cfg.knob_json(), in_space=True)  # noqa: E731
    path = tmp_path / "old.csv"
    path.write_text(_export_rows([{**old.to_dict(), **arch(N384)}, {**no_id, **arch(N320)}]))
    report = s.import_file(path)
    assert report.inserted == 2
    df = s.measurements()
    assert set(df["config_hash"]) == {N320.hash}
    assert measurement_id("local_cpu", PROTO, N320.hash, 0, "ok", 20) in set(df["id"])
    assert s.import_file(path).inserted == 0  # the same file again adds nothing
    # A hash that is neither the new nor the old one of its config_json is still refused.
    bad = tmp_path / "bad.csv"
    bad.write_text(_export_rows([{**old.to_dict(), "config_hash": B1.hash, **arch(N384)}]))
    with pytest.raises(Exception, match="config_hash: does not match config_json"):
        s.import_file(bad)


def test_plan_ids_is_order_independent_and_keeps_the_earlier_repeat():
    a = _harness_row(N320.legacy_hash, 0, 8.0, timestamp="2026-11-21T10:00:00+00:00")
    b = _harness_row(N384.legacy_hash, 0, 8.1, timestamp="2026-11-21T10:01:00+00:00")
    p1 = plan_ids([(a, N320.hash), (b, N320.hash)], set())
    p2 = plan_ids([(b, N320.hash), (a, N320.hash)], set())
    assert sorted(p1) == sorted(p2)
    assert dict((o, n) for o, n, _ in p1)[a.id] == measurement_id("local_cpu", PROTO, N320.hash, 0, "ok", 20)


def _old_dataset() -> list[list[str]]:
    from measured import EXPORT_COLUMNS

    rows = []
    for i, cfg in enumerate((B1, B1_T200, N320, N384)):
        m = _harness_row(cfg.legacy_hash, 0, 10.0 + i)
        rows.append({**m.to_dict(), "family": "LowFormer", "config_json": cfg.knob_json(), "in_space": "True",
                     "versions": '{"a": "1"}', "notes": "=not a formula, kept as it is"})
    return list(csv.reader(io.StringIO(_export_rows(rows)))), list(EXPORT_COLUMNS)


def test_migrate_dataset_changes_only_hashes_and_ids():
    rows, columns = _old_dataset()
    new, hashes, ids, summary = migrate_dataset(rows)
    keep = [i for i, c in enumerate(columns) if c not in ("config_hash", "id")]
    assert [[r[i] for i in keep] for r in new] == [[r[i] for i in keep] for r in rows]
    assert hashes == {B1_T200.legacy_hash: B1.hash, N320.legacy_hash: N320.hash, N384.legacy_hash: N320.hash}
    assert summary["rows_moved"] == 3 and len(ids) == 3
    assert len({r[columns.index("id")] for r in new[1:]}) == 4  # every measurement kept, ids distinct
    # The dialect round-trips byte for byte, so rewriting a file touches nothing else.
    text = _write_csv(rows)
    assert _write_csv(list(csv.reader(io.StringIO(text)))) == text


def test_the_shipped_datasets_are_at_identity_2():
    for entry in load_manifest():
        path = DATA_DIR / entry["file"]
        _, rows = _read_csv(path)
        _, hashes, ids, _ = migrate_dataset(rows)
        assert not hashes and not ids, f"{path.name} has hashes of identity version 1"
        assert entry.get("config_identity") == 2
    assert (DATA_DIR / "MIGRATIONS.md").is_file()


def test_store_and_shipped_file_migrations_agree(sqlite_url, tmp_path):
    """A store upgraded in place holds exactly the ids a fresh store seeds from the migrated file."""
    rows, columns = _old_dataset()
    old_file = tmp_path / "old.csv"
    old_file.write_text(_write_csv(rows))
    s = Store(sqlite_url, seed=False)
    s.add_device(cpu_device())
    df = pd.read_csv(old_file, dtype=str, keep_default_na=False)
    with s._write() as conn:
        for cfg in (B1, B1_T200, N320, N384):
            conn.execute(architectures_table.insert(), [_legacy_arch(cfg)])
        conn.execute(measurements_table.insert(), [
            Measurement.from_mapping({k: v for k, v in r.items() if k in Measurement.fields()}).to_dict()
            for r in df.to_dict("records")])
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="1"))
    s.close()
    upgraded = set(Store(sqlite_url, seed=False).measurements()["id"])
    new, _, _, _ = migrate_dataset(rows)
    assert upgraded == {r[columns.index("id")] for r in new[1:]}


def test_csv_gz_rewrite_matches_the_writer(tmp_path):
    from measured._identity import _write_like

    rows, _ = _old_dataset()
    p = tmp_path / "x.csv.gz"
    _write_like(p, _write_csv(rows))
    assert gzip.decompress(p.read_bytes()).decode() == _write_csv(rows)
    assert pathlib.Path(p).read_bytes()[4:8] == b"\0\0\0\0"  # no time in the gzip header
