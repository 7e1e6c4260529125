"""predictors train|eval|update|list|fewshot and predict, on a store seeded with the paper's measurements."""

import json

import pandas as pd
import pytest

from nas._html import plotlyjs_name
from nas.cli import main


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors (unknown choice): one line, exit 2
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_figures_and_saves(capsys, tmp_path):
    code, out, _ = run(capsys, "predictors", "train", "--device", "rpi5_arm_cpu")
    assert code == 0, out
    assert "leave-one-out" in out and "macs" in out and "additive" in out and "Kendall" in out
    assert "saved additive predictor v1 ->" in out
    code, out, _ = run(capsys, "predictors", "train", "--device", "a40_gpu", "--model", "macs", "--out", tmp_path / "p", "--json")
    meta = json.loads(out)
    assert code == 0 and meta["metric"] == "throughput_img_s" and meta["model_type"] == "macs" and meta["version"] == 1
    assert (tmp_path / "p" / "a40_gpu" / "throughput_img_s" / "v0001" / "model.json").is_file()


def test_train_surrogate_is_labelled(capsys):
    code, out, _ = run(capsys, "predictors", "train", "--device", "imagenet1k")
    assert code == 0 and "surrogate *" in out and "note: this is an accuracy surrogate" in out
    code, out, _ = run(capsys, "predict", "--device", "imagenet1k", "--model", "E1")
    assert code == 0 and "accuracy surrogate" in out and "% top-1" in out and "90% interval [" in out
    # B1's top-1 is a stored result: reported as measured, with the printed rounding as its interval.
    code, out, _ = run(capsys, "predict", "--device", "imagenet1k", "--model", "B1")
    assert code == 0 and "79.9 % top-1, 90% interval [79.85, 79.95] (measured)" in out


def test_predict_json_and_domain_warning(capsys, tmp_path):
    assert run(capsys, "predictors", "train", "--device", "jetson_tx2")[0] == 0
    code, out, err = run(capsys, "predict", "--device", "jetson_tx2", "--model", "B1", "--json")
    d = json.loads(out)
    assert code == 0 and err == ""
    assert set(d) == {"device", "metric", "value", "interval", "coverage", "measured", "model_type", "predictor_version",
                      "in_domain", "phase"}
    # Trained on values without phases (the paper's): predicted as measured, and said so.
    assert d["phase"]["fit"] is None and "not phase-normalised" in d["phase"]["words"]
    assert d["device"] == "jetson_tx2" and d["metric"] == "latency_ms" and d["in_domain"] is True and d["value"] > 0
    # B1 was measured on the Jetson (the paper prints 11.7 ms): the measurement, not a prediction.
    assert d["measured"] is True and d["value"] == 11.7 and d["coverage"] == 0.9
    assert d["interval"] == pytest.approx([11.65, 11.75])
    code, out, _ = run(capsys, "predict", "--device", "jetson_tx2", "--model", "E1", "--json", "--confidence", "0.8")
    e1 = json.loads(out)
    assert e1["measured"] is False and e1["interval"][0] < e1["value"] < e1["interval"][1] and e1["coverage"] == 0.8
    code, _, err = run(capsys, "predict", "--device", "jetson_tx2", "--model", "E1", "--confidence", "1")
    assert code == 2 and err == "lowformer-nas: error: confidence: must be a number in (0.5, 0.999) (got 1)\n"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"base": "B1", "resolution": 288}))
    code, out, err = run(capsys, "predict", "--device", "jetson_tx2", "--config", cfg, "--json")
    assert code == 0 and json.loads(out)["in_domain"] is False
    assert err.startswith("lowformer-nas: warning:") and "resolution 288 outside" in err and err.count("\n") == 1


