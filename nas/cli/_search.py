"""search, plot: the architecture search and its charts from the command line."""

from __future__ import annotations

import argparse
import re
import sys

from lowformer_common import UserError

from nas._search_settings import add_arguments as add_settings_arguments
from nas._search_settings import settings_from_args

from ._common import add_store_arg, device_id, milliseconds, print_json, seed, trials

_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def _amount(text: str) -> float:
    """A count such as 5000000, 5e6 or 5M."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a number such as 5000000, 5e6 or 5M (got {text!r})")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


# The parsers the search settings name (nas/_search_settings.py): units and ranges are the command line's.
_PARSERS = {"device_id": device_id, "milliseconds": milliseconds, "trials": trials, "seed": seed, "amount": _amount}


def register(sub) -> None:
    p = sub.add_parser("search", help="search LowFormer configs for a latency budget on one or more devices",
                       description="Multi-objective search (Optuna): the accuracy surrogate (or a params/MACs proxy) "
                                   "against predicted latency per device, under budgets and limits. Resumable: the "
                                   "same --study continues to --trials trials in total.")
    # The study's settings (nas/_search_settings.py declares each with its flag and help); then this command's own.
    add_settings_arguments(p, _PARSERS)
    p.add_argument("--verify", type=int, default=0, metavar="N",
                   help="then measure the top-N front configs on this machine: predicted vs measured, over-budget count, "
                        "share inside the intervals")
    p.add_argument("--refine", type=int, default=0, metavar="R",
                   help="then R rounds on this machine: measure K front configs (nearest the budget, widest intervals), "
                        "store them, retrain the device's predictor, continue the study")
    p.add_argument("--refine-k", type=int, default=10, metavar="K", help="configs measured per --refine round (default 10)")
    add_store_arg(p, "--verify/--refine: the ")
    p.add_argument("--no-png", action="store_true", help="HTML charts only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on stdout (front rows with id, rank, predictions, intervals; "
                        "the named variants; --verify/--refine tables); the human-readable lines go to stderr")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("plot", help="redraw a study's charts, or MACs vs measured latency from the store")
    p.add_argument("what", nargs="?", choices=("study", "measured"), default="study",
                   help="study (default): the charts of --study; measured: MACs vs measured values of --device")
    p.add_argument("--study", metavar="NAME", help="the study to redraw")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where studies live (default: ./runs, then $LOWFORMER_NAS_HOME/runs; plot measured writes to "
                        "the latter)")
    p.add_argument("--storage", metavar="URL", help="the study's database, when it was searched with --storage")
    p.add_argument("--device", type=device_id, metavar="NAME", help="plot measured: the device")
    p.add_argument("--metric", default="latency_ms", help="plot measured: the metric (default latency_ms)")
    add_store_arg(p, "plot measured: the ")
    p.add_argument("--no-png", action="store_true", help="HTML charts only")
    p.set_defaults(func=cmd_plot)


def cmd_search(args) -> int:
    if not getattr(args, "json", False):
        return _search(args, None)
    import contextlib

    out: dict = {}
    with contextlib.redirect_stdout(sys.stderr):
        code = _search(args, out)
    print_json(out, indent=1, default=str)
    return code


def _search(args, out: dict | None) -> int:
    for flag, v in (("verify", args.verify), ("refine", args.refine)):
        if v < 0:
            raise UserError(f"{flag}: must be a positive number (got {v})")
    if args.refine_k < 1:
        raise UserError(f"refine-k: must be a positive number of configs (got {args.refine_k})")
    from nas.search import run_search

    settings = settings_from_args(args)
    r = run_search(settings, progress=not args.quiet, png=not args.no_png, store=args.store)
    _print_result(r)
    sections, extra = [], {}
    if args.refine:
        r, table = _refine(args, settings, r)
        sections.append(f"## Refinement ({args.refine} rounds of {args.refine_k} configs measured on this machine)\n\n"
                        + table)
        extra["refine"] = table
    if args.verify:
        from measured import Store
        from nas.search import device_objective, summarise, verify_front, verify_markdown

        rows = verify_front(r.results, args.verify, r.folder, store=Store(args.store))
        o = device_objective(r.results, None)
        summary = summarise(r.results, rows, o)
        sections.append(verify_markdown(rows, o, summary))
        from nas.search import write_charts

        write_charts(r.results, r.folder, png=not args.no_png)  # the measured values drawn on the Pareto chart
        extra["verify"] = {"device": o["device"], "summary": summary.to_dict(), "rows": rows}
    done = {"verify": args.verify, "refine": args.refine}
    if sections:
        from nas.search import amend_report

        amend_report(r.folder, r.results, sections, done)
    _print_next_steps(r.results, done)
    if out is not None:
        out.update(_result_json(r, extra))
    return 0


def _result_json(r, extra: dict) -> dict:
    from nas.search import front_json

    fj = front_json(r.results)
    keep = ("id", "rank", "hash", "named", "macs", "params", "predictions", "intervals", "measured", "in_domain",
            "feasible", "config")
    return {"study": r.study, "folder": str(r.folder), "trials": r.n_trials, "seed": r.seed, "round": r.round,
            "risk": fj["risk"], "confidence": fj["confidence"], "phase": fj["phase"], "any_feasible": fj["any_feasible"],
            "front": [{k: e.get(k) for k in keep} for e in fj["front"]],
            "closest": [{k: e.get(k) for k in keep} for e in fj["closest"]], "named": fj["named"],
            "notes": list(r.notes), **extra}


def _print_result(r) -> None:
    from nas.search import phase_line, risk_line

    res = r.results
    seed = f"seed {r.seed} (drawn; --seed {r.seed} repeats it)" if r.seed_drawn else (
        "no seed" if r.seed is None else f"seed {r.seed}")
    rnd = f", refinement round {r.round}" if r.round else ""
    print(f"study {r.study}{rnd}: {r.n_trials} trials ({r.ran} run now, {r.scored} new architectures scored) in "
          f"{r.seconds:.1f} s; {len(res.table)} distinct architectures; {seed}")
    print(risk_line(res))
    print(phase_line(res.settings))
    _print_front(res)
    for d in res.named_status():
        print(f"  {d['name']:5s} {d['status']:18s} {d['detail']}")
    for n in r.notes:
        print(f"note: {n}")
    for key, share in res.in_domain_share().items():
        if share["front"] is not None and share["front"] < 0.5:
            # The paper's devices are known from a dozen configs: most of the space is extrapolation for them.
            print(f"note: {1 - share['front']:.0%} of the front lies outside what the {key} predictor was trained "
                  "on; its values there are extrapolations (report.md, column out_of_domain of front.csv)")
    print(f"outputs in {r.folder}/ (report.md, front.csv, front.json, charts)")


def _print_next_steps(res, done: dict | None = None) -> None:
    from nas.search import next_steps

    steps = next_steps(res, done=done)
    if steps:
        print("next:")
        for line in steps:
            print(f"  {line}")


def _refine(args, settings, first):
    import dataclasses

    from lowformer_common import write_json
    from measured import Store
    from nas.search import refine_search, rounds_table, store_measurer

    store = Store(args.store)
    result, rounds = refine_search(dataclasses.replace(settings, study=first.study), args.refine, args.refine_k,
                                   measure=store_measurer(store), retrain=_retrainer(store), first=first,
                                   progress=not args.quiet, png=not args.no_png)
    print(f"refinement ({args.refine} rounds of {args.refine_k} configs measured on this machine):")
    table = rounds_table(rounds)
    print(table)
    write_json(result.folder / "refine.json", [x.to_dict() for x in rounds], indent=1)
    _print_result(result)
    return result, table


def _retrainer(store):
    """Retrain a device's predictor from the store (the same model type), saved as a new user version."""

    def retrain(device: str) -> str:
        from predictors import load_predictor, retrain_from_store

        previous = load_predictor(device)
        pred, path = retrain_from_store(store, device, previous.metric, previous=previous)
        return f"{pred.model_type} v{pred.version} on {pred.meta['training_data']['n_configs']} configs ({path})"

    return retrain


