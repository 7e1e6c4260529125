"""Campaign speed and repeatability, before and after: the one-process-per-config protocol with 100 fixed
timed runs ("old") against reusable workers, export phases on every core and adaptive timed runs ("new").

Run on a quiet machine (nothing else running: with 2 cores any other process distorts the timings):

    python tests/benchmarks/bench_campaign.py                       # 40 sampled configs, 10 x 3 repeats
    python tests/benchmarks/bench_campaign.py --sample 100 --skip-old

For each protocol, in a throw-away store: (1) throughput: the first ``--sample`` configs of
``sample_configs(seed)`` (the whole space, as a campaign samples it) measured once: configs per hour of
wall time, worker start-up, exports and failures included; (2) repeatability: ``--cv-configs`` of them
measured ``--repeats`` more times, the two protocols interleaved repeat by repeat so that drift hits both
alike: the coefficient of variation of the repeated medians (``measured.noise_report``); (3) agreement: the
new protocol's medians over the old one's, per config (the same quantity must come out); with (1), where each
protocol's wall time went (export, anchor sessions, session creation, warm-up, pairs, other: seconds and %). Goals: >= 1,500
configs/h with the CV of repeated medians <= 3 %. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import numpy as np


def _protocols(args):
    from measured import Protocol

    old = Protocol(runs=100, target_ci_pct=None, busy_threshold_pct=args.busy_threshold, pairing="alone")
    # "new" is today's default: paired with B0 and the phase anchors re-timed during the campaign (their cost is in
    # its configs/h); --new-protocol alone measures it without pairing.
    new = Protocol(runs=args.max_runs, min_runs=args.min_runs, target_ci_pct=args.target_ci,
                   busy_threshold_pct=args.busy_threshold, pairing="auto" if args.new_protocol == "paired" else "alone",
                   pair_target_ci_pct=args.pair_target_ci)
    return {"old": (old, {"fresh_process": True}), "new": (new, {"export_workers": args.export_workers})}


def _values(store, device_id: str, protocol, hashes, repeat: int | None = None) -> dict[str, float]:
    df = store.measurements(device=device_id, protocol=protocol.key)
    df = df[df["config_hash"].isin(hashes)]
    if repeat is not None:
        df = df[df["campaign"] == f"bench-r{repeat}"]
    return df.groupby("config_hash")["value"].median().to_dict()


# The campaign's wall time split (measured.Measurer.seconds): export phases, anchor sessions and the timing phases,
# the latter split by the timing worker into the reference's first load, session creation, warm-up, pairs (or runs
# when timed alone) and the rest (reading the request, storing, replying); "other" is the campaign's own time.
_TOP = ("export", "anchors", "timing")
_IN_TIMING = ("reference", "session", "warmup", "pairs", "runs")


def _phase_shares(report) -> dict[str, dict[str, float]]:
    got = report.phase_seconds
    if not got or not report.seconds:
        return {}
    split = {k: got.get(k, 0.0) for k in ("export", "anchors")}
    split |= {k: got[k] for k in _IN_TIMING if got.get(k)}
    split["timing, rest"] = max(0.0, got.get("timing", 0.0) - sum(got.get(k, 0.0) for k in _IN_TIMING))
    split["other"] = max(0.0, report.seconds - sum(got.get(k, 0.0) for k in _TOP))
    return {k: {"seconds": round(v, 2), "share_pct": round(100 * v / report.seconds, 1)} for k, v in split.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=40, help="configs for the throughput pass (default 40)")
    ap.add_argument("--seed", type=int, default=11, help="sampling seed (default 11)")
    ap.add_argument("--cv-configs", type=int, default=10, help="configs measured repeatedly (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="extra measurements of each (default 3)")
    ap.add_argument("--min-runs", type=int, default=10)
    ap.add_argument("--max-runs", type=int, default=100)
    ap.add_argument("--target-ci", type=float, default=1.0)
    ap.add_argument("--pair-target-ci", type=float, default=2.0,
                    help="paired: stop once the pair ratio's 95%% CI is within this %% (default 2, the Protocol's)")
    ap.add_argument("--export-workers", type=int, default=None, help="default: one per core, at most 4")
    ap.add_argument("--busy-threshold", type=float, default=5.0,
                    help="as measure --busy-threshold (default 5; 100 only for a smoke test on a busy machine)")
    ap.add_argument("--skip-old", action="store_true", help="only the new protocol (the old one is ~4x slower)")
    ap.add_argument("--new-protocol", default="paired", choices=("paired", "alone"),
                    help="the new protocol's timing: paired with B0, anchors re-timed (default), or alone")
    args = ap.parse_args()

    from lowformer_common import UserError
    from measured import Job, Store, ci_from_notes, local_device, noise_report, run_campaign
    from search_spaces import sample_configs

    configs = list(sample_configs(args.sample, seed=args.seed))
    cv_configs = configs[: args.cv_configs]
    device = local_device()
    protocols = _protocols(args)
    if args.skip_old:
        protocols.pop("old")
    out: dict = {"sample": args.sample, "seed": args.seed, "device": device.device_id, "protocols": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # One store per protocol: both share a protocol key (they measure the same quantity), so in one store the
        # second would find every config already measured.
        stores = {name: Store(f"{tmp}/{name}.sqlite", seed=False) for name in protocols}
        # (1) Throughput, each protocol on the same configs.
        for name, (protocol, how) in protocols.items():
            report = run_campaign([Job(c) for c in configs], protocol, device, stores[name], campaign="bench-r0", **how)
            rows = [m for m in report.measurements if m.status == "ok"]
            runs = [m.n for m in rows]
            cis = [ci_from_notes(m.notes) for m in rows if ci_from_notes(m.notes) is not None]
            busy = [m.busy_pct for m in report.measurements if m.busy_pct is not None]
            per_h = len(report.measurements) / report.seconds * 3600 if report.seconds else float("nan")
            out["protocols"][name] = {
                "protocol": protocol.key, "adaptive": protocol.adaptive, **{k: v for k, v in how.items() if v is not None},
                "configs": len(report.measurements), "ok": report.ok, "failed": report.failed, "busy": report.busy,
                "seconds": round(report.seconds, 1), "configs_per_hour": round(per_h),
                "runs_median": statistics.median(runs) if runs else None, "runs_max": max(runs) if runs else None,
                "ci_half_pct_median": round(statistics.median(cis), 3) if cis else None,
                "ci_half_pct_max": round(max(cis), 3) if cis else None,
                "max_other_cpu_pct": round(max(busy), 1) if busy else None,
            }
            out["protocols"][name]["phases"] = _phase_shares(report)
            print(f"{name}: {len(report.measurements)} configs in {report.seconds:.0f} s = {per_h:.0f} configs/h "
                  f"({report.failed} failed, {report.busy} busy); timed runs median {out['protocols'][name]['runs_median']}")
            if out["protocols"][name]["phases"]:
                print(f"{name}: where the time went: " + ", ".join(
                    f"{k} {v['seconds']:.1f} s ({v['share_pct']:.0f}%)" for k, v in out["protocols"][name]["phases"].items()))
        # (2) Repeatability: interleaved repeats of the first cv-configs, the protocols alternating.
        for r in range(1, args.repeats + 1):
            for name, (protocol, how) in protocols.items():
                run_campaign([Job(c, repeat=r) for c in cv_configs], protocol, device, stores[name],
                             campaign=f"bench-r{r}", progress=False, **how)
        for name, (protocol, _) in protocols.items():
            df = stores[name].measurements(device=device.device_id)
            df = df[df["config_hash"].isin({c.hash for c in cv_configs})]
            try:
                noise = noise_report(df).get(protocol.key, {})
            except UserError as e:  # nothing measured twice (failed or busy rows)
                noise = {"error": str(e)}
            out["protocols"][name]["noise"] = noise
            print(f"{name}: CV of repeated medians over {noise.get('configs')} configs x {noise.get('repeats_per_config')}: "
                  f"median {noise.get('cv_median_pct')}%, p90 {noise.get('cv_p90_pct')}%, max {noise.get('cv_max_pct')}%")
        # (3) Agreement: new / old per config (first measurement of each).
        if "old" in protocols:
            hashes = {c.hash for c in configs}
            old = _values(stores["old"], device.device_id, protocols["old"][0], hashes, 0)
            new = _values(stores["new"], device.device_id, protocols["new"][0], hashes, 0)
            ratios = np.array([new[h] / old[h] for h in old if h in new])
            if len(ratios):
                out["new_over_old"] = {"configs": int(len(ratios)), "median": round(float(np.median(ratios)), 4),
                                       "p10": round(float(np.percentile(ratios, 10)), 4),
                                       "p90": round(float(np.percentile(ratios, 90)), 4)}
                print(f"new / old medians per config: median {np.median(ratios):.4f} "
                      f"(p10 {np.percentile(ratios, 10):.4f}, p90 {np.percentile(ratios, 90):.4f})")
            o, n = out["protocols"]["old"]["configs_per_hour"], out["protocols"]["new"]["configs_per_hour"]
            out["speed_up"] = round(n / o, 2) if o else None
        for store in stores.values():
            store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
