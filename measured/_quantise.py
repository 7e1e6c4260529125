"""Shortcuts through onnxruntime's static quantiser that leave its int8 model byte for byte the same.

Quantising a model (measured._backends.quantize_int8) cost 3-8 CPU seconds per config on a 2-core host, more than
the timing of most configs; most of it is the quantiser's Python, not its arithmetic. Inside :func:`shortcuts` a
few of its steps run faster with the same result:

- the calibration session runs on one thread without spinning (the library's default is a spinning pool of one
  thread per core, beside a campaign's other export worker on the next core); same graph, same optimisation level
  (none), same kernels: the same tensors and so the same ranges;
- ``replace_input_of_all_nodes`` looks only at the nodes that read the tensor (the library calls it once per
  quantised activation and each call walked every input of every node: quadratic in the model's size);
- ``get_qmin_qmax_for_qType`` is memoised (called twice per weight channel; it returns module constants);
- ``_check_type`` (twice per weight channel) takes an array as it is without numpy's slow dtype test;
- ``MinMaxCalibrater.augment_graph`` places each ReduceMin/ReduceMax pair with indexes of the nodes' readers and
  keeps its value-info lookup up to date (the library rescans the node list per insertion and rebuilds the lookup
  per tensor: quadratic), making the same protobuf calls in the same order;
- ``find_by_name`` (one scan of the initializers per quantised tensor) stops at the first match, which it returns;
- ``compute_data_quant_params`` (once per channel of every per-channel weight: tens of thousands of calls) does
  the symmetric int8 case's few steps on Python floats (IEEE doubles, as the library's float64 steps) instead of
  a dozen 0-d numpy operations;
- ``QDQQuantizer._calc_initializer_quant_params`` computes the per-channel int8 weights' parameters (no overrides,
  symmetric INT8, float32; the recipe's every Conv/Gemm weight) from one vectorised min/max per weight, with the
  same float32/float64 steps element-wise (:func:`_symmetric_int8_params`); the other tensors go through the
  library's method, and the dict keeps its order;
- ``quantize_onnx_initializer`` quantises such a weight in one numpy expression over all its channels (the same
  float32 divide, round, add, clip and cast as ``quantize_nparray`` per channel);
- ``load_model_with_shape_infer`` (quantize_static and then its calibrator on the same file) infers the shapes once:
  the second load gets the first's model when the file's bytes are the same and it has no external data.

Each is checked against the unpatched library, byte for byte, on the published versions (tests/measured/
test_backends_int8.py) on the releases named in :data:`VERIFIED_ONNXRUNTIME`; on any other release, or one
whose internals differ (a name missing), nothing is patched.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading

# One quantisation at a time in a process patches and restores (the export workers are processes, not threads).
_LOCK = threading.Lock()


def _calibration_session(self) -> None:
    """CalibraterBase.create_inference_session on one thread (the library's optimisation level and providers)."""
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    self.infer_session = onnxruntime.InferenceSession(self.augmented_model_path, sess_options=so,
                                                      providers=self.execution_providers)


def _replace_input_of_all_nodes(self, old_input_name: str, new_input_name: str) -> None:
    """ONNXModel.replace_input_of_all_nodes, visiting only the nodes that read ``old_input_name``."""
    replace = type(self).replace_node_input
    for node in self.model.graph.node:
        if old_input_name in node.input:  # a scan in C; replace_node_input changes only matching entries
            replace(node, old_input_name, new_input_name)


def _fast_check_type(original):
    """quant_utils._check_type with a fast path for arrays (``numpy.issubdtype(numpy.ndarray, numpy.number)`` is
    False: the library appends an array as it is) and numpy scalars (wrapped in an array, as the library does)."""
    import numpy

    def check_type(*args, zero_point_index=-1):
        if not all(isinstance(a, (numpy.ndarray, numpy.number)) for a in args):
            return original(*args, zero_point_index=zero_point_index)  # Python numbers, bad input: the library's path
        new_args = [a if isinstance(a, numpy.ndarray) else numpy.array(a) for a in args]
        if 0 <= zero_point_index < len(new_args) and new_args[zero_point_index].dtype in (numpy.float32, numpy.float16):
            return original(*args, zero_point_index=zero_point_index)  # raises the library's error
        return tuple(new_args) if len(new_args) > 1 else new_args[0]

    return check_type


def _fast_data_quant_params(original, qrange):
    """quant_utils.compute_data_quant_params with a fast path for the case a per-channel int8 weight takes once per
    channel (symmetric INT8, finite float32 data, no range overrides): the library's arithmetic on Python floats,
    which are IEEE doubles like its float64 steps and hold float32 values exactly. Anything else: the library's."""
    import math

    import numpy
    from onnx import TensorProto

    tiny = float(numpy.finfo(numpy.float32).tiny)

    def params(data, quant_type, symmetric, reduce_range=False, min_real_range=None, rmin_override=None,
               rmax_override=None):
        fallback = (not symmetric or quant_type != TensorProto.INT8 or reduce_range or min_real_range is not None
                    or rmin_override is not None or rmax_override is not None
                    or not isinstance(data, numpy.ndarray) or data.dtype != numpy.float32 or not data.size)
        if not fallback:
            lo, hi = float(data.min()), float(data.max())
            fallback = not (math.isfinite(lo) and math.isfinite(hi))
        if fallback:
            return original(data, quant_type, symmetric, reduce_range, min_real_range, rmin_override, rmax_override)
        absmax = max(abs(min(lo, 0.0)), abs(max(hi, 0.0)))  # the range widened to hold 0, made symmetric
        qmin, qmax = qrange(quant_type, reduce_range, symmetric=symmetric)
        scale = (absmax - -absmax) / (float(qmax) - float(qmin))  # float64, as the library divides
        if scale < tiny:
            return numpy.array(0, dtype=qmin.dtype), numpy.array(1.0, dtype=numpy.float32)
        zero_point = numpy.array(numpy.round((qmin + qmax) / numpy.array(2.0, dtype=numpy.float64)), dtype=qmin.dtype)
        return zero_point, numpy.array(scale, dtype=numpy.float64).astype(numpy.float32)

    return params


def _symmetric_int8_params(lo, hi, qrange):
    """compute_data_quant_params' symmetric int8 steps (quant_utils.compute_scale_zp) on arrays of per-channel
    float32 minima and maxima: the same float32 and float64 operations, element-wise; (zero points, scales)."""
    import numpy
    from onnx import TensorProto

    qmin, qmax = qrange(TensorProto.INT8, False, symmetric=True)
    zero = numpy.array(0, dtype=lo.dtype)
    absmax = numpy.maximum(numpy.abs(numpy.minimum(lo, zero)), numpy.abs(numpy.maximum(hi, zero)))
    dq = numpy.array(qmax, dtype=numpy.float64) - numpy.array(qmin, dtype=numpy.float64)
    scale = (absmax.astype(numpy.float64) - (-absmax).astype(numpy.float64)) / dq
    tiny = scale < numpy.finfo(numpy.float32).tiny  # the library's (1.0, 0) for a range too small to scale
    centre = numpy.array(numpy.round((qmin + qmax) / numpy.array(2.0, dtype=numpy.float64)), dtype=qmin.dtype)
    zero_point = numpy.where(tiny, numpy.array(0, dtype=qmin.dtype), centre).astype(qmin.dtype)
    scale = scale.astype(numpy.float32)
    scale[tiny] = 1.0
    return zero_point, scale


def _fast_initializer_params(original, find, qrange):
    """QDQQuantizer._calc_initializer_quant_params with the per-channel int8 weights that take the library's
    default path (no overrides, symmetric INT8, no reduce_range, min_real_range or block size, finite float32
    data) done in one vectorised min/max per weight instead of a Python call per channel; the other tensors go
    through the library's method (on a dict of just them); the result in the library's order."""
    import numpy
    from onnx import TensorProto
    from onnxruntime.quantization import quant_utils
    from onnxruntime.quantization.base_quantizer import QuantizationParams
    from onnxruntime.quantization.qdq_quantizer import QDQQuantTensorType

    def per_channel(self, name, info):
        if info.tensor_type is not QDQQuantTensorType.WEIGHT or info.axis is None or name in self.tensor_quant_overrides:
            return None
        initializer = find(name, self.model.initializer())
        if initializer is None or initializer.data_type != TensorProto.FLOAT:
            return None
        data = quant_utils.tensor_proto_to_array(initializer)
        valid, axis = quant_utils.normalize_axis(info.axis, data.ndim)
        if not valid or not data.size:
            return None  # the library's error or its empty-channel path
        others = tuple(i for i in range(data.ndim) if i != axis)
        lo, hi = data.min(axis=others), data.max(axis=others)
        if not (numpy.isfinite(lo).all() and numpy.isfinite(hi).all()):
            return None
        zero_point, scale = _symmetric_int8_params(lo, hi, qrange)
        return QuantizationParams(zero_point=zero_point, scale=scale, quant_type=TensorProto.INT8, axis=axis)

    def calc(self):
        plain = (self.weight_qType == TensorProto.INT8 and not self.reduce_range and self.min_real_range is None
                 and self.block_size == 0)
        every = self.tensors_to_quantize
        fast = {n: p for n, i in every.items() if plain and (p := per_channel(self, n, i)) is not None}
        slow = {}
        if len(fast) < len(every):
            self.tensors_to_quantize = {n: i for n, i in every.items() if n not in fast}
            try:
                slow = original(self)
            finally:
                self.tensors_to_quantize = every
        return {n: fast[n] if n in fast else slow[n] for n in every if n in fast or n in slow}

    return calc


def _fast_quantize_initializer(original):
    """quant_utils.quantize_onnx_initializer with the per-channel int8 case (float32 weight, int8 zero points and
    float32 scales, one per channel, no block size) in one numpy expression over all channels: quantize_nparray's
    float32 steps (divide by the scale, round, add the zero point, clip, cast) element-wise, the same initializer
    out. Anything else: the library's."""
    import numpy
    from onnx import TensorProto, numpy_helper
    from onnxruntime.quantization import quant_utils

    def quantize(weight, quant_type, zero_point, scale, axis=None, quant_weight_name=None, block_size=0):
        fast = (axis is not None and block_size == 0 and quant_type == TensorProto.INT8
                and weight.data_type == TensorProto.FLOAT and isinstance(scale, numpy.ndarray)
                and isinstance(zero_point, numpy.ndarray) and scale.dtype == numpy.float32
                and zero_point.dtype == numpy.int8 and isinstance(axis, int) and 0 <= axis < len(weight.dims)
                and scale.shape == zero_point.shape == (weight.dims[axis],) and weight.dims[axis] > 0)
        if not fast:
            return original(weight, quant_type, zero_point, scale, axis, quant_weight_name, block_size)
        data = quant_utils.tensor_proto_to_array(weight)
        per_channel = [1] * data.ndim
        per_channel[axis] = -1
        qmin, qmax = quant_utils.get_qmin_qmax_for_qType(quant_type, reduce_range=False, symmetric=False)
        q = numpy.asarray((data.astype(numpy.float32) / scale.reshape(per_channel)).round()
                          + zero_point.reshape(per_channel))
        numpy.clip(q, qmin, qmax, out=q)
        name = quant_weight_name if quant_weight_name else f"{weight.name}{quant_utils.TENSOR_NAME_QUANT_SUFFIX}"
        return numpy_helper.from_array(q.astype(numpy.int8).reshape(weight.dims), name)

    return quantize


def _shape_inference_once(original):
    """quant_utils.load_model_with_shape_infer that infers a file's shapes once per quantisation: quantize_static
    loads its input so, and its calibrator loads the same file again. The second call for the same path, whose
    bytes are the same (compared in full) and that has no external data (files beside it that could change), gets
    the first result as it was returned (a copy kept before its caller changed it), once: a third infers again."""
    import os

    import onnx
    from onnx import external_data_helper

    seen = {}

    def stamp(path):
        s = os.stat(path)
        return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns

    def load(model_path):
        key = os.path.abspath(model_path)
        before = stamp(key)
        with open(key, "rb") as f:
            data = f.read()
        hit = seen.pop(key, None)
        if hit is not None and hit[0] == data:
            return hit[1]
        model = original(model_path)
        if stamp(key) != before:  # rewritten meanwhile: the library may have read other bytes than ``data``
            return model
        tensors = external_data_helper._get_all_tensors(onnx.ModelProto.FromString(data))
        if not any(external_data_helper.uses_external_data(t) for t in tensors):
            kept = onnx.ModelProto()
            kept.CopyFrom(model)
            seen[key] = (data, kept)
        return model

    return load


def _find_by_name(item_name, item_list):
    """quant_utils.find_by_name: the first item named ``item_name``, or None (without scanning past it)."""
    return next((item for item in item_list if item.name == item_name), None)


class _Prefix:
    """Counts per slot with prefix sums in O(log n) (a Fenwick tree): how many nodes were inserted before a slot."""

    def __init__(self, size: int):
        self._tree = [0] * (size + 1)

    def add(self, slot: int, count: int) -> None:
        slot += 1
        while slot < len(self._tree):
            self._tree[slot] += count
            slot += slot & -slot

    def before(self, slot: int) -> int:
        """The sum of the counts of slots 0 .. slot-1."""
        total = 0
        while slot > 0:
            total += self._tree[slot]
            slot -= slot & -slot
        return total


class _Placement:
    """Where MinMaxCalibrater.augment_graph's ``insert_nodes`` puts new nodes (before the first node, original or
    inserted, that reads the tensor; at the end if none does), found with indexes instead of a scan of the node list
    per insertion. Gap ``g`` holds the inserted nodes (by serial number) that lie just before original node ``g``;
    gap ``n`` is the end of the list."""

    def __init__(self, nodes):
        self._nodes = nodes  # the graph's node list: inserted into at the library's indices
        self._n = len(nodes)
        self._first_reader: dict[str, int] = {}  # tensor -> first original node reading it (they never change)
        for i, node in enumerate(nodes):
            for name in node.input:
                self._first_reader.setdefault(name, i)
        self._gaps: list[list[int]] = [[] for _ in range(self._n + 1)]
        self._inserted = _Prefix(self._n + 1)
        self._gap_of: list[int] = []  # serial -> its gap
        self._readers: dict[str, list[int]] = {}  # tensor -> serials of the inserted nodes reading it

    def insert(self, tensor_name: str, new_nodes) -> None:
        """``insert_nodes(tensor_name, new_nodes)``: the same ``insert`` calls at the same indices."""
        gap, offset = self._first_consumer(tensor_name)
        index = gap + self._inserted.before(gap) + offset  # the original and inserted nodes before it, then its gap's
        serials = []
        for node in new_nodes:
            self._nodes.insert(index, node)
            index += 1
            serials.append(len(self._gap_of))
            self._gap_of.append(gap)
            for name in node.input:  # the ReduceMin just inserted is the first reader of its tensor from now on
                self._readers.setdefault(name, []).append(serials[-1])
        self._gaps[gap][offset:offset] = serials
        self._inserted.add(gap, len(serials))

    def _first_consumer(self, tensor_name: str) -> tuple[int, int]:
        """(gap, offset in it) of the first node reading ``tensor_name``; original node ``f`` sits after its gap."""
        f = self._first_reader.get(tensor_name, self._n)
        best = (f, len(self._gaps[f]))
        for serial in self._readers.get(tensor_name, ()):
            gap = self._gap_of[serial]
            if gap <= best[0]:
                best = min(best, (gap, self._gaps[gap].index(serial)))
        return best


class _ValueInfos:
    """augment_graph's per-call ``{value_info, then outputs, then inputs}`` lookup (a later one wins), built once
    and told of each output the augmentation appends, instead of rebuilt from the whole graph per call."""

    def __init__(self, graph):
        self._inputs = {vi.name for vi in graph.input}
        self._by_name = {vi.name: vi for vi in graph.value_info}
        self._by_name.update({vi.name: vi for vi in graph.output})
        self._by_name.update({vi.name: vi for vi in graph.input})

    def get(self, name: str):
        return self._by_name.get(name)

    def output_appended(self, vi) -> None:
        if vi.name not in self._inputs:  # an input of that name still wins, as in the library's update order
            self._by_name[vi.name] = vi


def _opset_version(model, op_type: str) -> int:
    """augment_graph's ``get_op_version``: the version of the first opset that defines ``op_type``."""
    import onnx

    for opset_import in model.opset_import:
        if onnx.defs.has(op_type, opset_import.domain):
            return opset_import.version
    raise RuntimeError(f"Model does not contain a version for '{op_type}'.")


def _add_reduce(calibrater, tensor_name: str, reduce_op_name: str, reshape_shape_name: str, value_infos: _ValueInfos,
                placement: _Placement, op_version) -> None:
    """augment_graph's ``add_reduce_min_max``: ``tensor_name`` -> ReduceMin/Max (keepdims=1) -> Reshape(-1) -> a new
    graph output, with the library's names, attributes and order of appends."""
    import numpy as np
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import calibrate

    graph = calibrater.model.graph
    reduce_output = tensor_name + "_" + reduce_op_name
    intermediate_output = reduce_output + "_Reshape"
    reduce_node = helper.make_node(reduce_op_name, [tensor_name], [intermediate_output], keepdims=1, name=reduce_output)
    reshape_node = helper.make_node("Reshape", inputs=[intermediate_output, reshape_shape_name], outputs=[reduce_output],
                                    name=intermediate_output)
    vi = value_infos.get(tensor_name)
    if vi is None:
        raise ValueError(f"Unable to guess tensor type for tensor {tensor_name!r}, "
                         "running shape inference before quantization may resolve this issue.")
    onnx_type = vi.type.tensor_type.elem_type
    if calibrater.per_channel:  # reduce all axes but 1: an attribute before opset 18, an initializer input since
        reduced_axes = [0, *range(2, len(vi.type.tensor_type.shape.dim))]
        if op_version(reduce_op_name) < 18:
            reduce_node.attribute.append(helper.make_attribute("axes", reduced_axes))
        else:
            reduce_axes_name = str(calibrate.uuid.uuid4())
            reduce_node.input.append(reduce_axes_name)
            graph.initializer.append(numpy_helper.from_array(np.array(reduced_axes, dtype=np.int64), reduce_axes_name))
    placement.insert(tensor_name, [reduce_node, reshape_node])
    graph.output.append(helper.make_tensor_value_info(reduce_output, onnx_type, [None]))
    value_infos.output_appended(graph.output[-1])


def _augment_graph(self) -> None:
    """MinMaxCalibrater.augment_graph in linear time: the library finds each insertion point by scanning every
    node's inputs and rebuilds a dict of all value infos per reduced tensor (quadratic; seconds on a big config).
    Here the same protobuf calls run in the same order with the same arguments (the uuid names drawn in the same
    order from calibrate's ``uuid``), so the augmented model and its file are byte for byte the library's."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import calibrate

    tensors, _ = self.select_tensors_to_calibrate(self.model)  # a set: iterated in the library's order
    reshape_shape_name = str(calibrate.uuid.uuid4())
    self.model.graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), reshape_shape_name))
    value_infos, placement = _ValueInfos(self.model.graph), _Placement(self.model.graph.node)
    op_version = functools.cache(functools.partial(_opset_version, self.model))  # opset_import never changes here
    for tensor in tensors:
        for reduce_op_name in ("ReduceMin", "ReduceMax"):
            _add_reduce(self, tensor, reduce_op_name, reshape_shape_name, value_infos, placement, op_version)
    onnx.save(self.model, self.augmented_model_path, save_as_external_data=self.use_external_data_format)


# The onnxruntime releases whose quantiser these shortcuts were checked against, byte for byte (tests/measured/
# test_backends_int8.py): a private function may keep its name and change its arguments or results in another
# release, so any other version quantises through the library's own path.
VERIFIED_ONNXRUNTIME = ("1.32.",)


def _targets():
    """(owner, attribute, replacement) of each shortcut, or [] on an onnxruntime release not in
    :data:`VERIFIED_ONNXRUNTIME` or lacking one of the names."""
    import onnxruntime
    from onnx import external_data_helper
    from onnxruntime.quantization import calibrate, onnx_model, onnx_quantizer, qdq_quantizer, quant_utils

    if not onnxruntime.__version__.startswith(VERIFIED_ONNXRUNTIME):
        return []
    names = ("get_qmin_qmax_for_qType", "_check_type", "find_by_name", "compute_data_quant_params")
    names += ("quantize_onnx_initializer", "load_model_with_shape_infer")
    if not (hasattr(calibrate.CalibraterBase, "create_inference_session")
            and hasattr(onnx_model.ONNXModel, "replace_input_of_all_nodes")
            and hasattr(qdq_quantizer.QDQQuantizer, "_calc_initializer_quant_params")
            and hasattr(external_data_helper, "_get_all_tensors")
            and all(hasattr(quant_utils, n) for n in names)):
        return []
    fast = {"get_qmin_qmax_for_qType": functools.lru_cache(maxsize=None)(quant_utils.get_qmin_qmax_for_qType),
            "_check_type": _fast_check_type(quant_utils._check_type), "find_by_name": _find_by_name}
    fast["compute_data_quant_params"] = _fast_data_quant_params(quant_utils.compute_data_quant_params,
                                                                fast["get_qmin_qmax_for_qType"])
    fast["quantize_onnx_initializer"] = _fast_quantize_initializer(quant_utils.quantize_onnx_initializer)
    fast["load_model_with_shape_infer"] = _shape_inference_once(quant_utils.load_model_with_shape_infer)
    targets = [(calibrate.CalibraterBase, "create_inference_session", _calibration_session),
               (onnx_model.ONNXModel, "replace_input_of_all_nodes", _replace_input_of_all_nodes)]
    targets.append((qdq_quantizer.QDQQuantizer, "_calc_initializer_quant_params", _fast_initializer_params(
        qdq_quantizer.QDQQuantizer.__dict__["_calc_initializer_quant_params"], _find_by_name,
        fast["get_qmin_qmax_for_qType"])))
    modules = (importlib.import_module("onnxruntime.quantization.quantize"), onnx_quantizer)
    for module in (quant_utils, qdq_quantizer, onnx_model, calibrate, *modules):  # each that imported the function
        targets += [(module, n, fast[n]) for n in names if module.__dict__.get(n) is quant_utils.__dict__[n]]
    if "augment_graph" in getattr(calibrate, "MinMaxCalibrater", object).__dict__:
        targets.append((calibrate.MinMaxCalibrater, "augment_graph", _augment_graph))
    return targets


@contextlib.contextmanager
def shortcuts(enabled: bool = True):
    """Run onnxruntime's quantiser with the shortcuts above for the duration of the block (restored after)."""
    if not enabled:
        yield
        return
    with _LOCK:
        targets = _targets()
        saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in targets]
        try:
            for owner, name, fast in targets:
                setattr(owner, name, fast)
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)
