"""Edge bundles: the standalone runner measures the ONNX files here with onnxruntime, and its CSV imports."""

import ast
import csv
import json
import os
import subprocess
import sys

import pytest

from measured._bundle import RUNNER

pytestmark = pytest.mark.torch


def test_runner_is_python38_and_standalone():
    src = open(RUNNER, encoding="utf-8").read()
    tree = ast.parse(src, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert imported - stdlib <= {"numpy", "onnxruntime", "tensorrt", "cuda"}


def test_bundle_run_import(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bundle"
    cli = [sys.executable, "-m", "nas"]
    r = subprocess.run(cli + ["bundle", "--model", "B0", "--sample", "1", "--resolutions", "32", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["models"]) == 2 and (out / "run_bundle.py").exists()

    results = tmp_path / "results.csv"
    run = [sys.executable, str(out / "run_bundle.py"), "--out", str(results), "--runs", "3", "--warmup", "1",
           "--busy-threshold", "100"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(results)))
    assert [row["status"] for row in rows] == ["ok", "ok"] and all(float(row["value"]) > 0 for row in rows)
    # Running it again resumes: nothing left to measure.
    r = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "0 models to measure (2 already" in r.stdout and len(list(csv.DictReader(open(results)))) == 2

    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    r = subprocess.run(cli + ["import", str(results), "--device", "test-pi", "--store", store],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from measured import Store

    df = Store(store).measurements(device="test-pi")
    assert len(df) == 2 and set(df["source"]) == {"bundle"} and set(df["config_hash"]) == {m["hash"] for m in manifest["models"]}
    dev = Store(store).device("test-pi")
    assert dev.fingerprint.get("arch") and dev.kind == "edge"


def test_corrupt_model_file_is_a_failed_row(tmp_path):
    pytest.importorskip("onnxruntime")
    from measured._bundle import write_bundle
    from measured._campaign import Job
    from search_spaces import get_variant

    out = tmp_path / "b"
    m = write_bundle([Job(get_variant("B0").config.with_(resolution=32), "B0")], str(out), progress=False)
    with open(out / m["models"][0]["file"], "ab") as f:
        f.write(b"garbage")
    r = subprocess.run([sys.executable, str(out / "run_bundle.py"), "--out", str(tmp_path / "r.csv"), "--runs", "3"],
                       capture_output=True, text=True, timeout=120)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert r.returncode == 0 and rows[0]["status"] == "failed" and "sha256 mismatch" in rows[0]["reason"]
    assert os.path.getsize(tmp_path / "r.csv") > 0
