"""The paper's measurements as shipped data: mapping, provenance, flags, seeding."""

from __future__ import annotations

import csv
import json
import pathlib

import pandas as pd
import pytest

from measured import ACCURACY_DEVICE, Store, out_of_space_hash
from measured._paper import DEVICES_FILE, PAPER_CSV, ROWS_FILE, convert, dataset_slug, write
from measured._store import DATA_DIR, load_manifest
from search_spaces import get_variant

SHARED = pathlib.Path("/work/shared/data")
MEASURING = ("a40_gpu", "titan_rtx_gpu", "jetson_tx2", "rpi5_arm_cpu", "iphone13")


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("paper") / "store.sqlite")


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / ROWS_FILE, dtype=str, keep_default_na=False)


def test_manifest_lists_the_paper_dataset():
    entries = load_manifest()
    assert entries[0]["file"] == ROWS_FILE and entries[0]["devices"] == DEVICES_FILE
    for e in entries:
        assert (DATA_DIR / e["file"]).exists()


def test_shipped_data_loads(paper_store, shipped):
    assert len(shipped) > 800 and set(paper_store.seeded()) >= {ROWS_FILE}
    df = paper_store.measurements(source="paper", status=None, include_flagged=True)
    assert len(df) == len(shipped) and df["id"].is_unique
    assert set(df["source"]) == {"paper"} and df["source_ref"].str.contains(r"; paper_measurements\.csv line \d+$").all()
    assert (df["versions"].map(json.loads) == {"source": "IJCV 2026 paper"}).all()


def test_every_measuring_device_has_timings(paper_store):
    devices = {d.device_id: d for d in paper_store.devices()}
    assert {devices[d].kind for d in MEASURING} == {"gpu", "edge", "mobile"}
    assert devices["gpu_unspecified"].kind == "gpu" and devices[ACCURACY_DEVICE].kind == "dataset"
    assert {"coco2017", "ade20k", "gpr1200"} <= set(devices)
    assert devices["jetson_tx2"].protocol["framework"] == "ONNX+TensorRT"
    assert devices["a40_gpu"].protocol["batch"] == 200 and devices["a40_gpu"].spec["max_power_w"] == 300
    for d in MEASURING:
        metric = "throughput_img_s" if d == "a40_gpu" else "latency_ms"
        rows = paper_store.measurements(device=d, metric=metric)
        assert len(rows) >= 30, d
        assert (rows["value"] > 0).all()


def test_lowformer_rows_map_to_variant_configs(paper_store):
    b1 = get_variant("B1").config.hash
    tx2 = paper_store.measurements(device="jetson_tx2", metric="latency_ms")
    b1_rows = tx2[tx2.config_hash == b1]
    # Tables 7, 8 (ablation baseline), 9 and 16 each print B1's TX2 latency.
    assert len(b1_rows) == 4 and set(b1_rows["name"]) == {"B1"} and b1_rows["in_space"].all()
    assert set(b1_rows["backend"]) == {"ONNX+TensorRT"} and set(b1_rows["batch"]) == {1}
    assert set(b1_rows["warmup"]) == {5} and set(b1_rows["n"]) == {200}
    hashes = set(tx2["config_hash"])
    for name in ("B0", "B1.5", "B2", "B3", "B3r192", "B1-unfused", "B1-relu-linear", "B1-mhsa", "B1-highres-att",
                 "B1-no-compression"):
        assert get_variant(name).config.hash in hashes, name
    # The row's resolution: B3 at 384 px (Table 11), high-res attention at 1024 px (Section 5.2).
    a40 = paper_store.measurements(device="a40_gpu", metric="throughput_img_s")
    assert get_variant("B3").config.with_(resolution=384).hash in set(a40["config_hash"])
    rel = paper_store.measurements(device="jetson_tx2", metric="pct_change_vs_baseline")
    assert get_variant("B1-highres-att").config.with_(resolution=1024).hash in set(rel["config_hash"])


