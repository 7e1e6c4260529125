"""Bundles for devices the tool cannot run on (a Jetson, a Raspberry Pi): ONNX files, a manifest and one
standalone runner script; the runner's CSV comes back with ``lowformer-nas import``."""

from __future__ import annotations

import json
import os
import shutil
from typing import Sequence

from lowformer_common import UserError, atomic_write, sha256_file, utc_now, write_json
from search_spaces import count

from ._campaign import Job

RUNNER = os.path.join(os.path.dirname(__file__), "bundle_runner.py")


def write_bundle(
    jobs: Sequence[Job],
    out_dir: str,
    *,
    batch: int = 1,
    warmup: int = 5,
    runs: int = 100,
    name: str | None = None,
    progress: bool = True,
) -> dict:
    """Export every job's config to ONNX under ``out_dir/models``, then write the manifest and the runner.

    Re-running on the same folder reuses model files that are already complete, so an interrupted
    bundle resumes instead of starting over.
    """
    from tqdm import tqdm

    from search_spaces import export_onnx

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"out: {out_dir} exists and is not a folder")
    models_dir = os.path.join(out_dir, "models")
    os.makedirs(models_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    old = {}
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path, encoding="utf-8") as f:
                old = {m["hash"]: m for m in json.load(f).get("models", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            old = {}  # unreadable: every model is exported again and the manifest rewritten
    entries = []
    seen = set()
    for job in tqdm(jobs, desc="exporting ONNX", unit="model", disable=not progress, dynamic_ncols=True):
        cfg = job.config
        if cfg.hash in seen:
            continue
        seen.add(cfg.hash)
        rel = f"models/{cfg.hash[:16]}.onnx"
        path = os.path.join(out_dir, rel)
        prev = old.get(cfg.hash)
        if not (prev and os.path.exists(path) and sha256_file(path) == prev["sha256"]):
            export_onnx(cfg, path, batch=batch)
        c = count(cfg)
        entries.append(
            {
                "hash": cfg.hash,
                "name": job.name,
                "family": "LowFormer",
                "file": rel,
                "sha256": sha256_file(path),
                "resolution": cfg.resolution,
                "input_shape": [batch, 3, cfg.resolution, cfg.resolution],
                "config_json": cfg.canonical_json(),
                "params": c.params,
                "macs": c.macs,
            }
        )
    manifest = {
        "format": 1,
        "name": name or os.path.basename(os.path.abspath(out_dir)),
        "created": utc_now(),
        "protocol": {"metric": "latency_ms", "batch": batch, "warmup": warmup, "runs": runs, "statistic": "median"},
        "models": entries,
    }
    shutil.copyfile(RUNNER, os.path.join(out_dir, "run_bundle.py"))
    atomic_write(
        os.path.join(out_dir, "README.txt"),
        (
            f"lowformer-nas bundle: {len(entries)} ONNX models (batch {batch}).\n\n"
            "On the device (Python >= 3.8 with numpy and onnxruntime, or TensorRT):\n"
            "    python3 run_bundle.py --out results.csv            # see --help for backends and threads\n\n"
            "Back on the machine with lowformer-nas:\n"
            "    lowformer-nas import results.csv --device NAME\n"
        ),
    )
    write_json(manifest_path, manifest, indent=1)
    return manifest
