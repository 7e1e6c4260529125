"""measure, bundle: measurement campaigns on this machine, and bundles for edge devices."""

from __future__ import annotations

import sys

from lowformer_common import MEASURE_EXTRA_HINT, UserError, missing_module
from measured import backend_help
from search_spaces import get_variant, resolve, sample_configs, variant_names

from ._common import (
    MAX_REPEATS,
    MAX_RUNS,
    MAX_SAMPLE,
    MAX_WARMUP,
    MAX_WORKERS,
    add_store_arg,
    device_id,
    int_in,
    name_text,
    positive_int,
    print_json,
    seed,
    threads,
    timeout_seconds,
)


def register(sub) -> None:
    p = sub.add_parser("measure", help="measure configs on this machine (resumable campaign)")
    p.add_argument("--device", default="local", type=device_id,
                   help="device id to store under (default local: this machine's id, named after its hardware "
                        "fingerprint and CPU identity)")
    p.add_argument("--backend", default="onnxruntime", help=backend_help())
    p.add_argument("--metric", default="latency_ms", choices=("latency_ms", "throughput_img_s"),
                   help="latency_ms (default: time per batch of 1) or throughput_img_s (images/s at --batch)")
    p.add_argument("--batch", type=positive_int, help="batch (default: 1 for latency, 200 for throughput)")
    p.add_argument("--threads", type=threads, default=1, help="CPU threads (intra-op; default 1)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp32 (default), fp16 (GPU backends) or int8 (onnxruntime: static QDQ quantisation with a fixed "
                        "calibration input, recorded in each row's notes; stored and trained as its own protocol)")
    p.add_argument("--warmup", type=int_in(0, MAX_WARMUP), default=5, help="warm-up runs (default 5)")
    p.add_argument("--runs", type=int_in(1, MAX_RUNS), default=100, help="timed runs at most (default 100)")
    p.add_argument("--min-runs", type=int_in(1, MAX_RUNS), default=None,
                   help="timed runs at least, when adaptive (default 10, or --runs when fewer; at most --runs)")
    p.add_argument("--target-ci", type=float, default=None, metavar="PCT",
                   help="stop timing once the 95%% confidence interval is within ±PCT%%: the ratio's to the "
                        "reference when paired (default 2), the median's when alone (default 1); 0: always --runs "
                        "timed runs")
    p.add_argument("--export-workers", type=int_in(1, MAX_WORKERS), metavar="N",
                   help="processes that export configs ahead of timing, never while timing (default: one per "
                        "core, at most 4; 1: export inside the timing process)")
    p.add_argument("--fresh-process", action="store_true",
                   help="one new process per config, export included (the slower protocol before workers)")
    p.add_argument("--protocol", default="paired", choices=("paired", "alone"),
                   help="paired (default on CPU backends): each config's runs alternate with runs of the reference "
                        "B0 (A B | B A ...) and its ratio to B0 is stored beside its latency; alone: the config's "
                        "runs only (the protocol before pairing)")
    p.add_argument("--busy-threshold", type=float, default=5.0, metavar="PCT",
                   help="re-measure, then mark busy, when other processes use more than PCT%% of the CPU (default 5)")
    _add_selection(p)
    p.add_argument("--repeats", type=int_in(1, MAX_REPEATS), default=1,
                   help="measure each config R times (noise figures)")
    p.add_argument("--timeout", type=timeout_seconds, default=900.0, help="seconds per config before it counts as a hang")
    p.add_argument("--retry-failed", action="store_true", help="measure again configs whose earlier run failed")
    p.add_argument("--campaign", type=name_text, help="a name stored with every measurement")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per config (id, name, value, unit, p10, p90, runs, CI, status, stored "
                        "now or before) as a JSON list; progress lines go to stderr")
    add_store_arg(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bundle", help="ONNX models + a standalone runner for a device this tool cannot run on")
    _add_selection(p)
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    p.add_argument("--batch", type=positive_int, default=1, help="batch the device runs (default 1)")
    p.add_argument("--warmup", type=int_in(0, MAX_WARMUP), default=5, help="warm-up runs per model (default 5)")
    p.add_argument("--runs", type=int_in(3, MAX_RUNS), default=100, help="timed runs per model (default 100)")
    p.add_argument("--device", metavar="ID", help="device id the runner's rows carry (default: named on the device)")
    p.add_argument("--full-weights", action="store_true",
                   help="ship complete ONNX files (default: graphs only; the runner writes the weights from a seed)")
    p.add_argument("--jobs", type=int_in(1, MAX_WORKERS), metavar="N", help="export processes (default: one per core)")
    p.add_argument("--force", action="store_true",
                   help="write into --out even when it holds another bundle or other files")
    p.set_defaults(func=cmd_bundle)


def _add_selection(p) -> None:
    p.add_argument("--sample", type=int_in(0, MAX_SAMPLE), default=0, metavar="N",
                   help="N random configs from the whole space")
    p.add_argument("--seed", type=seed, default=0, help="sampling seed (default 0)")
    p.add_argument("--resolutions", type=int, nargs="+", metavar="R", help="restrict sampled resolutions")
    p.add_argument("--named", action="store_true", help="every named variant too")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help=f"a named variant (repeatable): {', '.join(variant_names())}")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="a JSON config file (repeatable)")


