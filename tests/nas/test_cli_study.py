"""`lowformer-nas study NAME --quick` end to end: outputs, stored rows, printed verdicts; bad input."""

import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.torch

from nas._html import plotlyjs_name  # noqa: E402
from nas.cli import main  # noqa: E402
from nas.studies import get_study  # noqa: E402

STUDIES = ("depthwise", "fused-mbconv", "resolution-vs-channels", "attention", "resolution-scaling")
# No reading of the load monitor exceeds 100 %: what is stored does not depend on what else the machine runs.
ANY_LOAD = ("--busy-threshold", "100")


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors (a flag's type check): one line, exit 2
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def stored(campaign):
    from measured._store import Store

    with Store() as s:
        df = s.measurements(status=None, include_flagged=True)
    return df[df["campaign"] == campaign]


@pytest.mark.parametrize("name", STUDIES)
def test_study_quick_end_to_end(capsys, tmp_path, monkeypatch, name):
    from nas.studies import _toys

    # resolution-scaling measures whole LowFormers, each in a campaign of its own (an export; the workers start once):
    # its three variants at the one resolution the paper and the verdicts compare (224 px) prove the same path
    # as at two. The analysis of several resolutions: tests/nas/studies/test_analysis.py.
    monkeypatch.setattr(_toys, "QUICK_FIG8_RESOLUTIONS", (224,))
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "study", name, "--quick", *ANY_LOAD, "--out", str(out_dir))
    assert code == 0, err
    for suffix in (".csv", "_findings.csv", ".md", ".html"):
        assert (out_dir / f"{name}{suffix}").stat().st_size > 0
    html = (out_dir / f"{name}.html").read_text()
    # plotly.js from the chart's own folder (there is no CDN here), and the chart says it is a quick run
    js = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    assert js == [plotlyjs_name()] and (out_dir / js[0]).stat().st_size > 1_000_000
    assert "[quick mode]" in html
    assert "## Findings" in out and "## Verdict rules" in out and "quick mode" in out
    assert any(f"[{v:>8s}]" in out for v in ("holds", "weaker", "reversed", "n/a"))
    assert "%" in err or "model" in err  # the progress bar (tqdm writes to stderr)
    points = get_study(name).points(quick=True)
    rows = stored(f"study:{name}:quick")
    assert len(rows) == len(points) and set(rows["config_hash"]) == {p.config_hash for p in points}
    family = "LowFormer" if name == "resolution-scaling" else "toy"
    assert set(rows["family"]) == {family} and rows["n"].dropna().eq(3).all() and set(rows["status"]) == {"ok"}
    csv = (out_dir / f"{name}.csv").read_text().splitlines()
    assert len(csv) == len(points) + 1


def test_each_run_measures_afresh_unless_resumed(capsys, tmp_path, monkeypatch):
    from nas.studies import _toys

    monkeypatch.setattr(_toys, "QUICK_TABLE3_RESOLUTIONS", (8,))
    args = ("study", "attention", "--quick", "--no-progress", *ANY_LOAD, "--out", str(tmp_path))
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args)[0] == 0
    assert len(stored("study:attention:quick")) == 8  # two runs, four models each, new ids
    code, out, _ = run(capsys, *args, "--resume")
    assert code == 0 and len(stored("study:attention:quick")) == 8


def test_redraw_draws_the_chart_again_without_measuring(capsys, tmp_path, monkeypatch):
    from nas.studies import _toys

    monkeypatch.setattr(_toys, "QUICK_TABLE3_RESOLUTIONS", (8,))
    args = ("study", "attention", "--out", str(tmp_path))
    assert run(capsys, *args, "--quick", "--no-progress", *ANY_LOAD)[0] == 0
    chart = tmp_path / "attention.html"
    before, n = chart.read_text(), len(stored("study:attention:quick"))
    chart.unlink()
    code, out, err = run(capsys, *args, "--redraw")  # the mode comes from the stored rows, not from --quick
    assert code == 0 and out.strip() == f"wrote {chart}", err
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # plotly's div id
    assert uuid.sub("", chart.read_text()) == uuid.sub("", before) and len(stored("study:attention:quick")) == n

    csv = tmp_path / "attention.csv"
    # A results CSV from before paired studies (no ratio, reference or basis columns) still redraws.
    import pandas as pd

    old = pd.read_csv(csv).drop(columns=["ratio", "ratio_lo", "ratio_hi", "reference_ms", "measured_ms", "basis",
                                         "pairing", "flag"])
    old.to_csv(csv, index=False)
    code, out, err = run(capsys, *args, "--redraw")
    assert code == 0 and out.strip() == f"wrote {chart}", err
    csv.write_text(csv.read_text().replace(",ok,", ",fine,", 1))
    code, _, err = run(capsys, *args, "--redraw")
    assert code == 2 and err.startswith(f"lowformer-nas: error: redraw: {csv}: status 'fine' not in ok|"), err
    code, _, err = run(capsys, "study", "depthwise", "--redraw", "--out", str(tmp_path))
    assert code == 2 and err.startswith("lowformer-nas: error: redraw: ") and "no results of study depthwise" in err


