"""One model's file for a bundle or the anchor cache: its ONNX graph without the weight data (every float tensor
of EXTERNAL_MIN_BYTES or more becomes external data that bundle_runner.write_weights generates from a seed), and
its manifest entry. Apart from the bundle (measured._bundle) so that the harness can cache its reference and anchor
graphs the same way without importing campaigns (measured._bundle imports measured._campaign)."""

from __future__ import annotations

import json
import os

from lowformer_common import UserError, atomic_write, sha256_file, write_json

# Tensors below this size stay in the graph with their exact values: shape constants, scalars, small biases.
EXTERNAL_MIN_BYTES = 1024
# Each external tensor starts on a page: onnxruntime can map aligned external data instead of copying it.
ALIGN = 4096


def weight_seed(config_hash: str) -> int:
    """The seed of a model's generated weights: fixed by its config, so every bundle of it times the same values."""
    return int(config_hash[:15], 16)


# ---------------------------------------------------------------------------------------------- one model


def _strip_weights(onnx_path: str, weights_name: str, seed: int) -> tuple[bytes, dict]:
    """The graph of ``onnx_path`` with every float tensor >= EXTERNAL_MIN_BYTES moved to external data in
    ``weights_name`` (not written), and the manifest's recipe for that file."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    tensors = []
    offset = 0
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT or t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        a = numpy_helper.to_array(t)
        if a.nbytes < EXTERNAL_MIN_BYTES:
            continue
        a64 = a.astype(np.float64)
        mean, std = float(a64.mean()), float(a64.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise UserError(f"{onnx_path}: tensor {t.name} holds non-finite values")
        offset = -(-offset // ALIGN) * ALIGN
        tensors.append([offset, int(a.size), float(np.float32(mean)), float(np.float32(std))])
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", weights_name), ("offset", str(offset)), ("length", str(a.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        offset += a.nbytes
    recipe = {"seed": seed, "bytes": offset, "tensors": tensors}
    return model.SerializeToString(), recipe


def _export_one(task: dict) -> dict:
    """Export one model into the bundle (in a worker process); its manifest entry. Also written beside the model
    as ``<hash>.json``, so an interrupted bundle resumes with the models already written."""
    from search_spaces import LowFormerConfig, count, export_onnx

    cfg = LowFormerConfig.from_json(task["config_json"])
    out_dir, stem, batch = task["out_dir"], cfg.hash[:16], task["batch"]
    rel = f"models/{stem}.onnx"
    path = os.path.join(out_dir, rel)
    entry = {
        "hash": cfg.hash, "name": task["name"], "family": "LowFormer", "file": rel, "resolution": cfg.resolution,
        "input_shape": [batch, 3, cfg.resolution, cfg.resolution], "config_json": cfg.canonical_json(),
    }
    if task["full_weights"]:
        export_onnx(cfg, path, batch=batch)
    else:
        # The full export lives only as a temporary file (deleted before the page cache writes it out).
        tmp = os.path.join(out_dir, "models", f".{stem}.full.onnx.tmp")
        try:
            export_onnx(cfg, tmp, batch=batch)
            graph, recipe = _strip_weights(tmp, f"{stem}.weights", weight_seed(cfg.hash))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        atomic_write(path, graph)
        # The digest of the file the runner will generate: it checks its own file against it before timing.
        entry["weights"] = {"file": f"models/{stem}.weights", **recipe, "sha256": _runner().weights_sha256(recipe)}
    c = count(cfg)
    entry.update(sha256=sha256_file(path), params=c.params, macs=c.macs)
    write_json(os.path.join(out_dir, "models", f"{stem}.json"), entry, indent=None)
    return entry


def _runner():
    from . import bundle_runner

    return bundle_runner


def _reusable(out_dir: str, cfg_hash: str, full_weights: bool) -> dict | None:
    """The entry of a model an earlier run already wrote completely (same weights mode, file unchanged)."""
    stem = cfg_hash[:16]
    try:
        with open(os.path.join(out_dir, "models", f"{stem}.json"), encoding="utf-8") as f:
            entry = json.load(f)
        path = os.path.join(out_dir, entry["file"])
        if (entry.get("hash") != cfg_hash or ("weights" not in entry) != full_weights
                or ("weights" in entry and "sha256" not in entry["weights"])
                or not os.path.isfile(path) or sha256_file(path) != entry["sha256"]):
            return None
        return entry
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
