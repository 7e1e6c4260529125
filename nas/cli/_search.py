"""search, plot: the architecture search and its charts from the command line."""

from __future__ import annotations

import argparse
import re
import sys

from lowformer_common import UserError

from ._common import add_store_arg, device_id, trials

_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def _amount(text: str) -> float:
    """A count such as 5000000, 5e6 or 5M."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a number such as 5000000, 5e6 or 5M (got {text!r})")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def register(sub) -> None:
    p = sub.add_parser("search", help="search LowFormer configs for a latency budget on one or more devices",
                       description="Multi-objective search (Optuna): the accuracy surrogate (or a params/MACs proxy) "
                                   "against predicted latency per device, under budgets and limits. Resumable: the "
                                   "same --study continues to --trials trials in total.")
    p.add_argument("--device", action="append", dest="devices", type=device_id, metavar="NAME",
                   help="target device (repeatable); a resumed study keeps its devices")
    p.add_argument("--budget-ms", action="append", type=float, metavar="MS",
                   help="latency budget: one value for every device, or one per --device in order "
                        "(throughput devices: time per image, 1000/throughput)")
    p.add_argument("--trials", type=trials, metavar="N", help="total trials of the study (default 3000)")
    p.add_argument("--study", metavar="NAME", help="study name: runs/NAME/ (an existing study is resumed)")
    p.add_argument("--storage", metavar="URL", help="shared Optuna database, e.g. postgresql://user@host/db "
                                                    "(default: a journal file in runs/NAME/)")
    p.add_argument("--sampler", metavar="NAME", help="nsga2 (default), tpe, random or gp (gp: small budgets only)")
    p.add_argument("--objective", metavar="NAME",
                   help="accuracy side: surrogate (default: the top-1 predictor), params or macs (capacity proxies, "
                        "maximised)")
    p.add_argument("--max-params", type=_amount, metavar="N", help="parameter limit, e.g. 5M")
    p.add_argument("--max-macs", type=_amount, metavar="N", help="MAC limit, e.g. 1.5G")
    p.add_argument("--seed", type=int, help="sampler seed (default: none)")
    p.add_argument("--runs-dir", default="runs", help="where studies live (default: runs)")
    p.add_argument("--verify", type=int, default=0, metavar="N",
                   help="then measure the top-N front configs on this machine and print predicted vs measured")
    add_store_arg(p, "--verify: the ")
    p.add_argument("--no-png", action="store_true", help="HTML charts only")
    p.add_argument("--population-size", type=int, default=50, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("plot", help="redraw a study's charts, or MACs vs measured latency from the store")
    p.add_argument("what", nargs="?", choices=("study", "measured"), default="study",
                   help="study (default): the charts of --study; measured: MACs vs measured values of --device")
    p.add_argument("--study", metavar="NAME", help="the study to redraw")
    p.add_argument("--runs-dir", default="runs", help="where studies live (default: runs)")
    p.add_argument("--storage", metavar="URL", help="the study's database, when it was searched with --storage")
    p.add_argument("--device", type=device_id, metavar="NAME", help="plot measured: the device")
    p.add_argument("--metric", default="latency_ms", help="plot measured: the metric (default latency_ms)")
    add_store_arg(p, "plot measured: the ")
    p.add_argument("--no-png", action="store_true", help="HTML charts only")
    p.set_defaults(func=cmd_plot)


def cmd_search(args) -> int:
    if args.verify < 0:
        raise UserError(f"verify: must be a positive number of configs (got {args.verify})")
    from nas.search import SearchSettings, run_search, verify_front

    settings = SearchSettings(
        devices=args.devices or (), budgets_ms=args.budget_ms, trials=args.trials, study=args.study,
        storage=args.storage, sampler=args.sampler, objective=args.objective, max_params=args.max_params,
        max_macs=args.max_macs, seed=args.seed, runs_dir=args.runs_dir, population_size=args.population_size,
    )
    r = run_search(settings, progress=not args.quiet, png=not args.no_png)
    res = r.results
    print(f"study {r.study}: {r.n_trials} trials ({r.ran} run now, {r.scored} new architectures scored) in "
          f"{r.seconds:.1f} s; {len(res.table)} distinct architectures")
    _print_front(res)
    for d in res.named_status():
        print(f"  {d['name']:5s} {d['status']:13s} {d['detail']}")
    for n in r.notes:
        print(f"note: {n}")
    for key, share in res.in_domain_share().items():
        if share["front"] is not None and share["front"] < 0.5:
            # The paper's devices are known from a dozen configs: most of the space is extrapolation for them.
            print(f"note: {1 - share['front']:.0%} of the front lies outside what the {key} predictor was trained "
                  "on; its values there are extrapolations (report.md, column out_of_domain of front.csv)")
    print(f"outputs in {r.folder}/ (report.md, front.csv, front.json, charts)")
    if args.verify:
        from measured import Store

        verify_front(res, args.verify, r.folder, store=Store(args.store))
    return 0


def _print_front(res, n: int = 10) -> None:
    from nas.search import format_quantity

    keys = res.keys
    metrics = {o["key"]: o.get("metric") for o in res.objectives}
    if res.any_feasible:
        rows, title = res.front.head(n), f"Pareto front: {len(res.front)} configs (first {min(n, len(res.front))}):"
    else:
        rows, title = res.closest(), "NO config meets the constraints; the closest ones (smallest violation):"
    print(title)
    print("  " + f"{'#':>3s} {'hash':12s} {'named':6s} " + " ".join(f"{k:>24s}" for k in keys) + f" {'MACs (M)':>9s}")
    for i, (_, r) in enumerate(rows.iterrows(), start=1):
        rank = int(r["rank"]) if "rank" in r and r["rank"] == r["rank"] and r["rank"] is not None else i
        print("  " + f"{rank:3d} {r['hash'][:12]} {r['named'][:6]:6s} "
              + " ".join(f"{format_quantity(r[k], metrics.get(k)):>24s}" for k in keys)
              + f" {r['macs'] / 1e6:9.0f}")


def cmd_plot(args) -> int:
    if args.what == "measured":
        return _plot_measured(args)
    if not args.study:
        raise UserError("study: give --study NAME (or `plot measured --device NAME`)")
    from nas.search import load_results, open_study, study_dir, write_charts

    study = open_study(args.study, args.runs_dir, args.storage)
    res = load_results(study, args.study)
    paths, notes = write_charts(res, study_dir(args.runs_dir, args.study), png=not args.no_png)
    for p in paths:
        print(f"wrote {p}")
    for n in notes:
        print(f"note: {n}")
    return 0


def _plot_measured(args) -> int:
    if not args.device:
        raise UserError("device: `plot measured` needs --device NAME")
    import pathlib

    from measured import Store
    from nas.search import measured_figure, write_figures

    store = Store(args.store)
    df = store.measurements(device=args.device, metric=args.metric)
    if not len(df):
        devices = sorted({d.device_id for d in store.devices()})
        raise UserError(f"device: no {args.metric} measurements for {args.device!r} in the store; devices: "
                        f"{', '.join(devices) or 'none'}")
    fig = measured_figure(df, args.device, args.metric)
    folder = pathlib.Path(args.runs_dir) / "measured"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.device)  # the device id becomes part of a file name
    paths, notes = write_figures({f"macs_vs_{args.metric}_{safe}": fig}, folder, png=not args.no_png)
    for p in paths:
        print(f"wrote {p}")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: lowformer-nas search|plot")
