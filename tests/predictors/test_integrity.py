"""Tampered, truncated or relabelled predictor directories are refused with one line; none crashes the process
or yields an impossible prediction."""

from __future__ import annotations

import json
import pathlib
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nas.cli import main
from predictors import (
    SHIPPED_DIR,
    AdditiveModel,
    PredictorError,
    TrainedPredictor,
    available_predictors,
    load_predictor,
    load_predictor_dir,
    load_version,
    predictor_versions,
    save_version,
)
from predictors._lgbm import check_model_text
from predictors._persist import add_digests, upgrade_sidecar
from search_spaces import get_variant

LGBM = SHIPPED_DIR / "x86_64-amd-epyc-2c-24g" / "latency_ms" / "v0001"
ADDITIVE = SHIPPED_DIR / "jetson_tx2" / "latency_ms" / "v0001"
B1 = get_variant("B1").config


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _copy(src: pathlib.Path, home: pathlib.Path, device: str | None = None) -> pathlib.Path:
    """A copy of a shipped version as the user's predictor (home = $LOWFORMER_NAS_HOME of the test)."""
    device = device or src.parent.parent.name
    dst = home / "predictors" / device / src.parent.name / "v0001"
    shutil.copytree(src, dst)
    return dst


def _legacy(path: pathlib.Path) -> None:
    """Make a version look as it did before digests (format 1): the loader's structural checks stand alone."""
    meta = json.loads((path / "meta.json").read_text())
    meta.pop("digests")
    meta["format"] = 1
    (path / "meta.json").write_text(json.dumps(meta))


def _edit_model_json(path: pathlib.Path, edit) -> None:
    doc = json.loads((path / "model.json").read_text())
    edit(doc)
    (path / "model.json").write_text(json.dumps(doc))


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"  # the isolated $LOWFORMER_NAS_HOME (tests/conftest.py)


def test_every_shipped_predictor_records_digests_of_its_files():
    for device, metric in available_predictors():
        for v in predictor_versions(device, metric):
            meta = json.loads((pathlib.Path(v["path"]) / "meta.json").read_text())
            files = sorted(p.name for p in pathlib.Path(v["path"]).iterdir() if p.name != "meta.json")
            assert meta["format"] == 2 and sorted(meta["digests"]) == files, v["path"]
            assert meta["config_identity"] == 2


def test_saved_versions_carry_digests_and_load(tmp_path, paper_data):
    data = paper_data("jetson_tx2")
    est = AdditiveModel().fit(data.X, data.y)
    meta = {"device": "dev", "metric": "latency_ms", "model_type": "additive", "feature_schema": {"hash": est.schema_hash_}}
    path = save_version(tmp_path / "dev" / "latency_ms", est, meta)
    saved = json.loads((path / "meta.json").read_text())
    assert saved["format"] == 2 and set(saved["digests"]) == {"model.json"} and saved["config_identity"] == 2
    load_version(path)
    with pytest.raises(PredictorError, match="saved under <predictors>/dev/latency_ms"):
        save_version(tmp_path / "other" / "latency_ms", est, meta)
    with pytest.raises(PredictorError, match="is not a device id"):
        save_version(tmp_path / ".." / "latency_ms", est, {**meta, "device": ".."})


