"""A new host across time: onboard, wait, then score the predictor on a hold-out measured later, as absolute
latencies predicted for the phase at hold-out time.

    python tests/benchmarks/bench_phase_holdout.py                       # 30 configs / 5 min, wait 30 min, 60 hold-out
    python tests/benchmarks/bench_phase_holdout.py --configs 8 --minutes 1 --wait 0 --holdout 2    # a smoke run

In a throw-away home and store: ``onboard`` (paired timing; the phase anchors timed at each campaign's start),
then ``--wait`` minutes, then ``--holdout`` random configs of another seed measured by a campaign (which times the
anchors first, so each hold-out row carries the phase of that moment). The saved predictor (canonical-phase costs)
is scored by ``nas.onboard.evaluate_campaign``: its predictions mapped into each row's phase against the measured
medians (goal: >= 90 % within ±10 %), and in the canonical phase beside it; with how far the anchors had moved
between the onboarding and the hold-out. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--wait", type=float, default=30.0, help="minutes between onboarding and the hold-out (default 30)")
    ap.add_argument("--holdout", type=int, default=60)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--busy-threshold", type=float, default=5.0,
                    help="as measure --busy-threshold (default 5; 100 only for a smoke run on a busy machine)")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="lowformer-bench-phase-")
    os.environ["LOWFORMER_NAS_HOME"] = home
    os.environ["LOWFORMER_NAS_DRIFT_CHECK"] = "off"
    from measured import Job, Protocol, Store, load_series, local_device, run_campaign
    from nas.onboard import OnboardSettings, evaluate_campaign, onboard_local
    from search_spaces import sample_configs

    store = Store(os.path.join(home, "store.sqlite"), seed=True)
    t0 = time.time()
    protocol = Protocol(busy_threshold_pct=args.busy_threshold)
    res = onboard_local(OnboardSettings(configs=args.configs, minutes=args.minutes, holdout=0, progress=False,
                                        protocol=protocol), store, log=print)
    onboard_s = time.time() - t0
    print(f"onboarded in {onboard_s:.0f} s: {res.chosen}, {res.n_train} configs; waiting {args.wait:g} min", flush=True)
    time.sleep(args.wait * 60)
    dev = local_device()
    jobs = [Job(c) for c in sample_configs(args.holdout, seed=args.seed)]
    rep = run_campaign(jobs, protocol, dev, store, campaign="bench-holdout", progress=False)
    print(rep.line(), flush=True)
    r = evaluate_campaign(store, dev.device_id, "bench-holdout")
    series = load_series(store, dev.device_id, protocol.key)
    first, last = series.canonical, series.sessions[-1]
    moved = {k: round((last.values[k] / first.values[k] - 1) * 100, 1) for k in first.values if k in last.values}
    out = {"onboard_s": round(onboard_s, 1), "wait_min": args.wait, "holdout": r.get("n"),
           "within_10_in_phase": r.get("within_10"), "mape_in_phase": r.get("mape"),
           "within_10_canonical": (r.get("canonical") or {}).get("within_10"),
           "phase_model": series.model, "anchors_moved_pct": moved, "sessions": len(series.sessions),
           "note": r.get("phase", "predictor not phase-normalised: absolute values as trained")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
