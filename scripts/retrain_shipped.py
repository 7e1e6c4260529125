"""Regenerate the shipped predictors (predictors/shipped/) from the shipped datasets, with their interval
calibration, and print the calibration table of predictors/README.md.

Everything comes from a freshly seeded store (measured/data/: the paper's numbers and this project's local CPU
dataset), never from the files being replaced, so the script can be rerun after anything that changes config
hashes, features or the training code. Per device with a predictable metric:

- devices measured by the harness (source "harness"): ``--model auto`` (LightGBM wins with hundreds of configs);
- the paper's devices: ``--model additive`` or ``--model shared`` (6-12 configs; see predictors/README.md);
- imagenet1k: the accuracy surrogate.

Calibration figures (coverage at 0.8/0.9/0.95, median relative width), from configs each scored predictor never
saw: a random hold-out of 200 configs on harness devices, leave-one-variant-out on the paper's devices (where the
additive model and the cross-device ``shared`` model are both scored and the lower MAPE is shipped); each shipped
sidecar carries its figures (``interval_figures``, shown by ``lowformer-nas predictors list``).

Run: python scripts/retrain_shipped.py [--out predictors/shipped] [--table-only] [--devices D ...] [--json FILE]
The last line printed is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measured import ACCURACY_DEVICE, Store  # noqa: E402
from predictors import (  # noqa: E402
    PREDICTABLE_METRICS,
    PredictorError,
    check_shared_fit,
    interval_coverage,
    profile_rows,
    random_holdout,
    save_version,
    shared_profile,
    train,
    training_data,
    variant_groups,
)

HOLDOUT = 200


def plan(store) -> list[tuple[str, str, str, str]]:
    """(device, metric, model, calibration design) of every predictor to ship."""
    df = store.measurements()
    df = df[df["config_json"].notna() & df["metric"].isin(PREDICTABLE_METRICS)]
    out = []
    for (device, metric), g in sorted(df.groupby(["device_id", "metric"])):
        if device == ACCURACY_DEVICE and metric != "top1_pct":
            continue
        if g["config_hash"].nunique() < 3:
            continue
        dev = store.device(device)
        if dev is not None and dev.kind == "dataset" and device != ACCURACY_DEVICE:
            continue  # downstream benchmarks (COCO, ADE20k, ...): nothing the search predicts
        harness = "harness" in set(g["source"].dropna())
        model = "surrogate" if metric == "top1_pct" else ("auto" if harness else "additive")
        out.append((device, metric, model, "holdout" if harness else "groups"))
    return out


def _choose_paper_model(store, data):
    """("additive" or "shared", its coverage report): the lower leave-one-variant-out MAPE (ties: additive). The
    shared model's profile is learned, per fold, without the held-out configs on any device."""
    everything = store.measurements()
    groups = variant_groups(data.names, [c.hash for c in data.configs], per_variant=True)
    reps = {"additive": interval_coverage(data, "additive", groups=groups)}
    try:
        check_shared_fit(data.device, data.metric, data.X[: data.n_configs], data.n_configs,
                         profile_rows(everything, data.device))
        reps["shared"] = interval_coverage(
            data, "shared", groups=groups, source=lambda held: shared_profile(profile_rows(everything, data.device, held)))
    except PredictorError as e:
        print(f"{data.device}: no cross-device model ({e})", flush=True)
    for name, rep in reps.items():
        print(f"{data.device}/{data.metric} {name}: {rep.line()}; MAPE {rep.mape:.2f} %", flush=True)
    best = min(reps, key=lambda k: (round(reps[k].mape, 1), k != "additive"))
    return best, reps[best]


def ship(pred, out_root: pathlib.Path) -> pathlib.Path:
    """Replace ``out_root/<device>/<metric>/`` with a single version v0001 of ``pred`` (written aside, then swapped)."""
    final = out_root / pred.device / pred.metric
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        # <predictors>/<device>/<metric>/ is the only place save_version writes a device's predictor to.
        path = save_version(pathlib.Path(tmp) / pred.device / pred.metric, pred.estimator, pred.meta)
        staged = final.parent / f".{pred.metric}.new"
        shutil.rmtree(staged, ignore_errors=True)
        path.parent.rename(staged)
    old = final.parent / f".{pred.metric}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final / "v0001"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "predictors" / "shipped"), help="shipped predictors folder")
    ap.add_argument("--table-only", action="store_true", help="only compute the calibration figures")
    ap.add_argument("--devices", nargs="*", help="only these devices")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    figures = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOWFORMER_NAS_HOME"] = home  # a fresh store, seeded with the shipped datasets only
        store = Store(str(pathlib.Path(home) / "store.sqlite"))
        for device, metric, model, design in plan(store):
            if args.devices and device not in args.devices:
                continue
            data = training_data(store.measurements(device=device), device, metric)
            # The figures first (configs each scored predictor never saw), so the shipped sidecar can carry them.
            try:
                if design == "groups" and model == "additive":
                    # The cross-device model where it predicts held-out variants better (leave-one-variant-out MAPE).
                    model, rep = _choose_paper_model(store, data)
                elif design == "holdout" and data.n_configs > HOLDOUT + 30:
                    rep = interval_coverage(data, model, holdout=random_holdout(data.n_configs, HOLDOUT, seed=0))
                else:
                    groups = variant_groups(data.names, [c.hash for c in data.configs], per_variant=True)
                    rep = interval_coverage(data, model, groups=groups)
            except PredictorError as e:
                print(f"{device}/{metric}: no calibration figures ({e})", flush=True)
                rep = None
            if not args.table_only:
                dev = store.device(device)
                src = shared_profile(profile_rows(store.measurements(), device)) if model == "shared" else None
                pred, _ = train(data, model, source=src, device_protocol=dev.protocol if dev is not None else None)
                if rep is not None:
                    pred.meta["interval_figures"] = rep.to_dict()
                path = ship(pred, pathlib.Path(args.out))
                print(f"{device}/{metric}: {pred.model_type} on {data.n_configs} configs, intervals "
                      f"{pred.calibration.describe()} -> {path}", flush=True)
            if rep is None:
                continue
            print(f"{device}/{metric}: {rep.line()}", flush=True)
            figures.append({"device": device, "metric": metric, **rep.to_dict()})
        store.close()
    print()
    print("| device | metric | model | intervals | scored on | configs | coverage 0.8 / 0.9 / 0.95 "
          "| median width 0.8 / 0.9 / 0.95 |")
    print("|---|---|---|---|---|---:|---|---|")
    for f in figures:
        cov = " / ".join(f"{r['empirical'] * 100:.0f} %" for r in f["rows"])
        wid = " / ".join(f"{r['median_relative_width'] * 100:.1f} %" for r in f["rows"])
        print(f"| {f['device']} | {f['metric']} | {f['model']} | {f['intervals']} | {f['method']} | {f['n']} | {cov} | {wid} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps({"script": "retrain_shipped", "figures": figures}))


if __name__ == "__main__":
    main()