@pytest.mark.parametrize("legacy", [False, True], ids=["digests", "format-1"])
def test_truncated_lightgbm_model_is_one_line_not_a_crash(home, capsys, legacy):
    dst = _copy(LGBM, home)
    if legacy:
        _legacy(dst)
    text = (dst / "model.txt").read_text()
    (dst / "model.txt").write_text(text[: len(text) // 2])
    code, out, err = run(capsys, "predict", "--device", "x86_64-amd-epyc-2c-24g", "--model", "B1")
    assert code == 2 and err.count("\n") == 1
    # Format 1 (no digests) is refused before anything is read: verification is never skipped.
    assert ("model.txt: sha256 differs" in err) if not legacy else ("format 1 records no digests" in err)


def test_lightgbm_text_is_checked_before_lightgbm_sees_it():
    text = (LGBM / "model.txt").read_text()
    check_model_text(text)
    rng = random.Random(0)
    for cut in sorted(rng.sample(range(len(text) - 10), 40)) + [len(text) - 30]:
        with pytest.raises(PredictorError, match="^model.txt: "):
            check_model_text(text[:cut])
    lines = text.split("\n")
    leaf = next(i for i, line in enumerate(lines) if line.startswith("leaf_value="))
    edits = {
        "a leaf of -280 (a prediction of 2.6e-124 ms)": ("leaf_value=", "leaf_value=-280 " + lines[leaf].split("=")[1].split(" ", 1)[1]),
        "a child index out of range": ("left_child=", "left_child=999" + lines[leaf - 3][len("left_child=1"):]),
        "a feature index out of range": ("split_feature=", "split_feature=400" + lines[leaf - 8][len("split_feature=228"):]),
        "a NaN threshold": ("threshold=", "threshold=nan" + lines[leaf - 6][lines[leaf - 6].index(" "):]),
    }
    for what, (key, new) in edits.items():
        i = next(i for i, line in enumerate(lines) if line.startswith(key))
        changed = lines[:i] + [new] + lines[i + 1:]
        with pytest.raises(PredictorError, match="^model.txt: tree 0: "):
            check_model_text("\n".join(changed))


_CHILD = """
import sys, lightgbm as lgb, numpy as np
from predictors._lgbm import check_model_text
from predictors import PredictorError
X = np.ones((1, 336))
passed = 0
for text in sys.stdin.read().split("\\n<<<END>>>\\n"):
    try:
        check_model_text(text)
    except PredictorError:
        continue
    passed += 1
    try:
        lgb.Booster(model_str=text).predict(X)
    except Exception:
        pass
print("survived", passed)
"""


def test_mutated_lightgbm_texts_that_pass_the_check_do_not_crash_lightgbm():
    """Random edits of the shipped model (digits flipped in place, tokens replaced): whatever the check lets
    through reaches LightGBM in a child process, which must survive all of them."""
    text = (LGBM / "model.txt").read_text()
    lines = text.split("\n")
    rng = random.Random(1)
    keys = ("num_leaves", "split_feature", "threshold", "decision_type", "left_child", "right_child", "leaf_value",
            "shrinkage", "tree_sizes", "max_feature_idx")
    tree_lines = [i for i, line in enumerate(lines) if line.partition("=")[0] in keys]
    mutants = []
    for k in range(80):
        i = rng.choice(tree_lines)
        key, _, value = lines[i].partition("=")
        if k % 3:  # same length: tree_sizes still hold, so only the values' checks stand in the way
            digits = [j for j, ch in enumerate(value) if ch.isdigit()]
            j = rng.choice(digits)
            value = value[:j] + str(rng.randrange(10)) + value[j + 1:]
        else:
            tokens = value.split()
            tokens[rng.randrange(len(tokens))] = rng.choice(["-1", "0", "14", "-16", "1e300", "336", "x", "", "-99"])
            value = " ".join(tokens)
        mutants.append("\n".join(lines[:i] + [f"{key}={value}"] + lines[i + 1:]))
    r = subprocess.run([sys.executable, "-c", _CHILD], input="\n<<<END>>>\n".join(mutants), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stderr[-2000:])
    assert int(r.stdout.split()[-1]) >= 20  # the test reached LightGBM with many edited models


@pytest.mark.parametrize("legacy", [False, True], ids=["digests", "format-1"])
def test_negative_or_non_finite_additive_coefficients_are_refused(home, legacy):
    dst = _copy(ADDITIVE, home)
    if legacy:
        _legacy(dst)
    _edit_model_json(dst, lambda d: d["fitted"]["coef_"].__setitem__("macs_conv", -100.0))
    with pytest.raises(PredictorError) as e:
        load_predictor("jetson_tx2")
    msg = str(e.value)
    assert "\n" not in msg and ("sha256 differs" in msg if not legacy else "format 1 records no digests" in msg)
    if legacy:  # the structural checks behind the digests, on a version whose digests were added afterwards
        add_digests(dst)
        with pytest.raises(PredictorError, match="coefficient 'macs_conv' is -100"):
            load_predictor("jetson_tx2")
        for bad in ("NaN", "Infinity", "-Infinity"):
            raw = (ADDITIVE / "model.json").read_text().replace('"macs_conv": ', f'"macs_conv": {bad}, "_was": ', 1)
            (dst / "model.json").write_text(raw)
            add_digests(dst)
            with pytest.raises(PredictorError, match=f"{bad.lstrip('-')} is not a finite JSON number"):
                load_predictor("jetson_tx2")


def test_impossible_predictions_are_refused(paper_data):
    data = paper_data("jetson_tx2")
    est = AdditiveModel().fit(data.X, data.y)
    pred = TrainedPredictor(est, {"device": "jetson_tx2", "metric": "latency_ms", "model_type": "additive"})
    assert pred.predict_one(B1) > 0
    est.coef_ = -est.coef_  # what a coefficient of -100 did: a front of negative latencies
    with pytest.raises(PredictorError, match=r"predicted -[0-9.e+]+ ms per image, which no network takes"):
        pred.predict_one(B1)
    est.coef_ = np.full_like(est.coef_, np.nan)
    with pytest.raises(PredictorError, match="predicted nan"):
        pred.predict([B1])
    est.coef_ = np.full_like(est.coef_, 1e-140)
    with pytest.raises(PredictorError, match="which no network takes"):
        pred.predict([B1])


def test_a_sidecar_of_another_device_or_metric_is_refused(home):
    dst = _copy(ADDITIVE, home, device="rpi5_arm_cpu")  # the TX2 predictor, moved under rpi5
    with pytest.raises(PredictorError, match="is a jetson_tx2/latency_ms predictor but lives under rpi5_arm_cpu/latency_ms"):
        load_predictor("rpi5_arm_cpu")
    meta = json.loads((dst / "meta.json").read_text())
    meta["device"] = "rpi5_arm_cpu"  # relabelled in the sidecar too: the device now matches, the digests still do
    (dst / "meta.json").write_text(json.dumps(meta))
    assert load_predictor("rpi5_arm_cpu").device == "rpi5_arm_cpu"  # (it is the user's own file to relabel)
    meta["metric"] = "throughput_img_s"
    (dst / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="is a rpi5_arm_cpu/throughput_img_s predictor but lives under"):
        load_predictor_dir(dst)


def test_added_or_missing_files_are_refused(home):
    dst = _copy(LGBM, home)
    (dst / "extra.txt").write_text("tree\n")
    with pytest.raises(PredictorError, match="extra.txt: not listed in meta.json's digests"):
        load_predictor_dir(dst)
    (dst / "extra.txt").unlink()
    (dst / "model.txt").unlink()
    with pytest.raises(PredictorError, match="model.txt: listed in meta.json's digests but missing"):
        load_predictor_dir(dst)


def test_truncated_sidecar_is_listed_and_refused_in_one_line(home, capsys):
    dst = _copy(ADDITIVE, home)
    text = (dst / "meta.json").read_text()
    (dst / "meta.json").write_text(text[: len(text) // 3])
    code, out, err = run(capsys, "predictors", "list")
    assert code == 0 and err == "" and "unreadable" in out
    code, out, err = run(capsys, "predictors", "list", "--json")
    assert code == 0 and any(v.get("problem") for r in json.loads(out) for v in r["versions"])
    code, _, err = run(capsys, "predict", "--device", "jetson_tx2", "--model", "B1")
    assert code == 2 and err.count("\n") == 1 and "meta.json: unreadable predictor file" in err


def test_oversized_files_are_not_read(home, monkeypatch):
    from predictors import _persist

    dst = _copy(ADDITIVE, home)
    monkeypatch.setitem(_persist.MAX_BYTES, "model.json", 100)
    with pytest.raises(PredictorError, match="model.json: larger than 0 MiB"):
        load_predictor_dir(dst)


def test_predictors_written_before_identity_2_still_load_with_mapped_hashes(home):
    old = B1.with_(fusion_threshold=200)
    dst = _copy(ADDITIVE, home)
    meta = json.loads((dst / "meta.json").read_text())
    meta["training_data"]["config_hashes"] = sorted([old.legacy_hash, B1.hash])
    # What such a sidecar had: no identity, no digests, no calibration (intervals came with identity 2).
    for k in ("config_identity", "config_identity_upgrade", "digests", "calibration"):
        meta.pop(k, None)
    meta["format"] = 1
    (dst / "meta.json").write_text(json.dumps(meta))
    up = upgrade_sidecar(meta, known={old.legacy_hash: old.hash})
    assert up["training_data"]["config_hashes"] == [B1.hash] and up["config_identity_upgrade"]["merged"] == 1
    with pytest.raises(PredictorError, match="format 1 records no digests of its model files; add them"):
        load_predictor("jetson_tx2")  # format 1, no digests: never read unverified
    add_digests(dst)
    assert json.loads((dst / "meta.json").read_text())["format"] == 2
    p = load_predictor("jetson_tx2")  # hashes mapped from known configs
    assert p.meta["config_identity"] == 2 and p.predict_one(B1) > 0
    load_predictor_dir(dst)


def test_paths_from_a_device_id_stay_inside_the_predictors_folder(home, tmp_path, paper_data):
    outside = tmp_path / "elsewhere"
    _copy(ADDITIVE, outside)  # a predictor outside the predictors folder ...
    (home / "predictors").mkdir(parents=True)
    (home / "predictors" / "jetson_tx2").symlink_to(outside / "predictors" / "jetson_tx2")  # ... linked into it
    with pytest.raises(PredictorError, match="resolves outside its predictors folder"):
        load_predictor("jetson_tx2")
    data = paper_data("jetson_tx2")
    est = AdditiveModel().fit(data.X, data.y)
    meta = {"device": "jetson_tx2", "metric": "latency_ms", "model_type": "additive",
            "feature_schema": {"hash": est.schema_hash_}}
    with pytest.raises(PredictorError, match="resolves outside .* refusing to write there"):
        save_version(home / "predictors" / "jetson_tx2" / "latency_ms", est, meta)
    assert [p.name for p in (outside / "predictors" / "jetson_tx2" / "latency_ms").iterdir()] == ["v0001"]
