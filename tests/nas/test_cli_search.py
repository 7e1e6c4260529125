import json
import pathlib

import pytest

import nas.search._objectives as _objectives
from nas._html import plotlyjs_name
from nas.cli import main
from search_spaces import LowFormerConfig
from tests.nas.search.conftest import AnalyticPredictor

BASE = ["--quiet", "--no-png", "--seed", "0", "--population-size", "10"]
SHIPPED_LOADER = _objectives.default_loader


@pytest.fixture(autouse=True)
def analytic_predictors(monkeypatch):
    """The CLI's predictors, analytic (the trained ones are tested with the predictors package)."""
    monkeypatch.setattr("nas.search._objectives.default_loader", lambda: AnalyticPredictor)


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_search_then_resume_then_plot(capsys):
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "40",
                         "--study", "c", *BASE)
    assert code == 0, err
    assert "study c: 40 trials" in out and "Pareto front:" in out
    for name in ("B0", "B1", "B1.5", "B2", "B3", "E1", "E2", "E3"):
        assert f"  {name} " in out
    # Resume: the study keeps its devices and budget; only the missing trials run.
    code, out, err = run(capsys, "search", "--study", "c", "--trials", "55", *BASE)
    assert code == 0, err
    assert "study c: 55 trials (15 run now" in out
    report = pathlib.Path("runs/c/report.md").read_text()
    assert "55 complete" in report and "jetson_tx2 latency <= 12 ms" in report
    code, out, err = run(capsys, "plot", "--study", "c", "--no-png")
    assert code == 0 and "wrote runs/c/pareto_front.html" in out and "PNG charts skipped" in out


def test_export_pick_writes_the_config(capsys, tmp_path):
    assert run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "40", "--study", "c", *BASE)[0] == 0
    front = json.loads(pathlib.Path("runs/c/front.json").read_text())["front"]
    out_file = tmp_path / "pick.json"
    code, out, err = run(capsys, "export", "--study", "c", "--pick", "2", "--json-out", str(out_file))
    assert code == 0, err
    d = json.loads(out_file.read_text())
    assert d["name"] == "c-pick2" and LowFormerConfig.from_dict(d).hash == front[1]["hash"]
    code, out, _ = run(capsys, "export", "--study", "c")  # default: pick 1, next to the study
    assert code == 0 and f"runs/c/pick1-{front[0]['hash'][:12]}.json" in out
    code, _, err = run(capsys, "export", "--study", "c", "--pick", str(len(front) + 1))
    assert code == 2 and err.startswith(f"lowformer-nas: error: pick: must be between 1 and {len(front)}")


@pytest.mark.torch
def test_export_pick_onnx(capsys, tmp_path):
    onnx = pytest.importorskip("onnx")
    assert run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "4", "--trials", "30", "--study", "c", *BASE)[0] == 0
    code, out, err = run(capsys, "export", "--study", "c", "--pick", "1", "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0, err
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.graph.input and "wrote" in out


def test_export_pick_without_torch(capsys, monkeypatch):
    import importlib.util

    assert run(capsys, "search", "--device", "jetson_tx2", "--trials", "20", "--study", "c", *BASE)[0] == 0
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    code, _, err = run(capsys, "export", "--study", "c", "--onnx", "m.onnx")
    assert code == 2 and err.startswith("lowformer-nas: error: onnx: ONNX export needs torch; install the measure extra")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, starts", [
    (["search", "--device", "mars"], "lowformer-nas: error: device: no predictor for 'mars'"),
    (["search", "--device", "jetson_tx2", "--budget-ms", "-2"], "lowformer-nas: error: budget-ms: must be a positive number"),
    (["search", "--device", "jetson_tx2", "--sampler", "cma"], "lowformer-nas: error: sampler: must be one of nsga2|tpe|random|gp"),
    (["search", "--device", "jetson_tx2", "--study", "../up"], "lowformer-nas: error: study: '../up' is not a valid name"),
    (["search", "--device", "jetson_tx2", "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
     "lowformer-nas: error: storage: cannot open postgresql://u:***@127.0.0.1:1/db"),
    (["search", "--device", "jetson_tx2", "--max-params", "lots"], "lowformer-nas search: error: argument --max-params"),
    (["search", "--device", "jetson_tx2", "--trials", "0"], "lowformer-nas search: error: argument --trials: must be an integer in [1, 10,000,000]"),
    (["search", "--device", "jetson_tx2", "--verify", "-1"], "lowformer-nas: error: verify: must be a positive number"),
    (["search"], "lowformer-nas: error: device: give at least one --device"),
    (["plot"], "lowformer-nas: error: study: give --study NAME"),
    (["plot", "--study", "nothing"], "lowformer-nas: error: study: no study in runs/nothing"),
    (["export", "--study", "nothing"], "lowformer-nas: error: study: no runs/nothing/front.json"),
    (["export", "B1", "--study", "x"], "lowformer-nas: error: study: give a model/--config or --study NAME --pick K"),
    (["plot", "measured"], "lowformer-nas: error: device: `plot measured` needs --device NAME"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, starts):
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith(starts), err
    assert err.count("\n") == 1 and "Traceback" not in err and "secret" not in err
    assert not pathlib.Path("runs").exists() or not any(pathlib.Path("runs").rglob("study.journal"))


def test_max_params_accepts_suffixes(capsys):
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--max-params", "6M", "--trials", "30",
                         "--study", "m", *BASE)
    assert code == 0, err
    front = json.loads(pathlib.Path("runs/m/front.json").read_text())
    assert front["constraints"][0]["limit"] == 6e6
    assert all(e["params"] <= 6e6 for e in front["front"])


def test_plot_measured_from_the_store(capsys):
    pytest.importorskip("measured._store")
    code, out, err = run(capsys, "plot", "measured", "--device", "jetson_tx2", "--no-png")
    assert code == 0, err
    html = pathlib.Path("runs/measured/macs_vs_latency_ms_jetson_tx2.html").read_text()
    assert "LowFormer" in html and pathlib.Path("runs/measured", plotlyjs_name()).is_file()
    from measured import Store
    from nas.search import measured_figure

    fig = measured_figure(Store().measurements(device="jetson_tx2", metric="latency_ms"), "jetson_tx2", "latency_ms")
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"  # two orders of magnitude of both
    assert "Kendall τ of MACs vs latency: all " in fig.layout.title.text and "LowFormer " in fig.layout.title.text
    labels = [a.text for a in fig.layout.annotations]
    assert "B1" in labels and len(labels) == len(set(labels))  # each named variant labelled once
    for axis in (fig.layout.xaxis, fig.layout.yaxis):  # log ticks labelled with the numbers they stand for
        assert [float(t.replace("k", "e3")) for t in axis.ticktext] == pytest.approx(list(axis.tickvals))
    code, _, err = run(capsys, "plot", "measured", "--device", "nowhere", "--no-png")
    assert code == 2 and err.startswith("lowformer-nas: error: device: no latency_ms measurements for 'nowhere'")


def test_search_says_when_the_front_is_extrapolated(capsys, monkeypatch):
    # The shipped jetson_tx2 predictor knows a dozen of the paper's configs: the front lies outside them.
    monkeypatch.setattr("nas.search._objectives.default_loader", SHIPPED_LOADER)
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "30",
                         "--study", "x", *BASE)
    assert code == 0, err
    assert "of the front lies outside what the jetson_tx2:latency_ms predictor was trained on" in out
