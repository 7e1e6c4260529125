"""Edge bundles: small bundles (graphs + a weights recipe), the standalone runner's checks before timing, resuming
and retrying, and its CSV coming back through the import."""

import ast
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from measured._bundle import RUNNER, weight_seed

# ---------------------------------------------------------------------------------------------- the runner alone


def _runner():
    spec = importlib.util.spec_from_file_location("run_bundle", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_runner_is_python38_and_standalone():
    src = open(RUNNER, encoding="utf-8").read()
    tree = ast.parse(src, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert imported - stdlib <= {"numpy", "onnxruntime", "tensorrt", "cuda"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hand_bundle(root, models=None, **top):
    """A bundle written by hand: model files of arbitrary bytes (the checks run before anything is parsed)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    if models is None:
        data = b"not really onnx"
        (root / "models" / "a.onnx").write_bytes(data)
        models = [{"hash": "a" * 64, "file": "models/a.onnx", "sha256": _sha(data), "input_shape": [1, 3, 32, 32],
                   "name": "A", "family": "LowFormer", "resolution": 32}]
    manifest = {"format": 2, "name": "hand", "protocol": {"warmup": 1, "runs": 3}, "models": models, **top}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _main(capsys, bundle, *argv):
    code = _runner().main(["--bundle", str(bundle), "--busy-threshold", "100", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, bundle, out_csv, says):
    code, out, err = _main(capsys, bundle, "--out", str(out_csv))
    assert code == 2 and err.count("\n") == 1 and err.startswith("run_bundle.py: error: "), err
    assert says in err, err
    assert not out_csv.exists()  # nothing timed, nothing written
    return err


def test_an_entry_outside_the_bundle_is_refused_before_timing(tmp_path, capsys):
    """`"file": "../../x.onnx"` (with its sha256) measured a foreign model under another config's hash."""
    foreign = tmp_path / "x.onnx"
    foreign.write_bytes(b"foreign model")
    good = {"hash": "b" * 64, "file": "models/b.onnx", "sha256": _sha(b"b"), "input_shape": [1, 3, 32, 32]}
    b = _hand_bundle(tmp_path / "b1", [good, {"hash": "a" * 64, "file": "../x.onnx", "sha256": _sha(b"foreign model"),
                                              "input_shape": [1, 3, 32, 32]}])
    (b / "models" / "b.onnx").write_bytes(b"b")
    _refused(capsys, b, tmp_path / "r.csv", "manifest.json: models[1].file: '../x.onnx' must be a path inside the bundle")
    # A link inside the bundle that leads out of it, followed.
    b = _hand_bundle(tmp_path / "b2", [{"hash": "a" * 64, "file": "models/link.onnx",
                                        "sha256": _sha(b"foreign model"), "input_shape": [1, 3, 32, 32]}])
    os.symlink(foreign, b / "models" / "link.onnx")
    _refused(capsys, b, tmp_path / "r.csv", "models[0].file: 'models/link.onnx' resolves outside the bundle folder")
    # The weights file the runner would write, through a link to outside: refused too (no write outside).
    b = _hand_bundle(tmp_path / "b3")
    m = json.loads((b / "manifest.json").read_text())
    m["models"][0]["weights"] = {"file": "models/w.weights", "seed": 1, "bytes": 0, "tensors": [], "sha256": _sha(b"")}
    (b / "manifest.json").write_text(json.dumps(m))
    os.symlink(tmp_path / "victim", b / "models" / "w.weights")
    _refused(capsys, b, tmp_path / "r.csv", "models[0].weights.file: 'models/w.weights' is a link; remove it")
    assert not (tmp_path / "victim").exists()


def test_a_changed_model_file_is_refused_before_timing(tmp_path, capsys):
    b = _hand_bundle(tmp_path / "b")
    (b / "models" / "a.onnx").write_bytes(b"not really onnx, changed")
    _refused(capsys, b, tmp_path / "r.csv", "models[0]: models/a.onnx was changed or is corrupt (sha256 mismatch)")
    (b / "models" / "a.onnx").unlink()
    _refused(capsys, b, tmp_path / "r.csv", "models[0]: models/a.onnx: no such file; copy the whole bundle folder")


GOOD = {"hash": "a" * 64, "file": "models/a.onnx", "sha256": "c" * 64, "input_shape": [1, 3, 32, 32]}
W = {"file": "models/a.weights", "seed": 3, "bytes": 8192, "tensors": [[0, 16, 0.0, 1.0], [4096, 1024, 0.5, 0.0]]}
W["sha256"] = _runner().weights_sha256(W)


@pytest.mark.parametrize("manifest, says", [
    ("{not json", "manifest.json: not valid JSON (Expecting property name"),
    ("[1, 2]", "manifest.json: top level: must be a JSON object"),
    ({"format": 7, "models": [GOOD]}, "manifest.json: format: must be one of 1, 2, 3 (got 7)"),
    ({"format": 2}, "manifest.json: models: must be a non-empty list"),
    ({"format": 2, "models": [{**GOOD, "hash": 5}]}, "models[0].hash: must be a 64-character sha256 hex digest"),
    ({"format": 2, "models": [GOOD, GOOD]}, "models[1].hash: repeats models[0]"),
    ({"format": 2, "models": [{k: v for k, v in GOOD.items() if k != "sha256"}]}, "models[0].sha256: must be a 64"),
    ({"format": 2, "models": [{**GOOD, "input_shape": [1, 3, -4, 32]}]}, "models[0].input_shape: must be 4 positive"),
    ({"format": 2, "models": [{**GOOD, "file": "/etc/passwd"}]}, "models[0].file: '/etc/passwd' must be a path inside"),
    ({"format": 2, "models": [{**GOOD, "name": ["x"]}]}, "models[0].name: must be text"),
    ({"format": 2, "protocol": {"runs": "many"}, "models": [GOOD]}, "protocol.runs: must be an integer in [1, 100000]"),
    ({"format": 2, "protocol": {"runs": 10 ** 12}, "models": [GOOD]}, "protocol.runs: must be an integer in [1, 100000]"),
    ({"format": 2, "models": [{**GOOD, "input_shape": [1000, 3, 1024, 1024]}]}, "models[0].input_shape: [1000, 3,"),
    ('{"format": 2, "format": 2, "models": []}', "manifest.json: key 'format' given twice"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "sha256": None}}]}, "models[0].weights.sha256: must be the"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "file": "manifest.json"}}]},
     "models[0].weights.file: 'manifest.json' must be models/NAME.weights"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "file": "models/../manifest.json"}}]}, "must be a path inside"),
    ({"format": 2, "models": [{**GOOD, "weights": W}, {**GOOD, "hash": "d" * 64, "file": "models/d.onnx", "weights": W}]},
     "models[1].weights.file: 'models/a.weights' is also models[0].weights.file"),
    ({"format": 2, "models": [{**GOOD, "weights": W}, {**GOOD, "hash": "d" * 64, "file": "models/a.weights"}]},
     "models[1].file: 'models/a.weights' is also models[0].weights.file"),
    ({"format": 2, "device_id": "../../x", "models": [GOOD]}, "device_id: '../../x' is not a device id"),
    ({"format": 2, "device_id": "Intel(R) Xeon(R)", "models": [GOOD]}, "device_id: 'Intel(R) Xeon(R)' is not a device"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "seed": -1}}]}, "models[0].weights.seed: must be a non-negative"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "tensors": [[0, 16, 0.0]]}}]},
     "models[0].weights.tensors[0]: must be [offset, count, mean, std]"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "tensors": [[4096, 16, 0, 1], [0, 16, 0, 1]]}}]},
     "models[0].weights.tensors[1]: offset and count must be integers, in file order"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "bytes": 10}}]}, "models[0].weights.bytes: must cover the tensors"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "bytes": 2 ** 40, "tensors": [[0, 2 ** 38, 0, 1]]}}]},
     "models[0].weights.bytes: 1099511627776 bytes, more than any model"),
    ({"format": 2, "models": [{**GOOD, "weights": {**W, "file": "../../w"}}]}, "models[0].weights.file: '../../w' must be"),
])
def test_a_malformed_manifest_is_one_line(tmp_path, capsys, manifest, says):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    _refused(capsys, tmp_path / "b", tmp_path / "r.csv", says)