@pytest.mark.parametrize("argv, starts", [
    (["study", "convnext"], "lowformer-nas: error: study: unknown 'convnext'; allowed: depthwise|"),
    (["study", "depthwise", "--backend", "tpu"], "lowformer-nas: error: backend: unknown 'tpu'"),
    (["study", "depthwise", "--metric", "fps"], "lowformer-nas: error: metric: must be one of"),
    (["study", "depthwise", "--device", "rpi5_arm_cpu"], "lowformer-nas: error: device: 'rpi5_arm_cpu'"),
    (["study", "depthwise", "--mac-cap", "0"], "lowformer-nas: error: mac-cap: must be > 0"),
    (["study", "depthwise", "--busy-threshold", "0"], "lowformer-nas: error: busy-threshold: must be in (0, 100]"),
    (["study", "depthwise", "--device", "bad\tid"], "lowformer-nas study: error: argument --device: 'bad\\tid' is not a device id"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, starts):
    code, out, err = run(capsys, *argv, "--quick")
    assert code == 2 and err.startswith(starts), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unavailable_backend_is_one_line(capsys):
    from measured._backends import BACKENDS

    if BACKENDS["torch_cuda"].available():
        pytest.skip("a CUDA GPU is present")
    code, _, err = run(capsys, "study", "depthwise", "--quick", "--backend", "torch_cuda")
    assert code == 2 and err.startswith("lowformer-nas: error: backend: torch_cuda is not available")


def test_json_and_the_default_folder_under_the_home(capsys, tmp_path, monkeypatch):
    """--json: one object on stdout (findings, measurements, files), the report on stderr; without --out the
    study goes to $LOWFORMER_NAS_HOME/runs/studies/NAME, as the README says, not to ./runs."""
    import json

    from lowformer_common import home_dir
    from nas.studies import _toys

    monkeypatch.setattr(_toys, "QUICK_TABLE3_RESOLUTIONS", (8,))
    code, out, err = run(capsys, "study", "attention", "--quick", "--no-progress", *ANY_LOAD, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["study"] == "attention" and len(d["results"]) == 4 and d["findings"] and "## Findings" in err
    assert all(str(home_dir() / "runs" / "studies" / "attention") in p for p in d["files"].values())
    # Paired with B0 by default: each row has its ratio, and the verdicts say they were computed on ratios.
    assert d["pairing"] is True and d["values"].startswith("ratios to the reference B0")
    assert all(r["pairing"] == "paired" and r["ratio"] > 0 and r["measured_ms"] > 0 for r in d["results"])
    assert "times analysed (verdicts, ranks): ratios" in err
    findings = (home_dir() / "runs" / "studies" / "attention" / "attention_findings.csv").read_text()
    assert findings.splitlines()[0].endswith(",values") and "ratios to the reference B0" in findings
    # --protocol alone: the old timing, absolute medians, said so.
    code, out, err = run(capsys, "study", "attention", "--quick", "--no-progress", *ANY_LOAD, "--json",
                         "--protocol", "alone")
    d = json.loads(out)
    assert code == 0 and d["pairing"] is False and d["values"].startswith("absolute medians")
    assert all(r["pairing"] == "alone" and r["ratio"] is None for r in d["results"])


def test_unknown_study_suggests_the_nearest(capsys):
    code, _, err = run(capsys, "study", "depthwse")
    assert code == 2 and "(did you mean depthwise?)" in err and err.count("\n") == 1