def test_backbones_and_task_models_stay_out_of_the_space(paper_store):
    df = paper_store.measurements(status=None, include_flagged=True)
    lf = df[df.family == "LowFormer"]
    classifier_hashes = {h for h in lf[lf.in_space]["config_hash"]}
    out = lf[~lf.in_space]
    assert set(out["name"]) >= {"LowFormer-B1 backbone", "LowFormer-Track"}
    assert not classifier_hashes & set(out["config_hash"])
    bb = out[out.name == "LowFormer-B1 backbone"]
    assert set(bb["resolution"]) == {512} and set(bb["device_id"]) == {"a40_gpu", "jetson_tx2"}
    assert (bb["config_hash"] == out_of_space_hash("LowFormer", "LowFormer-B1 backbone", 512)).all()
    assert set(df[df.metric == "map_pct"]["device_id"]) == {"coco2017", "gpr1200"}
    assert set(df[df.metric == "top1_pct"]["device_id"]) >= {ACCURACY_DEVICE, "oxford102_flowers"}


def test_out_of_space_counts_come_from_the_paper_rows(paper_store):
    df = paper_store.measurements(status=None, include_flagged=True)
    macs = df[(df.metric == "macs_m") & (~df.in_space)]
    assert len(macs) > 20 and set(macs["device_id"]) == {"paper_counts"}
    for r in macs.itertuples():
        assert r.macs == round(r.value * 1e6)
    toy = df[df.family == "toy"]
    assert not toy["in_space"].any() and len(toy) > 200
    # In-space architectures count their own params/MACs (search_spaces.count), not the printed figures.
    b1 = paper_store.architecture(get_variant("B1").config.hash)
    assert (b1.params, b1.macs) == (17936312, 1410980096)


def test_flagged_rows_are_kept_and_left_out_by_default(paper_store):
    flagged = paper_store.measurements(status=None, include_flagged=True).dropna(subset=["flag"])
    assert set(flagged["flag"]) == {"anomaly", "suspect"} and len(flagged) == 3
    assert not paper_store.measurements()["flag"].notna().any()
    tx2 = paper_store.measurements(device="jetson_tx2", metric="latency_ms")
    assert flagged.iloc[0]["id"] not in set(tx2["id"])


def test_dataset_slugs():
    assert dataset_slug("ImageNet-1K") == ACCURACY_DEVICE
    assert [dataset_slug(s) for s in ("COCO 2017", "ADE20K", "Oxford-IIIT Pets", "GOT10K-val", "TREK-150")] == [
        "coco2017", "ade20k", "oxford_iiit_pets", "got10k_val", "trek150"]


@pytest.mark.skipif(not (SHARED / PAPER_CSV).exists(), reason=f"needs the paper's CSV at {SHARED / PAPER_CSV} (the project's shared/ data); copy it there to run")
def test_shipped_files_are_what_the_script_writes(tmp_path, shipped):
    # Same timestamp as the shipped file: then the bytes must be identical (the file is not hand-edited).
    conv = convert(SHARED, timestamp=shipped["timestamp"].iloc[0])
    write(conv, tmp_path)
    for name in (ROWS_FILE, DEVICES_FILE):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name
    # Every value of the paper's table is stored verbatim.
    with open(SHARED / PAPER_CSV, newline="", encoding="utf-8") as f:
        source = list(csv.DictReader(f))
    assert len(source) == len(shipped)
    for src, row in zip(source, shipped.itertuples()):
        assert float(src["value"]) == float(row.value) and src["metric"] == row.metric
        assert (src["flag"] or "") == row.flag


@pytest.mark.skipif(not (SHARED / PAPER_CSV).exists(), reason=f"needs the paper's CSV at {SHARED / PAPER_CSV} (the project's shared/ data); copy it there to run")
def test_regenerating_does_not_duplicate(tmp_path, paper_store):
    conv = convert(SHARED, timestamp="2030-01-01T00:00:00+00:00")
    write(conv, tmp_path)
    n = paper_store.count()
    report = paper_store.import_file(tmp_path / ROWS_FILE)
    assert report.inserted == 0 and paper_store.count() == n
