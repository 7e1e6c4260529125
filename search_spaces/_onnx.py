"""ONNX export of any config (needs the ``measure`` extra)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings

from lowformer_common import UserError

from ._config import LowFormerConfig

# The TorchScript exporter is ~4x faster than the torch.export one, which matters for measurement
# campaigns of thousands of models. It also keeps the 1e-15 of the ReLU-linear attention's denominator:
# torch 2.13's torch.export exporter optimises that addition away, and its graph then divides 0 by 0.
EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17


def export_onnx(
    config: LowFormerConfig,
    path: str,
    *,
    batch: int = 1,
    model=None,
    exporter: str = "torchscript",
    opset: int = DEFAULT_OPSET,
) -> str:
    """Write the classifier of ``config`` as ONNX (input ``input``: batch x 3 x R x R, output ``logits``).

    The file is written atomically: a crash never leaves a half-written model behind. A config too large for this
    machine's memory (the knob limits allow 81 billion parameters) is a one-line :class:`ModelMemoryError`.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: must be one of {EXPORTERS} (got {exporter!r})")
    try:
        return _export(config, path, batch, model, exporter, opset)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "alloc" not in str(e).lower() and "memory" not in str(e).lower():
            raise
        from ._count import count

        params = count(config).params
        raise ModelMemoryError(f"export: config {config.hash[:12]} has {params:,} parameters ({params * 4 / 1e9:.1f} GB "
                               f"of fp32 weights): more than this machine's memory holds ({type(e).__name__})") from None


class ModelMemoryError(UserError):
    """Building or exporting a model ran out of memory (torch's allocator or Python's)."""


def _export(config: LowFormerConfig, path: str, batch: int, model, exporter: str, opset: int) -> str:
    import torch

    from ._builder import build_model

    model = model if model is not None else build_model(config)
    model.eval()
    r = config.resolution
    x = torch.randn(batch, 3, r, r)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=directory)
    os.close(fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
            if exporter == "torchscript":
                torch.onnx.export(model, (x,), tmp, dynamo=False, **kwargs)
            else:
                kwargs["opset_version"] = max(opset, 18)  # the lowest opset the torch.export exporter targets
                torch.onnx.export(model, (x,), tmp, dynamo=True, optimize=False, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