def test_a_bad_device_id_is_one_line(tmp_path, capsys):
    b = _hand_bundle(tmp_path / "b")
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "r.csv"), "--device-id", "a/b")
    assert code == 2 and err.count("\n") == 1 and "--device-id: 'a/b' is not a device id" in err


def test_generated_weights_follow_the_recipe(tmp_path):
    runner = _runner()
    (tmp_path / "models").mkdir()
    path = runner.write_weights(str(tmp_path), W)
    data = np.fromfile(path, dtype="<f4")
    assert data.nbytes == 8192 and np.all(data[16:1024] == 0)  # padding up to the aligned offset
    first, second = data[:16], data[1024:2048]
    assert np.all(np.abs(first) <= np.sqrt(3.0) + 1e-6) and np.all(second == 0.5)  # std 0: the exact constant
    assert runner.write_weights(str(tmp_path), W) == path and np.array_equal(np.fromfile(path, dtype="<f4"), data)
    recipe = {"file": W["file"], "seed": 3, "bytes": 4_000_000, "tensors": [[0, 1_000_000, 0.1, 0.02]]}
    big = np.fromfile(runner.write_weights(str(tmp_path), recipe), dtype="<f4")
    assert abs(big.mean() - 0.1) < 1e-3 and abs(big.std() - 0.02) < 1e-3
    # Generated weights that are not the bundle's (another seed, another numpy): refused before timing, and the
    # file already there is left as it was.
    with pytest.raises(runner.BundleError, match="the generated weights differ from the bundle's"):
        runner.write_weights(str(tmp_path), {**W, "seed": 4})
    assert np.array_equal(np.fromfile(path, dtype="<f4"), big) and os.listdir(tmp_path / "models") == ["a.weights"]