def test_eval_all_model_types_and_html(capsys, tmp_path):
    html = tmp_path / "chart.html"
    code, out, _ = run(capsys, "predictors", "eval", "--device", "titan_rtx_gpu", "--html", html)
    assert code == 0
    for s in ("MAPE", "RMSE", "±5%", "±10%", "Kendall τ", "Spearman", "macs", "additive", "lgbm"):
        assert s in out
    # The intervals of the device's predictor type, scored leave-one-group-out on the paper's 6 configs.
    assert "prediction intervals: additive model (student_t), leave-one-group-out over 6 groups, 6 configs" in out
    assert "    0.80" in out and "    0.90" in out and "    0.95" in out
    text = html.read_text()
    # Offline: plotly.js is written once beside the chart, not fetched from a CDN.
    assert f'src="{plotlyjs_name()}"' in text and 'src="http' not in text
    assert (tmp_path / plotlyjs_name()).stat().st_size > 1_000_000
    code, out, _ = run(capsys, "predictors", "eval", "--device", "a40_gpu", "--models", "macs,additive", "--json")
    d = json.loads(out)
    assert code == 0 and set(d["models"]) == {"macs", "additive"} and d["metric"] == "throughput_img_s"
    assert d["method"] == "leave-one-out" and d["models"]["additive"]["n"] == d["n_configs"]
    assert [r["nominal"] for r in d["intervals"]["rows"]] == [0.8, 0.9, 0.95]
    assert all(0 <= r["empirical"] <= 1 and r["median_relative_width"] > 0 for r in d["intervals"]["rows"])
    code, out, _ = run(capsys, "predictors", "eval", "--device", "a40_gpu", "--holdout", 4, "--models", "additive", "--json")
    d = json.loads(out)
    assert code == 0 and d["method"] == "random hold-out of 4 configs" and d["models"]["additive"]["n"] == 4


def _device_files(capsys, tmp_path):
    """Two files of the A40's real rows relabelled as a new device: the first 7 configs, then the other 5."""
    run(capsys, "data", "export", tmp_path / "a40.csv", "--device", "a40_gpu", "--metric", "throughput_img_s")
    d = pd.read_csv(tmp_path / "a40.csv").drop(columns=["id"])  # new ids: the rows belong to the new device
    names = sorted(d.loc[d["in_space"] == True, "name"].unique())  # noqa: E712
    first = d[(d["in_space"] != True) | d["name"].isin(names[:7])]  # noqa: E712
    rest = d[(d["in_space"] == True) & ~d["name"].isin(names[:7])]  # noqa: E712
    first.to_csv(tmp_path / "first.csv", index=False)
    rest.to_csv(tmp_path / "rest.csv", index=False)
    return tmp_path / "first.csv", tmp_path / "rest.csv"


def test_update_keeps_previous_version_and_compares_on_fixed_holdout(capsys, tmp_path):
    first, rest = _device_files(capsys, tmp_path)
    assert run(capsys, "import", first, "--device", "my_gpu")[0] == 0
    code, out, _ = run(capsys, "predictors", "train", "--device", "my_gpu")
    assert code == 0 and "7 configs" in out
    code, out, err = run(capsys, "predictors", "update", "--device", "my_gpu", "--measurements", rest)
    assert code == 0, err
    assert "10 inserted" in out and "fixed hold-out" in out
    assert "before" in out and "after" in out and "saved additive predictor v2" in out and "previous:" in out
    code, out, _ = run(capsys, "predictors", "list", "--json")
    rows = {(r["device"], r["metric"]): r for r in json.loads(out)}
    assert [v["version"] for v in rows[("my_gpu", "throughput_img_s")]["versions"]] == [1, 2]
    code, out, _ = run(capsys, "predict", "--device", "my_gpu", "--model", "B2", "--json")
    assert json.loads(out)["predictor_version"] == 2 and json.loads(out)["metric"] == "throughput_img_s"


def test_fewshot_table(capsys, tmp_path):
    first, _ = _device_files(capsys, tmp_path)
    run(capsys, "import", first, "--device", "my_gpu")
    assert run(capsys, "predictors", "train", "--device", "jetson_tx2")[0] == 0
    code, out, err = run(capsys, "predictors", "fewshot", "--device", "my_gpu", "--source", "jetson_tx2",
                         "--holdout", 3, "--sizes", "2,4", "--repeats", 2)
    assert code == 0, err
    assert "| training configs | method |" in out and "| 2 | transfer |" in out and "| 4 | transfer |" in out
    assert "| 4 | scratch_additive |" in out
    assert "| 2 | scratch_additive |" not in out  # below the additive model's minimum of 3 configs