def _require_torch(command: str) -> None:
    # Every backend builds the model with torch first (and exports it to ONNX for onnxruntime/TensorRT); checked
    # here because the campaign's children would otherwise each store the missing import as a failure.
    name = missing_module("torch", "onnx")
    if name is not None:
        raise UserError(f"{command}: needs {name} to build and export models; {MEASURE_EXTRA_HINT}")


def jobs_from_args(args, repeats: int = 1):
    from measured import Job

    if args.sample < 0:
        raise UserError(f"sample: must be >= 0 (got {args.sample})")
    if args.resolutions and min(args.resolutions) < 32:
        raise UserError(f"resolutions: must be >= 32 (got {min(args.resolutions)})")
    chosen: list[tuple[str | None, object]] = []
    if args.named:
        chosen += [(n, get_variant(n).config) for n in variant_names()]
    for name in args.model:
        chosen.append(resolve(name))
    for path in args.config:
        chosen.append((None, resolve(config_file=path)[1]))
    chosen += [(None, c) for c in sample_configs(args.sample, seed=args.seed, resolutions=args.resolutions)]
    if not chosen:
        raise UserError("measure: nothing selected; give --sample N, --named, --model NAME or --config FILE")
    seen, unique = set(), []
    for name, cfg in chosen:
        if cfg.hash not in seen:
            seen.add(cfg.hash)
            unique.append((name, cfg))
    # Repeats interleaved (all configs once, then again): drift over time shows up as noise, not bias.
    return [Job(cfg, name, r) for r in range(repeats) for name, cfg in unique]


def cmd_measure(args) -> int:
    if not getattr(args, "json", False):
        return _measure(args, None)
    import contextlib

    out: list = []
    with contextlib.redirect_stdout(sys.stderr):
        code = _measure(args, out)
    print_json(out, indent=1, default=str)
    return code


def _measure(args, out: list | None) -> int:
    from measured import Protocol, Store, get_backend, resolve_local_device, run_campaign

    if args.repeats < 1:
        raise UserError(f"repeats: must be >= 1 (got {args.repeats})")
    if args.timeout <= 0:
        raise UserError(f"timeout: must be > 0 s (got {args.timeout})")
    if args.target_ci is not None and args.target_ci < 0:
        raise UserError(f"target-ci: must be a percentage >= 0 (0: fixed --runs) (got {args.target_ci})")
    if args.export_workers is not None and args.export_workers < 1:
        raise UserError(f"export-workers: must be >= 1 (got {args.export_workers})")
    if args.min_runs is None:  # the default follows a smaller --runs; only an explicit --min-runs is refused
        args.min_runs = min(10, args.runs)
    if args.min_runs > args.runs:
        raise UserError(f"min-runs: must be at most --runs {args.runs} (got {args.min_runs})")
    _require_torch("measure")
    batch = args.batch or (200 if args.metric == "throughput_img_s" else 1)
    protocol = Protocol(
        metric=args.metric, backend=args.backend, batch=batch, threads=args.threads, precision=args.precision,
        warmup=args.warmup, runs=args.runs, min_runs=args.min_runs, busy_threshold_pct=args.busy_threshold,
        pairing="auto" if args.protocol == "paired" else "alone",
        **({} if args.target_ci is None else  # an explicit target holds for the median and the ratio alike
           {"target_ci_pct": args.target_ci or None, "pair_target_ci_pct": args.target_ci or Protocol.pair_target_ci_pct}),
    )
    backend = get_backend(args.backend, args.threads, args.precision)  # fails fast when unavailable
    jobs = jobs_from_args(args, args.repeats)
    store = Store(args.store)
    device = resolve_local_device(store, args.device, gpu=backend.device_kind == "gpu")
    pairing = f"paired with {protocol.reference}" if protocol.paired else "alone"
    print(f"device {device.device_id} ({device.name}); protocol {protocol.key}; warm-up {protocol.warmup}, "
          f"{protocol_line(protocol)}, median; {pairing}")
    report = run_campaign(jobs, protocol, device, store, campaign=args.campaign, timeout_s=args.timeout,
                          retry_failed=args.retry_failed, export_workers=args.export_workers,
                          fresh_process=args.fresh_process)
    print(report.line())
    rows = results_rows(store, jobs, protocol, device.device_id, report)
    print(results_table(rows))
    if out is not None:
        out.extend(rows)
    return 0


