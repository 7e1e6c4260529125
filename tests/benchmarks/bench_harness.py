"""The harness against a bare onnxruntime loop on the same ONNX file (should agree within 3%).

Run on a quiet machine: python tests/benchmarks/bench_harness.py [--model B1] [--rounds 5]. Alternates the
two ways of timing so drift hits both alike. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def bare_loop(path: str, shape, runs: int, warmup: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="B1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()

    from measured import Protocol, measure_onnx
    from search_spaces import export_onnx, get_variant

    cfg = get_variant(args.model).config
    shape = (1, 3, cfg.resolution, cfg.resolution)
    # A fixed run count: the bare loop times exactly that many.
    proto = Protocol(runs=args.runs, target_ci_pct=None, busy_threshold_pct=100)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(cfg, os.path.join(tmp, "m.onnx"))
        harness, bare, busy = [], [], []
        for _ in range(args.rounds):
            t = measure_onnx(path, shape, proto)
            harness.append(t.median_s * 1e3)
            busy.append(t.other_pct)
            bare.append(bare_loop(path, shape, args.runs, proto.warmup))
            print(f"harness {harness[-1]:.3f} ms (others used {busy[-1]:.1f}% CPU)  bare loop {bare[-1]:.3f} ms")
    h, b = statistics.median(harness), statistics.median(bare)
    print(json.dumps({"model": args.model, "rounds": args.rounds, "runs": args.runs, "harness_ms": round(h, 3),
                      "bare_ms": round(b, 3), "ratio": round(h / b, 4), "diff_pct": round((h / b - 1) * 100, 2),
                      "max_other_cpu_pct": round(max(busy), 1)}))


if __name__ == "__main__":
    main()
