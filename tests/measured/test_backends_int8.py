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


def _weights():
    """Per-channel weights (name, array, axis) of several shapes and axes: an all-zero channel, a negative-only one,
    a tiny one, one channel, values that clip."""
    import numpy as np

    rng = np.random.default_rng(5)
    conv = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    conv[2] = 0.0
    conv[5] = -np.abs(conv[5])
    conv[6] *= 1e-39  # subnormal: a scale below float32's tiny, the library's (1.0, 0)
    return [("conv", conv, 0), ("gemm", rng.standard_normal((4, 6)).astype(np.float32) * 30, 1),
            ("vec", rng.standard_normal(5).astype(np.float32), 0), ("one", rng.standard_normal((1, 2, 2)).astype(np.float32), 0),
            ("last", rng.standard_normal((3, 4, 2)).astype(np.float32), -1), ("pos", np.abs(rng.standard_normal((2, 7))).astype(np.float32), 0)]


def _params_quantizer(extra=None):
    """A QDQQuantizer over a model holding :func:`_weights` and a few the fast path leaves to the library, with its
    tensors_to_quantize set as the node quantisers set it (weights per channel)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer, QDQQuantTensorType, QDQTensorQuantInfo

    weights = _weights() + [("half", np.ones((2, 3), np.float16), 0), ("nan", np.array([[1.0, np.nan]], np.float32), 1),
                            ("tensor", np.arange(6, dtype=np.float32).reshape(2, 3), None),
                            ("act", np.arange(4, dtype=np.float32), 0), ("empty", np.zeros((3, 0), np.float32), 0)]
    inits = [numpy_helper.from_array(w, n) for n, w, _ in weights]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    q = QDQQuantizer(model, True, False, TensorProto.INT8, TensorProto.UINT8, None, [], [], ["Conv"], extra or {})
    for n, w, axis in weights + [("missing", None, 0)]:
        kind = QDQQuantTensorType.ACTIVATION if n == "act" else QDQQuantTensorType.WEIGHT
        q.tensors_to_quantize[n] = QDQTensorQuantInfo(tensor_type=kind, axis=axis, data_type=TensorProto.FLOAT)
    return q


def _same_params(want, got):
    import numpy as np

    assert list(want) == list(got)  # the library's order
    for name in want:
        a, b = want[name], got[name]
        assert list(a) == list(b), name
        for k in a:
            x, y = a[k], b[k]
            assert type(x) is type(y), (name, k)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), (name, k)
            else:
                assert x == y, (name, k)


def test_the_fast_initializer_params_match_the_librarys():
    """Per-channel int8 weights vectorised; per-tensor, activation, float16, NaN, empty and overridden tensors and
    other settings (reduce_range, a minimum range, uint8 weights) through the library: the same dict."""
    import numpy as np
    from onnx import TensorProto
    from onnxruntime.quantization import quant_utils
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    from measured._quantise import _fast_initializer_params, _find_by_name

    library = QDQQuantizer.__dict__["_calc_initializer_quant_params"]
    given = []  # the tensors the library's method is left with
    fast = _fast_initializer_params(lambda q: given.append(set(q.tensors_to_quantize)) or library(q), _find_by_name,
                                    quant_utils.get_qmin_qmax_for_qType)
    for extra, tweak in [({}, None), ({"TensorQuantOverrides": {"gemm": [{"rmax": 2.0}]}}, None),
                         ({}, ("reduce_range", True)), ({"MinimumRealRange": 1e-4}, None),
                         ({}, ("weight_qType", TensorProto.UINT8))]:
        q = _params_quantizer(extra)
        del q.tensors_to_quantize["nan"]  # NaN: the library asserts (below); both the same way
        if tweak:
            setattr(q, *tweak)
        before = dict(q.tensors_to_quantize)
        with np.errstate(all="ignore"):
            _same_params(library(q), fast(q))
        assert q.tensors_to_quantize == before  # restored after the library's share
    assert given[0] == {"half", "tensor", "act", "empty", "missing"}  # the rest of the defaults' were vectorised
    assert "gemm" in given[1] and "conv" not in given[1] and all("conv" in g for g in given[2:])
    q = _params_quantizer()
    outcome = []
    for f in (library, fast):
        with pytest.raises(AssertionError), np.errstate(all="ignore"):
            f(q)
        outcome.append(len(q.tensors_to_quantize))
    assert outcome[0] == outcome[1]


def test_the_fast_initializer_quantisation_matches_the_librarys():
    """The per-channel int8 initializer in one numpy expression: the same TensorProto, byte for byte (clipped
    values, zero and negative channels, a given name); other cases through the library."""
    import numpy as np
    from onnx import TensorProto, numpy_helper
    from onnxruntime.quantization import quant_utils

    from measured._quantise import _fast_quantize_initializer

    library = quant_utils.quantize_onnx_initializer
    fast = _fast_quantize_initializer(library)
    for name, w, axis in _weights():
        axis = axis % w.ndim
        channels = [w.take(i, axis).ravel() for i in range(w.shape[axis])]
        params = [quant_utils.compute_data_quant_params(c, TensorProto.INT8, True) for c in channels]
        zp, scale = np.asarray([p[0] for p in params]), np.asarray([p[1] for p in params])
        for s in (scale, scale / 8):  # / 8: most values clip at +-127/-128
            init = numpy_helper.from_array(w, name)
            for label in (None, f"{name}_q"):
                want = library(init, TensorProto.INT8, zp, s, axis, label)
                assert fast(init, TensorProto.INT8, zp, s, axis, label).SerializeToString() == want.SerializeToString()
    w = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    zp8, zpu, scale = np.zeros(3, np.int8), np.full(3, 128, np.uint8), np.full(3, 0.05, np.float32)
    others = [(numpy_helper.from_array(w.astype(np.float16), "h"), TensorProto.INT8, zp8, scale.astype(np.float16), 0),
              (numpy_helper.from_array(w, "u"), TensorProto.UINT8, zpu, scale, 0),
              (numpy_helper.from_array(w, "t"), TensorProto.INT8, np.array(0, np.int8), np.array(0.05, np.float32), None),
              (numpy_helper.from_array(w, "b"), TensorProto.INT8, np.zeros(4, np.int8), np.full(4, 0.05, np.float32), 0),
              (numpy_helper.from_array(w, "n"), TensorProto.INT8, np.zeros(4, np.int8), np.full(4, 0.05, np.float32), -1)]
    for args in others:
        assert fast(*args).SerializeToString() == library(*args).SerializeToString()


def test_shapes_are_inferred_once_per_file_and_each_caller_gets_its_own_copy(tmp_path, monkeypatch):
    """quantize_static and its calibrator both load the same file with shape inference: once is enough, each
    caller gets its own model (both change theirs); a file with other bytes is inferred again."""
    import onnx
    from onnxruntime.quantization import quant_utils

    from measured._quantise import _shape_inference_once

    calls = []
    original = onnx.shape_inference.infer_shapes_path
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", lambda *a, **k: calls.append(a) or original(*a, **k))
    path = tmp_path / "m.onnx"  # the library takes a Path
    export_onnx(SMALL, str(path))
    load = _shape_inference_once(quant_utils.load_model_with_shape_infer)
    want = quant_utils.load_model_with_shape_infer(path).SerializeToString()
    first = load(path)
    first.graph.ClearField("node")  # a caller changing its model leaves the next caller's intact
    second = load(path)
    assert len(calls) == 2 and second.SerializeToString() == want
    assert load(path).SerializeToString() == want and len(calls) == 3  # handed over once: a third call infers
    changed = onnx.load(path)
    changed.graph.node.pop()
    changed.graph.output[0].name = changed.graph.node[-1].output[0]
    onnx.save(changed, path)
    assert load(path).SerializeToString() == quant_utils.load_model_with_shape_infer(path).SerializeToString()
    assert len(calls) == 5  # a file with other bytes: inferred again
    outside = tmp_path / "x.onnx"
    onnx.save(changed, str(outside), save_as_external_data=True, location="x.data", size_threshold=0)
    load(outside), load(outside)
    assert len(calls) == 7  # its weights in another file (which could change): never reused


def test_the_recipe_takes_the_vectorised_weight_paths_and_infers_shapes_once(tmp_path, monkeypatch):
    """On the verified release the recipe's per-channel weights skip the library's per-channel loops, and the
    model's shapes are inferred once per quantisation (the byte-identity test above checks the model itself)."""
    import importlib

    import onnx
    import onnxruntime
    from onnxruntime.quantization import calibrate, onnx_quantizer, qdq_quantizer, quant_utils

    from measured import _quantise

    if not onnxruntime.__version__.startswith(_quantise.VERIFIED_ONNXRUNTIME):
        pytest.skip(f"onnxruntime {onnxruntime.__version__}: the library's own path")
    names = {(o, n) for o, n, _ in _quantise._targets()}
    assert (qdq_quantizer.QDQQuantizer, "_calc_initializer_quant_params") in names
    assert {(m, "quantize_onnx_initializer") for m in (quant_utils, qdq_quantizer, onnx_quantizer)} <= names
    quantize_module = importlib.import_module("onnxruntime.quantization.quantize")
    assert {(m, "load_model_with_shape_infer") for m in (quant_utils, calibrate, quantize_module)} <= names
    src = export_onnx(SMALL, str(tmp_path / "m.onnx"))
    infer, params, nparray = (onnx.shape_inference.infer_shapes_path, qdq_quantizer.compute_data_quant_params,
                              quant_utils.quantize_nparray)
    calls = []
    # Counted where the library's loops call them (a counted name is not the library's: _targets leaves it alone).
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", lambda *a, **k: calls.append("infer") or infer(*a, **k))
    monkeypatch.setattr(qdq_quantizer, "compute_data_quant_params", lambda *a, **k: calls.append("params") or params(*a, **k))
    monkeypatch.setattr(quant_utils, "quantize_nparray", lambda *a, **k: calls.append("nparray") or nparray(*a, **k))
    counts = []
    for fast in (False, True):
        calls.clear()
        quantize_int8(src, str(tmp_path / f"{fast}.onnx"), (1, 3, 32, 32), shortcuts=fast)
        counts.append({c: calls.count(c) for c in ("infer", "params", "nparray")})
    plain, fast = counts
    assert plain["infer"] == 3 and fast["infer"] == 1  # quant_pre_process's, quantize_static's, the calibrator's
    # One call per channel of every weight on the library's path; what is left is the per-tensor initializers.
    assert fast["params"] == fast["nparray"] and 100 * fast["params"] < plain["params"] == plain["nparray"]


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
