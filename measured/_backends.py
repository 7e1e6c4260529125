"""Execution backends: one small class each behind one interface.

A backend turns a model (a LowFormer config, any ``nn.Module``, or an ONNX file) into a ``Runner``: a
zero-argument callable that runs one inference on an input generated beforehand and returns only when
the result is ready (CUDA runs synchronise). The harness times runners; it never sees the framework.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import logging
import os
import tempfile
from typing import Callable

import numpy as np

from lowformer_common import UserError
from search_spaces import LowFormerConfig

Runner = Callable[[], object]


class BackendUnavailable(UserError):
    """The backend cannot run here (its package or device is missing)."""


class Backend(abc.ABC):
    """Base of every backend. ``threads`` applies to CPU backends; ``precision`` is fp32 or fp16."""

    name: str = ""
    device_kind: str = "cpu"  # "cpu" | "gpu": which local device its measurements belong to
    precisions: tuple[str, ...] = ("fp32",)
    # Whether it runs exported ONNX files: a campaign then exports configs ahead of timing, on every core.
    runs_onnx: bool = False
    # Distributions whose versions every measurement's device records (see measured._fingerprint).
    packages: tuple[str, ...] = ()

    @classmethod
    def is_gpu(cls) -> bool:
        """Whether its measurements belong to this machine's GPU (and its child gets a GPU-sized memory cap)."""
        return cls.device_kind == "gpu"

    def __init__(self, threads: int = 1, precision: str = "fp32"):
        if precision not in self.precisions:
            raise UserError(f"precision: {self.name} supports {'|'.join(self.precisions)} (got {precision!r})")
        if threads is not None and threads < 1:
            raise UserError(f"threads: must be >= 1 (got {threads})")
        self.threads = threads
        self.precision = precision

    @classmethod
    @abc.abstractmethod
    def available(cls) -> bool:
        """Whether this backend can run on this machine (never raises)."""

    @classmethod
    @abc.abstractmethod
    def version(cls) -> str: ...

    def _require(self) -> None:
        if not self.available():
            raise BackendUnavailable(f"backend: {self.name} is not available on this machine")

    @abc.abstractmethod
    def load_module(self, module, input_shape: tuple[int, ...]) -> Runner:
        """A runner for a torch module on an input of ``input_shape``."""

    def load_config(self, config: LowFormerConfig, batch: int = 1) -> Runner:
        from search_spaces import build_model

        r = config.resolution
        return self.load_module(build_model(config), (batch, 3, r, r))

    def load_onnx(self, path: str, input_shape: tuple[int, ...]) -> Runner:
        raise UserError(f"backend: {self.name} does not run ONNX files; use onnxruntime or tensorrt")

    def close(self) -> None:
        """Free what the last load kept (temporary files, GPU memory)."""


def export_module_onnx(module, input_shape: tuple[int, ...], path: str) -> str:
    """Any torch module as ONNX (the TorchScript exporter, as for configs: see search_spaces._onnx)."""
    import contextlib
    import io
    import warnings

    import torch

    from search_spaces import DEFAULT_OPSET

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(_input(input_shape)),), path, dynamo=False,
                          input_names=["input"], opset_version=DEFAULT_OPSET)
    return path


def _input(shape, dtype=np.float32) -> np.ndarray:
    # Random input generated beforehand (the paper's protocol), the same for every backend.
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


# int8: onnxruntime's static quantisation, stated so that a row can say how its model was quantised.
CALIBRATION_SAMPLES = 8
INT8_RECIPE = (f"int8: onnxruntime static quantisation, QDQ format, activations QUInt8, weights QInt8 per channel, "
               f"MinMax calibration on {CALIBRATION_SAMPLES} inputs drawn from numpy default_rng(1) standard normal "
               "(the timed input is default_rng(0)'s); onnx shape inference before quantising")


def precision_note(precision: str) -> str | None:
    """What a measurement's notes record about its precision (the quantisation recipe of int8), or None."""
    return INT8_RECIPE if precision == "int8" else None


def reference_id(config_hash: str, precision: str) -> str:
    """What a paired row records as its reference: the reference's config hash, or for int8 a digest of that hash
    and :data:`INT8_RECIPE` (the int8 B0 is another model: its rows and anchor sessions must not be taken for those
    stored before it existed, which carry B0's hash and were paired with a B0 that ran at fp32 speed)."""
    if precision != "int8":
        return config_hash
    return hashlib.sha256(f"{config_hash}|{INT8_RECIPE}".encode()).hexdigest()


