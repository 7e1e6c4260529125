"""Bundles for devices the tool cannot run on (a Jetson, a Raspberry Pi): ONNX graphs, a manifest and one
standalone runner script; the runner's CSV comes back with ``lowformer-nas import``.

A bundle ships each model's graph without its weight data (8.8 GB of random fp32 numbers for 119 models
otherwise): every float tensor of 1 KiB or more is an ONNX external-data tensor whose file the runner writes on
the device, before timing, from a seed with numpy (uniform values with the mean and standard deviation the
exported tensor had). Latency does not depend on the values of fp32 weights, only on their shapes, so the
timings are those of the full file (``tests/benchmarks/bench_bundle.py`` checks it on 5 models); the constant
tensors (biases and norms at their initial 0 or 1, shape constants, small tensors) keep their exact values.
``full_weights=True`` writes the complete files instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import re
import time
from typing import Sequence

from lowformer_common import UserError, atomic_write, read_at_most, sha256_file, utc_now, write_json

from ._campaign import Job
from ._records import check_device_id

RUNNER = os.path.join(os.path.dirname(__file__), "bundle_runner.py")
FORMAT = 2  # 1: full ONNX files only; 2: entries may carry "weights" (the runner writes them)
# Tensors below this size stay in the graph with their exact values: shape constants, scalars, small biases.
EXTERNAL_MIN_BYTES = 1024
# Each external tensor starts on a page: onnxruntime can map aligned external data instead of copying it.
ALIGN = 4096


@dataclasses.dataclass
class BundleReport:
    """What :func:`write_bundle` wrote."""

    manifest: dict
    out_dir: str
    exported: int  # models exported now (the rest were reused from an interrupted or earlier run)
    bytes: int  # size of the bundle folder
    seconds: float

    def line(self) -> str:
        n = len(self.manifest["models"])
        kind = "full weights" if self.manifest.get("weights") == "full" else "graphs, weights written on the device"
        return (f"wrote {n} models ({kind}; {self.exported} exported now) to {self.out_dir}: "
                f"{_size(self.bytes)} in {self.seconds:.0f} s")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


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


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one export per core


# ---------------------------------------------------------------------------------------------- the bundle


def write_bundle(
    jobs: Sequence[Job],
    out_dir: str,
    *,
    batch: int = 1,
    warmup: int = 5,
    runs: int = 100,
    name: str | None = None,
    device_id: str | None = None,
    full_weights: bool = False,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> BundleReport:
    """Export every job's config under ``out_dir/models``, then write the manifest, the runner and a README.

    ``workers`` export processes (default: one per core); re-running on the same folder reuses every model
    already written completely, so an interrupted bundle resumes instead of starting over. ``device_id``
    (optional) is the id the runner's rows carry. A folder holding another bundle or other files is refused
    unless ``force`` (:func:`check_out_dir`).
    """
    t0 = time.perf_counter()
    if device_id is not None:
        check_device_id(device_id)
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.config.hash, job)
    check_out_dir(out_dir, set(unique), force)
    os.makedirs(os.path.join(out_dir, "models"), exist_ok=True)
    entries: dict[str, dict] = {}
    tasks = []
    for h, job in unique.items():
        entry = _reusable(out_dir, h, full_weights)
        if entry is not None:
            entries[h] = {**entry, "name": job.name}
        else:
            tasks.append({"config_json": job.config.canonical_json(), "name": job.name, "out_dir": out_dir,
                          "batch": batch, "full_weights": full_weights})
    for e in _export_all(tasks, workers, progress):
        entries[e["hash"]] = e
    manifest = {
        "format": FORMAT,
        "name": name or os.path.basename(os.path.abspath(out_dir)),
        "created": utc_now(),
        "protocol": {"metric": "latency_ms", "batch": batch, "warmup": warmup, "runs": runs, "statistic": "median"},
        "weights": "full" if full_weights else "generated",
        "models": [entries[h] for h in unique],
    }
    if device_id is not None:
        manifest["device_id"] = device_id
    with open(RUNNER, "rb") as f:  # renamed into place: a link there is replaced, never written through
        atomic_write(os.path.join(out_dir, "run_bundle.py"), f.read())
    atomic_write(os.path.join(out_dir, "README.txt"), _readme(len(unique), batch, full_weights))
    write_json(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return BundleReport(manifest, out_dir, len(tasks), folder_bytes(out_dir), time.perf_counter() - t0)


# What a bundle folder holds: its own files, the models folder, and the runner's results.
_OWN_FILES = {"manifest.json", "run_bundle.py", "README.txt", "models"}
_OWN_MODEL_FILE = re.compile(r"^\.?[0-9a-f]{16}(\.onnx|\.json|\.weights|\.full\.onnx)?(\.[0-9a-z.]+)?(\.tmp)?$")


def check_out_dir(out_dir: str, hashes: set[str], force: bool = False) -> None:
    """``out_dir`` may be missing, empty, this bundle (an interrupted or earlier run with these models) or, with
    ``force``, anything that is a folder. A folder with another bundle's manifest or unrelated files is refused:
    writing the bundle there would replace a file the user did not hand us."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"out: {out_dir} exists and is not a folder")
    if force or not os.path.isdir(out_dir):
        return
    names = set(os.listdir(out_dir))
    foreign = sorted(n for n in names if os.path.islink(os.path.join(out_dir, n))
                     or (n not in _OWN_FILES and not _RESULTS.match(n)))
    models = os.path.join(out_dir, "models")
    if "models" in names and not foreign:
        if not os.path.isdir(models) or os.path.islink(models):
            foreign = ["models"]
        else:
            foreign = sorted(f"models/{n}" for n in os.listdir(models) if not _OWN_MODEL_FILE.match(n))
    if foreign:
        raise UserError(f"out: {out_dir} holds files that are not this bundle's ({', '.join(foreign[:3])}); "
                        "give an empty or new folder, or --force to write there anyway")
    if "manifest.json" in names:
        theirs = _manifest_hashes(os.path.join(out_dir, "manifest.json"))
        if theirs != hashes:
            raise UserError(f"out: {out_dir} holds another bundle (its manifest.json has other models); give an "
                            "empty or new folder, or --force to replace it")