def _print_front(res, n: int = 10) -> None:
    from nas.search import format_quantity

    keys = res.keys
    metrics = {o["key"]: o.get("metric") for o in res.objectives}
    if res.any_feasible:
        rows, title = res.front.head(n), (f"Pareto front: {len(res.front)} configs (first {min(n, len(res.front))}; id: the pick's stable name, `export --pick ID`):")
    else:
        rows, title = res.closest(), "NO config meets the constraints; the closest ones (smallest violation):"
    print(title)
    print("  " + f"{'#':>3s} {'id':12s} {'named':6s} " + " ".join(f"{k:>28s}" for k in keys) + f" {'MACs (M)':>9s}")
    for i, (_, r) in enumerate(rows.iterrows(), start=1):
        rank = int(r["rank"]) if "rank" in r and r["rank"] == r["rank"] and r["rank"] is not None else i
        cells = []
        for k in keys:
            lo, hi = float(r[f"{k}_lo"]), float(r[f"{k}_hi"])
            cell = format_quantity(r[k], metrics.get(k)) + (f" [{lo:.4g}, {hi:.4g}]" if lo < hi else "")
            cell += "*" if k in r["ood"] else ("=" if k in r["measured"] else "")
            cells.append(f"{cell:>28s}")
        print("  " + f"{rank:3d} {r['hash'][:12]} {r['named'][:6]:6s} " + " ".join(cells) + f" {r['macs'] / 1e6:9.0f}")
    print("  = measured (a stored measurement of this device); * extrapolated: outside that predictor's training domain; "
          "unmarked: predicted inside it")


def cmd_plot(args) -> int:
    if args.what == "measured":
        return _plot_measured(args)
    if not args.study:
        raise UserError("study: give --study NAME (or `plot measured --device NAME`)")
    from nas.search import load_results, open_study, study_folder, write_charts

    study = open_study(args.study, args.runs_dir, args.storage)
    res = load_results(study, args.study)
    paths, notes = write_charts(res, study_folder(args.study, args.runs_dir), png=not args.no_png)
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
    from nas.search import default_runs_dir, measured_figure, write_figures

    store = Store(args.store)
    df = store.measurements(device=args.device, metric=args.metric)
    if not len(df):
        devices = sorted({d.device_id for d in store.devices()})
        raise UserError(f"device: no {args.metric} measurements for {args.device!r} in the store; devices: "
                        f"{', '.join(devices) or 'none'}")
    fig = measured_figure(df, args.device, args.metric)
    folder = (pathlib.Path(args.runs_dir) if args.runs_dir else default_runs_dir()) / "measured"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.device)  # the device id becomes part of a file name
    paths, notes = write_figures({f"macs_vs_{args.metric}_{safe}": fig}, folder, png=not args.no_png)
    for p in paths:
        print(f"wrote {p}")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: lowformer-nas search|plot")
