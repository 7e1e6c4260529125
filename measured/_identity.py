"""Moving what was written under identity version 1 (the knobs as typed) to version 2 (one hash per network).

A config's hash used to be taken of its knobs as typed, so thresholds 320 and 384 that fuse the same stages
named one network twice. Since version 2 it is taken of the canonical config (see ``search_spaces``). Every
place that keeps hashes is moved once, by the functions here:

- the store, when it is opened (:func:`upgrade_store`, called by ``Store``: one transaction, recorded in
  ``meta``);
- files exported before (:func:`upgrade_row`, called by the importer: a row whose ``config_hash`` is the
  version-1 hash of its ``config_json``);
- the shipped datasets (``python -m measured._identity FILE...``, which uses :func:`plan_ids` like the store,
  so that a migrated store and the migrated files agree on every id).

Measured values, provenance and config JSON are never changed: only ``config_hash`` and the ids derived from
it. Deterministic ids are re-derived so that a resumed campaign finds them: harness ids
(``measurement_id(device, protocol, hash, repeat, status, runs)``, the repeat index recovered by trying) and
the importer's content ids. When two old configs turn out to be one network, every measurement is kept: a
harness id that would collide takes the next free repeat index, a content id a derived one, and ``meta``
says which hashes were merged.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import pathlib
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from lowformer_common import atomic_write, utc_now
from search_spaces import CONFIG_IDENTITY, ConfigError, LowFormerConfig

from ._harness import measurement_id as harness_id
from ._records import Measurement, content_id, protocol_key
from ._schema import architectures_table, measurements_table, meta_table

# Schema versions whose hashes are identity version 1; the store writes SCHEMA_VERSION after upgrading.
LEGACY_SCHEMA_VERSIONS = ("1",)
IDENTITY_KEY = "config_identity"  # meta: the identity version of the store's hashes
MIGRATION_KEY = "migration:config_identity_2"  # meta: what the upgrade did (JSON)
# Repeat indices tried when recovering a harness id (campaign repeats and study re-runs stay far below).
MAX_REPEAT = 256
_HEX = set("0123456789abcdef")


@functools.lru_cache(maxsize=1 << 14)
def current_hash(config_json: str) -> str | None:
    """The version-2 hash of a stored config JSON (None when it is not a valid config)."""
    try:
        return LowFormerConfig.from_json(config_json).hash
    except ConfigError:
        return None


def hash_map(archs: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """{old hash: new hash} for (config_hash, config_json) pairs whose hash changes (in-space rows only)."""
    out = {}
    for h, text in archs:
        if text:
            new = current_hash(text)
            if new is not None and new != h:
                out[h] = new
    return out


# ---------------------------------------------------------------------------------------------- ids


def _content_id(m: Measurement, timestamp_given: bool) -> str:
    # The importer's id of a row without one, computed before source_ref is set.
    return content_id(dataclasses.replace(m, source_ref=None), timestamp_given)


def _smoke_runs(m: Measurement) -> tuple[int | None, ...]:
    # The harness marks ids of runs below MIN_TIMED_RUNS; a failed row has no n, so both are tried.
    if m.n is not None:
        return (m.n,)
    return (None, 1)


def recover_id(m: Measurement) -> tuple[str, Any] | None:
    """How ``m.id`` was derived from ``m.config_hash``: ("harness", (repeat, runs)), ("content", timestamp_given),
    or None (a busy mark, a paper id, an id given by a file: kept as is)."""
    if m.status == "busy" or len(m.id) != 64 or not set(m.id) <= _HEX:
        return None
    for given in (True, False):
        if _content_id(m, given) == m.id:
            return "content", given
    proto = protocol_key(m.metric, m.backend, m.precision, m.batch, m.threads)
    for runs in _smoke_runs(m):
        for r in range(MAX_REPEAT):
            if harness_id(m.device_id, proto, m.config_hash, r, m.status, runs) == m.id:
                return "harness", (r, runs)
    return None


def plan_ids(moves: Sequence[tuple[Measurement, str]], taken: set[str]) -> list[tuple[str, str, str]]:
    """New ids for rows moving to a new hash: ``moves`` is [(row with its old hash and id, new hash)], ``taken``
    the ids that stay (rows not moving); returns [(old id, new id, how)] in the order of ``moves``.

    Rows are assigned in (timestamp, old id) order, so the earlier measurement keeps the lower repeat index.
    ``how``: "harness", "harness-merged" (took another repeat index), "content", "content-merged" or "kept".
    """
    taken = set(taken)
    out: dict[str, tuple[str, str]] = {}
    for m, new_hash in sorted(moves, key=lambda mv: (mv[0].timestamp, mv[0].id)):
        how = recover_id(m)
        if how is None:
            new_id, kind = m.id, "kept"
        elif how[0] == "content":
            new_id = _content_id(dataclasses.replace(m, config_hash=new_hash), how[1])
            kind = "content"
            if new_id in taken:
                new_id = hashlib.sha256(f"merged|{m.id}|{new_hash}".encode()).hexdigest()
                kind = "content-merged"
        else:
            repeat, runs = how[1]
            proto = protocol_key(m.metric, m.backend, m.precision, m.batch, m.threads)
            new_id = harness_id(m.device_id, proto, new_hash, repeat, m.status, runs)
            kind = "harness"
            if new_id in taken:
                r = 0
                while harness_id(m.device_id, proto, new_hash, r, m.status, runs) in taken:
                    r += 1
                new_id = harness_id(m.device_id, proto, new_hash, r, m.status, runs)
                kind = "harness-merged"
        taken.add(new_id)
        out[m.id] = (new_id, kind)
    return [(m.id, *out[m.id]) for m, _ in moves]


def merged_groups(mapping: dict[str, str], existing: Iterable[str]) -> dict[str, list[str]]:
    """{new hash: old hashes} where several old hashes (or an old one and one that stays) became one network."""
    groups: dict[str, set[str]] = {}
    for old, new in mapping.items():
        groups.setdefault(new, set()).add(old)
    stay = set(existing)
    return {new: sorted(olds | ({new} if new in stay else set())) for new, olds in groups.items()
            if len(olds) > 1 or new in stay}


# ---------------------------------------------------------------------------------------------- files

# The shipped datasets' folder (measured._store.DATA_DIR; named here because the store imports this module).
SHIPPED_DATA = pathlib.Path(__file__).parent / "data"


def legacy_hash_map(files: Iterable[pathlib.Path] | None = None) -> dict[str, str]:
    """{identity-1 hash: identity-2 hash} of every in-space config in ``files`` (default: the shipped
    datasets) whose hash changed: for reading sidecars and tables written before version 2."""
    if files is None:
        manifest = json.loads((SHIPPED_DATA / "datasets.json").read_text(encoding="utf-8"))
        files = [SHIPPED_DATA / e["file"] for e in manifest.get("datasets", [])]
    return _legacy_hash_map(tuple(pathlib.Path(f) for f in files))


@functools.lru_cache(maxsize=4)
def _legacy_hash_map(files: tuple[pathlib.Path, ...]) -> dict[str, str]:
    out = {}
    for path in files:
        _, rows = _read_csv(path)
        col = {c: i for i, c in enumerate(rows[0])}
        for text in {r[col["config_json"]] for r in rows[1:] if r[col["in_space"]] == "True"}:
            try:
                cfg = LowFormerConfig.from_json(text)
            except ConfigError:
                continue
            if cfg.legacy_hash != cfg.hash:
                out[cfg.legacy_hash] = cfg.hash
    return out


def upgrade_row(m: Measurement, config: LowFormerConfig) -> bool:
    """Move a row read from a file written before version 2 to its new hash and id, in place: True when its
    ``config_hash`` was the version-1 hash of ``config`` (else nothing changes)."""
    if m.config_hash == config.hash or m.config_hash != config.legacy_hash:
        return False
    (_, new_id, _), = plan_ids([(m, config.hash)], set())
    m.config_hash, m.id = config.hash, new_id
    return True


# ---------------------------------------------------------------------------------------------- the store


def needs_upgrade(meta: dict[str, str]) -> bool:
    return meta.get("schema_version") in LEGACY_SCHEMA_VERSIONS


def _rows(conn, table: sa.Table, column: sa.Column, keys: Sequence[str]) -> list[Any]:
    out = []
    for i in range(0, len(keys), 500):
        out += conn.execute(sa.select(table).where(column.in_(keys[i : i + 500]))).all()
    return out


def upgrade_store(conn, meta: dict[str, str], schema_version: str) -> dict[str, Any] | None:
    """Move a store written under identity version 1 to version 2 inside the caller's write transaction.

    New architecture rows are inserted for new hashes (an existing row of that hash is kept), measurements are
    moved to them with re-derived ids, the old architecture rows deleted, and ``meta`` records the schema
    version, the identity version and a summary (merged hashes included). Returns the summary, or None when the
    store needed nothing.
    """
    if not needs_upgrade(meta):
        return None
    a, m = architectures_table, measurements_table
    archs = conn.execute(sa.select(a.c.config_hash, a.c.config_json).where(a.c.in_space.is_(True))).all()
    mapping = hash_map((r.config_hash, r.config_json) for r in archs)
    existing_archs = {r.config_hash for r in conn.execute(sa.select(a.c.config_hash))}
    summary: dict[str, Any] = {"from_schema": meta.get("schema_version"), "to_schema": schema_version,
                               "identity": CONFIG_IDENTITY, "at": utc_now(), "architectures_moved": len(mapping)}
    if mapping:
        old_rows = {r.config_hash: r for r in _rows(conn, a, a.c.config_hash, sorted(mapping))}
        new_hashes = sorted(set(mapping.values()))
        staying = existing_archs - set(mapping)
        to_insert = {}
        for old in sorted(mapping):  # the first old row of a merged group gives the new row its name
            new = mapping[old]
            if new not in staying and new not in to_insert:
                row = dict(old_rows[old]._mapping)
                row["config_hash"] = new
                to_insert[new] = row
        if to_insert:
            conn.execute(a.insert(), [to_insert[h] for h in sorted(to_insert)])
        moving = [Measurement(**{k: r._mapping[k] for k in Measurement.fields()})
                  for r in _rows(conn, m, m.c.config_hash, sorted(mapping))]
        taken = {r for r in conn.execute(sa.select(m.c.id).where(m.c.config_hash.in_(new_hashes))).scalars()}
        plan = plan_ids([(row, mapping[row.config_hash]) for row in moving], taken)
        new_of = dict(zip((row.id for row in moving), plan))
        for row in moving:
            _, new_id, _ = new_of[row.id]
            conn.execute(m.update().where(m.c.id == row.id).values(id=new_id, config_hash=mapping[row.config_hash]))
        conn.execute(a.delete().where(a.c.config_hash.in_(sorted(mapping))))
        kinds: dict[str, int] = {}
        for _, _, kind in plan:
            kinds[kind] = kinds.get(kind, 0) + 1
        merged = merged_groups(mapping, staying)
        summary.update(measurements_moved=len(moving), ids=kinds,
                       merged={new: olds for new, olds in sorted(merged.items())},
                       note="configs that build one network share its hash since identity version 2; "
                            "every measurement was kept (colliding ids took the next free repeat index)")
    for key, value in (("schema_version", schema_version), (IDENTITY_KEY, str(CONFIG_IDENTITY)),
                       (MIGRATION_KEY, json.dumps(summary, sort_keys=True))):
        conn.execute(meta_table.delete().where(meta_table.c.key == key))
        conn.execute(meta_table.insert(), [{"key": key, "value": value}])
    return summary


# ---------------------------------------------------------------------------------------------- shipped files


def _read_csv(path: pathlib.Path) -> tuple[str, list[list[str]]]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8")
    return text, list(csv.reader(io.StringIO(text, newline="")))


def _write_csv(rows: list[list[str]]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)  # pandas' to_csv dialect: minimal quoting, \n
    return out.getvalue()


def migrate_dataset(rows: list[list[str]]) -> tuple[list[list[str]], dict[str, str], dict[str, str], dict[str, Any]]:
    """A dataset file's rows (header first) with version-2 hashes and ids; (rows, hash map, id map, summary).

    Only the ``config_hash`` and ``id`` cells change, with the same plan a store upgrade makes."""
    header, body = rows[0], rows[1:]
    col = {c: i for i, c in enumerate(header)}
    mapping = hash_map((r[col["config_hash"]], r[col["config_json"]] if r[col["in_space"]] == "True" else None)
                       for r in body)
    fields = set(Measurement.fields())
    moves = [(Measurement.from_mapping({k: r[i] for k, i in col.items() if k in fields}), mapping[r[col["config_hash"]]])
             for r in body if r[col["config_hash"]] in mapping]
    taken = {r[col["id"]] for r in body if r[col["config_hash"]] not in mapping}
    plan = plan_ids(moves, taken)
    ids = {old: new for old, new, _ in plan}
    out = [header]
    for r in body:
        r = list(r)
        if r[col["config_hash"]] in mapping:
            r[col["id"]] = ids[r[col["id"]]]
            r[col["config_hash"]] = mapping[r[col["config_hash"]]]
        out.append(r)
    kinds: dict[str, int] = {}
    for _, _, kind in plan:
        kinds[kind] = kinds.get(kind, 0) + 1
    merged = merged_groups(mapping, {r[col["config_hash"]] for r in body} - set(mapping))
    summary = {"rows": len(body), "rows_moved": len(moves), "architectures_moved": len(mapping), "ids": kinds,
               "merged": merged}
    return out, mapping, {o: n for o, n, _ in plan if o != n}, summary


def remap_table(rows: list[list[str]], hashes: dict[str, str], ids: dict[str, str]) -> tuple[list[list[str]], int]:
    """A table's rows with ``config_hash``/``measurement_id``/``id`` cells mapped; (rows, cells changed)."""
    header = rows[0]
    cols = [(i, hashes if c == "config_hash" else ids) for i, c in enumerate(header)
            if c in ("config_hash", "measurement_id", "id")]
    out, changed = [header], 0
    for r in rows[1:]:
        r = list(r)
        for i, table in cols:
            if r[i] in table:
                r[i], changed = table[r[i]], changed + 1
        out.append(r)
    return out, changed


