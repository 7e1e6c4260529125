import json

import pytest

from nas.cli import main
from search_spaces import count, get_variant


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 19
    b1 = next(r for r in rows if r["name"] == "B1")
    assert {"name", "hash", "resolution", "params", "macs"} <= set(b1)
    assert (b1["params"], b1["macs"], b1["resolution"]) == (17936312, 1410980096, 224)


@pytest.mark.parametrize("res", [None, 192, 256])
def test_count_json(capsys, res):
    args = ["count", "B3", "--json"] + (["--resolution", str(res)] if res else [])
    code, out, _ = run(capsys, *args)
    d = json.loads(out)
    cfg = get_variant("B3").config.with_(resolution=res or 224)
    assert code == 0 and d["params"] == 57086920 and d["macs"] == count(cfg).macs
    assert set(d) >= {"name", "hash", "resolution", "params", "macs", "per_stage"} and d["name"] == "B3"
    assert d["per_stage"]["stage4"]["out_shape_CHW"][0] == 512
    side = -(-(res or 224) // 32)  # both attention stages attend over ceil(H/32) x ceil(W/32) tokens
    assert d["attention_tokens"] == {"stem": 0, "stage1": 0, "stage2": 0, "stage3": side**2, "stage4": side**2, "head": 0}


def test_count_config_file(capsys, tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"base": "B1", "depths": [0, 1, 1, 3, 3], "mlp": [False, False]}))
    code, out, _ = run(capsys, "count", "--config", str(p), "--json")
    assert code == 0 and json.loads(out)["params"] == 11144760


@pytest.mark.parametrize(
    "argv, starts",
    [
        (["count", "B7"], "lowformer-nas: error: model: unknown variant 'B7'"),
        (["count", "B1", "--resolution", "16"], "lowformer-nas: error: resolution: must be an integer in [32,"),
        (["count"], "lowformer-nas: error: model: give a variant name or --config FILE"),
        (["count", "--config", "missing.json"], "lowformer-nas: error: missing.json: cannot read config file"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, starts):
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith(starts) and err.count("\n") == 1 and "Traceback" not in err


def test_bad_json_file(capsys, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"depths": [0, 0, 1, 1, 1]}')
    code, _, err = run(capsys, "count", "--config", str(p))
    assert code == 2 and err.startswith("lowformer-nas: error: depths[1]:")
    p.write_text('{"depths": [0, 1')
    code, _, err = run(capsys, "count", "--config", str(p))
    assert code == 2 and "malformed JSON at line 1" in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["count", "B1", "--resolution", "abc"])
    assert e.value.code == 2


@pytest.mark.torch
def test_export_onnx(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    code, out, _ = run(capsys, "export", "B1", "--onnx", str(tmp_path / "b1.onnx"), "--resolution", "160")
    assert code == 0 and (tmp_path / "b1.onnx").stat().st_size > 1_000_000
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "b1.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 160, 160]