def test_failed_rows_are_retried_on_rerun_unless_told_not_to(tmp_path, capsys):
    """The rerun counted failed rows as done."""
    pytest.importorskip("onnxruntime")
    b = _hand_bundle(tmp_path / "b")  # not an ONNX file: onnxruntime fails on it
    out = tmp_path / "r.csv"
    code, text, _ = _main(capsys, b, "--out", str(out))
    rows = list(csv.DictReader(open(out)))
    assert code == 0 and [r["status"] for r in rows] == ["failed"] and rows[0]["reason"]
    code, text, _ = _main(capsys, b, "--out", str(out), "--no-retry-failed")
    assert code == 0 and text.startswith("0 models to measure (1 rows already in")
    code, text, _ = _main(capsys, b, "--out", str(out))
    assert code == 0 and text.startswith("1 models to measure (1 rows already in")
    assert [r["status"] for r in csv.DictReader(open(out))] == ["failed", "failed"]


def test_formula_text_is_neutralised_in_the_csv(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    b = _hand_bundle(tmp_path / "b")
    out = tmp_path / "r.csv"
    _main(capsys, b, "--out", str(out), "--device-name", "=cmd|' /C calc'!A0")
    row = next(csv.DictReader(open(out)))
    assert row["device_name"] == "'=cmd|' /C calc'!A0"
    # With no id from the bundle or --device-id, the rows are named after the board/CPU, in the safe charset.
    from measured import check_device_id

    assert check_device_id(row["device_id"]) == row["device_id"]


# ---------------------------------------------------------------------------------------------- bundles from configs


def _anchors_from_the_cache(out_dir):
    """The reference's and the anchors' graphs put into ``out_dir/models`` from the session's anchor cache, where
    they are kept in a bundle's own format (measured._harness.cached_graph; the campaigns' anchor sessions have
    usually exported them already): the bundle resumes with them, as a bundle interrupted after them would, instead
    of exporting the six 224 px models once more. Its own job is exported by write_bundle as always."""
    from measured._bundle import _roles
    from measured._harness import _anchor_cache, cached_graph

    (out_dir / "models").mkdir(parents=True)
    for name, cfg in _roles():
        with cached_graph(cfg, name, 1):  # exported into the cache unless it is there
            for suffix in (".onnx", ".json"):
                shutil.copyfile(_anchor_cache(1) / "models" / f"{cfg.hash[:16]}{suffix}",
                                out_dir / "models" / f"{cfg.hash[:16]}{suffix}")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One tiny model, as a small bundle and as a full one."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from measured import write_bundle
    from measured._campaign import Job
    from search_spaces import get_variant

    root = tmp_path_factory.mktemp("bundles")
    _anchors_from_the_cache(root / "small")
    job = Job(get_variant("B0").config.with_(resolution=64), "B0")
    small = write_bundle([job], str(root / "small"), progress=False, device_id="test-pi")
    full = write_bundle([job], str(root / "full"), progress=False, full_weights=True, anchors=False)
    # What the small bundle shipped, before any test runs its runner (which writes weights into it).
    (root / "shipped.txt").write_text("\n".join(sorted(str(f.relative_to(root / "small"))
                                                      for f in (root / "small").rglob("*") if f.is_file())))
    return root, small, full


@pytest.mark.torch
def test_a_small_bundle_ships_graphs_and_a_recipe(bundles):
    import onnx
    from onnx import numpy_helper

    root, small, full = bundles
    entry, full_entry = small.manifest["models"][0], full.manifest["models"][0]
    assert small.manifest["weights"] == "generated" and small.manifest["device_id"] == "test-pi"
    assert full.manifest["weights"] == "full" and "weights" not in full_entry
    graph = root / "small" / entry["file"]
    assert graph.stat().st_size * 20 < (root / "full" / full_entry["file"]).stat().st_size
    # The small bundle ships the reference and the 5 anchors too: 7 graphs, about 1 MB in all.
    assert small.bytes < full.bytes and small.bytes < 2e6 and "MB" in small.line()
    assert len(small.manifest["models"]) == 7 and len(full.manifest["models"]) == 1
    shipped = (root / "shipped.txt").read_text().split("\n")
    assert entry["weights"]["seed"] == weight_seed(entry["hash"]) and entry["weights"]["file"] not in shipped
    # The runner's file, read back with onnx's own external-data loader, has every tensor's shape, mean and std;
    # tensors of one value (biases at 0, norms at 1) exactly.
    _runner().write_weights(str(root / "small"), entry["weights"])
    generated = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(graph)).graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(root / "full" / full_entry["file"])).graph.initializer}
    assert set(generated) == set(original)
    for name, a in original.items():
        g = generated[name]
        assert g.shape == a.shape and g.dtype == a.dtype
        if a.std() == 0:
            assert np.array_equal(g, a), name
        elif a.size >= 1000:
            # Two independent draws of one distribution: their means differ by about std * sqrt(2 / n) (a fixed
            # 0.1 std was 3.2 of those at n = 2,048 and failed one tensor in a few hundred); 5 of them, and the spread.
            assert abs(g.mean() - a.mean()) < 5 * a.std() * np.sqrt(2 / a.size) + 1e-6, name
            assert abs(g.std() / a.std() - 1) < 0.1, name
    os.unlink(root / "small" / entry["weights"]["file"])  # as the runner leaves it: no weights kept


