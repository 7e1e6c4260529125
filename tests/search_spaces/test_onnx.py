"""ONNX export equals torch within 1e-4 for named variants and random configs at 160-256 px."""

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
import numpy as np  # noqa: E402

from search_spaces import build_model, export_onnx, get_variant, randomize_, sample_configs  # noqa: E402

pytestmark = pytest.mark.torch

RANDOM = list(sample_configs(20, seed=5, resolutions=range(160, 257, 16)))


def _check(cfg, tmp_path, seed=0):
    model = randomize_(build_model(cfg, init=False), seed)
    path = export_onnx(cfg, str(tmp_path / "m.onnx"), model=model)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, cfg.resolution, cfg.resolution, generator=torch.Generator().manual_seed(seed))
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.isfinite(ref).all()
    assert np.abs(y - ref).max() <= 1e-4, np.abs(y - ref).max()


@pytest.mark.parametrize("name", ["B0", "B1", "E1", "B1-mhsa", "B1-relu-linear", "B1-unfused"])
def test_named(name, tmp_path):
    _check(get_variant(name).config, tmp_path)


@pytest.mark.parametrize("i", range(len(RANDOM)))
def test_random(i, tmp_path):
    _check(RANDOM[i], tmp_path, seed=i)


def test_export_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.onnx"
    target.write_bytes(b"previous")

    def boom(*a, **k):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(RuntimeError):
        export_onnx(get_variant("B0").config, str(target))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]
