"""Search speed: N NSGA-II trials (default 5,000) scored by a latency predictor and the accuracy surrogate,
persisted to the study's journal file, against the same study with a constant objective (Optuna + storage alone).

Run: python tests/benchmarks/bench_search.py [--trials N] [--device jetson_tx2] [--budget-ms 12]
     [--latency-predictor DIR]   (a predictor version directory, e.g. a LightGBM one from `predictors train`)
The last line is a JSON object. Objectives come from make_objectives(): the trained predictors when the
predictors package has them, else an analytic stand-in (said so in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from lowformer_common import UserError
from nas.search import FunctionObjective, SearchSettings, build_objectives, run_search
from search_spaces import count


def make_objectives(device: str, latency_predictor: str | None = None):
    """The objectives under test (swap here): the surrogate and the device's predictor (or the predictor version
    directory given, e.g. a LightGBM one), else analytic counts. -> (objectives, label)"""
    try:
        from predictors import load_predictor, load_predictor_dir

        def load(dev, metric=None):
            if latency_predictor and dev == device:
                return load_predictor_dir(latency_predictor)
            return load_predictor(dev, metric)

        objs = build_objectives([device], "surrogate", loader=load)
        return objs, "predictors: " + ", ".join(f"{o.key}={o.describe().get('model_type')}" for o in objs)
    except (ImportError, UserError) as e:
        objs = [
            FunctionObjective("imagenet1k:top1_pct", "maximize", lambda cs: [np.log(count(c).params) for c in cs],
                              device="imagenet1k", metric="top1_pct"),
            FunctionObjective(f"{device}:latency_ms", "minimize", lambda cs: [1 + count(c).macs / 1.5e8 for c in cs],
                              device=device, metric="latency_ms"),
        ]
        return objs, f"analytic stand-in (predictors unavailable: {str(e).splitlines()[0][:120]})"


def constant_like(objectives):
    return [FunctionObjective(o.key, o.direction, lambda cs: np.ones(len(cs)), device=o.device, metric=o.metric)
            for o in objectives]


def timed(objectives, trials: int, budget: float, runs_dir: str, name: str) -> dict:
    s = SearchSettings(trials=trials, study=name, runs_dir=runs_dir, seed=0, budgets_ms=[budget])
    t0 = time.perf_counter()
    r = run_search(s, objectives=objectives, progress=False, outputs=False)
    total = time.perf_counter() - t0
    assert r.n_trials == trials
    return {"loop_s": round(r.seconds, 2), "with_results_s": round(total, 2), "scored": r.scored,
            "front": len(r.results.front), "journal_mb": round(os.path.getsize(f"{runs_dir}/{name}/study.journal") / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--device", default="jetson_tx2")
    ap.add_argument("--budget-ms", type=float, default=12.0)
    ap.add_argument("--latency-predictor", metavar="DIR", help="a trained predictor version directory (e.g. LightGBM)")
    args = ap.parse_args()
    objectives, label = make_objectives(args.device, args.latency_predictor)
    with tempfile.TemporaryDirectory() as runs:
        real = timed(objectives, args.trials, args.budget_ms, runs, "real")
        const = timed(constant_like(objectives), args.trials, args.budget_ms, runs, "const")
    print(f"{args.trials} trials: {real['with_results_s']} s with {label}; {const['with_results_s']} s with a constant objective")
    print(json.dumps({
        "bench": "search", "trials": args.trials, "objectives": label, "seconds": real["with_results_s"],
        "trials_per_s": round(args.trials / real["with_results_s"], 1),
        "constant_seconds": const["with_results_s"],
        "ratio_to_constant": round(real["with_results_s"] / const["with_results_s"], 2),
        "real": real, "constant": const, "goal_s": 60, "cpus": os.cpu_count(), "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