@pytest.mark.torch
def test_bundle_run_import(bundles, tmp_path):
    pytest.importorskip("onnxruntime")
    root, small, _ = bundles
    bundle = tmp_path / "bundle"  # a copy: running it must not change the bundle the module's other tests read
    shutil.copytree(root / "small", bundle)
    results = tmp_path / "results.csv"
    run = [sys.executable, str(bundle / "run_bundle.py"), "--out", str(results), "--runs", "3", "--warmup", "1",
           "--busy-threshold", "100"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(results)))
    assert [row["status"] for row in rows] == ["ok"] and float(rows[0]["value"]) > 0
    assert rows[0]["device_id"] == "test-pi" and json.loads(rows[0]["versions"])["weights"] == "generated"
    assert not list((bundle / "models").glob("*.weights"))  # written for timing, then removed
    r = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "0 models to measure (1 rows already" in r.stdout and len(list(csv.DictReader(open(results)))) == 1

    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    cli = [sys.executable, "-m", "nas"]
    r = subprocess.run(cli + ["import", str(results), "--store", store], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from measured import Store

    df = Store(store).measurements(device="test-pi")
    assert len(df) == 1 and set(df["source"]) == {"bundle"} and set(df["config_hash"]) == {small.manifest["models"][0]["hash"]}
    assert Store(store).device("test-pi").fingerprint.get("arch") and Store(store).device("test-pi").kind == "edge"
    # The anchors, timed on the device at the start and the end (real models), are the device's phase series.
    sessions = {r["session"] for r in csv.DictReader(open(tmp_path / "results.anchors.csv"))}
    assert len(sessions) == 2 and "anchors: 2 session(s) from results.anchors.csv (2 new)" in r.stdout
    assert set(Store(store).anchor_timings(device="test-pi")["session"]) == sessions
    # The same rows are not the Jetson TX2's: refused, one line.
    r = subprocess.run(cli + ["import", str(results), "--device", "jetson_tx2", "--store", store], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not device 'jetson_tx2'" in r.stderr


@pytest.mark.torch
def test_an_interrupted_bundle_resumes(bundles):
    from measured import write_bundle
    from measured._campaign import Job
    from search_spaces import get_variant

    root, small, _ = bundles
    job = Job(get_variant("B0").config.with_(resolution=64), "B0")
    again = write_bundle([job], str(root / "small"), progress=False, device_id="test-pi")
    assert again.exported == 0 and again.manifest["models"] == small.manifest["models"]


@pytest.mark.parametrize("argv, says", [
    (["--device", "../x"], "device: '../x' is not a device id"),
    (["--jobs", "0"], "--jobs: must be an integer in [1, 256] (got 0)"),
    (["--runs", "1"], "--runs: must be an integer in [3, 100,000] (got 1)"),
    (["--sample", "1000000000"], "--sample: must be an integer in [0, 100,000] (got 1000000000)"),
    (["--warmup", "1000000000000"], "--warmup: must be an integer in [0, 10,000]"),
])
def test_bundle_flags_are_checked(tmp_path, capsys, argv, says):
    from nas.cli import main

    try:
        code = main(["bundle", "--model", "B0", "--out", str(tmp_path / "b"), *argv])
    except SystemExit as e:  # argparse's own check of the flag
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and says in err and not (tmp_path / "b").exists()


def test_an_unreadable_results_file_is_one_line(tmp_path, capsys):
    b = _hand_bundle(tmp_path / "b")
    (tmp_path / "r.csv").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "r.csv"))
    assert code == 2 and err.count("\n") == 1 and "is not this runner's results" in err


