"""The paired ratio's estimator: the median of pair ratios (before 2026-12-03, night) against the Hodges-Lehmann
estimate over ABBA blocks (measured._harness.paired_ratio), on raw paired timings of this machine.

    python tests/benchmarks/bench_ratio_estimators.py --collect raw.json   # time 8 fp32 + 6 int8 configs x 150 pairs
    python tests/benchmarks/bench_ratio_estimators.py raw.json             # compare the estimators on them

Collecting takes about 2 minutes of timing (plus exports) and must run alone on the machine. For each config it
prints the cost of a switch of model (how much slower the run right after the other model is than the run right
after itself), the spread of each estimator at 12 and 24 pairs (blocks resampled with replacement, 400 times), and
what each adaptive stop rule does at ±2 %: the pairs it takes and the spread of the value it stops at. The raw
file records when and where it was timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from measured._harness import (  # noqa: E402
    Protocol,
    ci_half_width_pct,
    paired_floor,
    paired_ratio,
    paired_ratio_half_pct,
    reference_runner,
    time_paired,
)

INT8_CONFIGS = ("B0", "E1", "r0", "r1", "r2", "r3")


def collect(out: str, pairs: int, seed: int) -> None:
    from measured import get_backend, local_device_id
    from measured._backends import quantize_int8
    from search_spaces import export_onnx, get_variant, sample_config

    rng = random.Random(seed)
    cfgs = [(n, get_variant(n).config) for n in ("B0", "B1", "E1")] + [(f"r{i}", sample_config(rng)) for i in range(5)]
    tmp = tempfile.mkdtemp(prefix="lowformer-ratio-bench-")
    paths = {}
    for name, c in cfgs:  # every export and quantisation before any timing
        p = export_onnx(c, os.path.join(tmp, name + ".onnx"), batch=1)
        r = c.resolution
        q = quantize_int8(p, os.path.join(tmp, name + ".int8.onnx"), (1, 3, r, r)) if name in INT8_CONFIGS else None
        paths[name] = (p, q)
    rows = []
    for precision in ("fp32", "int8"):
        ref = reference_runner(Protocol(precision=precision))[0]
        backend = get_backend("onnxruntime", 1, precision)
        for name, c in cfgs:
            fp32, int8 = paths[name]
            if precision == "int8" and int8 is None:
                continue
            shape = (1, 3, c.resolution, c.resolution)
            run = backend.load_onnx(int8, shape, quantised=True) if precision == "int8" else backend.load_onnx(fp32, shape)
            t = time_paired(run, ref, 5, pairs, ref_warmup=1)
            rows.append({"name": name, "precision": precision, "hash": c.hash, "a": t.times_s.tolist(),
                         "b": t.ref_times_s.tolist(), "other_pct": t.other_pct})
            print(f"{precision} {name}: {t.median_s * 1e3:.2f} ms, ratio {t.ratio:.4f} ±{t.ratio_ci_half_pct:.2f} %, "
                  f"other processes {t.other_pct:.1f} %", flush=True)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": local_device_id(), "pairs": pairs,
            "seed": seed, "rows": rows}
    with open(out, "w") as f:
        json.dump(meta, f)
    print(f"wrote {out}")


def _median_rule(a, b, target):  # the previous estimator: median pair ratio, order-statistic interval
    for n in range(10, len(a) + 1):
        if ci_half_width_pct(a[:n] / b[:n]) <= target:
            return n, float(np.median(a[:n] / b[:n]))
    return len(a), float(np.median(a / b))


def _block_rule(a, b, target):  # the product's: Hodges-Lehmann over ABBA blocks, checked after whole blocks
    for n in range(paired_floor(), len(a) + 1, 2):
        if paired_ratio_half_pct(a[:n], b[:n]) <= target:
            return n, paired_ratio(a[:n], b[:n])[0]
    return len(a), paired_ratio(a, b)[0]


def _resampled(a, b, rng, pairs):
    """A sequence of ``pairs`` pairs built from whole ABBA blocks drawn with replacement (keeps the design)."""
    m = len(a) // 2
    idx = rng.integers(0, m, pairs // 2)
    take = np.ravel(np.column_stack([2 * idx, 2 * idx + 1]))
    return a[take], b[take]


def analyse(path: str, target: float, draws: int) -> None:
    data = json.load(open(path))
    print(f"{path}: timed {data['when']} on {data.get('device', 'this host')}, {data.get('pairs', data.get('npairs'))} pairs per config\n")
    rng = np.random.default_rng(0)
    head = ("config", "switch cost", "sd median@12", "sd HL@12", "sd median@24", "sd HL@24",
            f"median rule ±{target:g}%: pairs, sd", f"block rule ±{target:g}%: pairs, sd")
    print(" | ".join(head))
    summary: dict[str, list] = {}
    for row in data["rows"]:
        a, b = np.array(row["a"]), np.array(row["b"])
        lr = np.log(a / b)
        switch = (np.mean(lr[1::2]) - np.mean(lr[0::2])) / 2 * 100  # B A pairs: A cold; A B pairs: A warm
        truth = np.log(paired_ratio(a, b)[0])
        cells = []
        for n in (12, 24):
            med = [np.log(np.median(x / y)) for x, y in (_resampled(a, b, rng, n) for _ in range(draws))]
            hl = [np.log(paired_ratio(x, y)[0]) for x, y in (_resampled(a, b, rng, n) for _ in range(draws))]
            cells += [np.std(med) * 100, np.std(hl) * 100]
        rules = []
        for rule in (_median_rule, _block_rule):
            stops = [rule(*_resampled(a, b, rng, 100), target) for _ in range(draws // 4)]
            ns, vals = zip(*stops)
            rules.append((np.mean(ns), np.sqrt(np.mean((np.log(vals) - truth) ** 2)) * 100))
        key = row["precision"]
        summary.setdefault(key, []).append(cells + [rules[0][0], rules[0][1], rules[1][0], rules[1][1]])
        print(f"{row['precision']} {row['name']} | {switch:+.2f} % | " + " | ".join(f"{c:.2f} %" for c in cells)
              + f" | {rules[0][0]:.1f}, {rules[0][1]:.2f} % | {rules[1][0]:.1f}, {rules[1][1]:.2f} %")
    print()
    for key, vals in summary.items():
        v = np.mean(vals, axis=0)
        print(f"{key} mean: sd at 12 pairs median {v[0]:.2f} % / HL {v[1]:.2f} %; at 24 median {v[2]:.2f} % / HL "
              f"{v[3]:.2f} %; stop at ±{target:g} %: median rule {v[4]:.1f} pairs (sd {v[5]:.2f} %), block rule "
              f"{v[6]:.1f} pairs (sd {v[7]:.2f} %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", nargs="?", help="raw paired timings written by --collect")
    ap.add_argument("--collect", metavar="OUT", help="time the configs on this machine and write OUT")
    ap.add_argument("--pairs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=777, help="the random configs' seed")
    ap.add_argument("--target", type=float, default=2.0, help="the stop rules' target half-width, %%")
    ap.add_argument("--draws", type=int, default=400)
    a = ap.parse_args()
    if a.collect:
        collect(a.collect, a.pairs, a.seed)
    if a.raw or a.collect:
        analyse(a.raw or a.collect, a.target, a.draws)
    else:
        ap.error("give a raw file, or --collect OUT")


if __name__ == "__main__":
    main()
