import pandas as pd
import pytest

pytest.importorskip("torch")  # nas.studies builds toy models

from measured._records import Architecture, Device, Measurement, out_of_space_hash  # noqa: E402
from nas.studies import DEVICE_PREFERENCE, PaperContext, PaperData, preferred_devices  # noqa: E402


def row(model, device, metric, value, note="x", resolution=224, flag=None):
    return dict(model=model, variant_note=note, device=device, metric=metric, value=value, resolution=resolution,
                flag=flag)


CSV_ROWS = pd.DataFrame([
    # The paper's own figures (Table 1, toy#1 and toy#2; Table 8 high-res attention) as the shipped file has them,
    row("toy#1", "rpi5_arm_cpu", "latency_ms", 12.58),
    row("toy#2", "rpi5_arm_cpu", "latency_ms", 17.71),
    row("toy#1", "a40_gpu", "throughput_img_s", 12722),
    dict(model="LowFormer-B1", variant_note="B1 ablation: high-res attention", device="a40_gpu",
         metric="pct_change_vs_baseline", value=-11, resolution=224, flag=None),
    dict(model="LowFormer-B1", variant_note="B1 ablation: high-res attention", device="rpi5_arm_cpu",
         metric="pct_change_vs_baseline", value=8, resolution=224, flag=None),
    # and a flagged row (a marker value: flagged rows must never be returned).
    row("toy#3", "rpi5_arm_cpu", "latency_ms", 1.0, flag="anomaly"),
])


def test_closest_device_by_kind():
    assert preferred_devices("cpu", "latency_ms")[0] == "rpi5_arm_cpu"
    assert preferred_devices("gpu", "latency_ms")[0] == "titan_rtx_gpu"
    assert preferred_devices("gpu", "throughput_img_s")[0] == "a40_gpu"
    assert all(len(set(v)) == 5 for v in DEVICE_PREFERENCE.values())


def test_lookups_from_the_file():
    p = PaperData(None, CSV_ROWS, "file.csv")
    ctx = PaperContext(p, preferred_devices("cpu", "latency_ms"))
    assert p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 224) == 12.58
    assert p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 160) is None
    assert p.toy("toy#3", "rpi5_arm_cpu", "latency_ms", 224) is None  # flagged rows are never used
    assert ctx.toy_time_ms("toy#1", "a40_gpu", 224) == pytest.approx(1000 / 12722)
    assert p.variant("B1-highres-att", "rpi5_arm_cpu", "pct_change_vs_baseline", 224) == 8
    assert p.is_throughput_device("a40_gpu") and not p.is_throughput_device("rpi5_arm_cpu")
    # -11 % throughput on the A40 is a time ratio of 1 / 0.89; +8 % latency is 1.08.
    assert ctx.pct_to_time_ratio(-11, "a40_gpu") == pytest.approx(1 / 0.89)
    assert ctx.pct_to_time_ratio(8, "rpi5_arm_cpu") == pytest.approx(1.08)
    assert ctx.first(lambda d: p.toy("toy#1", d, "throughput_img_s", 224)) == ("a40_gpu", 12722)
    assert ctx.note_fallback("a40_gpu") and ctx.note_fallback("rpi5_arm_cpu") is None
    assert p.origin() == "file.csv"


def test_the_store_comes_first(tmp_path):
    from measured._store import Store

    store = Store(tmp_path / "s.sqlite", seed=False)
    store.add_device(Device("rpi5_arm_cpu", "Raspberry Pi 5", "edge", source="paper"))
    h = out_of_space_hash("toy", "toy#1", 224)
    # 12.5 is a marker (the file says 12.58): it tells which source answered.
    m = Measurement("rpi5_arm_cpu", h, "latency_ms", 12.5, "onnxruntime", 1, 224, source="paper")
    store.add_measurements([m], archs=[Architecture(h, "toy", "toy#1", None, 224, in_space=False)])
    p = PaperData.load(store)
    p.csv_rows = CSV_ROWS  # whatever the shipped file says, the store answers first
    assert p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 224) == 12.5
    assert "store" in p.origin()
    assert p.toy("toy#2", "rpi5_arm_cpu", "latency_ms", 224) == 17.71  # not in the store: the file
    assert "rpi5_arm_cpu" in p.devices()


def test_nothing_available():
    p = PaperData(None, None)
    assert not p.available and p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 224) is None
    assert "no paper numbers" in p.origin()
