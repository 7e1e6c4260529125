"""`measure` shows what it measured: a table (config, value, p10-p90, runs, CI, when stored), also for configs
stored before; `--json` one object per config."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0 && pip install -e '.[measure]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[measure]'")
pytestmark = pytest.mark.torch

MEASURE = [sys.executable, "-m", "nas", "measure", "--sample", "2", "--seed", "3", "--resolutions", "32", "--runs", "3",
           "--warmup", "1", "--target-ci", "0", "--busy-threshold", "100", "--device", "test-dev",
           "--export-workers", "1"]  # one measuring process: what is shown does not depend on the export phase


def test_measure_prints_its_values_and_json(seeded_store):
    store = ["--store", str(seeded_store)]
    r = subprocess.run(MEASURE + store + ["--json"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)
    assert len(rows) == 2 and all(x["status"] == "ok" and x["value"] > 0 and x["runs"] == 3 for x in rows)
    assert {x["stored"] for x in rows} == {"now"} and all(x["unit"] == "ms" and len(x["id"]) == 12 for x in rows)
    assert "CI95" in r.stderr  # the table, on stderr beside the JSON
    again = subprocess.run(MEASURE + store, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "2 already stored" in again.stdout
    for x in rows:  # a rerun still shows the stored values
        line = next(ln for ln in again.stdout.splitlines() if x["id"] in ln)
        assert f"{x['value']:.3f}" in line and "stored before" in line