def test_train_transfer_from_a_source_device(capsys, tmp_path):
    first, _ = _device_files(capsys, tmp_path)
    run(capsys, "import", first, "--device", "my_gpu")
    assert run(capsys, "predictors", "train", "--device", "rpi5_arm_cpu")[0] == 0
    code, out, err = run(capsys, "predictors", "train", "--device", "my_gpu", "--model", "transfer", "--source", "rpi5_arm_cpu")
    assert code == 0, err
    assert "transfer *" in out and "saved transfer predictor v1" in out
    code, out, _ = run(capsys, "predict", "--device", "my_gpu", "--model", "B1", "--json")
    d = json.loads(out)
    assert code == 0 and d["model_type"] == "transfer" and d["metric"] == "throughput_img_s" and d["value"] > 0


@pytest.mark.parametrize(
    "argv, starts",
    [
        (["predictors", "train", "--device", "pixel9"], "lowformer-nas: error: device: unknown device 'pixel9'; the store has:"),
        (["predictors", "train", "--device", "titan_rtx_gpu", "--metric", "throughput_img_s"],
         "lowformer-nas: error: metric: no throughput_img_s measurements of titan_rtx_gpu"),
        (["predictors", "train", "--device", "iphone13", "--model", "lgbm"],
         "lowformer-nas: error: model: too few measurements to train lgbm"),
        (["predictors", "train", "--device", "iphone13", "--model", "bogus"], "lowformer-nas predictors train: error: argument --model: invalid choice"),
        (["predictors", "train", "--device", "iphone13", "--model", "transfer"], "lowformer-nas: error: source:"),
        (["predictors", "train", "--device", "imagenet1k", "--model", "additive"], "lowformer-nas: error: model: top1_pct"),
        (["predictors", "eval", "--device", "iphone13", "--models", "xgb"], "lowformer-nas: error: models: unknown 'xgb'"),
        (["predictors", "update", "--device", "iphone13", "--measurements", "nope.csv"],
         "lowformer-nas: error: measurements: nope.csv: no such file"),
        (["predict", "--device", "pixel9", "--model", "B1"], "lowformer-nas: error: device: no predictor for 'pixel9'"),
        (["predict", "--device", "jetson_tx2", "--model", "B7"], "lowformer-nas: error: model: unknown variant 'B7'"),
        (["predict", "--device", "jetson_tx2"], "lowformer-nas: error: model: give a variant name"),
        (["predictors", "fewshot", "--device", "iphone13", "--source", "jetson_tx2", "--sizes", "a,b"],
         "lowformer-nas: error: sizes:"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, starts):
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith(starts), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_schema_mismatch_is_one_line_exit_2(capsys):
    assert run(capsys, "predictors", "train", "--device", "jetson_tx2")[0] == 0
    from predictors import user_dir

    meta_path = user_dir() / "jetson_tx2" / "latency_ms" / "v0001" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_schema"]["hash"] = "b" * 64
    meta_path.write_text(json.dumps(meta))
    code, _, err = run(capsys, "predict", "--device", "jetson_tx2", "--model", "B1")
    assert code == 2 and "feature schema bbbbbbbbbbbb" in err and err.count("\n") == 1


def test_predictors_list_has_a_header_and_the_configs_each_rests_on(capsys):
    from predictors import predictor_versions

    code, out, _ = run(capsys, "predictors", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["device", "metric", "model", "in", "use", "configs", "validation", "MAPE",
                                              "intervals", "0.8", "/", "0.9", "/", "0.95", "(covered:width", "%)",
                                              "versions"]
    row = next(line.split() for line in lines if line.startswith("jetson_tx2 "))
    shipped = predictor_versions("jetson_tx2", "latency_ms")[-1]
    assert row[:5] == ["jetson_tx2", "latency_ms", shipped["model_type"], "v1", "shipped"]
    assert row[5] == str(shipped["n_configs"]) and row[6] == f"{shipped['validation']['mape']:.1f}"
    # The interval figures the shipped predictor carries: covered:width per nominal coverage.
    iv = shipped["intervals"]
    assert row[9:14:2] == [f"{x['empirical'] * 100:.0f}:{x['median_relative_width'] * 100:.2g}" for x in iv]
    assert "configs: the distinct architectures a predictor was trained on" in out
