"""Bundles for devices the tool cannot run on (a Jetson, a Raspberry Pi): ONNX graphs, a manifest and one
standalone runner script; the runner's CSV comes back with ``lowformer-nas import``.

A bundle ships each model's graph without its weight data (8.8 GB of random fp32 numbers for 119 models
otherwise): every float tensor of 1 KiB or more is an ONNX external-data tensor whose file the runner writes on
the device, before timing, from a seed with numpy (uniform values with the mean and standard deviation the
exported tensor had). Latency does not depend on the values of fp32 weights, only on their shapes, so the
timings are those of the full file (``tests/benchmarks/bench_bundle.py`` checks it on 5 models); the constant
tensors (biases and norms at their initial 0 or 1, shape constants, small tensors) keep their exact values.
``full_weights=True`` writes the complete files instead.

A bundle also ships the reference (B0) and the phase anchors (``measured._phase.anchor_configs``), named in its
manifest (format 3): the runner pairs every model with the reference and times the anchors at the start, every
few minutes and at the end, into ``<results>.anchors.csv``. Importing the results reads that file beside them
(:func:`import_anchor_timings`): the sessions become the device's phase series, so ``predict --phase now`` for the
device uses its latest bundle's anchors.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import time
import types
from typing import Sequence

from lowformer_common import UserError, atomic_write, read_at_most, utc_now, write_json

from ._campaign import Job
from ._graphs import _export_one, _reusable, _runner, weight_seed  # noqa: F401  (weight_seed: the bundle's API)
from ._records import check_device_id

RUNNER = os.path.join(os.path.dirname(__file__), "bundle_runner.py")
FORMAT = 2  # 1: full ONNX files only; 2: entries may carry "weights" (the runner writes them)
FORMAT_ANCHORS = 3  # 3: "reference" and "anchors" name models of the bundle; "anchor_only" models are not rows
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
    anchors: bool = True,
) -> BundleReport:
    """Export every job's config under ``out_dir/models``, then write the manifest, the runner and a README.

    ``workers`` export processes (default: one per core); re-running on the same folder reuses every model
    already written completely, so an interrupted bundle resumes instead of starting over. ``device_id``
    (optional) is the id the runner's rows carry. A folder holding another bundle or other files is refused
    unless ``force`` (:func:`check_out_dir`). ``anchors``: ship the reference and the phase anchors too (models
    that are not jobs are timed as anchors only, not as rows).
    """
    t0 = time.perf_counter()
    if device_id is not None:
        check_device_id(device_id)
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.config.hash, job)
    asked = set(unique)
    roles = _roles() if anchors else None
    if roles is not None:
        for role, cfg in roles:
            unique.setdefault(cfg.hash, Job(cfg, role))
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
        "models": [dict(entries[h], **({} if h in asked else {"anchor_only": True})) for h in unique],
    }
    if roles is not None:
        manifest.update(format=FORMAT_ANCHORS, reference=roles[0][1].hash,
                        anchors=[{"name": n, "hash": c.hash} for n, c in roles[1:]])
    if device_id is not None:
        manifest["device_id"] = device_id
    with open(RUNNER, "rb") as f:  # renamed into place: a link there is replaced, never written through
        atomic_write(os.path.join(out_dir, "run_bundle.py"), f.read())
    atomic_write(os.path.join(out_dir, "README.txt"), _readme(len(unique), batch, full_weights))
    write_json(os.path.join(out_dir, "manifest.json"), manifest, indent=1)
    return BundleReport(manifest, out_dir, len(tasks), folder_bytes(out_dir), time.perf_counter() - t0)


def _roles():
    """[(name, config)] of the reference, then the phase anchors (the configs the harness times here)."""
    from search_spaces import get_variant

    from ._phase import anchor_configs

    return [(RUNNER_REFERENCE, get_variant(RUNNER_REFERENCE).config), *anchor_configs()]


RUNNER_REFERENCE = "B0"  # the runner's REFERENCE_NAME and the harness's Protocol.reference


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
        "It pairs every model with the reference (B0) and times the phase anchors at the start, every 5\n"
        "minutes and at the end into results.anchors.csv; a line says when the device's speed moved\n"
        "(throttling). Bring both files back.\n\n"
        "Back on the machine with lowformer-nas (results.anchors.csv beside it is read too):\n"
        "    lowformer-nas import results.csv --device NAME\n"
    )


# ---------------------------------------------------------------------------------------------- the anchors, back


MAX_ANCHOR_BYTES = 8 * 2**20  # a run of 100 hours with a session every 5 minutes is under 1 MB
_SESSION = re.compile(r"^[0-9a-f]{16,64}$")


@dataclasses.dataclass
class AnchorImport:
    """What :func:`import_anchor_timings` stored: the sessions of one bundle run as the device's phase series."""

    path: str
    device_id: str
    protocol: str
    sessions: int  # in the file
    new_sessions: int  # stored now (a file imported twice adds nothing)
    span_s: float  # first to last session
    moved: dict[str, float]  # {anchor: % moved from the first session to the last}
    failed: int  # anchor timings that failed (with their reasons, stored)
    phase: str | None  # the device's latest phase, in words (None: no phase can be fitted)

    def line(self) -> str:
        text = f"anchors: {self.sessions} session(s) from {os.path.basename(self.path)} ({self.new_sessions} new) over " \
               f"{self.span_s / 60:.0f} min"
        if self.moved:
            worst = max(self.moved, key=lambda a: abs(self.moved[a]))
            text += (f"; moved {min(self.moved.values()):+.1f}%..{max(self.moved.values()):+.1f}% from the first to "
                     f"the last ({worst} {self.moved[worst]:+.1f}%)")
        if self.failed:
            text += f"; {self.failed} anchor timing(s) failed"
        return text + (f"; phase now {self.phase}" if self.phase else
                       "; no phase fitted (too few ok anchors, or no canonical session yet)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def anchors_beside(results: str | os.PathLike) -> str:
    """Where the runner wrote the anchor timings of ``results`` (results.csv -> results.anchors.csv)."""
    return _runner().anchors_path(os.fspath(results))


def is_bundle_results(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a CSV the bundle runner wrote (its first line is the runner's header)."""
    try:
        first = read_at_most(path, 4096)[:4096].split(b"\n", 1)[0].rstrip(b"\r")
    except OSError:
        return False
    return first == ",".join(_runner().FIELDS).encode()


def _anchor_error(path, where: str, message: str) -> UserError:
    return UserError(f"anchors: {path} {where}: {message}")


def read_anchor_timings(path: str | os.PathLike) -> list[dict]:
    """The rows of a runner's ``<results>.anchors.csv``, every field checked (one-line UserError naming the line
    and field): its header, format, session ids, anchors and hashes this version times (other anchors would mix
    units in the series), statuses, and for an ok row a ratio inside its CI and a positive reference median."""
    from ._io import unescape_cell
    from ._phase import anchor_hashes

    runner = _runner()
    try:
        data = read_at_most(path, MAX_ANCHOR_BYTES)
    except OSError as e:
        raise UserError(f"anchors: cannot read {path} ({e.strerror or type(e).__name__})") from None
    if len(data) > MAX_ANCHOR_BYTES:
        raise _anchor_error(path, "", f"more than {MAX_ANCHOR_BYTES} bytes, more than a run writes")
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        header = next(reader, None)
        lines = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise _anchor_error(path, "", f"not a CSV ({type(e).__name__})") from None
    if header != runner.ANCHOR_FIELDS:
        raise _anchor_error(path, "line 1", "not the bundle runner's anchor timings (header differs)")
    hashes = anchor_hashes()
    return [_anchor_row(path, f"line {i}", dict(zip(header, [unescape_cell(v) for v in cells])), cells, hashes, runner)
            for i, cells in enumerate(lines, start=2)]


def _anchor_row(path, where: str, row: dict, cells: list, hashes: dict[str, str], runner) -> dict:
    def bad(field, message):
        return _anchor_error(path, where, f"{field}: {message}")

    if len(cells) != len(runner.ANCHOR_FIELDS):
        raise bad("columns", f"{len(cells)} cells, the header has {len(runner.ANCHOR_FIELDS)}")
    if row["format"] != str(runner.ANCHORS_FORMAT):
        raise bad("format", f"must be {runner.ANCHORS_FORMAT} (got {row['format'][:20]!r})")
    if not _SESSION.match(row["session"]):
        raise bad("session", "must be 16-64 hex digits")
    try:
        ts = _dt.datetime.fromisoformat(row["timestamp"])
        if ts.tzinfo is None:
            raise ValueError
    except ValueError:
        raise bad("timestamp", "must be an ISO 8601 time with its UTC offset") from None
    row["timestamp"] = ts.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")
    if hashes.get(row["anchor"]) is None or row["anchor"] == RUNNER_REFERENCE:
        raise bad("anchor", f"{row['anchor'][:40]!r} is not an anchor; allowed: "
                            f"{'|'.join(k for k in hashes if k != RUNNER_REFERENCE)}")
    if row["config_hash"] != hashes[row["anchor"]]:
        raise bad("config_hash", f"not this version's {row['anchor']} (another model: its timings would mix units in "
                                 "the phase series; write the bundle again)")
    if row["status"] not in ("ok", "failed"):
        raise bad("status", f"must be ok|failed (got {row['status'][:20]!r})")
    check_device_id(row["device_id"], "device_id")
    if row["status"] == "failed":
        return {k: row[k] for k in ("session", "timestamp", "device_id", "anchor", "config_hash", "status")} | {
            "reason": row["reason"][:400] or "failed (no reason given)", "backend": row["backend"],
            "precision": row["precision"], "threads": row["threads"], "batch": row["batch"]}
    if row["reference"] != hashes[RUNNER_REFERENCE]:
        raise bad("reference", f"not this version's {RUNNER_REFERENCE}: a ratio to another reference")
    nums = {}
    for f in ("ratio", "ratio_lo", "ratio_hi", "reference_value"):
        try:
            nums[f] = float(row[f])
        except ValueError:
            raise bad(f, f"must be a number (got {row[f][:20]!r})") from None
        if not (math.isfinite(nums[f]) and nums[f] > 0):
            raise bad(f, f"must be a positive number (got {row[f][:20]!r})")
    if not nums["ratio_lo"] <= nums["ratio"] <= nums["ratio_hi"]:
        raise bad("ratio", "must lie in [ratio_lo, ratio_hi]")
    if not row["n"].isdigit() or not 1 <= int(row["n"]) <= runner.MAX_RUNS:
        raise bad("n", f"must be an integer in [1, {runner.MAX_RUNS}]")
    return {k: row[k] for k in ("session", "timestamp", "device_id", "anchor", "config_hash", "status", "reference",
                                "backend", "precision", "threads", "batch")} | nums | {"n": int(row["n"])}


def import_anchor_timings(store, path: str | os.PathLike, device_id: str | None = None) -> AnchorImport:
    """Store a bundle run's anchor sessions as ``device_id``'s phase series (default: the device the rows name),
    under the protocol of its rows; idempotent (row ids follow the session and the anchor). The device must be in
    the store (import the results first). Returns what was stored and how far the anchors moved."""
    from ._phase import describe, load_series, session_rows
    from ._records import protocol_key

    rows = read_anchor_timings(path)
    if not rows:
        raise UserError(f"anchors: {path} holds no anchor timings")
    device_id = device_id or rows[0]["device_id"]
    if store.device(device_id) is None:
        raise UserError(f"anchors: device {device_id!r} is not in the store; import the results first")
    protocols = {(r["backend"], r["precision"], r["batch"], r["threads"]) for r in rows}
    if len(protocols) != 1:
        raise UserError(f"anchors: {path} mixes backends/precisions/batches/threads; one run per file")
    backend, precision, batch, threads = protocols.pop()
    try:
        key = protocol_key("latency_ms", backend, precision, int(batch), int(threads) if threads else None)
    except ValueError:
        raise UserError(f"anchors: {path}: batch and threads must be integers") from None
    proto = types.SimpleNamespace(key=key, metric="latency_ms", reference=RUNNER_REFERENCE)
    by_session: dict[str, list[dict]] = {}
    for r in rows:
        by_session.setdefault(r["session"], []).append(r)
    stored, times = [], []
    for sid, results in by_session.items():
        ts = min(r["timestamp"] for r in results)
        out = session_rows(results, device_id, proto, source="bundle", session=sid, timestamp=ts)
        for r in out:  # the same file imported again stores nothing new
            r["id"] = hashlib.sha256(f"{device_id}|{key}|{sid}|{r['anchor']}".encode()).hexdigest()
        stored += out
        times.append((ts, {r["anchor"]: r["value"] for r in out if r["status"] == "ok"}))
    before = set(store.anchor_timings(device=device_id, protocol=key)["session"])
    store.add_anchor_timings(stored)
    times.sort(key=lambda t: t[0])
    first, last = times[0][1], times[-1][1]
    moved = {a: (last[a] / first[a] - 1) * 100 for a in first if a in last} if len(times) > 1 else {}
    series = load_series(store, device_id, key)
    latest = series.latest()
    span = (_dt.datetime.fromisoformat(times[-1][0]) - _dt.datetime.fromisoformat(times[0][0])).total_seconds()
    return AnchorImport(os.fspath(path), device_id, key, len(by_session), len(set(by_session) - before), span, moved,
                        sum(r["status"] != "ok" for r in rows),
                        describe(latest, series.canonical.values) if latest is not None and series.canonical else None)


def import_results(store, path: str | os.PathLike, *, device_id: str | None = None, **import_kw):
    """Import a measurements file (``Store.import_file``) and, for a bundle run's results, its anchor sessions from
    beside it (:func:`import_anchor_timings`): (ImportReport, AnchorImport or None, a note or None). A bad anchors
    file is refused before anything is stored; bundle results without one are kept as measured, and the note says
    so. ``import_kw``: ``Store.import_file``'s (``create_device_kind``, ``force``, ``source``)."""
    if os.fspath(path).lower().endswith(".anchors.csv"):
        raise UserError(f"import: {path} holds a bundle run's anchor timings; import its results CSV (they are read "
                        "from beside it)")
    beside = anchors_beside(path)
    has_anchors = os.path.lexists(beside)
    if has_anchors:
        read_anchor_timings(beside)  # checked whole before anything is stored
    report = store.import_file(path, device_id=device_id, **import_kw)
    if has_anchors:
        return report, import_anchor_timings(store, beside, device_id), None
    if is_bundle_results(path):
        return report, None, (f"anchors: no {os.path.basename(beside)} beside it (a run before phase tracking, or "
                              "left on the device): its rows are kept as measured, not phase-normalised")
    return report, None, None
