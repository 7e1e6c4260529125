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

from lowformer_common import UserError, atomic_write, read_at_most, utc_now, write_json

from ._campaign import Job
from ._graphs import _export_one, _reusable, _runner, weight_seed  # noqa: F401  (weight_seed: the bundle's API)
from ._records import check_device_id

RUNNER = os.path.join(os.path.dirname(__file__), "bundle_runner.py")
FORMAT = 2  # 1: full ONNX files only; 2: entries may carry "weights" (the runner writes them)
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
