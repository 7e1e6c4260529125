"""--precision int8 (onnxruntime): deterministic static quantisation, its recipe in the provenance, its own
protocol and predictor key; int8 on a backend without it is one line."""

import hashlib
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0 && pip install -e '.[measure]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[measure]'")
pytestmark = pytest.mark.torch

from measured import Protocol  # noqa: E402
from measured._backends import INT8_RECIPE, get_backend, precision_note, quantize_int8  # noqa: E402
from search_spaces import export_onnx, get_variant  # noqa: E402

# B1 one block per stage with a narrow head: every op type of B1 at 32 px (attention blocks too: the shared-parameter
# tensors, exported as Identity nodes) in a sixth of the quantising: no test here depends on the model's size.
SMALL = get_variant("B1").config.with_(resolution=32, depths=(0, 1, 1, 1, 1), head_widths=(256, 320), num_classes=100)


def test_quantisation_is_deterministic_and_leaves_a_qdq_graph(tmp_path):
    from nas.studies._int8 import fp32_ops

    src = export_onnx(SMALL, str(tmp_path / "m.onnx"))
    a = quantize_int8(src, str(tmp_path / "a.onnx"), (1, 3, 32, 32))
    b = quantize_int8(src, str(tmp_path / "b.onnx"), (1, 3, 32, 32))
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]  # a stated, fixed calibration input: the same int8 model every time
    import onnx

    ops = {n.op_type for n in onnx.load(a).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    left = fp32_ops(a)
    assert isinstance(left, dict) and all(isinstance(v, int) and v > 0 for v in left.values())


def test_the_quantiser_shortcuts_leave_the_int8_model_byte_for_byte_the_same(tmp_path):
    """measured._quantise's faster steps change the cost, never the model (nor the stored int8 rows' meaning); the
    library is restored after the block, also when quantising fails."""
    from onnxruntime.quantization import calibrate, onnx_model, qdq_quantizer, quant_utils

    from measured._quantise import _targets, shortcuts

    src = export_onnx(SMALL, str(tmp_path / "m.onnx"))
    plain = quantize_int8(src, str(tmp_path / "plain.onnx"), (1, 3, 32, 32), shortcuts=False)
    fast = quantize_int8(src, str(tmp_path / "fast.onnx"), (1, 3, 32, 32))
    assert open(plain, "rb").read() == open(fast, "rb").read()
    names = {(o, n) for o, n, _ in _targets()}
    import onnxruntime

    from measured._quantise import VERIFIED_ONNXRUNTIME

    if not onnxruntime.__version__.startswith(VERIFIED_ONNXRUNTIME):
        assert names == set()  # a release not checked byte for byte: the library's own path
        return
    assert (calibrate.CalibraterBase, "create_inference_session") in names  # this onnxruntime takes every shortcut
    assert {(m, "find_by_name") for m in (quant_utils, qdq_quantizer, onnx_model)} <= names
    assert (calibrate.MinMaxCalibrater, "augment_graph") in names
    before = [o.__dict__[n] for o, n in names]
    with pytest.raises(RuntimeError), shortcuts():
        raise RuntimeError("quantising failed")
    assert [o.__dict__[n] for o, n in names] == before


def _augmented(path, fast: bool, monkeypatch, **options) -> tuple[bytes, bytes]:
    """MinMaxCalibrater's augmented calibration model (in memory, and its file) from the library's augment_graph or
    measured._quantise's, the uuid names it draws made the same for both (0, 1, 2, ... per run)."""
    import itertools
    import uuid

    from onnxruntime.quantization import calibrate

    from measured._quantise import _augment_graph

    serial = itertools.count()
    monkeypatch.setattr(calibrate.uuid, "uuid4", lambda: uuid.UUID(int=next(serial)))
    out = f"{path}.{int(fast)}.{int(bool(options))}.augmented.onnx"
    c = calibrate.MinMaxCalibrater(path, augmented_model_path=out, **options)
    (_augment_graph if fast else calibrate.MinMaxCalibrater.augment_graph)(c)
    return c.model.SerializeToString(), open(out, "rb").read()


def _graph_with_awkward_names(path: str, opset: int) -> str:
    """A small graph with every case the insertion order depends on: a tensor read twice (A), graph outputs read by
    nothing (D, E, F), an input, and a tensor named like another's inserted Reshape input (A_ReduceMin_Reshape,
    whose first reader may then be an inserted node)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "W")
    nodes = [helper.make_node("Conv", ["X", "W"], ["A"]), helper.make_node("Relu", ["A"], ["B"]),
             helper.make_node("Add", ["B", "A"], ["C"]), helper.make_node("Identity", ["C"], ["D"]),
             helper.make_node("Relu", ["B"], ["E"]), helper.make_node("Sigmoid", ["C"], ["A_ReduceMin_Reshape"]),
             helper.make_node("Mul", ["A_ReduceMin_Reshape", "B"], ["F"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in "DEF"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs, [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


@pytest.mark.parametrize("opset", [13, 18])  # ReduceMin/Max's axes: an attribute before 18, an input from 18
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_the_fast_augment_graph_matches_the_librarys_on_awkward_names(tmp_path, monkeypatch, opset, per_channel,
                                                                       reverse):
    """Both orders of the tensors (the library iterates a set: its order varies per process): A before
    A_ReduceMin_Reshape makes an inserted Reshape the first reader of the latter."""
    from onnxruntime.quantization import calibrate

    select = calibrate.CalibraterBase.select_tensors_to_calibrate

    def ordered(self, model):
        tensors, value_infos = select(self, model)
        return sorted(tensors, reverse=reverse), value_infos

    monkeypatch.setattr(calibrate.CalibraterBase, "select_tensors_to_calibrate", ordered)
    path = _graph_with_awkward_names(str(tmp_path / "g.onnx"), opset)
    plain = _augmented(path, False, monkeypatch, per_channel=per_channel)
    assert _augmented(path, True, monkeypatch, per_channel=per_channel) == plain


@pytest.mark.parametrize("which", ["small", "sampled"])
def test_the_fast_augment_graph_matches_the_librarys_on_exported_models(tmp_path, monkeypatch, which):
    """The calibration model quantize_static builds (per_channel off) byte for byte the library's, on the small
    test model and on a sampled config of a few hundred nodes; per channel on the small one too."""
    import random

    from search_spaces import sample_config

    cfg = SMALL if which == "small" else sample_config(random.Random(2))
    src = export_onnx(cfg, str(tmp_path / "m.onnx"))
    for options in ({}, {"per_channel": True}) if which == "small" else ({},):
        assert _augmented(src, True, monkeypatch, **options) == _augmented(src, False, monkeypatch, **options)


def test_the_fast_check_type_matches_the_librarys():
    import numpy as np
    from onnxruntime.quantization import quant_utils

    from measured._quantise import _fast_check_type

    fast = _fast_check_type(quant_utils._check_type)
    cases = [((np.float32(0.5),), {}), ((np.array(3, np.uint8), np.array(0.1, np.float32)), {"zero_point_index": 0}),
             ((np.arange(4, dtype=np.int8),), {}), ((2.0, np.array(1.0)), {}), ((np.int64(7), np.float16(1)), {})]
    for args, kw in cases:
        a, b = quant_utils._check_type(*args, **kw), fast(*args, **kw)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert type(x) is type(y) and x.dtype == y.dtype and np.array_equal(x, y)
    for args, kw in [((np.array(0.5, np.float32),), {"zero_point_index": 0}), (("x",), {})]:
        with pytest.raises(TypeError):
            quant_utils._check_type(*args, **kw)
        with pytest.raises(TypeError):
            fast(*args, **kw)


def test_the_fast_per_channel_params_match_the_librarys():
    import numpy as np
    from onnx import TensorProto
    from onnxruntime.quantization import quant_utils

    from measured._quantise import _fast_data_quant_params

    fast = _fast_data_quant_params(quant_utils.compute_data_quant_params, quant_utils.get_qmin_qmax_for_qType)
    rng = np.random.default_rng(3)
    channels = [rng.standard_normal(9).astype(np.float32) * s for s in (1e-3, 1.0, 7.5, 1e30)]
    channels += [np.zeros(9, np.float32), np.full(4, -2.5, np.float32), np.full(4, 3.0, np.float32),
                 np.array([1e-45, -1e-45], np.float32), np.array([np.nan, 1.0], np.float32), np.zeros(0, np.float32)]
    for data in channels:
        for qtype, symmetric in ((TensorProto.INT8, True), (TensorProto.UINT8, False), (TensorProto.INT8, False)):
            outcome = []
            for f in (quant_utils.compute_data_quant_params, fast):
                try:
                    with np.errstate(all="ignore"):
                        outcome.append(f(data, qtype, symmetric))
                except AssertionError as e:  # the library's own check (a NaN range): the same on both paths
                    outcome.append(type(e))
            want, got = outcome
            if not isinstance(want, tuple):
                assert want is got
                continue
            for x, y in zip(want, got):
                assert type(x) is type(y) and x.dtype == y.dtype and x.shape == y.shape
                assert x.tobytes() == y.tobytes(), (data, qtype, symmetric)


def test_int8_runs_and_records_its_recipe():
    b = get_backend("onnxruntime", 1, "int8")
    try:
        run = b.load_config(SMALL)
        out = run()
        assert out[0].shape == (1, 100)
    finally:
        b.close()
    assert precision_note("int8") == INT8_RECIPE and precision_note("fp32") is None
    assert "default_rng(1)" in INT8_RECIPE and "QDQ" in INT8_RECIPE
    assert Protocol(precision="int8").key != Protocol().key  # stored under a protocol of its own


@pytest.mark.parametrize("backend", ["torch", "torchscript"])
def test_int8_on_a_backend_without_it_is_one_line(backend, tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas", "measure", "--model", "B0", "--backend", backend, "--precision",
                        "int8", "--store", str(tmp_path / "s.sqlite")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"precision: {backend} supports fp32 (got 'int8')" in r.stderr


def test_int8_rows_train_their_own_predictor_key():
    from nas.cli._predict import quantised_key

    assert quantised_key("host-1", {"precision": "int8"}) == "host-1+int8"
    assert quantised_key("host-1", {"precision": "fp32"}) == "host-1"
    assert quantised_key("host-1", {}) == "host-1"


def test_the_int8_reference_is_the_campaigns_int8_model_quantised_once(tmp_path, monkeypatch):
    """Paired int8 timing pairs like with like: the reference is the model a campaign times for it (its export,
    quantised by the recipe), not the weight-free cached graph; quantised once per host; its rows name it."""
    import collections

    import onnx

    from measured import _backends, _harness
    from measured._backends import reference_id

    monkeypatch.setenv("LOWFORMER_NAS_ANCHOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_harness, "_LOADED", {})
    calls = []
    monkeypatch.setattr(_backends, "quantize_int8", lambda *a: calls.append(a) or quantize_int8(*a))
    p = Protocol(precision="int8")
    run, ref, label = _harness.reference_runner(p, "small", SMALL)
    assert run()[0].shape == (1, 100)
    assert label == "small int8" and ref == reference_id(SMALL.hash, "int8") and ref != SMALL.hash
    _harness._LOADED.clear()
    _harness.reference_runner(p, "small", SMALL)
    assert len(calls) == 1  # the second process (here: a cleared cache of sessions) reuses the file
    [cached] = (tmp_path / "cache").rglob("*.int8.onnx")
    campaign = quantize_int8(export_onnx(SMALL, str(tmp_path / "c.onnx")), str(tmp_path / "c.int8.onnx"), (1, 3, 32, 32))
    ops = [collections.Counter(n.op_type for n in onnx.load(f).graph.node) for f in (cached, campaign)]
    assert ops[0] == ops[1]
