import json
import os
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


def home_runs(name: str = "") -> pathlib.Path:
    """Where a new study goes by default: the home's runs folder (tests: a fresh home each)."""
    return pathlib.Path(os.environ["LOWFORMER_NAS_HOME"]) / "runs" / name


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
    assert "study c: 40 trials" in out and "Pareto front:" in out and "seed 0" in out
    assert "risk bound: budgets and objectives use the pessimistic end" in out
    for name in ("B0", "B1", "B1.5", "B2", "B3", "E1", "E2", "E3"):
        assert f"  {name} " in out
    assert f"outputs in {home_runs('c')}/" in out
    assert "next:" in out and "lowformer-nas export --study c --pick " in out
    # Resume: the study keeps its devices, budget and risk; only the missing trials run.
    code, out, err = run(capsys, "search", "--study", "c", "--trials", "55", *BASE)
    assert code == 0, err
    assert "study c: 55 trials (15 run now" in out
    report = (home_runs("c") / "report.md").read_text()
    assert "55 complete" in report and "jetson_tx2 latency (upper end of its 90% interval) <= 12 ms" in report
    assert "## Next steps" in report
    code, _, err = run(capsys, "search", "--study", "c", "--risk", "mean", *BASE)
    assert code == 2 and err.startswith("lowformer-nas: error: risk: study 'c' was made with --risk bound, not mean")
    # plot finds the study from any folder (the home's runs folder).
    elsewhere = pathlib.Path("elsewhere")
    elsewhere.mkdir()
    os.chdir(elsewhere)
    code, out, err = run(capsys, "plot", "--study", "c", "--no-png")
    assert code == 0 and f"wrote {home_runs('c') / 'pareto_front.html'}" in out and "PNG charts skipped" in out


def test_a_study_in_local_runs_is_still_found(capsys):
    code, _, err = run(capsys, "search", "--device", "jetson_tx2", "--trials", "20", "--study", "here", "--runs-dir", "runs",
                       *BASE)
    assert code == 0 and pathlib.Path("runs/here/study.journal").is_file() and not home_runs("here").exists()
    code, out, err = run(capsys, "search", "--study", "here", "--trials", "25", *BASE)  # resumed in ./runs
    assert code == 0 and "study here: 25 trials (5 run now" in out and "outputs in runs/here/" in out
    code, out, _ = run(capsys, "export", "--study", "here")
    assert code == 0 and "runs/here/pick-" in out


def test_seed_is_drawn_and_reported(capsys):
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--trials", "20", "--study", "s", "--quiet", "--no-png",
                         "--population-size", "10")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("study s:"))
    seed = int(line.split("seed ")[1].split(" ")[0])
    assert f"(drawn; --seed {seed} repeats it)" in line
    assert json.loads((home_runs("s") / "settings.json").read_text())["seed"] == seed


def test_export_pick_writes_the_config(capsys, tmp_path):
    assert run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "40", "--study", "c", *BASE)[0] == 0
    front = json.loads((home_runs("c") / "front.json").read_text())["front"]
    assert all(set(e["intervals"]) == {"imagenet1k:top1_pct", "jetson_tx2:latency_ms"} for e in front)
    out_file = tmp_path / "pick.json"
    code, out, err = run(capsys, "export", "--study", "c", "--pick", "2", "--json-out", str(out_file))
    assert code == 0, err
    d = json.loads(out_file.read_text())
    assert d["name"] == f"c-{front[1]['id']}" and LowFormerConfig.from_dict(d).hash == front[1]["hash"]
    code, out, _ = run(capsys, "export", "--study", "c")  # default: pick 1, next to the study
    assert code == 0 and f"runs/c/pick-{front[0]['hash'][:12]}.json" in out and "jetson_tx2:latency_ms" in out
    assert " [" in out  # the pick's interval
    code, _, err = run(capsys, "export", "--study", "c", "--pick", str(len(front) + 1))
    assert code == 2 and err.startswith(f"lowformer-nas: error: pick: must be between 1 and {len(front)}")
    # The id names the same config whatever its rank; a prefix of it is enough, an unknown one is one line.
    code, out, _ = run(capsys, "export", "--study", "c", "--pick", front[1]["id"][:6], "--json-out", str(out_file))
    assert code == 0 and f"id {front[1]['id']}, front #2" in out
    code, _, err = run(capsys, "export", "--study", "c", "--pick", "ffff0000ffff")
    assert code == 2 and "not (or no longer" in err and err.count("\n") == 1


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
    (["plot", "--study", "nothing"], "lowformer-nas: error: study: no study 'nothing' in runs or "),
    (["export", "--study", "nothing"], "lowformer-nas: error: study: no front.json of study 'nothing' in runs or "),
    (["search", "--device", "jetson_tx2", "--risk", "max"], "lowformer-nas: error: risk: must be one of bound|mean (got 'max')"),
    (["search", "--device", "jetson_tx2", "--confidence", "1.5"],
     "lowformer-nas: error: confidence: must be a number in (0.5, 0.999), the interval coverage (got 1.5)"),
    (["search", "--device", "jetson_tx2", "--confidence", "0.5"], "lowformer-nas: error: confidence: must be a number in"),
    (["search", "--device", "jetson_tx2", "--refine", "-1"], "lowformer-nas: error: refine: must be a positive number"),
    (["export", "B1", "--study", "x"], "lowformer-nas: error: study: give a model/--config or --study NAME --pick ID"),
    (["plot", "measured"], "lowformer-nas: error: device: `plot measured` needs --device NAME"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, starts):
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith(starts), err
    assert err.count("\n") == 1 and "Traceback" not in err and "secret" not in err
    for root in (pathlib.Path("runs"), home_runs()):
        assert not root.exists() or not any(root.rglob("study.journal"))


