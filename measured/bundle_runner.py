#!/usr/bin/env python3
"""Standalone latency runner for a lowformer-nas bundle (copied into the bundle as run_bundle.py).

Needs only Python >= 3.8, numpy, and onnxruntime (CPU, CUDA or TensorRT execution provider) or TensorRT.
Copy the bundle folder to the device (Jetson, Raspberry Pi, ...), then:

    python3 run_bundle.py --out results.csv                  # onnxruntime on the CPU, 1 thread
    python3 run_bundle.py --backend onnxruntime-tensorrt --out results.csv
    python3 run_bundle.py --threads 4 --out results.csv      # the paper's Raspberry Pi 5 used 4 cores

It measures every model of manifest.json with the paper's protocol (batch 1, input generated beforehand,
warm-up runs, N timed runs, median), appends one CSV row per model as soon as it is measured (a crash
or Ctrl-C loses nothing; running it again skips what the CSV already holds), and records the device's
fingerprint and the machine's load while timing. Bring results.csv back and import it:

    lowformer-nas import results.csv --device jetson_tx2
"""

from __future__ import print_function

import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import sys
import time

FIELDS = [
    "device_id", "config_hash", "metric", "value", "status", "reason", "backend", "backend_version",
    "precision", "batch", "resolution", "threads", "warmup", "n", "p10", "p90", "busy_pct", "source",
    "source_ref", "versions", "os", "timestamp", "campaign", "notes", "config_json", "name", "family",
    "device_name", "device_kind", "device_fingerprint",
]
BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
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


class Model(object):
    def __init__(self, entry, root, backend, threads, precision):
        self.entry = entry
        path = os.path.join(root, entry["file"])
        shape = entry["input_shape"]
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
    with open(path, "rb") as f:
        if not parser.parse(f.read()):
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
        t0 = time.perf_counter()
        model.run()
        times.append(time.perf_counter() - t0)
    sys1, own1, wall = _cpu_busy_seconds(), _own_seconds(), time.time() - wall0
    busy = None
    if sys0 is not None and sys1 is not None:
        busy = max(0.0, (sys1 - sys0) - (own1 - own0)) / max(wall * (os.cpu_count() or 1), 1e-9) * 100.0
    times.sort()

    def pct(q):  # linear interpolation, as numpy.percentile
        k = (len(times) - 1) * q / 100.0
        lo = int(k)
        hi = min(lo + 1, len(times) - 1)
        return times[lo] + (times[hi] - times[lo]) * (k - lo)

    return pct(50), pct(10), pct(90), busy


def main(argv=None):
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
    ap.add_argument("--device-name", default=None, help="a human name for this device (default: its board/CPU)")
    ap.add_argument("--device-kind", default="edge", choices=("cpu", "gpu", "edge", "mobile"))
    args = ap.parse_args(argv)

    with open(os.path.join(args.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    proto = manifest.get("protocol", {})
    warmup = args.warmup if args.warmup is not None else proto.get("warmup", 5)
    runs = args.runs if args.runs is not None else proto.get("runs", 100)
    if warmup < 0 or runs < 3:
        ap.error("--warmup must be >= 0 and --runs >= 3")
    fp = fingerprint()
    name = args.device_name or fp.get("board") or fp.get("cpu_model") or platform.node()

    threads = args.threads if args.backend == "onnxruntime" else None
    precision = args.precision

    def setting(row):  # what makes two rows of one model comparable (the store's protocol key)
        return (row.get("backend"), row.get("precision"), str(row.get("threads") or ""), str(row.get("batch")))

    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            for row in csv.DictReader(f):
                if row.get("status") in ("ok", "failed"):
                    done.add((row["config_hash"],) + setting(row))
    new_file = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
    out = open(args.out, "a", newline="")
    writer = csv.DictWriter(out, FIELDS)
    if new_file:
        writer.writeheader()
    models = [m for m in manifest["models"]
              if (m["hash"], args.backend, precision, str(threads or ""), str(m["input_shape"][0])) not in done]
    print("%d models to measure (%d already in %s) with %s" % (len(models), len(done), args.out, args.backend))
    versions = {"python": platform.python_version(), "bundle": manifest.get("created")}
    try:
        import numpy

        versions["numpy"] = numpy.__version__
    except ImportError:
        pass
    t_start = time.time()
    for i, entry in enumerate(models):
        row = {
            "device_id": fp.get("board") or fp.get("cpu_model") or "unknown",
            "config_hash": entry["hash"], "metric": "latency_ms", "backend": args.backend, "precision": precision,
            "batch": entry["input_shape"][0], "resolution": entry.get("resolution"), "threads": threads,
            "warmup": warmup, "source": "bundle", "source_ref": manifest.get("name"), "os": platform.platform(),
            "config_json": entry.get("config_json"), "name": entry.get("name"), "family": entry.get("family"),
            "device_name": name, "device_kind": args.device_kind, "device_fingerprint": json.dumps(fp, sort_keys=True),
            "notes": entry.get("name"),
        }
        try:
            digest = hashlib.sha256(open(os.path.join(args.bundle, entry["file"]), "rb").read()).hexdigest()
            if digest != entry["sha256"]:
                raise RuntimeError("model file %s is corrupt (sha256 mismatch): copy the bundle again" % entry["file"])
            model = Model(entry, args.bundle, args.backend, args.threads, precision)
            versions["backend"] = model.version
            for attempt in range(3):
                med, p10, p90, busy = measure(model, warmup, runs)
                if busy is None or busy <= args.busy_threshold:
                    break
            status = "ok" if busy is None or busy <= args.busy_threshold else "busy"
            row.update(value=med * 1e3, p10=p10 * 1e3, p90=p90 * 1e3, n=runs, status=status,
                       busy_pct=None if busy is None else round(busy, 2), backend_version=model.version,
                       reason=None if status == "ok" else "machine busy: %.1f%% of the CPU used by others" % busy)
            del model
        except KeyboardInterrupt:
            print("\ninterrupted: %s holds every model measured so far; run again to continue" % args.out)
            out.close()
            return 130
        except Exception as e:  # every failure becomes a row with its reason
            row.update(status="failed", reason=("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:500])
        row["versions"] = json.dumps(versions, sort_keys=True)
        row["timestamp"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds") \
            if sys.version_info >= (3, 6) else datetime.datetime.utcnow().isoformat() + "+00:00"
        writer.writerow(row)
        out.flush()
        os.fsync(out.fileno())
        left = (time.time() - t_start) / (i + 1) * (len(models) - i - 1)
        value = "%.2f ms" % row["value"] if row.get("value") else row["status"] + ": " + str(row.get("reason"))[:80]
        print("[%d/%d] %s %s  (ETA %.0f min)" % (i + 1, len(models), entry.get("name") or entry["hash"][:12],
                                                 value, left / 60))
    out.close()
    print("done: import it with  lowformer-nas import %s --device NAME" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