def int8_path(path: str) -> str:
    """Where a campaign's export workers leave the int8 model of ``path`` (quantised ahead of timing, on every
    core, like the export itself); the timing process uses and removes it."""
    return path + ".int8.onnx"


def quantize_int8(path: str, out: str, input_shape: tuple[int, ...], *, shortcuts: bool = True) -> str:
    """``path`` (fp32 ONNX) as static int8 QDQ ONNX at ``out``; deterministic (fixed calibration inputs).
    ``shortcuts``: through measured._quantise's faster steps, which leave the int8 model byte for byte the same
    (False: the library's own steps, which the tests compare them with)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ._quantise import shortcuts as quantiser_shortcuts

    class _Calibration(CalibrationDataReader):
        def __init__(self, name: str):
            rng = np.random.default_rng(1)
            self._feeds = iter([{name: rng.standard_normal(input_shape).astype(np.float32)}
                                for _ in range(CALIBRATION_SAMPLES)])

        def get_next(self):
            return next(self._feeds, None)

    import onnx

    pre = out + ".pre.onnx"
    try:
        # Its onnx shape inference is skipped with the shortcuts: quantize_static infers the shapes of what it loads
        # anyway (the same inference, the same model; only the ORT optimisation here changes the graph).
        quant_pre_process(path, pre, skip_symbolic_shape=True, skip_onnx_shape=shortcuts)
    except Exception:  # noqa: BLE001 (shape inference is an optimisation: quantise the plain graph)
        pre = path
    name = onnx.load(pre, load_external_data=False).graph.input[0].name
    logging.disable(logging.WARNING)  # the quantiser warns on the root logger per skipped tensor (norm weights)
    try:
        with quantiser_shortcuts(shortcuts):
            quantize_static(pre, out, _Calibration(name), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    if pre != path:
        os.unlink(pre)
    return out


class OnnxRuntimeBackend(Backend):
    """onnxruntime on the CPU, the paper's Raspberry Pi protocol. Intra- and inter-op threads are explicit.
    ``precision="int8"`` quantises each model statically before timing it (:data:`INT8_RECIPE`)."""

    name = "onnxruntime"
    packages = ("onnxruntime", "onnx")
    runs_onnx = True
    precisions = ("fp32", "int8")

    def __init__(self, threads: int = 1, precision: str = "fp32", exporter: str = "torchscript"):
        super().__init__(threads, precision)
        self.exporter = exporter
        self._tmp: tempfile.TemporaryDirectory | None = None

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    @classmethod
    def version(cls) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads must not spin between runs of a 1-thread session on a small machine.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0" if self.threads == 1 else "1")
        return so

    def load_onnx(self, path: str, input_shape: tuple[int, ...], *, quantised: bool = False) -> Runner:
        """``quantised``: ``path`` is already the int8 model (measured._harness.cached_int8), loaded as it is."""
        self._require()
        import onnxruntime as ort

        ahead = None
        if self.precision == "int8" and not quantised:  # quantised before timing, never while: the runner times the int8 graph only
            if os.path.isfile(int8_path(path)):  # an export worker quantised it already
                path = ahead = int8_path(path)
            else:
                self._int8_tmp = getattr(self, "_int8_tmp", None) or tempfile.TemporaryDirectory(prefix="lowformer-int8-")
                path = quantize_int8(path, os.path.join(self._int8_tmp.name, "model.int8.onnx"), input_shape)
        sess = ort.InferenceSession(path, self.session_options(), providers=["CPUExecutionProvider"])
        if ahead is not None:
            os.unlink(ahead)  # loaded: the session keeps the model
        name = sess.get_inputs()[0].name
        feed = {name: _input(input_shape)}
        run = sess.run
        return lambda: run(None, feed)

    def load_config(self, config: LowFormerConfig, batch: int = 1) -> Runner:
        from search_spaces import export_onnx

        self.close()
        self._tmp = tempfile.TemporaryDirectory(prefix="lowformer-ort-")
        path = export_onnx(config, os.path.join(self._tmp.name, "model.onnx"), batch=batch, exporter=self.exporter)
        r = config.resolution
        return self.load_onnx(path, (batch, 3, r, r))

    def load_module(self, module, input_shape):
        self.close()
        self._tmp = tempfile.TemporaryDirectory(prefix="lowformer-ort-")
        path = export_module_onnx(module, input_shape, os.path.join(self._tmp.name, "model.onnx"))
        return self.load_onnx(path, input_shape)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if getattr(self, "_int8_tmp", None) is not None:
            self._int8_tmp.cleanup()
            self._int8_tmp = None


class TorchEagerBackend(Backend):
    """PyTorch eager mode on the CPU."""

    name = "torch"
    packages = ("torch",)

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    def _prepare(self, module, input_shape):
        import torch

        torch.set_num_threads(self.threads)
        x = torch.from_numpy(_input(input_shape))
        return module.eval(), x

    def load_module(self, module, input_shape):
        self._require()
        import torch

        module, x = self._prepare(module, input_shape)

        def run():
            with torch.inference_mode():
                return module(x)

        return run


class TorchScriptBackend(TorchEagerBackend):
    """TorchScript (traced, frozen, optimised for inference): the paper's GPU-latency framework, here on the CPU."""

    name = "torchscript"

    def load_module(self, module, input_shape):
        self._require()
        import torch

        module, x = self._prepare(module, input_shape)
        import warnings

        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still the paper's framework
            scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module, x)))

        def run():
            with torch.inference_mode():
                return scripted(x)

        return run


