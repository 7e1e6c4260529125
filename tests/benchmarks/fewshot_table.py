"""The few-shot table of predictors/README.md: how good is a device's predictor after 10, 20, 30, 50 measured
configs, chosen at random or by the informative design, trained from scratch or by transfer from the source
the anchors pick (and "chosen": the best by cross-validation of these and the transfer from every other source, as
``onboard`` chooses)?

Measured beforehand on the device (nothing is timed here):

    lowformer-nas measure --model B0 --model B1 --model B1-unfused --model E2 --campaign fewshot-anchors
    lowformer-nas measure --sample 300 --seed 21 --campaign fewshot-pool       # what the design chooses from
    lowformer-nas measure --sample 60 --seed 22 --campaign fewshot-holdout     # >= 40, never trained on
    python tests/benchmarks/fewshot_table.py --device local --pool-campaign fewshot-pool \\
        --holdout-campaign fewshot-holdout

or on a device that already has many configs (the shipped local dataset: a random hold-out of its own):

    python tests/benchmarks/fewshot_table.py --device x86_64-amd-epyc-2c-24g --holdout 200

The anchors must be among the device's measurements. Sources: every other device with a predictor (user
or shipped). Prints a markdown table (mean over the random draws; the design is deterministic) and, last,
a JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", required=True, help="device id, or local")
    ap.add_argument("--metric", default="latency_ms")
    ap.add_argument("--pool-campaign", help="campaign of the configs to choose from (default: every other config)")
    ap.add_argument("--holdout-campaign", help="campaign of the hold-out (measured separately)")
    ap.add_argument("--holdout", type=int, help="or: this many random configs of the device as the hold-out")
    ap.add_argument("--sizes", default="10,20,30,50", help="training-set sizes, anchors included (default 10,20,30,50)")
    ap.add_argument("--repeats", type=int, default=5, help="random draws per size (default 5)")
    ap.add_argument("--criterion", default="i", choices=("i", "d"), help="design criterion (default i)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", help="store URL (default: the user's)")
    args = ap.parse_args()
    if bool(args.holdout_campaign) == bool(args.holdout):
        ap.error("give --holdout-campaign NAME or --holdout N")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    from measured import Store, full_results, is_local_name, local_device_id
    from nas.onboard import ANCHORS, known_sources
    from predictors import featurize, few_shot_table, to_cost
    from search_spaces import LowFormerConfig, get_variant

    device = local_device_id() if is_local_name(args.device) else args.device
    with Store(args.store) as store:
        df = full_results(store.measurements(device=device, metric=args.metric))
    if df.empty:
        raise SystemExit(f"no {args.metric} measurements of {device}")
    protocol = df.groupby("protocol")["config_hash"].nunique().idxmax()
    df = df[(df["protocol"] == protocol) & df["config_json"].notna()]

    def table(rows):
        g = rows.groupby("config_hash", sort=True).agg(value=("value", "median"), config_json=("config_json", "first"))
        return list(g.index), featurize([LowFormerConfig.from_json(j) for j in g["config_json"]]), \
            to_cost(args.metric, g["value"].to_numpy(float))

    anchor_hashes = {get_variant(n).config.hash for n in ANCHORS}
    missing = [n for n in ANCHORS if get_variant(n).config.hash not in set(df["config_hash"])]
    if missing:
        raise SystemExit(f"anchors not measured on {device}: {', '.join(missing)} (lowformer-nas measure --model NAME)")
    a_h, Xa, ya = table(df[df["config_hash"].isin(anchor_hashes)])
    rest = df[~df["config_hash"].isin(anchor_hashes)]
    if args.holdout_campaign:
        hold_rows = rest[rest["campaign"] == args.holdout_campaign]
        if hold_rows.empty:
            raise SystemExit(f"no measurements of {device} under campaign {args.holdout_campaign!r}")
        hold_set = set(hold_rows["config_hash"])
    else:
        hashes = np.array(sorted(set(rest["config_hash"])))
        hold_set = set(np.random.default_rng(args.seed).choice(hashes, size=args.holdout, replace=False))
    h_h, Xh, yh = table(rest[rest["config_hash"].isin(hold_set)])
    pool_rows = rest[~rest["config_hash"].isin(hold_set)]
    if args.pool_campaign:
        pool_rows = pool_rows[pool_rows["campaign"] == args.pool_campaign]
    p_h, Xp, yp = table(pool_rows)
    sources = known_sources(exclude={device})
    print(f"{device} ({protocol}): {len(a_h)} anchors, pool {len(p_h)} configs, hold-out {len(h_h)} configs; "
          f"sources: {', '.join(sources)}")
    res, ranking = few_shot_table(Xp, yp, Xh, yh, X_anchors=Xa, y_anchors=ya, sources=sources, sizes=sizes,
                                  repeats=args.repeats, metric=args.metric, criterion=args.criterion, seed=args.seed,
                                  progress=True)
    best = ranking[0]
    print(f"source chosen on the anchors: {best['source']} ({best['scale']:.3g}x, spread ±{best['spread_pct']:.1f}% "
          "after the scale)")
    agg = res.groupby(["size", "selection", "method"], sort=True)[["within_10", "mape", "kendall_tau"]].mean()
    print("| configs | selection | scratch: ±10% · MAPE | transfer: ±10% · MAPE | chosen: ±10% · MAPE |")
    print("|---:|---|---:|---:|---:|")
    for (size, sel), g in agg.groupby(level=[0, 1]):
        cells = []
        for method in ("scratch", "transfer", "chosen"):
            r = g.xs(method, level=2).iloc[0]
            cells.append(f"{r['within_10'] * 100:.0f}% · {r['mape']:.1f}%")
        print(f"| {size} | {sel} | " + " | ".join(cells) + " |")
    print(json.dumps({"device": device, "protocol": protocol, "anchors": len(a_h), "pool": len(p_h),
                      "holdout": len(h_h), "source": best["source"], "ranking": ranking, "repeats": args.repeats,
                      "criterion": args.criterion,
                      "rows": agg.reset_index().to_dict("records")}, default=float))


if __name__ == "__main__":
    main()
