"""The same contract over every backend: available() never raises; an unavailable backend is refused with
one line (never an ImportError); an available one runs a module and an ONNX file."""

import pytest

from lowformer_common import UserError
from measured._backends import BACKENDS, Backend, BackendUnavailable, get_backend


@pytest.mark.parametrize("name", list(BACKENDS))
def test_contract(name, tmp_path):
    cls = BACKENDS[name]
    assert issubclass(cls, Backend) and cls.name == name
    assert isinstance(cls.available(), bool)
    if not cls.available():
        with pytest.raises(BackendUnavailable) as e:
            get_backend(name)
        assert "\n" not in str(e.value) and name in str(e.value)
        return
    torch = pytest.importorskip("torch")
    backend = get_backend(name, threads=1)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
    runner = backend.load_module(module, (1, 3, 16, 16))
    out = runner()
    assert out is not None
    assert isinstance(cls.version(), str) and cls.version()
    backend.close()


def test_tensorrt_is_optional_here():
    # No TensorRT on CI machines: it must be reported unavailable, not crash on import.
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert not BACKENDS["tensorrt"].available()


def test_unknown_backend_and_bad_settings():
    with pytest.raises(UserError, match="^backend: unknown 'tflite'; allowed: onnxruntime"):
        get_backend("tflite")
    with pytest.raises(UserError, match="^precision: onnxruntime supports fp32"):
        get_backend("onnxruntime", precision="fp16")
    with pytest.raises(UserError, match="^threads: must be >= 1"):
        get_backend("onnxruntime", threads=0)


@pytest.mark.torch
def test_onnxruntime_runs_an_onnx_file(tmp_path):
    pytest.importorskip("onnxruntime")
    from search_spaces import export_onnx, get_variant

    cfg = get_variant("B0").config.with_(resolution=64)
    path = export_onnx(cfg, str(tmp_path / "b0.onnx"))
    (logits,) = get_backend("onnxruntime").load_onnx(path, (1, 3, 64, 64))()
    assert logits.shape == (1, 1000)


def test_what_each_backend_is_comes_from_the_backend_table():
    from measured import BACKENDS, backend_help
    from measured._fingerprint import _PACKAGES

    assert {n for n, b in BACKENDS.items() if b.is_gpu()} == {"torch_cuda", "tensorrt"}
    assert {n for n, b in BACKENDS.items() if b.runs_onnx} == {"onnxruntime", "tensorrt"}
    assert all(p in _PACKAGES for b in BACKENDS.values() for p in b.packages)  # every backend's version is recorded
    assert backend_help().split("|") == ["onnxruntime (default)", *list(BACKENDS)[1:]]
