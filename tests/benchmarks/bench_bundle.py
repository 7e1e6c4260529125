"""Small edge bundles: how big and how fast a 100-model bundle is, and whether its generated weights time the same
as the full ONNX files.

Run on a quiet machine:

    python tests/benchmarks/bench_bundle.py                     # 100 sampled models; then 5 of them small vs full
    python tests/benchmarks/bench_bundle.py --sample 2 --compare 2 --rounds 1 --runs 10   # smoke run

1. writes a bundle of ``--sample`` configs (``sample_configs(seed)``; ``--named`` adds the 19 named variants) and
   reports its size and the seconds it took (goal: 100 models <= 50 MB in <= 60 s);
2. takes ``--compare`` of its models, writes them again as a full-weights bundle, and times each model from both
   with the bundle runner's own code and protocol (onnxruntime, 1 thread, batch 1, warm-up + ``--runs`` timed
   runs, median), alternating small and full in ``--rounds`` rounds so drift hits both alike. Reports per model
   the two medians, their difference and the spread of the rounds (the noise it must stay within).

The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time


def _runner(bundle: str):
    spec = importlib.util.spec_from_file_location("run_bundle", os.path.join(bundle, "run_bundle.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cv_pct(values: list[float]) -> float | None:
    return round(statistics.stdev(values) / statistics.mean(values) * 100, 2) if len(values) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=100, help="sampled configs in the bundle (default 100)")
    ap.add_argument("--named", action="store_true", help="the 19 named variants too")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None, help="export processes (default: one per core)")
    ap.add_argument("--compare", type=int, default=5, help="models timed small vs full (default 5)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per model (default 5)")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per measurement (default 100)")
    ap.add_argument("--out", help="folder for the bundles (default: a temporary one)")
    args = ap.parse_args()

    from measured import Job, write_bundle
    from search_spaces import get_variant, sample_configs, variant_names

    jobs = [Job(c) for c in sample_configs(args.sample, seed=args.seed)]
    if args.named:
        jobs += [Job(get_variant(n).config, n) for n in variant_names()]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or tmp
        small_dir = os.path.join(root, "small")
        small = write_bundle(jobs, small_dir, workers=args.jobs)
        print(f"1. {small.line()}")

        picked = [Job(get_variant(m["name"]).config, m["name"]) if m["name"] else Job(_config(m))
                  for m in small.manifest["models"][: args.compare]]
        full_dir = os.path.join(root, "full")
        full = write_bundle(picked, full_dir, workers=args.jobs, progress=False, full_weights=True)
        print(f"   full-weights bundle of {len(picked)} of them: {full.line()}")

        runner = _runner(small_dir)
        settings = {"backend": "onnxruntime", "precision": "fp32", "threads": 1, "warmup": 5, "runs": args.runs,
                    "busy_threshold": 100.0}
        full_entries = {m["hash"]: m for m in full.manifest["models"]}
        per_model, busiest = [], 0.0
        for entry in small.manifest["models"][: args.compare]:
            times = {"small": [], "full": []}
            for _ in range(args.rounds):
                for kind, bundle, e in (("small", small_dir, entry), ("full", full_dir, full_entries[entry["hash"]])):
                    med, _, _, busy, _ = runner.time_model(bundle, e, settings)
                    times[kind].append(med * 1e3)
                    busiest = max(busiest, busy or 0.0)
            s, f = statistics.median(times["small"]), statistics.median(times["full"])
            row = {"hash": entry["hash"][:12], "name": entry["name"], "small_ms": round(s, 3), "full_ms": round(f, 3),
                   "diff_pct": round((s / f - 1) * 100, 2), "cv_small_pct": _cv_pct(times["small"]),
                   "cv_full_pct": _cv_pct(times["full"])}
            per_model.append(row)
            print(f"2. {row['name'] or row['hash']}: small {s:.3f} ms, full {f:.3f} ms, difference "
                  f"{row['diff_pct']:+.2f}% (rounds' CV: small {row['cv_small_pct']}%, full {row['cv_full_pct']}%)")
    print(json.dumps({
        "models": len(small.manifest["models"]), "bundle_bytes": small.bytes, "bundle_seconds": round(small.seconds, 1),
        "exported": small.exported, "jobs": args.jobs or os.cpu_count(), "compare": per_model,
        "max_abs_diff_pct": max((abs(r["diff_pct"]) for r in per_model), default=None),
        "rounds": args.rounds, "runs": args.runs, "max_other_cpu_pct": round(busiest, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }))


def _config(entry: dict):
    from search_spaces import LowFormerConfig

    return LowFormerConfig.from_json(entry["config_json"])


if __name__ == "__main__":
    main()