def test_max_params_accepts_suffixes(capsys):
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--max-params", "6M", "--trials", "30",
                         "--study", "m", *BASE)
    assert code == 0, err
    front = json.loads((home_runs("m") / "front.json").read_text())
    assert front["constraints"][0]["limit"] == 6e6
    assert all(e["params"] <= 6e6 for e in front["front"])


def test_plot_measured_from_the_store(capsys):
    pytest.importorskip("measured._store")
    code, out, err = run(capsys, "plot", "measured", "--device", "jetson_tx2", "--no-png")
    assert code == 0, err
    html = (home_runs("measured") / "macs_vs_latency_ms_jetson_tx2.html").read_text()
    # plotly.js once for the whole home (linked relatively), not in every folder of charts
    assert "LowFormer" in html and (home_runs("measured").parents[1] / plotlyjs_name()).is_file()
    assert f'src="../../{plotlyjs_name()}"' in html
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
    # The shipped jetson_tx2 predictor knows a dozen of the paper's configs; on point predictions (risk mean) and with
    # --extrapolate the front lies outside them, and the search says so. Every row carries its intervals anyway.
    monkeypatch.setattr("nas.search._objectives.default_loader", SHIPPED_LOADER)
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "30",
                         "--study", "x", "--risk", "mean", "--extrapolate", *BASE)
    assert code == 0, err
    assert "risk mean: budgets and objectives use the central predictions" in out
    assert "of the front lies outside what the jetson_tx2:latency_ms predictor was trained on" in out
    front = json.loads((home_runs("x") / "front.json").read_text())
    assert front["risk"] == "mean" and front["confidence"] == 0.9
    assert all(e["intervals"]["jetson_tx2:latency_ms"][0] < e["predictions"]["jetson_tx2:latency_ms"]
               < e["intervals"]["jetson_tx2:latency_ms"][1] or e["measured"]["jetson_tx2:latency_ms"] for e in front["front"])
    assert "**extrapolated**" in (home_runs("x") / "report.md").read_text()


def test_refine_prints_its_rounds(capsys, monkeypatch):
    """--refine on 'this machine', with the measuring and the retraining injected (no timing in unit tests)."""
    import nas.search
    from tests.nas.search.test_refine import FakeBench

    monkeypatch.setattr(nas.search, "store_measurer", lambda store, *a, **k: FakeBench(1.05))
    monkeypatch.setattr("nas.cli._search._retrainer", lambda store: (lambda device: "analytic again"))
    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "6", "--trials", "30", "--study", "r",
                         "--refine", "2", "--refine-k", "3", *BASE)
    assert code == 0, err
    assert "refinement (2 rounds of 3 configs measured on this machine):" in out
    assert "| round | measured | over budget | inside interval | median width near budget |" in out
    assert "study r, refinement round 2: 30 trials" in out
    rounds = json.loads((home_runs("r") / "refine.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1] and all(r["retrained"] == "analytic again" for r in rounds)
