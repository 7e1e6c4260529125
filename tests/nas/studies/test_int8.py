"""study int8 on tiny configs: both precisions measured and stored under their own protocols, the comparison
written (the figures themselves are the study's output, never asserted)."""

import json

import pytest

pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0 && pip install -e '.[measure]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[measure]'")
pytestmark = pytest.mark.torch


def test_int8_study_quick(tmp_path, monkeypatch, capsys):
    from measured import Store
    from nas.cli import main
    from nas.studies import _int8

    monkeypatch.setattr(_int8, "QUICK_VARIANTS", ("B0", "E1"))
    # No phase-anchor sessions (six models quantised and timed per precision: two thirds of this test's CPU): the
    # study's output never reads them and nothing here asserts them (a failed anchor fails no campaign). Sessions are
    # tested in tests/measured/test_phase.py and timed for real by the campaigns of tests/measured/test_campaign.py.
    # The campaign treats this engine as one that cannot time anchors (measured._campaign.PhaseTracker).
    from measured._measurer import Measurer

    monkeypatch.setattr(Measurer, "time_anchors", lambda self: None)
    code = main(["study", "int8", "--quick", "--sample", "0", "--busy-threshold", "100", "--no-progress", "--device",
                 "test-dev", "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    assert d["configs"] == 2 + 3 and set(d["protocols"]) == {"fp32", "int8"}
    assert d["verdict"] and "default_rng(1)" in d["recipe"]
    assert sorted(d["named_order_fp32"]) == sorted(d["named_order_int8"]) == ["B0", "E1"]
    for r in d["rows"]:
        assert r["fp32_ms"] > 0 and r["int8_ms"] > 0 and r["fp32_measured_ms"] > 0 and r["int8_measured_ms"] > 0
    # Paired (the default): the τ and orders use the ratios at one level per precision, and say so.
    assert d["values"].startswith("ratios to B0")
    assert (tmp_path / "out" / "int8.md").read_text().startswith("# int8 vs fp32 on `test-dev`")
    with Store() as s:
        rows = s.measurements(device="test-dev")
    assert set(rows["precision"]) == {"fp32", "int8"}
    assert all("QDQ" in n for n in rows[rows["precision"] == "int8"]["notes"])