def test_the_weights_file_is_never_written_through_a_link(tmp_path):
    runner = _runner()
    (tmp_path / "models").mkdir()
    os.symlink(tmp_path / "victim", tmp_path / "models" / "a.weights.tmp")
    runner.write_weights(str(tmp_path), {k: v for k, v in W.items() if k != "sha256"})
    assert not (tmp_path / "victim").exists() and (tmp_path / "models" / "a.weights").stat().st_size == 8192


# ---------------------------------------------------------------------------------------------- hostile bundles


def _with_weights(b, weights):
    m = json.loads((b / "manifest.json").read_text())
    m["models"][0]["weights"] = weights
    (b / "manifest.json").write_text(json.dumps(m))
    return b


@pytest.mark.parametrize("target", ["../results.csv", "../manifest.json", "../run_bundle.py", "a.onnx"])
def test_a_weights_link_to_a_bundle_file_leaves_it_alone(tmp_path, capsys, target):
    """models/<x>.weights a link to results.csv (or the manifest, the runner, a model): the runner wrote weights over
    that file and then deleted it."""
    b = _with_weights(_hand_bundle(tmp_path / "b"), W)
    (b / "run_bundle.py").write_text("runner")
    results = b / "results.csv"
    results.write_text(",".join(_runner().FIELDS) + "\n")
    before = {p.name: p.read_bytes() for p in (b / "results.csv", b / "manifest.json", b / "run_bundle.py",
                                                b / "models" / "a.onnx")}
    os.symlink(target, b / "models" / "a.weights")
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "r.csv"))
    assert code == 2 and "models[0].weights.file: 'models/a.weights' is a link" in err and err.count("\n") == 1
    after = {p.name: p.read_bytes() for p in (b / "results.csv", b / "manifest.json", b / "run_bundle.py",
                                               b / "models" / "a.onnx")}
    assert after == before