def _write_like(path: pathlib.Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        buf = io.BytesIO()
        # As measured._io.write_table writes it: no name and time in the header, so the same rows give the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    atomic_write(path, data)


def main(argv: list[str] | None = None) -> int:
    """``python -m measured._identity DATASET... [--tables CSV...]``: move shipped datasets (and tables that cite
    their hashes and measurement ids, like the studies' CSVs) to identity version 2, in place."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m measured._identity", description=main.__doc__)
    p.add_argument("datasets", nargs="+", type=pathlib.Path, help="dataset files (.csv, .csv.gz) with config_json")
    p.add_argument("--tables", nargs="*", default=[], type=pathlib.Path, help="CSV tables citing config_hash/measurement_id")
    args = p.parse_args(argv)
    hashes: dict[str, str] = {}
    ids: dict[str, str] = {}
    for path in args.datasets:
        text, rows = _read_csv(path)
        if _write_csv(rows) != text:
            raise SystemExit(f"{path}: not in the writer's CSV dialect; rewriting it would change more than hashes")
        new_rows, h, i, summary = migrate_dataset(rows)
        hashes.update(h)
        ids.update(i)
        if h:
            _write_like(path, _write_csv(new_rows))
        print(f"{path}: {json.dumps(summary, sort_keys=True)}")
    for path in args.tables:
        text, rows = _read_csv(path)
        if _write_csv(rows) != text:
            raise SystemExit(f"{path}: not in the writer's CSV dialect")
        new_rows, n = remap_table(rows, hashes, ids)
        if n:
            _write_like(path, _write_csv(new_rows))
        print(f"{path}: {n} cells mapped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
