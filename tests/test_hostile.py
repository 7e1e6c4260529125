"""Hostile input, family by family (issue 20's probes): every file and flag a user hands us is bounded, validated
and kept inside its folder. Each probe ends in one line and exit 2 (or the documented behaviour), writes nothing
outside its folder and loses nothing. Fast: tiny configs, no model export, no timing.

Families: non-regular files (FIFOs, devices), strict JSON (duplicate keys, NaN, nesting), files under
$LOWFORMER_NAS_HOME naming another folder, predictor sidecars (types, digests, calibration, domain), caps on
flags, refusals that must create nothing, and tracebacks that must be one line. The bundle runner's own probes
are in tests/measured/test_bundle.py (hostile bundles); shared studies in tests/nas/search/test_workers.py.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pathlib
import shutil
import sqlite3

import pytest

from lowformer_common import MAX_ERROR_LINE_CHARS, UserError, read_at_most
from nas.cli import main

SHIPPED = pathlib.Path(__file__).resolve().parents[1] / "predictors" / "shipped" / "jetson_tx2" / "latency_ms" / "v0001"


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, says, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out[-500:], err[-2000:])
    assert err.count("\n") == 1 and len(err) < MAX_ERROR_LINE_CHARS + 200 and "Traceback" not in err, err[-2000:]
    assert says in err, err
    return err


def home() -> pathlib.Path:
    return pathlib.Path(os.environ["LOWFORMER_NAS_HOME"])


# ---------------------------------------------------------------------------------------------- non-regular files


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("argv", [
    ("count", "--config", "{fifo}"),
    ("import", "{fifo}.csv", "--device", "x1"),
])
def test_a_fifo_is_refused_not_waited_on(capsys, tmp_path, fifo, argv):
    if argv[1].endswith(".csv"):
        os.mkfifo(tmp_path / "fifo.json.csv")
    refused(capsys, "not a regular file", *[a.format(fifo=fifo) for a in argv])


def test_the_shared_reader_refuses_fifos_devices_and_folders(tmp_path, fifo):
    for path in (fifo, "/dev/zero", tmp_path):
        with pytest.raises(OSError, match="not a regular file"):
            read_at_most(path, 100)


def test_a_fifo_as_drift_cache_is_ignored_not_waited_on(tmp_path):
    from nas.onboard._drift import _read_cache

    folder = tmp_path / "drift" / "dev1"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "day.json")
    assert _read_cache(folder / "day.json") is None


# ---------------------------------------------------------------------------------------------- strict JSON


@pytest.mark.parametrize("text, says", [
    ('{"resolution": 224, "resolution": 256}', "key 'resolution' given twice"),
    ('{"base": "B0", "base": "B1"}', "key 'base' given twice"),
    ('{"base": "B0", "resolution": Infinity}', "Infinity is not a finite JSON number"),
    ("[" * 30_000, "nested more than 16 levels deep"),
])
def test_configs_are_strict_json(capsys, tmp_path, text, says):
    (tmp_path / "c.json").write_text(text)
    refused(capsys, says, "count", "--config", tmp_path / "c.json")


def test_json_output_never_holds_nan_or_infinity():
    from nas.cli._common import print_json

    with pytest.raises(UserError, match=r"--json: interval\[1\] is not a finite number"):
        print_json({"value": 8.6, "interval": [0.0, float("inf")]})


# ---------------------------------------------------------------------------------------------- files naming folders


def _plan(name: str, **fields) -> dict:
    plan = {"device": name, "round": 0, "kind": "local", "anchors": [], "design": [], "holdout": [], "spent_s": 0,
            "done": False, "settings": {}}
    return {**plan, **fields}


@pytest.mark.parametrize("fields, says", [
    ({"device": "../../../esc_plan"}, "is not the folder and file it lives in"),
    ({"device": "other-device"}, "is not the folder and file it lives in"),
    ({"round": 7}, "is not the folder and file it lives in"),
])
def test_an_onboarding_plan_names_its_own_folder(tmp_path, fields, says):
    from nas.onboard._common import latest_plan, onboard_dir

    folder = onboard_dir("dev1")
    folder.mkdir(parents=True)
    (folder / "round-0.json").write_text(json.dumps(_plan("dev1", **fields)))
    with pytest.raises(UserError, match=says):
        latest_plan("dev1")
    assert not (tmp_path / "esc_plan").exists() and sorted(p.name for p in home().iterdir()) == ["onboard"]


def test_a_plan_with_a_key_twice_is_refused():
    from nas.onboard._common import latest_plan, onboard_dir

    onboard_dir("dev1").mkdir(parents=True)
    text = json.dumps(_plan("dev1"))[:-1] + ', "device": "../../x"}'
    (onboard_dir("dev1") / "round-0.json").write_text(text)
    with pytest.raises(UserError, match="not a readable onboarding plan"):
        latest_plan("dev1")


def test_a_plan_is_saved_only_under_a_device_id():
    from nas.onboard._common import save_plan

    with pytest.raises(UserError, match="is not a device id"):
        save_plan(_plan("../../../esc_plan"))
    assert not home().exists() or not any(home().rglob("round-0.json"))


def test_a_drift_cache_of_another_device_is_not_used():
    from nas.onboard._drift import _read_cache

    folder = home() / "drift" / "dev1"
    folder.mkdir(parents=True)
    values = {"B0": 1.0, "B1": 2.0, "B1-unfused": 3.0, "E2": 4.0}
    (folder / "day.json").write_text(json.dumps({"device": "dev2", "values": values}))
    assert _read_cache(folder / "day.json") is None
    (folder / "day.json").write_text(json.dumps({"device": "dev1", "values": values}))
    assert _read_cache(folder / "day.json") == values


# ---------------------------------------------------------------------------------------------- predictor sidecars


def _tampered(edit) -> None:
    dst = home() / "predictors" / "jetson_tx2" / "latency_ms" / "v0001"
    shutil.copytree(SHIPPED, dst)
    meta = json.loads((dst / "meta.json").read_text())
    edit(meta, dst)
    (dst / "meta.json").write_text(json.dumps(meta))


def _scale_a_coefficient(meta, dst):
    doc = json.loads((dst / "model.json").read_text())
    coef = doc["fitted"]["coef_"]
    key = next(k for k, v in coef.items() if v > 0)
    coef[key] *= 1000
    (dst / "model.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, says", [
    (lambda m, d: (m.update(format=True), _scale_a_coefficient(m, d)), "format must be the integer 2 (got True)"),
    (lambda m, d: (m.update(format=1), m.pop("digests"), _scale_a_coefficient(m, d)), "format 1 records no digests"),
    (lambda m, d: _scale_a_coefficient(m, d), "sha256 differs"),
    (lambda m, d: m.update(domain="garbage"), "domain: must be an object of ranges"),
    (lambda m, d: m.update(domain={"ranges": {"resolution": [0, "x"]}}), "domain: must be"),
    (lambda m, d: m["calibration"]["residuals"].__setitem__(0, 1e300), "calibration.residuals: must lie within"),
    (lambda m, d: m["calibration"]["distances"].__setitem__(0, 1e300), "calibration.residuals: must lie within"),
])
def test_a_tampered_sidecar_is_one_line(capsys, edit, says):
    _tampered(edit)
    refused(capsys, says, "predict", "--device", "jetson_tx2", "--model", "B1", "--json")


def test_a_sidecar_with_a_key_twice_is_refused(capsys):
    def edit(meta, dst):
        pass

    _tampered(edit)
    path = home() / "predictors" / "jetson_tx2" / "latency_ms" / "v0001" / "meta.json"
    path.write_text(path.read_text()[:-1] + ', "device": "a40_gpu"}')
    refused(capsys, "given twice", "predict", "--device", "jetson_tx2", "--model", "B1")


def test_predict_json_is_strict_json(capsys):
    code, out, _ = run(capsys, "predict", "--device", "jetson_tx2", "--model", "B1", "--json")
    assert code == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))


# ---------------------------------------------------------------------------------------------- caps on flags


CAPS = [
    (("measure", "--model", "B0", "--repeats", "1000000000"), "--repeats: must be an integer in [1, 1,000]"),
    (("measure", "--sample", str(10 ** 12)), "--sample: must be an integer in [0, 100,000]"),
    (("measure", "--model", "B0", "--runs", "10", "--min-runs", "50"), "min-runs: must be at most --runs 10"),
    (("measure", "--model", "B0", "--warmup", str(10 ** 12), "--timeout", "30"), "--warmup: must be an integer in"),
    (("measure", "--model", "B0", "--export-workers", "1000000"), "--export-workers: must be an integer in [1, 256]"),
    (("measure", "--model", "B0", "--campaign", "x" * 100_000), "--campaign: must be 1-200 printable characters"),
    (("measure", "--model", "B0", "--seed", "-1"), "--seed: must be an integer in [0, 4,294,967,295]"),
    (("bundle", "--sample", str(10 ** 9), "--out", "b"), "--sample: must be an integer in [0, 100,000]"),
    (("bundle", "--model", "B0", "--runs", str(10 ** 12), "--out", "b"), "--runs: must be an integer in [3, 100,000]"),
    (("onboard", "--configs", "1000000000"), "configs: must be an integer in [6, 20000]"),
    (("onboard", "--source", "../y"), "source: '../y' is not a device id"),
    (("onboard", "--source", "nosuch-device"), "source: no time predictor of 'nosuch-device'"),
    (("onboard", "--export-workers", "1000000"), "--export-workers: must be an integer in [1, 256]"),
    (("search", "--device", "jetson_tx2", "--seed", "-1", "--study", "s"), "--seed: must be an integer in [0, 4,294,967,295]"),
    (("search", "--device", "jetson_tx2", "--seed", str(2 ** 32), "--study", "s"), "--seed: must be an integer in"),
    (("search", "--device", "jetson_tx2", "--device", "jetson_tx2", "--study", "s", "--trials", "10"),
     "jetson_tx2:latency_ms is given 2 times"),
]


@pytest.mark.parametrize("argv, says", CAPS, ids=[" ".join(a[:3])[:40] for a, _ in CAPS])
def test_flags_are_capped_before_any_work(capsys, tmp_path, argv, says):
    refused(capsys, says, *argv)
    # Nothing was created: no study journal, no bundle folder, no plan, no measurement (the drift check before a
    # search may open the default store, which holds the shipped data only).
    made = [p for p in home().rglob("*") if p.is_file() and not p.name.startswith("store.sqlite")] if home().exists() else []
    assert not made, made
    assert not (tmp_path / "b").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- imports


def _csv_rows(tmp_path, notes: str) -> pathlib.Path:
    path = tmp_path / "r.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "config_hash", "metric", "value", "backend", "notes"])
        w.writerow(["x1", "a" * 64, "latency_ms", "1.0", "onnxruntime", notes])
    return path


def test_a_nul_character_is_refused_at_import_for_every_store(capsys, tmp_path):
    refused(capsys, "r.csv line 2: notes: holds a NUL character", "import", _csv_rows(tmp_path, "a\x00b"),
            "--device", "x1", "--store", tmp_path / "s.sqlite")


def test_a_compressed_import_is_bounded_once_decompressed(capsys, tmp_path, monkeypatch):
    import measured._io as io_mod

    path = tmp_path / "big.csv.gz"
    with gzip.open(path, "wb") as f:  # 1 MiB on one line, a few KB compressed
        f.write(b"device_id,config_hash\n" + b"x" * (io_mod.MAX_LINE_BYTES + 10))
    refused(capsys, "big.csv.gz: a line longer than 1 MiB", "import", path, "--device", "x1")
    monkeypatch.setattr(io_mod, "MAX_IMPORT_BYTES", 4096)  # the shipped data is seeded above: only the reader here
    with gzip.open(path, "wb") as f:
        f.write(b"device_id,config_hash\n" + b"x1,abc\n" * 10_000)
    with pytest.raises(UserError, match="big.csv.gz: more than 0 MiB of data \\(decompressed\\)"):
        io_mod.read_rows(path)


def test_a_foreign_sqlite_file_is_refused_and_left_in_its_journal_mode(capsys, tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE notes (a)")
    refused(capsys, "holds another application's tables (notes)", "data", "summary", "--store", db)
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


# ---------------------------------------------------------------------------------------------- one line, not a traceback


def test_a_lost_database_connection_is_one_line(capsys, monkeypatch):
    import sqlalchemy

    import nas.cli._space as space

    def lost(args):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(space, "cmd_models", lost)
    refused(capsys, "database: server closed the connection unexpectedly; nothing committed is lost", "models")


def test_a_journal_line_nested_200000_deep_is_repaired_not_a_traceback(tmp_path):
    from nas.search._storage import open_storage, repair_journal

    folder = tmp_path / "runs" / "j"
    open_storage(None, folder, create=True)
    import optuna

    optuna.create_study(study_name="j", storage=open_storage(None, folder, create=True))
    journal = folder / "study.journal"
    journal.write_bytes(journal.read_bytes() + b"[" * 200_000 + b"\n")
    note = repair_journal(journal)
    assert "dropped 1 incomplete or unreadable line(s) (line 2" in note
    open_storage(None, folder, create=False)


def test_a_model_too_large_for_the_memory_is_one_line(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import search_spaces._builder as builder

    def out_of_memory(config):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to "
                           "allocate 324000000000 bytes.")

    monkeypatch.setattr(builder, "build_model", out_of_memory)
    refused(capsys, "parameters (", "export", "B0", "--onnx", tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*.onnx*"))