def test_a_models_folder_that_is_a_link_is_refused(tmp_path, capsys):
    b = _hand_bundle(tmp_path / "b")
    (tmp_path / "elsewhere").mkdir()
    os.rename(b / "models", tmp_path / "elsewhere" / "models")
    os.symlink(tmp_path / "elsewhere" / "models", b / "models")
    _with_weights(b, W)
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "r.csv"))
    assert code == 2 and err.count("\n") == 1 and ("models is not a folder of the bundle" in err or "resolves outside" in err)
    assert not list((tmp_path / "elsewhere" / "models").glob("*.weights"))


@pytest.mark.parametrize("content, says", [
    ("a,b,c\n1,2,3\n", "is not this runner's results (its first line is 'a,b,c')"),
    (None, "is the bundle's manifest.json"),
])
def test_results_go_only_to_a_csv_of_this_runner(tmp_path, capsys, content, says):
    b = _hand_bundle(tmp_path / "b")
    out = tmp_path / "foreign.csv" if content else b / "manifest.json"
    if content:
        out.write_text(content)
    before = out.read_bytes()
    code, _, err = _main(capsys, b, "--out", str(out))
    assert code == 2 and says in err and err.count("\n") == 1 and out.read_bytes() == before


def test_results_into_a_missing_folder_or_a_fifo_is_one_line(tmp_path, capsys):
    b = _hand_bundle(tmp_path / "b")
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "nonexistent" / "dir" / "r.csv"))
    assert code == 2 and err.count("\n") == 1 and "does not exist; create it" in err
    os.mkfifo(tmp_path / "fifo.csv")
    code, _, err = _main(capsys, b, "--out", str(tmp_path / "fifo.csv"))
    assert code == 2 and err.count("\n") == 1 and "is not a regular file" in err


def test_a_fifo_manifest_is_refused_not_waited_on(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / "manifest.json")
    _refused(capsys, tmp_path / "b", tmp_path / "r.csv", "manifest.json: ")


def test_bundle_out_refuses_another_bundle_or_unrelated_files(tmp_path):
    from lowformer_common import UserError
    from measured._bundle import check_out_dir

    check_out_dir(str(tmp_path / "new"), {"a" * 64})  # missing: fine
    (tmp_path / "mine" / "models").mkdir(parents=True)
    (tmp_path / "mine" / "models" / ("a" * 16 + ".json")).write_text("{}")
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({"format": 2, "models": [{"hash": "a" * 64}]}))
    (tmp_path / "mine" / "results.csv").write_text("")
    check_out_dir(str(tmp_path / "mine"), {"a" * 64})  # this bundle, again: resumed
    with pytest.raises(UserError, match="holds another bundle"):
        check_out_dir(str(tmp_path / "mine"), {"b" * 64})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"app": "someone else\'s"}')
    with pytest.raises(UserError, match="holds another bundle"):
        check_out_dir(str(tmp_path / "other"), {"a" * 64})
    (tmp_path / "other" / "thesis.tex").write_text("x")
    with pytest.raises(UserError, match=r"holds files that are not this bundle's \(thesis.tex\)"):
        check_out_dir(str(tmp_path / "other"), {"a" * 64})
    check_out_dir(str(tmp_path / "other"), {"a" * 64}, force=True)
    os.symlink(tmp_path / "other" / "thesis.tex", tmp_path / "mine" / "run_bundle.py")
    with pytest.raises(UserError, match=r"\(run_bundle.py\)"):
        check_out_dir(str(tmp_path / "mine"), {"a" * 64})
