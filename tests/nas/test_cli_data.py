import csv
import json

import pandas as pd
import pytest

from measured import Store
from nas.cli import main
from search_spaces import get_variant


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _row(**over):
    cfg = get_variant("B0").config
    r = dict(config_hash=cfg.hash, metric="latency_ms", value="7.5", backend="onnxruntime", batch="1",
             resolution="224", timestamp="2026-11-21T10:00:00+00:00", config_json=cfg.canonical_json())
    r.update(over)
    return r


def test_summary_json_of_the_seeded_store(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, out, err = run(capsys, "data", "summary", "--json", "--store", url)
    rows = json.loads(out)
    assert code == 0 and err == ""
    assert set(rows[0]) == {"device_id", "backend", "metric", "configs", "measurements", "failed", "busy", "flagged"}
    tx2 = next(r for r in rows if r["device_id"] == "jetson_tx2" and r["metric"] == "latency_ms")
    assert tx2["measurements"] > 30 and tx2["configs"] > 10 and tx2["flagged"] == 1
    code, out, _ = run(capsys, "data", "summary", "--store", url)
    assert code == 0 and "jetson_tx2" in out and "ONNX+TensorRT" in out


def test_import_then_summary_and_export(capsys, tmp_path):
    url = str(tmp_path / "s.sqlite")  # a plain path is a SQLite store
    path = _csv(tmp_path / "m.csv", [_row(), _row(value="7.6")])
    code, out, err = run(capsys, "import", str(path), "--device", "my_pi", "--device-kind", "edge", "--store", url,
                         "--json")
    rep = json.loads(out)
    assert code == 0 and (rep["rows"], rep["inserted"], rep["devices_created"]) == (2, 2, ["my_pi"])
    code, out, _ = run(capsys, "import", str(path), "--device", "my_pi", "--store", url)
    assert code == 0 and "0 inserted, 2 already stored" in out
    code, out, _ = run(capsys, "data", "summary", "--json", "--store", url)
    mine = [r for r in json.loads(out) if r["device_id"] == "my_pi"]
    assert mine == [dict(device_id="my_pi", backend="onnxruntime", metric="latency_ms", configs=1, measurements=2,
                         failed=0, busy=0, flagged=0)]
    code, out, _ = run(capsys, "data", "export", str(tmp_path / "o.parquet"), "--device", "my_pi", "--store", url)
    assert code == 0 and out.startswith("2 measurements")
    assert sorted(pd.read_parquet(tmp_path / "o.parquet")["value"]) == [7.5, 7.6]


def test_import_errors_exit_2_with_one_line(capsys, tmp_path):
    url = str(tmp_path / "s.sqlite")
    path = _csv(tmp_path / "bad.csv", [_row(device_id="jetson_tx2"), _row(device_id="jetson_tx2", metric="speed")])
    code, out, err = run(capsys, "import", str(path), "--store", url)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"lowformer-nas: error: {path} line 3: metric: must be one of")
    before = Store(url).count()
    code, _, err = run(capsys, "import", str(_csv(tmp_path / "d.csv", [_row(device_id="nowhere")])), "--store", url)
    assert code == 2 and "line 2: device_id: unknown device 'nowhere'" in err and err.count("\n") == 1
    assert Store(url).count() == before
    with pytest.raises(SystemExit) as e:
        main(["import", str(path), "--device-kind", "toaster", "--store", url])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "invalid choice" in err
    code, _, err = run(capsys, "data", "summary", "--store", "mysql://x@y/z")
    assert code == 2 and err.count("\n") == 1 and "unsupported database" in err


XEON = dict(device_name="Intel(R) Xeon(R) Processor", device_kind="cpu",
            device_fingerprint=json.dumps({"arch": "x86_64", "cpu_model": "Intel(R) Xeon(R) Processor"}))


def test_import_from_another_machine_is_refused_unless_forced(capsys, tmp_path):
    """36 rows saying "Intel(R) Xeon(R) Processor" entered the Jetson TX2's data and its predictor evaluation."""
    url = str(tmp_path / "s.sqlite")
    path = _csv(tmp_path / "xeon.csv", [_row(**XEON), _row(value="7.6", **XEON)])
    before = Store(url).count()
    for argv in (["import", str(path), "--device", "jetson_tx2"],
                 ["predictors", "update", "--device", "jetson_tx2", "--measurements", str(path)]):
        code, out, err = run(capsys, *argv, "--store", url)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"lowformer-nas: error: {path} line 2: device_fingerprint: measured on 'Intel(R) Xeon(R) "
                              "Processor, x86_64', which does not name a 'jetson'; not device 'jetson_tx2'")
        assert "--force" in err and Store(url).count() == before
    code, out, err = run(capsys, "import", str(path), "--device", "jetson_tx2", "--force", "--store", url)
    assert code == 0 and "2 inserted" in out
    notes = Store(url).measurements(device="jetson_tx2", source="import")["notes"]
    assert len(notes) == 2 and all(n.startswith("imported with --force: measured on 'Intel(R) Xeon(R)") for n in notes)


def test_predictors_update_takes_force_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LOWFORMER_NAS_HOME", str(tmp_path / "home"))
    url = str(tmp_path / "s.sqlite")
    path = _csv(tmp_path / "xeon.csv", [_row(value="7.7", **XEON)])
    code, out, err = run(capsys, "predictors", "update", "--device", "jetson_tx2", "--measurements", str(path),
                         "--force", "--store", url)
    assert code == 0 and "1 inserted" in out and "saved" in out, err
    notes = Store(url).measurements(device="jetson_tx2", source="import")["notes"]
    assert list(notes) and notes.iloc[0].startswith("imported with --force: measured on 'Intel(R) Xeon(R)")


def test_data_export_is_now_data_dump_and_the_old_name_still_works(capsys, tmp_path):
    from nas.cli import main

    assert main(["data", "dump", str(tmp_path / "a.csv"), "--device", "a40_gpu"]) == 0
    assert "data export" not in capsys.readouterr().err
    assert main(["data", "export", str(tmp_path / "b.csv"), "--device", "a40_gpu"]) == 0
    assert "`data export` is now `data dump`" in capsys.readouterr().err
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
