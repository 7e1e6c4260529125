"""Leave-one-variant-out and hold-out figures of the predictors' intervals (predictors/README.md, issue 17).

Computational figures only (no timing): every number comes from configs the scored predictor never saw, its model
choice and interval calibration included. Per paper device: each named variant and each ablation held out in turn
(leave-one-variant-out), coverage and median relative width of the intervals at 0.8 / 0.9 / 0.95, overall and for
the held-out configs inside the training domain of the rest; per model type (``--models``) the error of the central
predictions. The x86 dataset: a random hold-out of 200 configs.

Run: python tests/benchmarks/interval_table.py [--devices D ...] [--models additive,shared] [--json FILE]
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

from measured import Store  # noqa: E402
from predictors import (  # noqa: E402
    COVERAGES,
    interval_coverage,
    profile_rows,
    random_holdout,
    shared_profile,
    training_data,
    variant_groups,
)
from predictors._coverage import pooled  # noqa: E402

PAPER = {"jetson_tx2": "latency_ms", "rpi5_arm_cpu": "latency_ms", "iphone13": "latency_ms",
         "titan_rtx_gpu": "latency_ms", "a40_gpu": "throughput_img_s", "imagenet1k": "top1_pct"}
X86 = ("x86_64-amd-epyc-2c-24g", "latency_ms")


def _pct(v: float | None, width: bool) -> str:
    if v is None:
        return "-"
    v *= 100
    return f"{v:.1f}" if width and v < 10 else f"{v:.0f}"


def _fmt(d: dict, key: str) -> str:
    return " / ".join(_pct(r.get(key), "width" in key) for r in d["rows"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", nargs="*", help="only these devices (default: every paper device and the x86 dataset)")
    ap.add_argument("--models", default="additive,shared", help="model types to score on the latency devices")
    ap.add_argument("--holdout", type=int, default=200, help="random hold-out size on the x86 dataset")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    rows, reports = [], {}
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOWFORMER_NAS_HOME"] = home  # a fresh store: the shipped datasets only
        store = Store(str(pathlib.Path(home) / "store.sqlite"))
        plan = [(d, m) for d, m in [*PAPER.items(), X86] if not args.devices or d in args.devices]
        for device, metric in plan:
            data = training_data(store.measurements(device=device), device, metric)
            models = (["surrogate"] if metric == "top1_pct" else ["auto", "additive"] if device == X86[0]
                      else args.models.split(","))
            everything = store.measurements()
            for model in models:
                # The cross-device profile of each fold is learned without the held-out configs on any device.
                src = None
                if model == "shared":
                    src = lambda held, d=device, rows=everything: shared_profile(profile_rows(rows, d, held))  # noqa: E731
                if device == X86[0]:
                    rep = interval_coverage(data, model, holdout=random_holdout(data.n_configs, args.holdout, seed=0),
                                            source=src)
                else:
                    groups = variant_groups(data.names, [c.hash for c in data.configs], per_variant=True)
                    rep = interval_coverage(data, model, groups=groups, source=src)
                d = {"device": device, "metric": metric, **rep.to_dict()}
                rows.append(d)
                if device in PAPER and metric != "top1_pct":
                    reports.setdefault(model, []).append(rep)
                print(f"{device}/{metric}: {rep.line()}; MAPE {rep.mape:.2f} %", flush=True)
        store.close()
    # What retrain_shipped ships: per device the model with the lower leave-one-variant-out MAPE (ties: additive).
    per_device = [min(g, key=lambda r: (round(r.mape, 1), r.model != "additive"))
                  for g in zip(*reports.values())] if len(reports) > 1 else []
    if per_device:
        reports["chosen: " + ", ".join(r.model for r in per_device)] = per_device
    for model, reps in reports.items():  # every paper device's held-out variants together (46 configs)
        if len(reps) > 1:
            rep = pooled(reps, model, f"leave-one-variant-out, {len(reps)} paper devices")  # model: a label here
            rows.append({"device": "paper devices (pooled)", "metric": "latency/throughput", **rep.to_dict()})
            print(f"pooled: {rep.line()}; MAPE {rep.mape:.2f} %", flush=True)
    print()
    print("| device | model | scored on | configs (in domain) | MAPE | coverage 0.8 / 0.9 / 0.95 | median width | "
          "width in domain |")
    print("|---|---|---|---:|---:|---|---|---|")
    for d in rows:
        print(f"| {d['device']} | {d['model']} | {d['method']} | {d['n']} ({d['n_in_domain']}) | {d['mape']:.1f} % | "
              f"{_fmt(d, 'empirical')} % | {_fmt(d, 'median_relative_width')} % | "
              f"{_fmt(d, 'median_relative_width_in_domain')} % |")
    print()
    print("| device | model | configs in / out of domain | coverage in domain 0.8 / 0.9 / 0.95 | out of domain | "
          "median width in domain | out of domain |")
    print("|---|---|---|---|---|---|---|")
    for d in rows:
        print(f"| {d['device']} | {d['model']} | {d['n_in_domain']} / {d['n'] - d['n_in_domain']} | "
              f"{_fmt(d, 'empirical_in_domain')} % | {_fmt(d, 'empirical_out_of_domain')} % | "
              f"{_fmt(d, 'median_relative_width_in_domain')} % | {_fmt(d, 'median_relative_width_out_of_domain')} % |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    print(json.dumps({"coverages": list(COVERAGES), "rows": rows}))


if __name__ == "__main__":
    main()
