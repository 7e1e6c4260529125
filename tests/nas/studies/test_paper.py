import pytest

pytest.importorskip("torch")  # nas.studies builds toy models

from nas.studies import DEVICE_PREFERENCE, PaperContext, PaperData, preferred_devices  # noqa: E402
from search_spaces import get_variant  # noqa: E402
from tests.nas.studies.conftest import paper_value  # noqa: E402


def test_closest_device_by_kind():
    assert preferred_devices("cpu", "latency_ms")[0] == "rpi5_arm_cpu"
    assert preferred_devices("gpu", "latency_ms")[0] == "titan_rtx_gpu"
    assert preferred_devices("gpu", "throughput_img_s")[0] == "a40_gpu"
    assert all(len(set(v)) == 5 for v in DEVICE_PREFERENCE.values())


def test_lookups_from_the_store(paper_store, paper_rows):
    p = PaperData.load(paper_store)
    ctx = PaperContext(p, preferred_devices("cpu", "latency_ms"))
    toy1 = paper_value(paper_rows, "toy#1", "rpi5_arm_cpu", "latency_ms", 224)
    assert p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 224) == toy1
    assert p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 160) is None
    thr = paper_value(paper_rows, "toy#1", "a40_gpu", "throughput_img_s", 224)
    assert ctx.toy_time_ms("toy#1", "a40_gpu", 224) == pytest.approx(1000 / thr)
    h = get_variant("B1-highres-att").config.hash
    pct = paper_value(paper_rows, None, "rpi5_arm_cpu", "pct_change_vs_baseline", config_hash=h)
    assert p.variant("B1-highres-att", "rpi5_arm_cpu", "pct_change_vs_baseline", 224) == pct
    assert p.is_throughput_device("a40_gpu") and not p.is_throughput_device("rpi5_arm_cpu")
    assert ctx.pct_to_time_ratio(-11, "a40_gpu") == pytest.approx(1 / 0.89)
    assert ctx.pct_to_time_ratio(8, "rpi5_arm_cpu") == pytest.approx(1.08)
    assert ctx.first(lambda d: p.toy("toy#1", d, "throughput_img_s", 224)) == ("a40_gpu", thr)
    assert ctx.note_fallback("a40_gpu") and ctx.note_fallback("rpi5_arm_cpu") is None
    assert p.origin() == PaperData.ORIGIN and "rpi5_arm_cpu" in p.devices()


def test_flagged_rows_are_never_used(paper_store):
    flagged = paper_store.measurements(source="paper", include_flagged=True)
    flagged = flagged[flagged["flag"].notna()]
    assert len(flagged)
    p = PaperData.load(paper_store)
    assert not (p.rows["id"].isin(flagged["id"])).any()


def test_nothing_available():
    p = PaperData(None)
    assert not p.available and p.toy("toy#1", "rpi5_arm_cpu", "latency_ms", 224) is None
    assert "no paper numbers" in p.origin()
