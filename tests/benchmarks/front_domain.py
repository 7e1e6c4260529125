"""Where the search's fronts stand (predictors/README.md, issue 17): per study, the front's size, the share of its
configs inside every predictor's training domain (the accuracy surrogate's included), how many of its values are
measured / predicted in domain / extrapolated, the highest top-1 it headlines and the highest pessimistic latency of
its unmeasured configs, once with the default (every prediction inside its domain) and once with --extrapolate.

Computational figures only (no timing is reported): the search is seeded and the shipped predictors are fixed.

Run: python tests/benchmarks/front_domain.py [--trials 3000] [--seed 0] [--study jetson_tx2:13 ...] [--json FILE]
The last line printed is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nas.search import SearchSettings, run_search  # noqa: E402
from nas.search._report import evidence  # noqa: E402

STUDIES = ("jetson_tx2:13", "jetson_tx2:12", "rpi5_arm_cpu:120")


def front_figures(res) -> dict:
    """The front's evidence figures of one study."""
    front = res.front
    keys = res.predictor_keys()
    time_keys = [o["key"] for o in res.objectives if o.get("device") not in (None, "imagenet1k")]
    acc = next((o["key"] for o in res.objectives if o.get("metric") == "top1_pct"), None)
    counts = {"measured": 0, "predicted in domain": 0, "extrapolated": 0}
    inside = 0
    for _, r in front.iterrows():
        ev = evidence(r, res)
        for k in keys:
            counts[ev[k]] = counts.get(ev[k], 0) + 1
        inside += all(k not in r["ood"] for k in keys)
    unmeasured = front[[not any(k in m for k in time_keys) for m in front["measured"]]]
    hi = [float(unmeasured[f"{k}_hi"].max()) for k in time_keys] if len(unmeasured) else [None]
    return {"front": len(front), "inside_every_domain": inside / len(front) if len(front) else None,
            "values": counts, "top1_max": float(front[acc].max()) if acc and len(front) else None,
            "unmeasured": len(unmeasured), "unmeasured_latency_hi_max": hi[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--study", action="append", help="DEVICE:BUDGET_MS (repeatable; default: " + ", ".join(STUDIES) + ")")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOWFORMER_NAS_HOME"] = home
        for spec in args.study or STUDIES:
            device, budget = spec.split(":")
            for extrapolate in (False, True):
                s = SearchSettings(devices=[device], budgets_ms=[float(budget)], trials=args.trials, seed=args.seed,
                                   study=f"{device}-{budget}-{'x' if extrapolate else 'd'}", runs_dir=home,
                                   extrapolate=extrapolate)
                res = run_search(s, progress=False, png=False).results
                f = {"device": device, "budget_ms": float(budget), "extrapolate": extrapolate, **front_figures(res)}
                rows.append(f)
                print(json.dumps(f), flush=True)
    print()
    print("| study | mode | front | inside every domain | measured / in domain / extrapolated values | top-1 max | "
          "unmeasured: count, highest upper bound |")
    print("|---|---|---:|---:|---|---:|---|")
    for f in rows:
        v = f["values"]
        share = "-" if f["inside_every_domain"] is None else f"{f['inside_every_domain'] * 100:.0f} %"
        hi = "-" if f["unmeasured_latency_hi_max"] is None else f"{f['unmeasured_latency_hi_max']:.2f} ms"
        top1 = "-" if f["top1_max"] is None else f"{f['top1_max']:.2f} %"
        print(f"| {f['device']} {f['budget_ms']:g} ms | {'--extrapolate' if f['extrapolate'] else 'default'} | "
              f"{f['front']} | {share} | {v['measured']} / {v['predicted in domain']} / {v['extrapolated']} | {top1} | "
              f"{f['unmeasured']}, {hi} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    print(json.dumps({"trials": args.trials, "seed": args.seed, "rows": rows}))


if __name__ == "__main__":
    main()
