"""onboard: a predictor for a device without data, in minutes (what every command does first is in ``_before``)."""

from __future__ import annotations

import sys

from lowformer_common import UserError

from ._common import MAX_WORKERS, add_store_arg, int_in, print_json, seed


def register(sub) -> None:
    from nas.onboard import ANCHORS, DESIGNS
    from nas.onboard._session import DEFAULT_CONFIGS, DEFAULT_HOLDOUT, DEFAULT_MINUTES, DEFAULT_POOL

    p = sub.add_parser(
        "onboard", help="a latency predictor for a device without data, in minutes",
        description=f"Measure the anchors ({', '.join(ANCHORS)}), pick the known device whose predictor agrees best "
                    "with them, measure configs chosen by an informative design until --configs or --minutes, train "
                    "from scratch and by transfer, keep the better by cross-validation, score it on a random hold-out "
                    "and save it. Resumable: rerun the same command after an interruption. An edge device goes "
                    "through a bundle: --bundle DIR, then --results FILE.")
    p.add_argument("--device", default="local", metavar="ID",
                   help="local (default: this machine), a new name for this machine, or, with --bundle/--results, "
                        "the edge device's id")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, metavar="M",
                   help=f"measuring time of the anchors and the design at most (default {DEFAULT_MINUTES:g})")
    p.add_argument("--configs", type=int, default=DEFAULT_CONFIGS, metavar="N",
                   help=f"configs to train on at most, the anchors included (default {DEFAULT_CONFIGS})")
    p.add_argument("--holdout", type=int, default=DEFAULT_HOLDOUT, metavar="K",
                   help=f"random configs measured afterwards to score the predictor, never trained on (default "
                        f"{DEFAULT_HOLDOUT}; 0: none)")
    p.add_argument("--source", default="auto", metavar="DEVICE",
                   help="transfer source: auto (default: the device agreeing best with the anchors), none, or a "
                        "device with a predictor")
    p.add_argument("--design", default="i", choices=DESIGNS, metavar="D",
                   help="how to choose configs: i (default, I-optimal: informative and typical), d (D-optimal: "
                        "extremes), random")
    p.add_argument("--pool", type=int, default=DEFAULT_POOL, metavar="N",
                   help=f"random candidate configs the design chooses from (default {DEFAULT_POOL})")
    p.add_argument("--seed", type=seed, default=0, help="seed of the candidates and the hold-out (default 0)")
    p.add_argument("--restart", action="store_true", help="start a new round instead of resuming an unfinished one")
    p.add_argument("--export-workers", type=int_in(1, MAX_WORKERS), metavar="N",
                   help="processes exporting configs ahead of timing (default: one per core, at most 4)")
    p.add_argument("--bundle", metavar="DIR", help="edge device: write its onboarding bundle to DIR")
    p.add_argument("--results", metavar="FILE", help="edge device: import the bundle's results CSV and train")
    p.add_argument("--evaluate", metavar="CAMPAIGN",
                   help="score the device's predictor on the measurements of CAMPAIGN (a separately measured "
                        "hold-out), leaving out configs it was trained on")
    p.add_argument("--out", metavar="DIR", help="predictors directory (default: $LOWFORMER_NAS_HOME/predictors)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_store_arg(p)
    p.set_defaults(func=cmd_onboard)


def cmd_onboard(args) -> int:
    from measured import Store
    from nas.onboard import OnboardSettings, evaluate_campaign, onboard_bundle, onboard_local, onboard_results

    modes = [f for f in ("bundle", "results", "evaluate") if getattr(args, f)]
    if len(modes) > 1:
        raise UserError(f"{modes[1]}: give one of --bundle, --results and --evaluate")
    settings = OnboardSettings(device=args.device, minutes=args.minutes, configs=args.configs, holdout=args.holdout,
                               source=args.source, design=args.design, pool=args.pool, seed=args.seed,
                               restart=args.restart, export_workers=args.export_workers, progress=not args.quiet,
                               out=args.out)
    if args.export_workers is not None and args.export_workers < 1:
        raise UserError(f"export-workers: must be >= 1 (got {args.export_workers})")
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    if args.evaluate:
        from measured import is_local_name, local_device_id

        device = local_device_id() if is_local_name(args.device) else args.device
        with Store(args.store) as store:
            r = evaluate_campaign(store, device, args.evaluate)
        if args.json:
            print_json(r, indent=2)
        else:
            print(f"{device}: {r['model_type']} predictor ({r['predictor']}) on campaign {args.evaluate!r}: {r['n']} "
                  f"configs ({r['left_out_trained']} left out: trained on)")
            print(f"  within ±10%: {r['within_10']:.0%}, within ±5%: {r['within_5']:.0%}, MAPE {r['mape']:.2f}%, "
                  f"Kendall τ {_num(r['kendall_tau'])}")
        return 0
    settings.validate()
    if not args.bundle:
        _require_measure_extra(bool(args.results))
    with Store(args.store) as store:
        if args.bundle:
            onboard_bundle(settings, store, args.bundle, log=log)
            return 0
        result = (onboard_results(settings, store, args.results, log=log) if args.results
                  else onboard_local(settings, store, log=log))
    if args.json:
        import dataclasses

        print_json(dataclasses.asdict(result), indent=2, default=str)
        return 0
    how = {"transfer": f"transfer from {result.source}", "shared": "cross-device, shared profile"}.get(result.chosen,
                                                                                                      "from scratch")
    cv = result.cv
    print(f"saved {result.model_type} predictor ({how}) -> {result.predictor_path}")
    print(f"trained on {result.n_train} configs measured in {result.seconds / 60:.1f} min; cross-validated: "
          f"{cv['within_10']:.0%} within ±10%, MAPE {cv['mape']:.2f}%, Kendall τ {_num(cv['kendall_tau'])}")
    if result.holdout:
        h = result.holdout
        print(f"hold-out ({h['n']} random configs, never trained on): {h['within_10']:.0%} within ±10%, "
              f"MAPE {h['mape']:.2f}%, Kendall τ {_num(h['kendall_tau'])}")
    else:
        print("no hold-out measured (--holdout 0): the figures above are cross-validated on the designed configs")
    print(f"next: {result.next_command}")
    return 0


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _require_measure_extra(results_only: bool) -> None:
    from lowformer_common import MEASURE_EXTRA_HINT, missing_module

    if results_only:
        return
    name = missing_module("torch", "onnx", "onnxruntime")
    if name is not None:
        raise UserError(f"onboard: needs {name} to measure this machine; {MEASURE_EXTRA_HINT}")
