"""study: rerun the paper's hardware experiments on this device."""

from __future__ import annotations

import sys

from measured import backend_help

from ._common import add_store_arg, device_id, positive_int, print_json, seconds, threads

STUDY_NAMES = ("depthwise", "fused-mbconv", "resolution-vs-channels", "attention", "resolution-scaling")


def register(sub) -> None:
    p = sub.add_parser(
        "study", help="rerun one of the paper's hardware experiments here (Tables 1-3, Figures 3 and 8)",
        description="Measure a study's models on this machine, store the measurements, write CSV, markdown and "
                    "an HTML chart, and print the paper's numbers for the closest device with a verdict per finding. "
                    "Measure on a quiet machine: other busy processes distort the times (see --busy-threshold).",
    )
    p.add_argument("name", metavar="NAME",
                   help="depthwise (Table 1), fused-mbconv (Figure 3), resolution-vs-channels (Table 2), attention "
                        "(Table 3), resolution-scaling (Figure 8), or all; int8: fp32 vs int8 (onnxruntime) on this "
                        "machine, a question the paper leaves open")
    p.add_argument("--sample", type=int, default=30, metavar="N",
                   help="int8: random configs measured besides the named variants (default 30)")
    p.add_argument("--seed", type=int, default=0, help="int8: sampling seed (default 0)")
    p.add_argument("--device", type=device_id, metavar="ID",
                   help="device id to store this machine's measurements under (default: named after its hardware)")
    p.add_argument("--backend", default="onnxruntime", help=backend_help())
    p.add_argument("--metric", default="latency_ms", help="latency_ms (default, batch 1)|throughput_img_s (batch 200)")
    p.add_argument("--batch", type=positive_int, help="batch size (default: 1 for latency, 200 for throughput)")
    p.add_argument("--threads", type=threads, default=1, help="CPU threads of the backend (default 1)")
    p.add_argument("--precision", default="fp32", help="fp32 (default)|fp16 (GPU backends)")
    p.add_argument("--runs", type=int, help="timed runs per model at most (default 100; 3 with --quick)")
    p.add_argument("--warmup", type=int, help="warm-up runs per model (default 5; 1 with --quick)")
    p.add_argument("--budget-s", type=seconds, default=None, metavar="S",
                   help="about this many seconds of timed runs per model (default 3; never fewer than 10 runs)")
    p.add_argument("--mac-cap", type=float, default=None, metavar="GMACS",
                   help="skip models above this many GMACs (default: 100 on CPU backends, none on GPUs)")
    p.add_argument("--busy-threshold", type=float, default=None, metavar="PCT",
                   help="re-measure (not with --quick), then mark busy, when other processes use more than PCT%% "
                        "of the CPU (default 5)")
    p.add_argument("--protocol", default="paired", choices=("paired", "alone"),
                   help="paired (default; on CPU and edge backends): each model's runs alternate with runs of the "
                        "reference B0 and the verdicts use the ratios (one phase for all models); a full run also "
                        "times the phase anchors every few minutes. alone: each model's runs only (the protocol "
                        "before pairing; absolute medians)")
    p.add_argument("--quick", action="store_true", help="tiny grids, 3 runs, 1 warm-up: a smoke test")
    p.add_argument("--resume", action="store_true",
                   help="reuse what an earlier run of this study (same mode, device, protocol) stored")
    p.add_argument("--redraw", action="store_true",
                   help="measure nothing: draw the chart again from the CSV a finished run wrote to --out")
    p.add_argument("--out", metavar="DIR", help="output directory (default: $LOWFORMER_NAS_HOME/runs/studies/NAME)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per study (findings with verdicts, per-model measurements, files); "
                        "the reports go to stderr")
    add_store_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    from lowformer_common import UserError

    if args.name == "int8":
        return _int8(args)
    if args.name != "all" and args.name not in STUDY_NAMES:
        from ._before import did_you_mean

        raise UserError(f"study: unknown {args.name!r}{did_you_mean(args.name, (*STUDY_NAMES, 'all', 'int8'))}; "
                        f"allowed: {'|'.join(STUDY_NAMES)}|all|int8")
    if args.mac_cap is not None and not args.mac_cap > 0:
        raise UserError(f"mac-cap: must be > 0 GMACs (got {args.mac_cap})")
    if args.busy_threshold is not None and not 0 < args.busy_threshold <= 100:
        raise UserError(f"busy-threshold: must be in (0, 100] % (got {args.busy_threshold})")
    from measured import Store
    from nas.studies import POINT_BUDGET_S, StudySettings, redraw_study, run_study

    settings = StudySettings(
        device=args.device, backend=args.backend, metric=args.metric, batch=args.batch, threads=args.threads,
        precision=args.precision, quick=args.quick, runs=args.runs, warmup=args.warmup,
        budget_s=args.budget_s if args.budget_s is not None else POINT_BUDGET_S,
        mac_cap=args.mac_cap * 1e9 if args.mac_cap is not None else None, resume=args.resume,
        progress=not args.no_progress, out=args.out, pairing="auto" if args.protocol == "paired" else "alone",
        **({"busy_threshold_pct": args.busy_threshold} if args.busy_threshold is not None else {}),
    ).validate()
    names = STUDY_NAMES if args.name == "all" else (args.name,)
    out: list[dict] = []
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    with Store(args.store) as store:
        for name in names:
            if args.redraw:
                path = redraw_study(name, settings, store)
                log(f"wrote {path}")
                out.append({"study": name, "files": {"chart": str(path)}})
                continue
            result = run_study(name, settings, store)
            log(result.report())
            log("wrote " + ", ".join(str(p) for p in result.files.values()))
            out.append(study_json(result))
            if len(names) > 1:
                log("")
    if args.json:
        print_json(out if len(out) > 1 else out[0], indent=1, default=str)
    return 0


def _int8(args) -> int:
    from lowformer_common import UserError
    from measured import Store
    from nas.studies._int8 import Int8Settings, run_int8_study

    if args.backend != "onnxruntime":
        raise UserError(f"backend: the int8 study runs onnxruntime (static int8 quantisation); got {args.backend!r}")
    if args.sample < 0:
        raise UserError(f"sample: must be >= 0 (got {args.sample})")
    settings = Int8Settings(device=args.device, sample=args.sample, seed=args.seed, threads=args.threads,
                            quick=args.quick, out=args.out, progress=not args.no_progress,
                            busy_threshold_pct=args.busy_threshold)
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    with Store(args.store) as store:
        result = run_int8_study(settings, store, log)
    if args.json:
        print_json(result, indent=1, default=str)
    return 0


def study_json(result) -> dict:
    """A study's result as JSON: device, protocol, findings with verdicts, every model's measurement, files."""
    import dataclasses

    rows = result.results.astype(object).where(result.results.notna(), None).to_dict("records")
    return {"study": result.study.name, "device": result.device.device_id, "protocol": result.protocol.key,
            "backend_version": result.backend_version, "seconds": result.seconds, "pairing": result.protocol.paired,
            "values": result.basis, "anchor_sessions": result.anchor_sessions, "phase": result.phase,
            "findings": [dataclasses.asdict(f) for f in result.analysis.findings], "results": rows,
            "files": {k: str(v) for k, v in result.files.items()}}
