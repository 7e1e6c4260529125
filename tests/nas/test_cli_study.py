"""`lowformer-nas study NAME --quick` end to end: outputs, stored rows, printed verdicts; bad input."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.torch

from nas.cli import main  # noqa: E402
from nas.studies import get_study  # noqa: E402

STUDIES = ("depthwise", "fused-mbconv", "resolution-vs-channels", "attention", "resolution-scaling")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(campaign):
    from measured._store import Store

    with Store() as s:
        df = s.measurements(status=None, include_flagged=True)
    return df[df["campaign"] == campaign]


@pytest.mark.parametrize("name", STUDIES)
def test_study_quick_end_to_end(capsys, tmp_path, name):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "study", name, "--quick", "--out", str(out_dir))
    assert code == 0, err
    for suffix in (".csv", "_findings.csv", ".md", ".html"):
        assert (out_dir / f"{name}{suffix}").stat().st_size > 0
    html = (out_dir / f"{name}.html").read_text()
    assert "plotly" in html and "<script src=" not in html  # self-contained: there is no CDN here
    assert "## Findings" in out and "## Verdict rules" in out and "quick mode" in out
    assert any(f"[{v:>8s}]" in out for v in ("holds", "weaker", "reversed", "n/a"))
    assert "%" in err or "model" in err  # the progress bar (tqdm writes to stderr)
    points = get_study(name).points(quick=True)
    rows = stored(f"study:{name}:quick")
    assert len(rows) == len(points) and set(rows["config_hash"]) == {p.config_hash for p in points}
    family = "LowFormer" if name == "resolution-scaling" else "toy"
    assert set(rows["family"]) == {family} and rows["n"].dropna().eq(3).all()
    csv = (out_dir / f"{name}.csv").read_text().splitlines()
    assert len(csv) == len(points) + 1


def test_each_run_measures_afresh_unless_resumed(capsys, tmp_path, monkeypatch):
    from nas.studies import _toys

    monkeypatch.setattr(_toys, "QUICK_TABLE3_RESOLUTIONS", (8,))
    args = ("study", "attention", "--quick", "--no-progress", "--out", str(tmp_path))
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args)[0] == 0
    assert len(stored("study:attention:quick")) == 8  # two runs, four models each, new ids
    code, out, _ = run(capsys, *args, "--resume")
    assert code == 0 and len(stored("study:attention:quick")) == 8


@pytest.mark.parametrize("argv, starts", [
    (["study", "convnext"], "lowformer-nas: error: study: unknown 'convnext'; allowed: depthwise|"),
    (["study", "depthwise", "--backend", "tpu"], "lowformer-nas: error: backend: unknown 'tpu'"),
    (["study", "depthwise", "--metric", "fps"], "lowformer-nas: error: metric: must be one of"),
    (["study", "depthwise", "--device", "rpi5_arm_cpu"], "lowformer-nas: error: device: 'rpi5_arm_cpu'"),
    (["study", "depthwise", "--mac-cap", "0"], "lowformer-nas: error: mac-cap: must be > 0"),
    (["study", "depthwise", "--device", "bad\tid"], "lowformer-nas: error: device: 'bad\\tid' is not a device id"),
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
