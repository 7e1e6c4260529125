"""Untrusted command-line input: device ids that would name folders elsewhere, unbounded config files and flag
values are refused before any work, with one line and exit 2; nothing is written."""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys

import pytest

from lowformer_common import MAX_ERROR_LINE_CHARS
from measured import Store
from nas.cli import main
from nas.cli._common import usable_cores
from search_spaces import get_variant


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_exit_2(result, *needles):
    code, out, err = result
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and len(err) < MAX_ERROR_LINE_CHARS + 200, err[:500]
    for n in needles:
        assert n in err, err
    return err


def _clean_csv(path):
    cfg = get_variant("B0").config
    row = dict(config_hash=cfg.hash, metric="latency_ms", value="7.5", backend="onnxruntime", batch="1",
               resolution="224", timestamp="2026-11-21T10:00:00+00:00", config_json=cfg.canonical_json())
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    return path


# ---------------------------------------------------------------------------------------------- device ids

@pytest.mark.parametrize("bad", ["../../trav_escape", "../x", "a/b", "..", ".hidden", "x" * 81, "a b", "dev\\ice"])
def test_path_like_device_ids_are_refused_everywhere(capsys, tmp_path, bad):
    store = tmp_path / "s.sqlite"
    csv_path = _clean_csv(tmp_path / "clean.csv")
    for argv in (
        ["import", csv_path, "--device", bad, "--device-kind", "edge", "--store", store],
        ["predictors", "train", "--device", bad, "--store", store],
        ["measure", "--device", bad, "--model", "B0", "--store", store],
        ["predict", "--device", bad, "--model", "B1"],
        ["predictors", "fewshot", "--device", "jetson_tx2", "--source", bad, "--store", store],
        ["search", "--device", bad, "--trials", "5"],
        ["data", "noise", "--device", bad, "--store", store],
        ["study", "depthwise", "--device", bad],
    ):
        _one_line_exit_2(run(capsys, *argv), "--device" if "--source" not in argv else "--source", "is not a device id")
    assert not store.exists()  # refused before anything opened the store
    assert not any(p.name == "trav_escape" for p in tmp_path.parent.rglob("trav_escape"))


def test_every_existing_device_id_stays_valid(capsys, tmp_path):
    from measured import check_device_id

    for d in ("jetson_tx2", "rpi5_arm_cpu", "a40_gpu", "titan_rtx_gpu", "iphone13", "imagenet1k", "gpu_unspecified",
              "x86_64-amd-epyc-2c-24g", "local", "paper_counts", "oxford_iiit_pets"):
        assert check_device_id(d) == d


def test_a_csv_device_id_column_is_checked(capsys, tmp_path):
    path = _clean_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(open(path)))
    rows[0]["device_id"] = "../../trav_escape"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    store = tmp_path / "s.sqlite"
    err = _one_line_exit_2(run(capsys, "import", path, "--device-kind", "edge", "--store", store),
                           "line 2", "device_id:", "is not a device id")
    assert "trav_escape" in err
    s = Store(store, seed=False)
    assert s.device("../../trav_escape") is None


# ---------------------------------------------------------------------------------------------- config files

def test_config_from_dev_zero_is_refused_without_reading_it(capsys):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _one_line_exit_2(run(capsys, "count", "--config", "/dev/zero"), "/dev/zero", "not a regular file")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing like 3.6 GB


def test_bad_config_files_are_one_line(capsys, tmp_path):
    cases = {
        "latin1.json": (b'{"name": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 13)"),
        "deep.json": (b"[" * 30_000 + b"]" * 30_000, "nested more than 16 levels deep"),
        "nan.json": (b'{"expand_s2": NaN}', "NaN is not a finite JSON number"),
        "twice.json": (b'{"resolution": 224, "resolution": 256}', "key 'resolution' given twice in one object"),
        "two-bases.json": (b'{"base": "B0", "base": "B3"}', "key 'base' given twice in one object"),
        "big.json": (json.dumps({"depths": list(range(2_000_000))}).encode(), "more than 64 KiB"),
    }
    for name, (data, says) in cases.items():
        (tmp_path / name).write_bytes(data)
        _one_line_exit_2(run(capsys, "count", "--config", tmp_path / name), says)
    # A long list within the size cap: the error quotes a few items, not 10,000.
    (tmp_path / "long.json").write_text(json.dumps({"depths": list(range(10_000))}))
    err = _one_line_exit_2(run(capsys, "count", "--config", tmp_path / "long.json"), "depths: must be a list of 5 values")
    assert "(10000 items)" in err and len(err) < 300


def test_error_lines_are_capped_centrally():
    from lowformer_common import UserError
    from search_spaces import ConfigError, LowFormerConfig

    assert len(str(UserError("x" * 6_000_000))) == MAX_ERROR_LINE_CHARS
    with pytest.raises(ConfigError) as e:
        LowFormerConfig.from_dict({"depths": list(range(2_000_000))})
    assert len(str(e.value)) < 200
    with pytest.raises(ConfigError) as e:
        LowFormerConfig.from_dict({"k" * 1_000_000: 1})
    assert len(str(e.value)) <= MAX_ERROR_LINE_CHARS


# ---------------------------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, says", [
    (["search", "--device", "jetson_tx2", "--trials", "99999999999999999999"], "--trials: must be an integer in [1, 10,000,000]"),
    (["search", "--device", "jetson_tx2", "--trials", "0"], "--trials: must be an integer in [1, 10,000,000] (got 0)"),
    (["measure", "--model", "B0", "--batch", "0"], "--batch: must be an integer >= 1 (got 0)"),
    (["bundle", "--model", "B0", "--batch", "-3", "--out", "x"], "--batch: must be an integer >= 1 (got -3)"),
    (["measure", "--model", "B0", "--timeout", "nan"], "--timeout: must be a finite number of seconds > 0, e.g. 900, 900s or 15min (got 'nan')"),
    (["measure", "--model", "B0", "--timeout", "inf"], "--timeout: must be a finite number"),
    (["measure", "--model", "B0", "--timeout", "-1"], "--timeout: must be a finite number"),
    (["measure", "--model", "B0", "--threads", "0"], "--threads: must be an integer >= 1"),
    (["study", "depthwise", "--batch", "0"], "--batch: must be an integer >= 1"),
])
def test_flag_values_are_validated_before_any_work(capsys, tmp_path, argv, says):
    _one_line_exit_2(run(capsys, *argv, *(["--store", tmp_path / "s.sqlite"] if argv[0] == "measure" else [])), says)
    assert not (tmp_path / "s.sqlite").exists()


def test_threads_beyond_the_usable_cores_need_forcing(capsys, monkeypatch):
    n = usable_cores() + 1
    _one_line_exit_2(run(capsys, "measure", "--model", "B0", "--threads", n), f"{n} threads on {usable_cores()} usable cores",
                     "LOWFORMER_NAS_FORCE_THREADS=1")
    monkeypatch.setenv("LOWFORMER_NAS_FORCE_THREADS", "1")
    from nas.cli import build_parser

    args = build_parser().parse_args(["measure", "--model", "B0", "--threads", str(n)])
    assert args.threads == n


def test_measure_device_dotdot_exits_2_in_a_real_process(tmp_path):
    env = dict(os.environ, LOWFORMER_NAS_HOME=str(tmp_path / "home"))
    r = subprocess.run([sys.executable, "-m", "nas", "measure", "--device", "../x", "--model", "B0"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not a device id" in r.stderr and not r.stdout
