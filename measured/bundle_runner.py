#!/usr/bin/env python3
"""Standalone latency runner for a lowformer-nas bundle (copied into the bundle as run_bundle.py).

Needs only Python >= 3.8, numpy, and onnxruntime (CPU, CUDA or TensorRT execution provider) or TensorRT.
Copy the bundle folder to the device (Jetson, Raspberry Pi, ...), then:

    python3 run_bundle.py --out results.csv                  # onnxruntime on the CPU, 1 thread
    python3 run_bundle.py --backend onnxruntime-tensorrt --out results.csv
    python3 run_bundle.py --threads 4 --out results.csv      # the paper's Raspberry Pi 5 used 4 cores

It first checks the whole bundle (the manifest's fields, every model file inside the bundle folder and
matching its sha256) and stops with one line if anything is wrong, before timing anything. Then it measures
every model of manifest.json with the paper's protocol (batch 1, input generated beforehand, warm-up runs,
N timed runs, median), appends one CSV row per model as soon as it is measured (a crash or Ctrl-C loses
nothing; running it again skips what the CSV already holds, and retries failed models unless
--no-retry-failed), and records the device's fingerprint and the machine's load while timing. Models shipped
without weights get them written from the manifest's seed (numpy) before they are timed. Bring results.csv
back and import it:

    lowformer-nas import results.csv --device jetson_tx2

Paired (the default), each model's runs alternate with runs of the bundle's reference, and the phase anchors
(models of the bundle listed in its manifest) are timed, each paired with the reference, at the start, every
few minutes (--anchors-every) and at the end; their timings go to results.anchors.csv beside the results (bring
it back too: the import reads it as the device's phase series). When the anchors moved by more than
PHASE_WARN_PCT from the run's start (throttling, a governor, a neighbour), one line says so.
"""

from __future__ import print_function

import argparse
import csv
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import re
import stat
import sys
import time

FIELDS = [
    "device_id", "config_hash", "metric", "value", "status", "reason", "backend", "backend_version",
    "precision", "batch", "resolution", "threads", "warmup", "n", "p10", "p90", "busy_pct", "source",
    "source_ref", "versions", "os", "timestamp", "campaign", "notes", "config_json", "name", "family",
    "device_name", "device_kind", "device_fingerprint",
    "pairing", "ratio", "ratio_lo", "ratio_hi", "reference", "reference_value",
]
# Paired timing (lowformer-nas measured/README.md, Paired timing): each model's runs alternate with runs of the
# reference, a model of the bundle of this name at 224 px, in the order A B | B A ...; the rows carry the median
# pair ratio. A reference median that moves by more than PHASE_WARN_PCT from the run's first is reported: the
# device's state changed mid-run (throttling, a governor, a neighbour).
REFERENCE_NAME = "B0"
PHASE_WARN_PCT = 10.0
# The anchor timings' own file (<results>.anchors.csv) and header; a changed header gets a new ANCHORS_FORMAT.
ANCHORS_FORMAT = 1
ANCHOR_FIELDS = [
    "format", "session", "timestamp", "device_id", "anchor", "config_hash", "status", "reason", "n", "ratio",
    "ratio_lo", "ratio_hi", "reference", "reference_value", "backend", "backend_version", "precision", "threads",
    "batch",
]
ANCHOR_PAIRS = 30  # an anchor's pairs (fewer when --runs is lower): its ratio, not a full protocol
ANCHORS_EVERY_MIN = 5.0
MANIFEST_FORMATS = (1, 2, 3)  # 3: "reference" and "anchors" name models of the bundle
BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")
MAX_MANIFEST_BYTES = 256 * 2 ** 20
MAX_WEIGHTS_BYTES = 16 * 2 ** 30  # a weights file the runner writes: bounded, so a manifest cannot fill the disk
# Runs and warm-up runs per model, and the input's values: bounded, so a manifest cannot time one model forever
# or fill the memory (the paper's protocol: 5 warm-up and 100 timed runs; the largest input of the space is 3x512^2).
MAX_RUNS = 100000
MAX_INPUT_VALUES = 2 ** 26
# A weights file is written only inside the bundle's models folder, under a name no other bundle file can have.
WEIGHTS_FILE = re.compile(r"^models/[A-Za-z0-9][A-Za-z0-9_.+-]{0,120}\.weights$")
# The device id names folders on the importing side: letters, digits, '_', '.', '+', '-'; never a path.
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# A spreadsheet runs a cell starting with one of these as a formula: such text gets a leading apostrophe
# (lowformer-nas import takes it off again).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 1 << 22  # weights are generated 4 M values at a time


class BundleError(Exception):
    """The bundle is malformed or was changed: one line, exit status 2, nothing timed."""


class ReferenceFailed(RuntimeError):
    """The reference failed while paired with a model: that model's row fails (never a ratio to nothing)."""


# Injectable (tests): the clock of timed runs, and the clock that says when the anchors are due.
_clock = time.perf_counter
_wall = time.time


# ---------------------------------------------------------------------------------------------- the device


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError, UnicodeDecodeError):
        return ""


def fingerprint():
    fp = {"arch": platform.machine(), "os": platform.platform(), "logical_cores": os.cpu_count()}
    for line in _read("/proc/cpuinfo").splitlines():
        key = line.split(":")[0].strip().lower()
        if key in ("model name", "hardware", "cpu model") and ":" in line:
            fp["cpu_model"] = line.split(":", 1)[1].strip()
            break
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            fp["memory_gb"] = round(int(line.split()[1]) / 2.0 ** 20, 1)
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    if board:
        fp["board"] = board
    release = _read("/etc/nv_tegra_release").strip()
    if release:
        fp["jetson_l4t"] = release.splitlines()[0][:120]
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information"))[:1]:
        for line in _read(info).splitlines():
            if line.startswith("Model:"):
                fp["gpu_name"] = line.split(":", 1)[1].strip()
    return fp


