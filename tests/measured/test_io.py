"""Import and export: validation with line numbers, idempotent re-import, exact round trips."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json

import pandas as pd
import pytest

from measured import EXPORT_COLUMNS, Architecture, ImportFileError, Store, StoreError, out_of_space_hash
from tests.measured.conftest import arch, cpu_device, measurement


def _rows(store: Store) -> None:
    store.add_device(cpu_device())
    a, b = arch("B0"), arch("B3", 384)
    oos = Architecture(out_of_space_hash("FastViT", "FastViT-T8", 256), "FastViT", "FastViT-T8", None, 256,
                       3_600_000, 700_000_000, False)
    rows = [
        measurement(a, value=10.25, notes='quoted, "comma"\nand a newline'),
        measurement(b, value=33.0, threads=None, p10=None, p90=None, busy_pct=None, campaign=None),
        measurement(b, value=None, status="failed", reason="out of memory"),
        measurement(a, value=12.0, status="busy", reason="busy 40%"),
        measurement(a, value=99.0, flag="anomaly"),
        measurement(oos, value=1.0 / 3.0, metric="throughput_img_s", batch=200, resolution=256),
    ]
    store.add_measurements(rows, archs=[a, b, oos])


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _good_row(a=None, **over):
    a = a or arch("B1")
    r = dict(device_id="local_cpu", config_hash=a.config_hash, metric="latency_ms", value="12.5", backend="onnxruntime",
             batch="1", resolution=str(a.resolution), timestamp="2026-11-21T10:00:00+00:00", config_json=a.config_json)
    r.update(over)
    return r


def _csv(path, rows):
    header = list(dict.fromkeys(k for r in rows for k in r))
    _write_csv(path, header, [[r.get(h, "") for h in header] for r in rows])
    return path


@pytest.fixture
def store(sqlite_url):
    s = Store(sqlite_url, seed=False)
    s.add_device(cpu_device())
    return s


def _all(store: Store) -> pd.DataFrame:
    return store.measurements(status=None, include_flagged=True).sort_values("id").reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_export_import_round_trip_is_exact(store_url, tmp_path, suffix):
    src = Store(store_url, seed=False)
    _rows(src)
    path = tmp_path / f"out{suffix}"
    assert src.export(path) == 6
    dst = Store(tmp_path / "fresh.sqlite", seed=False)
    rep = dst.import_file(path)
    assert (rep.rows, rep.inserted, rep.skipped, rep.devices_created, rep.architectures_created) == (6, 6, 0, ["local_cpu"], 3)
    pd.testing.assert_frame_equal(_all(src), _all(dst))
    assert dst.devices() == src.devices()
    assert dst.architectures() == src.architectures()
    again = dst.import_file(path)
    assert (again.inserted, again.skipped) == (0, 6)


def test_export_filters_and_columns(store, tmp_path):
    _rows(store)
    n = store.export(tmp_path / "x.csv", device="local_cpu", metric="throughput_img_s")
    df = pd.read_csv(tmp_path / "x.csv")
    assert n == 1 and list(df.columns) == list(EXPORT_COLUMNS)
    assert json.loads(df.loc[0, "device_fingerprint"]) == cpu_device().fingerprint
    with pytest.raises(StoreError, match="unknown format"):
        store.export(tmp_path / "x.txt")


def test_export_is_atomic(store, tmp_path, monkeypatch):
    _rows(store)
    path = tmp_path / "keep.csv"
    path.write_text("old content\n")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(StoreError, match="cannot write"):
        store.export(path)
    assert path.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_rows_without_id_get_a_deterministic_id(store, tmp_path):
    path = _csv(tmp_path / "m.csv", [_good_row(), _good_row(value="13.5")])
    first = store.import_file(path)
    assert (first.rows, first.inserted, first.architectures_created) == (2, 2, 1)
    assert store.import_file(path).inserted == 0
    # Parquet of the same rows: same content, same ids.
    pd.read_csv(path, dtype=str).to_parquet(tmp_path / "m.parquet")
    assert store.import_file(tmp_path / "m.parquet").inserted == 0
    df = store.measurements()
    assert len(df) == 2 and all(len(i) == 64 for i in df["id"])
    assert set(df["source"]) == {"import"} and set(df["source_ref"]) == {"m.csv line 2", "m.csv line 3"}


@pytest.mark.parametrize("change, where, message", [
    (dict(value="12,5"), "line 3", "value: must be a number"),
    (dict(metric="latency_s"), "line 3", "metric: must be one of"),
    (dict(batch="0"), "line 3", "batch: must be a positive integer"),
    (dict(timestamp="yesterday"), "line 3", "timestamp"),
    (dict(config_json=arch("B0").config_json), "line 3", "config_hash: does not match config_json"),
    (dict(config_json='{"depths": [0, 1]}'), "line 3", "depths: must be a list of 5 values"),
    (dict(device_id="elsewhere"), "line 3", "device_id: unknown device 'elsewhere'"),
    (dict(config_json="", config_hash="a" * 64), "line 3", "config_hash: unknown architecture aaaaaaaaaaaa"),
    (dict(resolution="256"), "line 3", "resolution: 256 differs from config_json's resolution 224"),
])
def test_malformed_rows_name_the_line_and_write_nothing(store, tmp_path, change, where, message):
    path = _csv(tmp_path / "bad.csv", [_good_row(), _good_row(**{"value": "13.5", **change}), _good_row(value="14.5")])
    with pytest.raises(ImportFileError) as e:
        store.import_file(path)
    text = str(e.value)
    assert text.startswith(f"{path} {where}: ") and message in text and "\n" not in text
    assert store.count() == 0 and store.architectures() == []


def test_unknown_column(store, tmp_path):
    path = _csv(tmp_path / "bad.csv", [_good_row(latency="3")])
    with pytest.raises(ImportFileError, match=r"line 1: latency: unknown column; allowed: device_id, config_hash"):
        store.import_file(path)
    pd.DataFrame([_good_row(latency="3")]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ImportFileError, match=r"bad.parquet columns: latency: unknown column"):
        store.import_file(tmp_path / "bad.parquet")


def test_parquet_errors_name_the_row(store, tmp_path):
    pd.DataFrame([_good_row(), _good_row(metric="nope")]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ImportFileError, match=r"bad.parquet row 2: metric: must be one of"):
        store.import_file(tmp_path / "bad.parquet")
    assert store.count() == 0


def test_line_numbers_follow_quoted_newlines(store, tmp_path):
    path = _csv(tmp_path / "nl.csv", [_good_row(notes="two\nlines"), _good_row(value="x")])
    with pytest.raises(ImportFileError, match=r"nl.csv line 4: value"):
        store.import_file(path)


def test_missing_and_unreadable_files(store, tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        store.import_file(tmp_path / "none.csv")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(StoreError, match="cannot read as csv.gz"):
        store.import_file(tmp_path / "broken.csv.gz")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(StoreError, match="empty file"):
        store.import_file(tmp_path / "empty.csv")
    _write_csv(tmp_path / "ragged.csv", ["device_id", "metric"], [["a", "b", "c"]])
    with pytest.raises(ImportFileError, match="line 2: row: 3 fields, but the header has 2"):
        store.import_file(tmp_path / "ragged.csv")


def test_device_override_and_creation(sqlite_url, tmp_path):
    store = Store(sqlite_url, seed=False)
    path = _csv(tmp_path / "m.csv", [_good_row(device_id=""), _good_row(device_id="", value="13")])
    with pytest.raises(ImportFileError, match=r"line 2: device_id: missing"):
        store.import_file(path)
    with pytest.raises(ImportFileError, match=r"line 2: device_id: unknown device 'pi5'; .*--device-kind"):
        store.import_file(path, device_id="pi5")
    with pytest.raises(StoreError, match="device_kind: must be one of"):
        store.import_file(path, device_id="pi5", create_device_kind="toaster")
    rep = store.import_file(path, device_id="pi5", create_device_kind="edge")
    assert rep.devices_created == ["pi5"] and rep.inserted == 2
    assert store.device("pi5").kind == "edge" and store.device("pi5").source == "import"
    # Device columns describe a new device; an existing one is never changed.
    dev = dict(device_name="Jetson Orin", device_kind="edge", device_fingerprint='{"board": "orin"}')
    path2 = _csv(tmp_path / "d.csv", [_good_row(device_id="orin", **dev)])
    assert store.import_file(path2).devices_created == ["orin"]
    assert store.device("orin").fingerprint == {"board": "orin"}
    path3 = _csv(tmp_path / "d3.csv", [_good_row(device_id="x", device_kind="edge", device_fingerprint="[1]")])
    with pytest.raises(ImportFileError, match="line 2: device_fingerprint: must be a JSON object"):
        store.import_file(path3)


def test_device_override_gives_rows_their_own_ids(store_url, tmp_path):
    src = Store(store_url, seed=False)
    _rows(src)
    src.export(tmp_path / "all.csv")
    rep = src.import_file(tmp_path / "all.csv", device_id="copy")
    assert rep.devices_created == ["copy"] and rep.inserted == 6
    assert src.device("copy").fingerprint == cpu_device().fingerprint
    assert src.import_file(tmp_path / "all.csv", device_id="copy").inserted == 0
    assert src.import_file(tmp_path / "all.csv", device_id="local_cpu").inserted == 0  # the rows' own device
    a = _all(src)
    assert len(a) == 12 and a["id"].is_unique


def test_out_of_space_rows_need_family(store, tmp_path):
    h = out_of_space_hash("RepViT", "RepViT-M0.9", 224)
    base = dict(config_hash=h, config_json="", resolution="224")
    with pytest.raises(ImportFileError, match="line 2: family: required"):
        store.import_file(_csv(tmp_path / "a.csv", [_good_row(**base, in_space="false")]))
    rep = store.import_file(_csv(tmp_path / "b.csv", [_good_row(**base, in_space="false", family="RepViT",
                                                                  name="RepViT-M0.9", params="5100000")]))
    assert rep.architectures_created == 1
    a = store.architecture(h)
    assert (a.family, a.name, a.in_space, a.params, a.macs, a.resolution) == ("RepViT", "RepViT-M0.9", False, 5100000, None, 224)


def test_conflicting_architecture_columns(store, tmp_path):
    path = _csv(tmp_path / "c.csv", [_good_row(name="B1"), _good_row(value="9", name="other")])
    with pytest.raises(ImportFileError, match="line 3: name: differs from line 2"):
        store.import_file(path)


def test_csv_gz_bytes_are_reproducible(store, tmp_path):
    _rows(store)
    store.export(tmp_path / "a.csv.gz")
    store.export(tmp_path / "b.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    with gzip.open(tmp_path / "a.csv.gz", "rt") as f:
        assert f.readline().startswith("device_id,config_hash,metric,value")


def test_import_keeps_row_provenance(store, tmp_path):
    m = measurement(arch("B1"), source="harness", source_ref="campaign c1")
    row = {k: ("" if v is None else str(v)) for k, v in dataclasses.asdict(m).items()}
    row["config_json"] = arch("B1").config_json
    store.import_file(_csv(tmp_path / "p.csv", [row]))
    got = store.measurements().iloc[0]
    assert (got["id"], got["source"], got["source_ref"]) == (m.id, "harness", "campaign c1")


# ---------------------------------------------------------------------------------------------- hostile files


def test_duplicate_column_is_refused(store, tmp_path):
    """A second `value` column silently overwrote every value (999) before."""
    row = _good_row()
    header = list(row) + ["value"]
    _write_csv(tmp_path / "dup.csv", header, [list(row.values()) + ["999"]])
    with pytest.raises(ImportFileError) as e:
        store.import_file(tmp_path / "dup.csv")
    n = header.index("value") + 1
    assert str(e.value) == f"{tmp_path / 'dup.csv'} line 1: value: duplicate column (columns {n} and {len(header)}); " \
                           "each column may appear once"
    assert store.count() == 0


def test_duplicate_ids_name_both_lines(store, tmp_path):
    """Two rows with one id: one was silently dropped ("1 already stored")."""
    path = _csv(tmp_path / "ids.csv", [_good_row(id="m1"), _good_row(id="m2", value="13"), _good_row(id="m1", value="14")])
    with pytest.raises(ImportFileError, match=r"ids.csv line 4: id: same id as line 2 \(m1…\)") as e:
        store.import_file(path)
    assert "\n" not in str(e.value) and store.count() == 0
    # The same row twice (no id column: the id is the row's content) is one measurement typed twice.
    path = _csv(tmp_path / "twice.csv", [_good_row(), _good_row(value="13"), _good_row()])
    with pytest.raises(ImportFileError, match=r"twice.csv line 4: id: same id as line 2"):
        store.import_file(path)
    assert store.count() == 0


@pytest.mark.parametrize("change, message", [
    (dict(p10="13", p90="14"), "p10: must be <= value, the median (got p10 13.0, value 12.5)"),
    (dict(p10="11", p90="12"), "p90: must be >= value, the median (got value 12.5, p90 12.0)"),
    (dict(p10="15", p90="11", value=""), "p10: must be <= p90"),
    (dict(p10="-1", p90="14"), "p10: must be >= 0 (got -1.0)"),
    (dict(busy_pct="500"), "busy_pct: must be in [0, 100] % of the machine (got 500.0)"),
    (dict(busy_pct="-0.5"), "busy_pct: must be in [0, 100]"),
    (dict(value="1e300"), "value: latency must be in (0, 1e+07) ms (got 1e+300)"),
    (dict(value="inf"), "value: must be a finite number"),
    (dict(value="nan", status="busy", reason="x"), "value: must be a finite number"),
    (dict(p90="inf"), "p90: must be a finite number"),
])
def test_implausible_values_are_refused(store, tmp_path, change, message):
    row = {"status": "ok", "reason": "", **_good_row(value="12.5"), **change}
    if row["value"] == "":
        row.update(status="failed", reason="crashed")
    path = _csv(tmp_path / "v.csv", [_good_row(), row])
    with pytest.raises(ImportFileError) as e:
        store.import_file(path)
    assert str(e.value).startswith(f"{path} line 3: ") and message in str(e.value) and "\n" not in str(e.value)
    assert store.count() == 0


def test_plausible_edge_values_pass(store, tmp_path):
    path = _csv(tmp_path / "ok.csv", [_good_row(p10="12.5", p90="12.5", busy_pct="100"),
                                      _good_row(value="0.001", p10="0", p90="0.002", busy_pct="0")])
    assert store.import_file(path).inserted == 2


FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\tx", "\rx", "'=already", "''+two", "plain", "'quoted"]


def test_formula_cells_are_neutralised_on_export_and_stored_verbatim(store, tmp_path):
    a = arch("B0")
    rows = [measurement(a, value=10.0 + i, notes=text, campaign=text) for i, text in enumerate(FORMULAS)]
    store.add_measurements(rows, archs=[a])
    store.export(tmp_path / "x.csv")
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=cmd|' /C calc'!A0" in cells and "''=already" in cells and "plain" in cells and "'quoted" in cells
    dst = Store(tmp_path / "d.sqlite", seed=False)
    dst.import_file(tmp_path / "x.csv")
    pd.testing.assert_frame_equal(_all(store), _all(dst))
    assert sorted(_all(dst)["notes"]) == sorted(FORMULAS)
    store.export(tmp_path / "x.parquet")  # not a spreadsheet format: verbatim
    assert sorted(pd.read_parquet(tmp_path / "x.parquet")["notes"]) == sorted(FORMULAS)


@pytest.mark.parametrize("text", FORMULAS + ["", "'", "''", "=", "'-", "a=b"])
def test_escape_cell_round_trips(text):
    from measured._io import escape_cell, unescape_cell

    out = escape_cell(text)
    assert unescape_cell(out) == text and not out.startswith(("=", "+", "-", "@", "\t", "\r"))


# ---------------------------------------------------------------------------------------------- device identity

XEON = dict(device_name="Intel(R) Xeon(R) Processor", device_kind="cpu",
            device_fingerprint=json.dumps({"arch": "x86_64", "cpu_model": "Intel(R) Xeon(R) Processor", "os": "Linux"}))
TX2 = dict(device_name="NVIDIA Jetson TX2 Developer Kit", device_kind="edge",
           device_fingerprint=json.dumps({"arch": "aarch64", "board": "NVIDIA Jetson TX2 Developer Kit"}))


@pytest.fixture
def tx2_store(store):
    from measured import Device

    store.add_device(Device("jetson_tx2", "Nvidia Jetson TX2 8GB developer kit", "edge", {}, {}, {}, "paper"))
    pi = {"arch": "aarch64", "cpu_model": "Cortex-A76", "board": "Raspberry Pi 5 Model B Rev 1.0", "memory_gb": 7.9}
    store.add_device(Device("my_pi5", "Raspberry Pi 5 Model B Rev 1.0", "edge", pi, {}, {}, "import"))
    return store


def test_rows_of_another_machine_are_refused(tx2_store, tmp_path):
    """`import results.csv --device jetson_tx2` accepted 36 rows saying "Intel(R) Xeon(R) Processor"."""
    path = _csv(tmp_path / "xeon.csv", [_good_row(**XEON), _good_row(value="13", **XEON)])
    with pytest.raises(ImportFileError) as e:
        tx2_store.import_file(path, device_id="jetson_tx2")
    assert str(e.value) == (
        f"{path} line 2: device_fingerprint: measured on 'Intel(R) Xeon(R) Processor, x86_64', which does not name "
        "a 'jetson'; not device 'jetson_tx2' (Nvidia Jetson TX2 8GB developer kit). Check --device, or give --force "
        "to import anyway (recorded in each row's notes)")
    assert tx2_store.count() == 0
    # Facts both fingerprints state must agree.
    pi = dict(device_name="Raspberry Pi 5", device_fingerprint=json.dumps({"arch": "aarch64", "cpu_model": "Cortex-A72"}))
    with pytest.raises(ImportFileError, match="line 2: device_fingerprint: measured on cpu_model 'cortex-a72', the "
                                              "device's is 'cortex-a76'; not device 'my_pi5'"):
        tx2_store.import_file(_csv(tmp_path / "pi4.csv", [_good_row(**pi)]), device_id="my_pi5")
    # The rows' own device id (no --device) is checked the same way.
    with pytest.raises(ImportFileError, match="not device 'jetson_tx2'"):
        tx2_store.import_file(_csv(tmp_path / "own.csv", [_good_row(device_id="jetson_tx2", **XEON)]))
    assert tx2_store.count() == 0


def test_rows_of_the_same_machine_are_accepted(tx2_store, tmp_path):
    assert tx2_store.import_file(_csv(tmp_path / "tx2.csv", [_good_row(**TX2)]), device_id="jetson_tx2").inserted == 1
    # Another OS, memory or load does not make another machine; a name given with --device-name counts.
    pi = dict(device_name="bench pi", device_fingerprint=json.dumps(
        {"arch": "aarch64", "cpu_model": "Cortex-A76", "board": "Raspberry Pi 5 Model B Rev 1.0", "memory_gb": 8.0,
         "os": "Linux-6.6"}))
    assert tx2_store.import_file(_csv(tmp_path / "pi.csv", [_good_row(**pi)]), device_id="my_pi5").inserted == 1
    named = dict(device_name="Jetson TX2 in the lab", device_fingerprint=json.dumps({"board": "quill"}))
    assert tx2_store.import_file(_csv(tmp_path / "q.csv", [_good_row(value="9", **named)]),
                                 device_id="jetson_tx2").inserted == 1
    # A file without device columns cannot be checked (and a new device is created from its columns).
    assert tx2_store.import_file(_csv(tmp_path / "bare.csv", [_good_row(value="8")]), device_id="jetson_tx2").inserted == 1
    assert tx2_store.import_file(_csv(tmp_path / "new.csv", [_good_row(value="7", **XEON)]),
                                 device_id="xeon-box").devices_created == ["xeon-box"]


def test_force_imports_and_records_it(tx2_store, tmp_path):
    path = _csv(tmp_path / "xeon.csv", [_good_row(**XEON), _good_row(value="13", notes="B1", **XEON)])
    rep = tx2_store.import_file(path, device_id="jetson_tx2", force=True)
    assert rep.inserted == 2
    notes = sorted(tx2_store.measurements(device="jetson_tx2")["notes"])
    assert notes[0].startswith("B1 | imported with --force: measured on 'Intel(R) Xeon(R) Processor, x86_64'")
    assert notes[1].startswith("imported with --force: measured on")
    assert tx2_store.device("jetson_tx2").fingerprint == {}  # the stored device is never changed


def test_rows_of_two_machines_for_one_device(tx2_store, tmp_path):
    path = _csv(tmp_path / "mixed.csv", [_good_row(**TX2), _good_row(value="13", **XEON)])
    with pytest.raises(ImportFileError, match=r"mixed.csv line 3: device_fingerprint: arch 'x86_64' differs from "
                                              r"line 2's 'aarch64': rows of two machines cannot go to one device 'tx2b'"):
        tx2_store.import_file(path, device_id="tx2b", create_device_kind="edge")
    assert tx2_store.count() == 0


def test_the_file_reader_knows_nothing_of_the_store_it_feeds():
    # One seam: the store asks measured._io to read and plan a file against Store.lookup(), then writes the plan
    # (Store.write_plan); _io never imports the store module nor reaches into its private methods.
    import inspect
    import re

    import measured._io as io_module

    src = inspect.getsource(io_module)
    assert "_store" not in src and not re.search(r"\bstore\._", src)