class TorchCudaBackend(TorchEagerBackend):
    """PyTorch on a CUDA GPU, fp32 or fp16; every run is synchronised before the clock stops."""

    name = "torch_cuda"
    device_kind = "gpu"
    precisions = ("fp32", "fp16")

    @classmethod
    def available(cls) -> bool:
        if importlib.util.find_spec("torch") is None:
            return False
        import torch

        return torch.cuda.is_available()

    def load_module(self, module, input_shape):
        self._require()
        import torch

        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        module = module.eval().to("cuda", dtype)
        x = torch.from_numpy(_input(input_shape)).to("cuda", dtype)
        torch.backends.cudnn.benchmark = True
        sync = torch.cuda.synchronize

        def run():
            with torch.inference_mode():
                y = module(x)
            sync()
            return y

        return run

    def close(self) -> None:
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 (closing must never fail a measurement)
            pass


class TensorRTBackend(Backend):
    """TensorRT engine built from ONNX (optional: ``tensorrt`` and a CUDA GPU). Absent here: skipped cleanly."""

    name = "tensorrt"
    packages = ("tensorrt",)
    device_kind = "gpu"
    precisions = ("fp32", "fp16")
    runs_onnx = True

    @classmethod
    def available(cls) -> bool:
        if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
            return False
        import torch

        return torch.cuda.is_available()

    @classmethod
    def version(cls) -> str:
        import tensorrt

        return tensorrt.__version__

    def load_onnx(self, path, input_shape):
        self._require()
        import tensorrt as trt
        import torch

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with open(path, "rb") as f:
            if not parser.parse(f.read()):
                raise RuntimeError(f"TensorRT could not parse the ONNX file: {parser.get_error(0)}")
        cfg = builder.create_builder_config()
        if self.precision == "fp16":
            cfg.set_flag(trt.BuilderFlag.FP16)
        engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, cfg))
        context = engine.create_execution_context()
        # torch owns the device buffers: no extra CUDA binding is needed.
        x = torch.from_numpy(_input(input_shape)).cuda()
        out_name = engine.get_tensor_name(1)
        y = torch.empty(tuple(context.get_tensor_shape(out_name)), device="cuda")
        context.set_tensor_address(engine.get_tensor_name(0), x.data_ptr())
        context.set_tensor_address(out_name, y.data_ptr())
        stream = torch.cuda.current_stream()

        def run():
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            return y

        return run

    def load_module(self, module, input_shape):
        with tempfile.TemporaryDirectory(prefix="lowformer-trt-") as tmp:
            return self.load_onnx(export_module_onnx(module, input_shape, os.path.join(tmp, "model.onnx")), input_shape)


BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (OnnxRuntimeBackend, TorchEagerBackend, TorchScriptBackend, TorchCudaBackend, TensorRTBackend)
}


def backend_help(default: str = "onnxruntime") -> str:
    """Every backend's name for a ``--backend`` help text, the default marked."""
    return "|".join(f"{n} (default)" if n == default else n for n in BACKENDS)


def recorded_packages() -> tuple[str, ...]:
    """The distributions every backend needs, each once, in table order."""
    return tuple(dict.fromkeys(p for b in BACKENDS.values() for p in b.packages))


def get_backend(name: str, threads: int = 1, precision: str = "fp32") -> Backend:
    if name not in BACKENDS:
        raise UserError(f"backend: unknown {name!r}; allowed: {'|'.join(BACKENDS)}")
    cls = BACKENDS[name]
    if not cls.available():
        raise BackendUnavailable(f"backend: {name} is not available on this machine (missing package or GPU)")
    return cls(threads=threads, precision=precision)

