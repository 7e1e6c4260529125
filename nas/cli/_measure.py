"""measure, bundle: measurement campaigns on this machine, and bundles for edge devices."""

from __future__ import annotations

from lowformer_common import MEASURE_EXTRA_HINT, UserError, missing_module
from search_spaces import get_variant, resolve, sample_configs, variant_names

from ._common import add_store_arg, device_id, positive_int, threads, timeout_seconds


def register(sub) -> None:
    p = sub.add_parser("measure", help="measure configs on this machine (resumable campaign)")
    p.add_argument("--device", default="local", type=device_id,
                   help="device id to store under (default local: this machine's id, named after its hardware "
                        "fingerprint and CPU identity)")
    p.add_argument("--backend", default="onnxruntime",
                   help="onnxruntime | torch | torchscript | torch_cuda | tensorrt (default onnxruntime)")
    p.add_argument("--metric", default="latency_ms", choices=("latency_ms", "throughput_img_s"),
                   help="latency_ms (default: time per batch of 1) or throughput_img_s (images/s at --batch)")
    p.add_argument("--batch", type=positive_int, help="batch (default: 1 for latency, 200 for throughput)")
    p.add_argument("--threads", type=threads, default=1, help="CPU threads (intra-op; default 1)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp32 (default) or fp16 (GPU backends)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    p.add_argument("--runs", type=int, default=100, help="timed runs at most (default 100)")
    p.add_argument("--min-runs", type=int, default=10, help="timed runs at least, when adaptive (default 10)")
    p.add_argument("--target-ci", type=float, default=1.0, metavar="PCT",
                   help="stop timing once the median's 95%% confidence interval is within ±PCT%% (default 1; "
                        "0: always --runs timed runs)")
    p.add_argument("--export-workers", type=int, metavar="N",
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
    p.add_argument("--repeats", type=int, default=1, help="measure each config R times (noise figures)")
    p.add_argument("--timeout", type=timeout_seconds, default=900.0, help="seconds per config before it counts as a hang")
    p.add_argument("--retry-failed", action="store_true", help="measure again configs whose earlier run failed")
    p.add_argument("--campaign", help="a name stored with every measurement")
    add_store_arg(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bundle", help="ONNX models + a standalone runner for a device this tool cannot run on")
    _add_selection(p)
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    p.add_argument("--batch", type=positive_int, default=1, help="batch the device runs (default 1)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per model (default 5)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per model (default 100)")
    p.add_argument("--device", metavar="ID", help="device id the runner's rows carry (default: named on the device)")
    p.add_argument("--full-weights", action="store_true",
                   help="ship complete ONNX files (default: graphs only; the runner writes the weights from a seed)")
    p.add_argument("--jobs", type=int, metavar="N", help="export processes (default: one per core)")
    p.set_defaults(func=cmd_bundle)


def _add_selection(p) -> None:
    p.add_argument("--sample", type=int, default=0, metavar="N", help="N random configs from the whole space")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
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
    from measured import Protocol, Store, get_backend, resolve_local_device, run_campaign

    if args.repeats < 1:
        raise UserError(f"repeats: must be >= 1 (got {args.repeats})")
    if args.timeout <= 0:
        raise UserError(f"timeout: must be > 0 s (got {args.timeout})")
    if args.target_ci < 0:
        raise UserError(f"target-ci: must be a percentage >= 0 (0: fixed --runs) (got {args.target_ci})")
    if args.export_workers is not None and args.export_workers < 1:
        raise UserError(f"export-workers: must be >= 1 (got {args.export_workers})")
    _require_torch("measure")
    batch = args.batch or (200 if args.metric == "throughput_img_s" else 1)
    protocol = Protocol(
        metric=args.metric, backend=args.backend, batch=batch, threads=args.threads, precision=args.precision,
        warmup=args.warmup, runs=args.runs, min_runs=args.min_runs, target_ci_pct=args.target_ci or None,
        busy_threshold_pct=args.busy_threshold, pairing="auto" if args.protocol == "paired" else "alone",
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
    names = {j.config.hash: j.name for j in jobs}
    for m in report.measurements:
        if m.status != "ok":
            print(f"  {m.status}: {names.get(m.config_hash) or m.config_hash[:12]}: {m.reason}")
    if len(jobs) == 1 and report.measurements and report.measurements[0].value is not None:
        m = report.measurements[0]
        unit = "ms" if m.metric == "latency_ms" else "img/s"
        print(f"{names.get(m.config_hash) or m.config_hash[:12]}: {m.value:.3f} {unit} (p10 {m.p10:.3f}, "
              f"p90 {m.p90:.3f}, n {m.n}){ratio_words(m)}")
    elif len(jobs) == 1 and report.skipped:
        print(f"{jobs[0].name or jobs[0].config.hash[:12]}: already stored for {device.device_id}; "
              "`lowformer-nas data export` shows it")
    return 0


def result_record(m) -> dict:
    """A measured config's result fields: latency, its ratio to the reference (95 % CI) and the reference's
    median (None when timed alone), for the per-config table and ``--json``."""
    return {"hash": m.config_hash, "value": m.value, "metric": m.metric, "n": m.n, "status": m.status,
            "pairing": m.pairing, "ratio": m.ratio, "ratio_ci": [m.ratio_lo, m.ratio_hi] if m.ratio else None,
            "reference": m.reference, "reference_value": m.reference_value, "flag": m.flag}


def ratio_words(m) -> str:
    """``; 1.452x B0 [1.447, 1.458], B0 21.3 ms`` for a paired row, '' for one timed alone."""
    if m.ratio is None:
        return ""
    unit = "ms" if m.metric == "latency_ms" else "img/s"
    flag = f" ({m.flag}: its pairs disagreed)" if m.flag else ""
    return (f"; {m.ratio:.4g}x the reference [{m.ratio_lo:.4g}, {m.ratio_hi:.4g}], reference "
            f"{m.reference_value:.4g} {unit}{flag}")


def protocol_line(protocol) -> str:
    """How many timed runs, in words."""
    if protocol.adaptive:
        return (f"{protocol.min_runs}-{protocol.runs} timed runs (until the median's 95% CI is within "
                f"±{protocol.target_ci_pct:g}%)")
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
                          full_weights=args.full_weights, workers=args.jobs)
    print(report.line())
    device = args.device or "NAME"
    print(f"on the device: python3 run_bundle.py --out results.csv; back here: lowformer-nas import results.csv "
          f"--device {device}")
    return 0