def _cpu_busy_seconds():
    """System-wide busy CPU seconds from /proc/stat (None where there is no /proc)."""
    line = _read("/proc/stat").splitlines()[:1]
    if not line:
        return None
    v = [float(x) for x in line[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100.0
    busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal
    return busy / hz


def _own_seconds():
    t = os.times()
    return t[0] + t[1]


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "unknown"


# ---------------------------------------------------------------------------------------------- the manifest


def _field(cond, where, message):
    if not cond:
        raise BundleError("manifest.json: %s: %s" % (where, message))


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_relative(path, where):
    _field(isinstance(path, str) and 0 < len(path) <= 200, where, "must be a relative file path")
    _field(not os.path.isabs(path) and "\x00" not in path and ".." not in path.replace("\\", "/").split("/"),
           where, "%r must be a path inside the bundle folder" % path[:80])


def _check_weights(w, where):
    _field(isinstance(w, dict), where, "must be an object")
    _check_relative(w.get("file"), where + ".file")
    _field(WEIGHTS_FILE.match(w["file"]), where + ".file",
           "%r must be models/NAME.weights (letters, digits, '_', '.', '+', '-')" % w["file"][:80])
    _field(isinstance(w.get("sha256"), str) and HEX64.match(w["sha256"]), where + ".sha256",
           "must be the 64-character sha256 of the generated file (a bundle from an older lowformer-nas: write it again)")
    _field(_is_int(w.get("seed")), where + ".seed", "must be a non-negative integer")
    _field(_is_int(w.get("bytes")), where + ".bytes", "must be a non-negative integer")
    tensors = w.get("tensors")
    _field(isinstance(tensors, list), where + ".tensors", "must be a list")
    end = 0
    for j, t in enumerate(tensors):
        tw = "%s.tensors[%d]" % (where, j)
        _field(isinstance(t, list) and len(t) == 4, tw, "must be [offset, count, mean, std]")
        offset, count, mean, std = t
        _field(_is_int(offset, end) and _is_int(count), tw, "offset and count must be integers, in file order")
        _field(_is_number(mean) and _is_number(std) and std >= 0, tw, "mean and std must be finite, std >= 0")
        end = offset + 4 * count
    _field(end <= w["bytes"] <= end + 2 ** 20, where + ".bytes", "must cover the tensors (got %d)" % w["bytes"])
    _field(w["bytes"] <= MAX_WEIGHTS_BYTES, where + ".bytes", "%d bytes, more than any model of the space" % w["bytes"])


def _check_entry(m, i, seen):
    where = "models[%d]" % i
    _field(isinstance(m, dict), where, "must be an object")
    _field(isinstance(m.get("hash"), str) and HEX64.match(m["hash"]), where + ".hash",
           "must be a 64-character sha256 hex digest")
    _field(m["hash"] not in seen, where + ".hash", "repeats models[%s]" % seen.get(m["hash"]))
    seen[m["hash"]] = i
    _check_relative(m.get("file"), where + ".file")
    _field(isinstance(m.get("sha256"), str) and HEX64.match(m["sha256"]), where + ".sha256",
           "must be a 64-character sha256 hex digest")
    shape = m.get("input_shape")
    _field(isinstance(shape, list) and len(shape) == 4 and all(_is_int(s, 1) and s <= 100000 for s in shape),
           where + ".input_shape", "must be 4 positive integers")
    _field(shape[0] * shape[1] * shape[2] * shape[3] <= MAX_INPUT_VALUES, where + ".input_shape",
           "%r holds more than %d values, more than any model of the space takes" % (shape, MAX_INPUT_VALUES))
    for key in ("name", "family", "config_json"):
        _field(m.get(key) is None or isinstance(m[key], str), where + "." + key, "must be text")
    _field(m.get("resolution") is None or _is_int(m["resolution"], 1), where + ".resolution",
           "must be a positive integer")
    if m.get("weights") is not None:
        _check_weights(m["weights"], where + ".weights")
    _field(m.get("anchor_only") in (None, True, False), where + ".anchor_only", "must be true or false")


def read_regular(path, limit, what):
    """At most ``limit`` bytes of the regular file ``path`` (a FIFO or a device is refused, never waited on)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError("%s: %s is not a regular file" % (what, path))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BundleError("%s: more than %d bytes, more than it can be" % (what, limit))
    return data


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BundleError("manifest.json: key %r given twice in one object" % [k for k in keys if keys.count(k) > 1][0])
    return dict(pairs)


def _no_constant(name):
    raise BundleError("manifest.json: %s is not a number JSON allows" % name)


def load_manifest(bundle):
    """The manifest, every field checked; a BundleError naming the first bad one."""
    path = os.path.join(bundle, "manifest.json")
    try:
        data = read_regular(path, MAX_MANIFEST_BYTES, "manifest.json")
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (IOError, OSError) as e:
        raise BundleError("manifest.json: cannot read it in %s (%s)" % (bundle, e.strerror or e))
    except ValueError as e:  # bad JSON or bad UTF-8
        raise BundleError("manifest.json: not valid JSON (%s)" % str(e).splitlines()[0][:120])
    except RecursionError:
        raise BundleError("manifest.json: nested too deeply")
    _field(isinstance(manifest, dict), "top level", "must be a JSON object")
    _field(manifest.get("format") in MANIFEST_FORMATS, "format",
           "must be one of %s (got %r)" % (", ".join(map(str, MANIFEST_FORMATS)), manifest.get("format")))
    _field(manifest.get("name") is None or isinstance(manifest["name"], str), "name", "must be text")
    proto = manifest.get("protocol", {})
    _field(isinstance(proto, dict), "protocol", "must be an object")
    for key, low in (("warmup", 0), ("runs", 1), ("batch", 1)):
        _field(proto.get(key) is None or (_is_int(proto[key], low) and proto[key] <= MAX_RUNS), "protocol." + key,
               "must be an integer in [%d, %d] (got %r)" % (low, MAX_RUNS, str(proto.get(key))[:40]))
    device_id = manifest.get("device_id")
    _field(device_id is None or (isinstance(device_id, str) and DEVICE_ID.match(device_id) and ".." not in device_id),
           "device_id", "%r is not a device id: use 1-80 letters, digits, '_', '.', '+' or '-'" % (device_id,))
    models = manifest.get("models")
    _field(isinstance(models, list) and models, "models", "must be a non-empty list")
    seen = {}
    for i, m in enumerate(models):
        _check_entry(m, i, seen)
    _check_distinct_files(models)
    _check_roles(manifest, seen)
    return manifest


def _check_roles(manifest, seen):
    """``reference`` (a model's hash) and ``anchors`` ([{name, hash}], each a model of the bundle)."""
    ref = manifest.get("reference")
    _field(ref is None or (isinstance(ref, str) and ref in seen), "reference", "must be the hash of a model of the bundle")
    anchors = manifest.get("anchors")
    if anchors is None:
        return
    _field(isinstance(anchors, list) and len(anchors) <= 64, "anchors", "must be a list of at most 64 models")
    _field(ref is not None or not anchors, "anchors", "need a reference to be paired with")
    names = set()
    for j, a in enumerate(anchors):
        where = "anchors[%d]" % j
        _field(isinstance(a, dict) and isinstance(a.get("name"), str) and 0 < len(a["name"]) <= 40
               and a["name"] not in names, where + ".name", "must be a distinct name of at most 40 characters")
        _field(a.get("hash") in seen, where + ".hash", "must be the hash of a model of the bundle")
        names.add(a["name"])


def _check_distinct_files(models):
    """No two entries name one file, and no weights file is a model's file: the runner writes and deletes
    weights files, and must never do that to another file of the bundle."""
    owner = {}
    for i, m in enumerate(models):
        named = [("file", m["file"])] + ([("weights.file", m["weights"]["file"])] if m.get("weights") else [])
        for key, rel in named:
            norm = os.path.normpath(rel.replace("\\", "/")).lower()  # a case-insensitive disk too
            where = "models[%d].%s" % (i, key)
            _field(norm not in owner, where, "%r is also %s" % (rel[:80], owner.get(norm)))
            owner[norm] = where


def inside(bundle, rel, where):
    """``rel`` resolved (links followed) inside the bundle folder, else a BundleError."""
    root = os.path.realpath(bundle)
    path = os.path.realpath(os.path.join(root, rel))
    if not path.startswith(root + os.sep):
        raise BundleError("manifest.json: %s: %r resolves outside the bundle folder" % (where, rel[:80]))
    return path


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(bundle, models, index):
    """Every model file inside the bundle and unchanged, every weights file to be written inside it."""
    for m in models:
        where = "models[%d]" % index[m["hash"]]
        path = inside(bundle, m["file"], where + ".file")
        if not os.path.isfile(path):
            raise BundleError("%s: %s: no such file; copy the whole bundle folder" % (where, m["file"]))
        if sha256_of(path) != m["sha256"]:
            raise BundleError("%s: %s was changed or is corrupt (sha256 mismatch); copy the bundle again"
                              % (where, m["file"]))
        if m.get("weights"):
            weights_path(bundle, m["weights"]["file"], where + ".weights.file")


def weights_path(bundle, rel, where="weights.file"):
    """Where a weights file is written: in the bundle's own models folder (a real folder, not a link), at a name
    that is no link and no other kind of file; else a BundleError. The file itself is written fresh beside it
    and renamed into place, so nothing an existing entry points to is ever written or deleted."""
    root = os.path.realpath(bundle)
    models = os.path.join(root, "models")
    if os.path.islink(models) or not os.path.isdir(models):
        raise BundleError("%s: %s/models is not a folder of the bundle (a link or missing)" % (where, bundle))
    path = os.path.join(models, os.path.basename(rel))
    if os.path.islink(path):
        raise BundleError("manifest.json: %s: %r is a link; remove it (the runner writes that file itself)"
                          % (where, rel[:80]))
    if os.path.lexists(path) and not os.path.isfile(path):
        raise BundleError("manifest.json: %s: %r exists and is not a regular file; remove it" % (where, rel[:80]))
    return path


# ---------------------------------------------------------------------------------------------- weights


def weight_chunks(weights):
    """The bytes of a model's external weights file, in order, from its recipe: per tensor, uniform values with the
    exported tensor's mean and standard deviation, drawn from the seed (PCG64: the same bits on every platform);
    zeros between tensors (each starts on a page) and up to ``bytes``."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(weights["seed"]))
    at = 0
    for offset, count, mean, std in weights["tensors"]:
        if offset > at:
            yield bytes(offset - at)
        half = std * math.sqrt(3.0)  # a uniform on [mean - half, mean + half] has this std
        scale, shift = np.float32(2.0 * half), np.float32(mean - half)
        left = count
        while left:
            n = min(left, CHUNK)
            u = rng.random(n, dtype=np.float32)
            yield (u * scale + shift).astype("<f4").tobytes()
            left -= n
        at = offset + 4 * count
    if weights["bytes"] > at:
        yield bytes(weights["bytes"] - at)


def weights_sha256(weights):
    """The sha256 of the file :func:`write_weights` writes (the bundle stores it; the runner checks it)."""
    h = hashlib.sha256()
    for chunk in weight_chunks(weights):
        h.update(chunk)
    return h.hexdigest()


def write_weights(bundle, weights):
    """Write a model's external weights file from its recipe, fresh (O_EXCL, O_NOFOLLOW) beside its place in the
    bundle's models folder, check its sha256, then rename it into place; a BundleError if it differs."""
    path = weights_path(bundle, weights["file"])
    tmp = os.path.join(os.path.dirname(path), ".%s.%d.%s.tmp" % (os.path.basename(path), os.getpid(),
                                                                 os.urandom(6).hex()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in weight_chunks(weights):
                f.write(chunk)
        if "sha256" in weights and sha256_of(tmp) != weights["sha256"]:
            raise BundleError("manifest.json: %s: the generated weights differ from the bundle's (sha256 mismatch; "
                              "this numpy draws other numbers, or the manifest was changed)" % weights["file"][:80])
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------------------------------------- timing


class Model(object):
    def __init__(self, path, shape, backend, threads, precision):
        import numpy as np

        self.x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        if backend.startswith("onnxruntime"):
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            providers = {
                "onnxruntime": ["CPUExecutionProvider"],
                "onnxruntime-cuda": ["CUDAExecutionProvider"],
                "onnxruntime-tensorrt": [
                    ("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16"}),
                    "CUDAExecutionProvider",
                ],
            }[backend]
            self.sess = ort.InferenceSession(path, so, providers=providers)
            used = self.sess.get_providers()[0]
            wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
            if used != wanted:
                raise RuntimeError("onnxruntime fell back to %s: %s is not available here" % (used, wanted))
            feed = {self.sess.get_inputs()[0].name: self.x}
            # Results copied to the host each run, like any real application.
            self.run = lambda: self.sess.run(None, feed)
            self.version = ort.__version__
        else:
            self.run, self.version = _tensorrt_runner(path, self.x, precision)


def _tensorrt_runner(path, x, precision):
    import numpy as np
    import tensorrt as trt

    try:
        from cuda import cudart  # cuda-python
    except ImportError:
        raise RuntimeError("the tensorrt backend needs cuda-python (pip install cuda-python); "
                           "or use --backend onnxruntime-tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(path):  # from the file: external weights are read beside it
        raise RuntimeError("TensorRT could not parse %s: %s" % (path, parser.get_error(0)))
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    ctx = engine.create_execution_context()
    out_name = engine.get_tensor_name(1)
    y = np.empty(tuple(ctx.get_tensor_shape(out_name)), dtype=np.float32)
    _, dx = cudart.cudaMalloc(x.nbytes)
    _, dy = cudart.cudaMalloc(y.nbytes)
    _, stream = cudart.cudaStreamCreate()
    cudart.cudaMemcpy(dx, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
    ctx.set_tensor_address(engine.get_tensor_name(0), dx)
    ctx.set_tensor_address(out_name, dy)

    def run():
        ctx.execute_async_v3(stream)
        cudart.cudaStreamSynchronize(stream)

    return run, trt.__version__


def measure(model, warmup, runs):
    for _ in range(warmup):
        model.run()
    times = []
    sys0, own0, wall0 = _cpu_busy_seconds(), _own_seconds(), time.time()
    for _ in range(runs):
        t0 = _clock()
        model.run()
        times.append(_clock() - t0)
    sys1, own1, wall = _cpu_busy_seconds(), _own_seconds(), time.time() - wall0
    busy = None
    if sys0 is not None and sys1 is not None:
        busy = max(0.0, (sys1 - sys0) - (own1 - own0)) / max(wall * (os.cpu_count() or 1), 1e-9) * 100.0
        busy = min(busy, 100.0)
    times.sort()

    def pct(q):  # linear interpolation, as numpy.percentile
        k = (len(times) - 1) * q / 100.0
        lo = int(k)
        hi = min(lo + 1, len(times) - 1)
        return times[lo] + (times[hi] - times[lo]) * (k - lo)

    return pct(50), pct(10), pct(90), busy


def _order_ci(values):
    """The 95 % order-statistic confidence interval of the median of ``values`` (sorted): the largest j with
    P(Binomial(n, 1/2) <= j - 1) <= 2.5 %, as the harness computes it."""
    n = len(values)
    cdf, j = 0.0, 0
    for k in range(n + 1):
        cdf += math.comb(n, k) / 2.0 ** n
        if cdf > 0.025:
            j = k
            break
    if j == 0:
        return values[0], values[-1]
    return values[j - 1], values[n - j]


def measure_paired(model, reference, warmup, runs):
    """(median, p10, p90, busy, ratio, ratio_lo, ratio_hi, reference median) of ``model`` timed in adjacent pairs
    with ``reference`` (A B | B A ...), seconds; the ratio is the median of the pairs' ratios and its 95 % CI."""
    for _ in range(warmup):
        model.run()
        reference.run()
    a, b = [], []
    sys0, own0, wall0 = _cpu_busy_seconds(), _own_seconds(), time.time()
    for i in range(runs):
        order = ((model, a), (reference, b)) if i % 2 == 0 else ((reference, b), (model, a))
        for m, out in order:
            t0 = _clock()
            m.run()
            out.append(_clock() - t0)
    sys1, own1, wall = _cpu_busy_seconds(), _own_seconds(), time.time() - wall0
    busy = None
    if sys0 is not None and sys1 is not None:
        busy = min(100.0, max(0.0, (sys1 - sys0) - (own1 - own0)) / max(wall * (os.cpu_count() or 1), 1e-9) * 100.0)
    ratios = sorted(x / y for x, y in zip(a, b))
    lo, hi = _order_ci(ratios)
    a.sort()
    b.sort()
    return (_pct(a, 50), _pct(a, 10), _pct(a, 90), busy, _pct(ratios, 50), lo, hi, _pct(b, 50))


def _pct(times, q):  # linear interpolation of sorted values, as numpy.percentile
    k = (len(times) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(times) - 1)
    return times[lo] + (times[hi] - times[lo]) * (k - lo)


def reference_entry(manifest):
    """The manifest's model of the reference (its ``reference``, else a model named B0 at 224 px), or None: the
    bundle is then timed alone."""
    if manifest.get("reference") is not None:
        return next(m for m in manifest["models"] if m["hash"] == manifest["reference"])
    for m in manifest.get("models", []):
        if m.get("name") == REFERENCE_NAME and list(m.get("input_shape", []))[2:] == [224, 224]:
            return m
    return None


def time_model(bundle, entry, settings, keep_weights=False):
    """(median, p10, p90, busy, backend version) of one model in seconds, writing its weights first."""
    path = inside(bundle, entry["file"], "file")
    weights = entry.get("weights")
    written = write_weights(bundle, weights) if weights else None
    try:
        model = Model(path, entry["input_shape"], settings["backend"], settings["threads"], settings["precision"])
        reference = settings.get("reference_model")
        for _ in range(3):  # a busy machine is measured again, twice
            if reference is not None:
                out = measure_paired(model, reference, settings["warmup"], settings["runs"])
            else:
                out = measure(model, settings["warmup"], settings["runs"])
            if out[3] is None or out[3] <= settings["busy_threshold"]:
                break
        return out + (model.version,)
    finally:
        if written and not keep_weights and os.path.exists(written):
            os.unlink(written)


# ---------------------------------------------------------------------------------------------- the run


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=here, help="bundle folder (default: this script's)")
    ap.add_argument("--out", default="results.csv", help="CSV to append to (default: results.csv)")
    ap.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    ap.add_argument("--warmup", type=int, default=None, help="warm-up runs (default: the manifest's, >= 5)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default: the manifest's)")
    ap.add_argument("--busy-threshold", type=float, default=5.0,
                    help="re-measure (twice) when other processes use more than this %% of the CPU")
    ap.add_argument("--device-id", default=None,
                    help="device id of the rows (default: the bundle's, else named after the board/CPU)")
    ap.add_argument("--device-name", default=None, help="a human name for this device (default: its board/CPU)")
    ap.add_argument("--device-kind", default="edge", choices=("cpu", "gpu", "edge", "mobile"))
    ap.add_argument("--no-retry-failed", action="store_true",
                    help="skip models whose earlier run failed (default: measure them again)")
    ap.add_argument("--keep-weights", action="store_true", help="keep the weights files written for timing")
    ap.add_argument("--protocol", default="paired", choices=("paired", "alone"),
                    help="paired (default): each model's runs alternate with runs of the bundle's B0, and the rows "
                         "carry their ratio to it; alone: each model's runs only")
    ap.add_argument("--anchors-every", type=float, default=ANCHORS_EVERY_MIN, metavar="MIN",
                    help="paired: time the bundle's phase anchors at the start, every MIN minutes (default %g) and at "
                         "the end, into <out>.anchors.csv" % ANCHORS_EVERY_MIN)
    ap.add_argument("--no-anchors", action="store_true", help="do not time the phase anchors")
    args = ap.parse_args(argv)
    if (args.threads < 1 or (args.warmup is not None and not 0 <= args.warmup <= MAX_RUNS)
            or (args.runs is not None and not 3 <= args.runs <= MAX_RUNS)):
        ap.error("--threads must be >= 1, --warmup in [0, %d] and --runs in [3, %d]" % (MAX_RUNS, MAX_RUNS))
    if not (0.0 <= args.busy_threshold <= 100.0):
        ap.error("--busy-threshold must be in [0, 100]")
    if not (math.isfinite(args.anchors_every) and 0.0 <= args.anchors_every <= 24 * 60):
        ap.error("--anchors-every must be in [0, 1440] minutes")
    return args


def settings_of(args, manifest):
    proto = manifest.get("protocol", {})
    return {
        "backend": args.backend, "precision": args.precision,
        "threads": args.threads if args.backend == "onnxruntime" else None,
        "warmup": args.warmup if args.warmup is not None else proto.get("warmup", 5),
        "runs": args.runs if args.runs is not None else proto.get("runs", 100),
        "busy_threshold": args.busy_threshold,
    }


def device_of(args, manifest, fp):
    name = args.device_name or fp.get("board") or fp.get("cpu_model") or platform.node()
    device_id = args.device_id or manifest.get("device_id") or _slug(fp.get("board") or fp.get("cpu_model") or name)
    if not DEVICE_ID.match(device_id) or ".." in device_id:
        raise BundleError("--device-id: %r is not a device id: use 1-80 letters, digits, '_', '.', '+' or '-'"
                          % device_id[:80])
    return {"device_id": device_id, "device_name": name, "device_kind": args.device_kind,
            "device_fingerprint": json.dumps(fp, sort_keys=True)}


def _key(config_hash, s, batch):
    """What makes two rows of one model comparable (the store's protocol key)."""
    return (config_hash, s["backend"], s["precision"], str(s["threads"] or ""), str(batch))


def plan(manifest, out, s, retry_failed):
    """(models still to measure, rows already in ``out``): ok rows count as done, failed ones only when not
    retried; a busy row is always measured again."""
    done = set()
    statuses = ("ok",) if retry_failed else ("ok", "failed")
    n_rows = 0
    if check_out(out):
        try:
            with open(out, newline="") as f:
                for row in csv.DictReader(f):
                    n_rows += 1
                    if row.get("status") in statuses:
                        done.add((row.get("config_hash"), row.get("backend"), row.get("precision"),
                                  str(row.get("threads") or ""), str(row.get("batch"))))
        except (IOError, OSError, UnicodeDecodeError, csv.Error) as e:
            raise BundleError("--out: cannot read %s to resume from it (%s); give another --out"
                              % (out, str(e).splitlines()[0][:120] if str(e) else type(e).__name__))
    todo = [m for m in manifest["models"] if _key(m["hash"], s, m["input_shape"][0]) not in done
            and not m.get("anchor_only")]
    return todo, n_rows


def check_out(out):
    """True when ``out`` already holds this runner's rows. It may be missing (its folder must exist) or empty;
    anything else is refused: a FIFO, a folder, a file of the bundle, a CSV with another header."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise BundleError("--out: folder %s does not exist; create it or give another --out" % folder[:200])
    if not os.path.exists(out):
        return False
    if not os.path.isfile(out):
        raise BundleError("--out: %s is not a regular file; give a CSV file" % out[:200])
    if os.path.getsize(out) == 0:
        return False
    try:
        with open(out, "rb") as f:
            first = f.readline(4096).rstrip(b"\r\n").decode("utf-8", "replace")
    except (IOError, OSError) as e:
        raise BundleError("--out: cannot read %s (%s)" % (out[:200], e.strerror or e))
    if first != ",".join(FIELDS):
        raise BundleError("--out: %s is not this runner's results (its first line is %r); give another --out"
                          % (out[:200], first[:60]))
    return True


def _check_not_bundle_file(bundle, out, models):
    """``--out`` is no file of the bundle (the manifest, the runner, a model, a weights file)."""
    names = ["manifest.json", "run_bundle.py", "README.txt"] + [m["file"] for m in models]
    names += [m["weights"]["file"] for m in models if m.get("weights")]
    out_real = os.path.realpath(out)
    for rel in names:
        if os.path.realpath(os.path.join(bundle, rel)) == out_real:
            raise BundleError("--out: %s is the bundle's %s; give another --out" % (out[:200], rel[:80]))


def _cell(v):
    if isinstance(v, str) and v.lstrip("'").startswith(FORMULA_START):
        return "'" + v
    return v


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def measure_entry(bundle, entry, s, device, manifest, versions, keep_weights):
    """One CSV row for one model: its timing, or its failure with the reason."""
    row = dict(device, config_hash=entry["hash"], metric="latency_ms", backend=s["backend"],
               precision=s["precision"], batch=entry["input_shape"][0], resolution=entry.get("resolution"),
               threads=s["threads"], warmup=s["warmup"], source="bundle", source_ref=manifest.get("name"),
               os=platform.platform(), config_json=entry.get("config_json"), name=entry.get("name"),
               family=entry.get("family"), notes=entry.get("name"))
    try:
        out = time_model(bundle, entry, s, keep_weights)
        med, p10, p90, busy, version = out[0], out[1], out[2], out[3], out[-1]
        status = "ok" if busy is None or busy <= s["busy_threshold"] else "busy"
        row.update(value=med * 1e3, p10=p10 * 1e3, p90=p90 * 1e3, n=s["runs"], status=status, backend_version=version,
                   busy_pct=None if busy is None else round(busy, 2),
                   reason=None if status == "ok" else "machine busy: %.1f%% of the CPU used by others" % busy,
                   pairing="alone")
        if len(out) == 9:  # paired: ratio, its CI and the reference's median
            row.update(pairing="paired", ratio=out[4], ratio_lo=out[5], ratio_hi=out[6], reference=s["reference_hash"],
                       reference_value=out[7] * 1e3)
        versions["backend"] = version
    except (KeyboardInterrupt, BundleError):
        raise
    except Exception as e:  # every other failure becomes a row with its reason
        row.update(status="failed", reason=("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:500])
    row["versions"] = json.dumps(dict(versions, weights="generated" if entry.get("weights") else "file"),
                                 sort_keys=True)
    row["timestamp"] = _now()
    return row


def run_all(args, manifest, todo, s, device):
    """Measure ``todo`` one by one, appending each row to ``args.out`` as it comes (fsync'ed); time the anchors at
    the start, when due and at the end (:class:`AnchorLog`)."""
    versions = {"python": platform.python_version(), "bundle": manifest.get("created")}
    try:
        import numpy

        versions["numpy"] = numpy.__version__
    except ImportError:
        pass
    new_file = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
    t_start = time.time()
    state = {"first_ref": None, "warned": False}
    anchors = AnchorLog(args, manifest, s, device) if todo and s.get("reference_model") is not None else None
    with open(args.out, "a", newline="") as out:
        writer = csv.DictWriter(out, FIELDS)
        if new_file:
            writer.writeheader()
        try:
            if anchors is not None:
                anchors.session()
            for i, entry in enumerate(todo):
                row = measure_entry(args.bundle, entry, s, device, manifest, versions, args.keep_weights)
                writer.writerow({k: _cell(v) for k, v in row.items()})
                out.flush()
                os.fsync(out.fileno())
                _phase_warning(row, state)
                left = (time.time() - t_start) / (i + 1) * (len(todo) - i - 1)
                value = ("%.2f ms" % row["value"] if row.get("value")
                         else row["status"] + ": " + str(row.get("reason"))[:80])
                print("[%d/%d] %s %s  (ETA %.0f min)" % (i + 1, len(todo), entry.get("name") or entry["hash"][:12],
                                                         value, left / 60))
                if anchors is not None and (i + 1 == len(todo) or anchors.due()):
                    anchors.session()
        except KeyboardInterrupt:
            print("\ninterrupted: %s holds every model measured so far; run again to continue" % args.out)
            return 130
        except BundleError as e:
            print("run_bundle.py: error: %s" % e, file=sys.stderr)
            return 2
    if anchors is not None:
        print(anchors.summary())
    extra = " (and %s beside it)" % anchors.path if anchors is not None and anchors.sessions else ""
    print("done: import it%s with  lowformer-nas import %s --device %s" % (extra, args.out, device["device_id"]))
    return 0


def _phase_warning(row, state):
    """Warn (once) when the reference's median moved by more than PHASE_WARN_PCT from the run's first: the
    device's state (its phase) changed; the rows' ratios hold through it, their absolute medians do not."""
    ref = row.get("reference_value") if row.get("status") == "ok" else None
    if ref is None:
        return
    if state["first_ref"] is None:
        state["first_ref"] = ref
        return
    moved = (ref / state["first_ref"] - 1) * 100
    if abs(moved) > PHASE_WARN_PCT and not state["warned"]:
        state["warned"] = True
        print("warning: the reference %s now runs %.2f ms, %+.0f%% from %.2f ms at the start of this run: the device's "
              "phase moved (throttling? another process?); the ratios stay comparable, the absolute times do not"
              % (REFERENCE_NAME, ref, moved, state["first_ref"]))


# ---------------------------------------------------------------------------------------------- the anchors


def anchors_path(out):
    """Where the anchor timings of the results file ``out`` go: results.csv -> results.anchors.csv."""
    return (out[:-4] if out.lower().endswith(".csv") else out) + ".anchors.csv"


def anchor_entries(manifest):
    """[(name, entry)] of the manifest's anchors."""
    by_hash = {m["hash"]: m for m in manifest["models"]}
    return [(a["name"], by_hash[a["hash"]]) for a in manifest.get("anchors") or []]


def time_anchors(bundle, anchors, s, device, keep_weights=False):
    """One session: every anchor timed paired with the reference; one row per anchor (ok with its ratio, its CI
    and the reference's median in ms, or failed with the reason: never a ratio to nothing)."""
    session = "%016x%s" % (time.time_ns(), os.urandom(8).hex())
    ts = _now()
    paired = dict(s, runs=min(s["runs"], ANCHOR_PAIRS))
    rows = []
    for name, entry in anchors:
        row = {"format": ANCHORS_FORMAT, "session": session, "timestamp": ts, "device_id": device["device_id"],
               "anchor": name, "config_hash": entry["hash"], "status": "failed", "reference": s["reference_hash"],
               "backend": s["backend"], "precision": s["precision"], "threads": s["threads"],
               "batch": entry["input_shape"][0]}
        try:
            out = time_model(bundle, entry, paired, keep_weights)
            busy = out[3]
            if busy is not None and busy > s["busy_threshold"]:
                row["reason"] = "machine busy: %.1f%% of the CPU used by others" % busy
            else:
                row.update(status="ok", n=paired["runs"], ratio=out[4], ratio_lo=out[5], ratio_hi=out[6],
                           reference_value=out[7] * 1e3, backend_version=out[-1])
        except (KeyboardInterrupt, BundleError):
            raise
        except Exception as e:  # an anchor (or the reference with it) that fails is a failed anchor, with the reason
            row["reason"] = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:400]
        rows.append(row)
    return rows


def anchor_times(rows):
    """{anchor: ms} of a session's ok anchors (ratio x the session's pooled reference median, as the importer)."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return {}
    pooled = _pct(sorted(r["reference_value"] for r in ok), 50)
    return dict([(r["anchor"], r["ratio"] * pooled) for r in ok] + [(REFERENCE_NAME, pooled)])


def moved_pct(first, now):
    """{anchor: % moved} between two sessions' {anchor: ms}, over the anchors ok in both."""
    return dict((a, (now[a] / first[a] - 1) * 100) for a in first if a in now)


class AnchorLog(object):
    """The run's anchor sessions: timed when due, appended to <results>.anchors.csv (fsync'ed), each compared with
    the run's first; one warning line when the anchors moved by more than PHASE_WARN_PCT."""

    def __init__(self, args, manifest, s, device):
        self.args, self.s, self.device = args, s, device
        self.anchors = anchor_entries(manifest)
        self.path = anchors_path(args.out)
        self.every_s = max(getattr(args, "anchors_every", ANCHORS_EVERY_MIN), 0.0) * 60.0
        self.first, self.last_t, self.sessions, self.worst = None, None, 0, {}
        if not self.anchors:
            print("note: the bundle lists no phase anchors: the device's phase is not tracked during this run")
        elif check_anchors_out(self.path) is None:
            print("note: %s is not this runner's anchor timings: the device's phase is not tracked" % self.path)
            self.anchors = []

    def due(self):
        return bool(self.anchors) and (self.last_t is None or _wall() - self.last_t >= self.every_s)

    def session(self):
        if not self.anchors:
            return
        rows = time_anchors(self.args.bundle, self.anchors, self.s, self.device, self.args.keep_weights)
        self.last_t = _wall()
        new_file = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, ANCHOR_FIELDS)
            if new_file:
                writer.writeheader()
            for r in rows:
                writer.writerow({k: _cell(v) for k, v in r.items()})
            f.flush()
            os.fsync(f.fileno())
        self.sessions += 1
        failed = [r["anchor"] for r in rows if r["status"] != "ok"]
        if failed:
            print("note: anchors %s failed this session (%s)" % (", ".join(failed), str(rows[0].get("reason"))[:120]
                                                                 if len(failed) == len(rows) else "see " + self.path))
        times = anchor_times(rows)
        if self.first is None:
            self.first = times
            return
        moved = moved_pct(self.first, times)
        self.worst = moved or self.worst
        if moved and max(abs(v) for v in moved.values()) > PHASE_WARN_PCT:
            a = max(moved, key=lambda k: abs(moved[k]))
            print("warning: the device's phase moved: anchor %s runs %+.0f%% from the start of this run (anchors "
                  "%+.0f%%..%+.0f%%, bound ±%g%%): throttling? another process? the ratios stay comparable, the "
                  "absolute times do not" % (a, moved[a], min(moved.values()), max(moved.values()), PHASE_WARN_PCT))

    def summary(self):
        if not self.sessions:
            return "anchors: not timed"
        if not self.worst:
            return "anchors: %d session(s) in %s" % (self.sessions, self.path)
        return ("anchors: %d sessions in %s; moved %+.1f%%..%+.1f%% between the first and the last (bound ±%g%%)"
                % (self.sessions, self.path, min(self.worst.values()), max(self.worst.values()), PHASE_WARN_PCT))


def check_anchors_out(path):
    """``path`` is missing, empty or this runner's anchor timings (True); None for anything else."""
    if not os.path.exists(path) or (os.path.isfile(path) and os.path.getsize(path) == 0):
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        with open(path, "rb") as f:
            first = f.readline(4096).rstrip(b"\r\n").decode("utf-8", "replace")
    except (IOError, OSError):
        return None
    return True if first == ",".join(ANCHOR_FIELDS) else None


def setup_reference(args, manifest, s):
    """Load the bundle's reference for paired timing (``--protocol paired``, the default), or time alone."""
    entry = reference_entry(manifest) if args.protocol == "paired" else None
    if entry is None:
        if args.protocol == "paired":
            print("note: the bundle has no %s model at 224 px to pair with: timing each model alone" % REFERENCE_NAME)
        return None
    check_files(args.bundle, [entry], {m["hash"]: i for i, m in enumerate(manifest["models"])})  # its sha256 too
    path = inside(args.bundle, entry["file"], "file")
    written = write_weights(args.bundle, entry["weights"]) if entry.get("weights") else None
    model = Model(path, entry["input_shape"], s["backend"], s["threads"], s["precision"])
    run = model.run

    def reference_run():  # a failure of the reference fails the row it was paired with, and says so
        try:
            return run()
        except Exception as e:  # noqa: BLE001
            raise ReferenceFailed("reference %s failed: %s: %s" % (REFERENCE_NAME, type(e).__name__, e))
    model.run = reference_run
    s["reference_model"] = model
    s["reference_hash"] = entry["hash"]
    return written


def main(argv=None):
    args = parse_args(argv)
    try:
        manifest = load_manifest(args.bundle)
        s = settings_of(args, manifest)
        device = device_of(args, manifest, fingerprint())
        _check_not_bundle_file(args.bundle, args.out, manifest["models"])
        todo, n_rows = plan(manifest, args.out, s, not args.no_retry_failed)
        index = {m["hash"]: i for i, m in enumerate(manifest["models"])}
        if args.no_anchors or args.protocol != "paired":
            manifest["anchors"] = []
        check_files(args.bundle, todo + [e for _, e in anchor_entries(manifest) if e not in todo], index)
    except BundleError as e:
        print("run_bundle.py: error: %s" % e, file=sys.stderr)
        return 2
    print("%d models to measure (%d rows already in %s) with %s" % (len(todo), n_rows, args.out, args.backend))
    try:
        written = setup_reference(args, manifest, s) if todo else None
    except BundleError as e:
        print("run_bundle.py: error: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (a reference that cannot run: nothing is stored as a ratio to nothing)
        print("run_bundle.py: error: the reference %s cannot run here (%s); run with --protocol alone"
              % (REFERENCE_NAME, ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:300]), file=sys.stderr)
        return 2
    try:
        return run_all(args, manifest, todo, s, device)
    finally:
        if written and not args.keep_weights and os.path.exists(written):
            os.unlink(written)


if __name__ == "__main__":
    sys.exit(main())
