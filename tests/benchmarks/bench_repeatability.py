"""Repeatability on a drifting or busy host: paired ratios and canonical values against raw absolute medians.

    python tests/benchmarks/bench_repeatability.py                          # 10 configs x 3 repeats, >= 20 min
    python tests/benchmarks/bench_repeatability.py --configs 2 --repeats 2 --minutes 1   # a smoke run

``--configs`` configs of ``sample_configs(seed)`` are measured ``--repeats`` times with today's protocol (paired
with B0, the phase anchors timed at the start of each repeat), the repeats spread over at least ``--minutes``
minutes (the script waits between them), and repeat ``--burn`` (default: the last) with a CPU-heavy process on
every core (the busy threshold is set to 100 % so that its rows are kept: the point is how much of the load the
pairing cancels). Per config, the coefficient of variation over the repeats of: the raw medians (what a store
without pairing holds), the pair ratios to B0, and the canonical values (raw medians mapped to the device's
canonical phase by the phase fitted at each repeat), with the rows flagged because their pairs disagreed (left
out of the CVs, as of training) and the anchor timings that failed. Goal: ratio / canonical CV median <= 1 %, p90 <= 2 %.
A throw-away store; the last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


class Burners:
    """One spinning process per core while the block runs."""

    def __init__(self, on: bool):
        self.on, self.procs, self.stop = on, [], None

    def __enter__(self):
        if self.on:
            ctx = mp.get_context("spawn")
            self.stop = ctx.Event()
            self.procs = [ctx.Process(target=_burn, args=(self.stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
            for p in self.procs:
                p.start()
        return self

    def __exit__(self, *exc):
        if self.on:
            self.stop.set()
            for p in self.procs:
                p.join(timeout=30)


def _cv(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.std(v, ddof=1) / np.mean(v) * 100) if len(v) >= 2 else float("nan")


def _summary(cvs) -> dict:
    cvs = np.asarray([c for c in cvs if np.isfinite(c)])
    if not len(cvs):
        return {}
    return {"median": round(float(np.median(cvs)), 3), "p90": round(float(np.percentile(cvs, 90)), 3),
            "max": round(float(np.max(cvs)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=20.0, help="spread the repeats over at least this long (default 20)")
    ap.add_argument("--burn", type=int, default=None, help="repeat index run beside a burner on every core "
                                                          "(default: the last; -1: none)")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--max-runs", type=int, default=100)
    args = ap.parse_args()
    burn = args.repeats - 1 if args.burn is None else args.burn

    from measured import Job, Protocol, Store, canonical_frame, local_device, run_campaign
    from search_spaces import sample_configs

    configs = list(sample_configs(args.configs, seed=args.seed))
    protocol = Protocol(runs=args.max_runs, busy_threshold_pct=100.0)
    device = local_device()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "store.sqlite"), seed=False)
        for r in range(args.repeats):
            start_at = t0 + r * args.minutes * 60 / max(1, args.repeats - 1) if args.repeats > 1 else t0
            time.sleep(max(0.0, start_at - time.time()))
            with Burners(r == burn):
                rep = run_campaign([Job(c, None, r) for c in configs], protocol, device, store, campaign=f"rep-{r}",
                                   progress=False, anchors_every=len(configs) + 1)
            print(f"repeat {r}{' (burner on every core)' if r == burn else ''}: {rep.line()}", flush=True)
        df = store.measurements(device=device.device_id)
        df = canonical_frame(df)
        rows = []
        for h, g in df.groupby("config_hash"):
            rows.append({"hash": h[:12], "raw_cv": _cv(g["measured_value"]), "ratio_cv": _cv(g["ratio"].dropna()),
                         "canonical_cv": _cv(g.loc[g["phase_normalised"], "value"]),
                         "burn_raw_slowdown": float(g["measured_value"].iloc[-1] / g["measured_value"].iloc[0])})
        series_note = store.anchor_timings(device=device.device_id)["session"].nunique()
        everything = store.measurements(device=device.device_id, status=None, include_flagged=True)
        flagged = int(everything["flag"].notna().sum())  # pairs that disagreed twice: stored, never trained on
        failed_anchors = int((store.anchor_timings(device=device.device_id)["status"] != "ok").sum())
    print(f"{'config':12s} {'raw CV':>8s} {'ratio CV':>9s} {'canon CV':>9s}")
    for r in rows:
        print(f"{r['hash']:12s} {r['raw_cv']:7.2f}% {r['ratio_cv']:8.2f}% {r['canonical_cv']:8.2f}%")
    out = {"configs": len(rows), "repeats": args.repeats, "burn_repeat": burn, "anchor_sessions": int(series_note),
           "rows_flagged": flagged, "anchor_timings_failed": failed_anchors,
           "minutes": round((time.time() - t0) / 60, 1), "raw_cv_pct": _summary(r["raw_cv"] for r in rows),
           "ratio_cv_pct": _summary(r["ratio_cv"] for r in rows),
           "canonical_cv_pct": _summary(r["canonical_cv"] for r in rows)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