_RESULTS = re.compile(r"^[A-Za-z0-9_.+-]*\.csv$")


def _manifest_hashes(path: str) -> set[str] | None:
    """The model hashes of the bundle manifest at ``path``; None when it is not one."""
    try:
        data = json.loads(read_at_most(path, _runner().MAX_MANIFEST_BYTES).decode("utf-8"))
        return {m["hash"] for m in data["models"]}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _export_all(tasks: list[dict], workers: int | None, progress: bool):
    """The entries of ``tasks``, exported in this process or by ``workers`` processes (default: one per core)."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="exporting ONNX", unit="model", disable=not progress, dynamic_ncols=True)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    try:
        if n_workers == 1:
            for task in tasks:
                yield _export_one(task)
                bar.update()
            return
        # Spawned (not forked) workers: torch's thread pools do not survive a fork.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init) as pool:
            for e in pool.map(_export_one, tasks):
                yield e
                bar.update()
    finally:
        bar.close()


def _readme(n: int, batch: int, full_weights: bool) -> str:
    weights = ("" if full_weights else
               "The models ship without their weights: before timing a model the runner writes its weights file\n"
               "(models/*.weights, as large as the model) from a seed, and deletes it afterwards (--keep-weights\n"
               "keeps them).\n\n")
    return (
        f"lowformer-nas bundle: {n} ONNX models (batch {batch}).\n\n{weights}"
        "On the device (Python >= 3.8 with numpy and onnxruntime, or TensorRT):\n"
        "    python3 run_bundle.py --out results.csv            # see --help for backends and threads\n\n"
        "Back on the machine with lowformer-nas:\n"
        "    lowformer-nas import results.csv --device NAME\n"
    )