def results_rows(store, jobs, protocol, device_id: str, report) -> list[dict]:
    """One row per selected config: its newest stored result under this protocol (measured now or before)."""
    import math

    from measured import ci_from_notes

    df = store.measurements(device=device_id, metric=protocol.metric, status=None, protocol=protocol.key,
                            include_flagged=True)
    now = {m.config_hash for m in report.measurements}
    unit = "ms" if protocol.metric == "latency_ms" else "img/s"
    rows, seen = [], set()
    for j in jobs:
        h = j.config.hash
        if h in seen:
            continue
        seen.add(h)
        mine = df[df["config_hash"] == h] if len(df) else df
        ok = mine[mine["status"] == "ok"] if len(mine) else mine
        r = (ok if len(ok) else mine).iloc[-1] if len(mine) else None

        def num(k, r=r):
            v = None if r is None else r[k]
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

        rows.append({"id": h[:12], "hash": h, "name": j.name, "device": device_id, "metric": protocol.metric,
                     "unit": unit, "value": num("value"), "p10": num("p10"), "p90": num("p90"),
                     "runs": None if num("n") is None else int(num("n")),
                     "ci_pct": None if r is None else ci_from_notes(r["notes"]),
                     "status": "missing" if r is None else r["status"], "reason": None if r is None else r["reason"],
                     "stored": "now" if h in now else ("before" if r is not None else None),
                     # paired timing: the ratio to the reference (B0) timed beside it, its 95 % CI, the reference
                     "pairing": _cell(r, "pairing"), "ratio": num("ratio") if r is not None and "ratio" in r else None,
                     "ratio_ci": [num("ratio_lo"), num("ratio_hi")] if _cell(r, "ratio") is not None else None,
                     "reference_value": num("reference_value") if _cell(r, "reference_value") is not None else None,
                     "flag": _cell(r, "flag"),
                     "repeats": len(ok) if len(mine) else 0})
    return rows


def _cell(r, key):
    """A stored row's cell, None when missing (NaN, or a column an older store lacks)."""
    if r is None or key not in r:
        return None
    v = r[key]
    return None if v is None or (isinstance(v, float) and v != v) else v


def results_table(rows: list[dict]) -> str:
    """The measured values as a table: config, value, p10-p90, runs, the median's 95 % CI, when stored."""
    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    unit = rows[0]["unit"] if rows else "ms"
    lines = [f"{'config':14s} {'id':12s} {unit:>10s} {'p10-p90':>19s} {'runs':>5s} {'CI95':>7s} {'x ref':>7s}  stored"]
    for r in rows:
        val = f(r["value"]) if r["status"] == "ok" else r["status"]
        spread = f"{f(r['p10'])}-{f(r['p90'])}" if r["p10"] is not None else "-"
        ci = f"±{r['ci_pct']:.2f}%" if r["ci_pct"] is not None else "-"
        when = {"now": "measured now", "before": "stored before"}.get(r["stored"], "-")
        when += f" ({r['repeats']} repeats)" if r["repeats"] > 1 else ""
        when += f": {r['reason']}" if r["status"] != "ok" and r["reason"] else ""
        ratio = f(r.get("ratio"), ".4f") + {"loaded": "~", None: ""}.get(r.get("flag"), "!")
        lines.append(f"{(r['name'] or '-')[:14]:14s} {r['id']:12s} {val:>10s} {spread:>19s} {f(r['runs'], 'd'):>5s} "
                     f"{ci:>7s} {ratio:>7s}  {when}")
    if any(r.get("ratio") is not None for r in rows):
        lines.append("x ref: the median ratio to the reference (B0) timed alternately beside it; '!' its pairs disagreed, "
                     "'~' timed beside a busy process (ratio kept, latency from a loaded phase)")
    return "\n".join(lines)


def protocol_line(protocol) -> str:
    """How many timed runs, in words."""
    if protocol.adaptive:
        what = "the ratio's to the reference" if protocol.paired else "the median's"
        return (f"{protocol.min_runs}-{protocol.runs} timed runs (until {what} 95% CI is within "
                f"±{protocol.stop_ci_pct:g}%)")
    return f"{protocol.runs} timed runs"


def cmd_bundle(args) -> int:
    from measured import check_device_id, write_bundle

    for flag, value, low in (("batch", args.batch, 1), ("warmup", args.warmup, 0), ("runs", args.runs, 3),
                             ("jobs", args.jobs, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag}: must be >= {low} (got {value})")
    if args.device is not None:
        check_device_id(args.device)
    _require_torch("bundle")
    jobs = jobs_from_args(args)
    report = write_bundle(jobs, args.out, batch=args.batch, warmup=args.warmup, runs=args.runs, device_id=args.device,
                          full_weights=args.full_weights, workers=args.jobs, force=args.force)
    print(report.line())
    device = args.device or "NAME"
    print(f"on the device: python3 run_bundle.py --out results.csv (it also writes results.anchors.csv, the device's "
          f"phase); back here, with both files: lowformer-nas import results.csv --device {device}")
    return 0
