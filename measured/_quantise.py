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
  a dozen 0-d numpy operations.

Each is checked against the unpatched library, byte for byte, on the published versions (tests/measured/
test_backends_int8.py) on the releases named in :data:`VERIFIED_ONNXRUNTIME`; on any other release, or one
whose internals differ (a name missing), nothing is patched.
"""

from __future__ import annotations

import contextlib
import functools
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
    from onnxruntime.quantization import calibrate, onnx_model, qdq_quantizer, quant_utils

    if not onnxruntime.__version__.startswith(VERIFIED_ONNXRUNTIME):
        return []
    names = ("get_qmin_qmax_for_qType", "_check_type", "find_by_name", "compute_data_quant_params")
    if not (hasattr(calibrate.CalibraterBase, "create_inference_session")
            and hasattr(onnx_model.ONNXModel, "replace_input_of_all_nodes")
            and all(hasattr(quant_utils, n) for n in names)):
        return []
    fast = {"get_qmin_qmax_for_qType": functools.lru_cache(maxsize=None)(quant_utils.get_qmin_qmax_for_qType),
            "_check_type": _fast_check_type(quant_utils._check_type), "find_by_name": _find_by_name}
    fast["compute_data_quant_params"] = _fast_data_quant_params(quant_utils.compute_data_quant_params,
                                                                fast["get_qmin_qmax_for_qType"])
    targets = [(calibrate.CalibraterBase, "create_inference_session", _calibration_session),
               (onnx_model.ONNXModel, "replace_input_of_all_nodes", _replace_input_of_all_nodes)]
    for module in (quant_utils, qdq_quantizer, onnx_model, calibrate):  # each module that imported the function
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
