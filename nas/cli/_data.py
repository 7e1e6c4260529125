"""data summary, data dump, data noise, import: the measurement store from the command line."""

from __future__ import annotations

import sys

from lowformer_common import UserError
from measured import DEVICE_KINDS

from ._common import add_store_arg, device_id, print_json, records


def register(sub) -> None:
    p = sub.add_parser("data", help="the measurement store: what is measured, export")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    actions.required = True

    s = actions.add_parser("summary", help="per device, backend and metric: configs and measurements")
    s.add_argument("--json", action="store_true", help="print a JSON list")
    add_store_arg(s)
    s.set_defaults(func=cmd_summary)

    # `dump`, not `export`: `lowformer-nas export` writes a model. The old spelling still works, with a note.
    e = actions.add_parser("dump", aliases=["export"],
                           help="write measurements as CSV, CSV.gz or Parquet (by the file suffix)")
    e.add_argument("file", help="output file: .csv, .csv.gz or .parquet")
    e.add_argument("--device", action="append", type=device_id, metavar="D", help="only this device (repeatable)")
    e.add_argument("--metric", action="append", metavar="M", help="only this metric (repeatable)")
    add_store_arg(e)
    e.set_defaults(func=cmd_export)

    n = actions.add_parser("noise", help="repeatability: CV of repeated medians per protocol")
    n.add_argument("--device", required=True, type=device_id, help="device id")
    n.add_argument("--json", action="store_true", help="print JSON")
    add_store_arg(n)
    n.set_defaults(func=cmd_noise)

    ph = actions.add_parser("phase", help="the device's state over time: its anchor sessions and fitted phases")
    ph.add_argument("--device", required=True, type=device_id, help="device id (local: this machine)")
    ph.add_argument("--protocol", metavar="KEY", help="protocol key (default: the device's with the most sessions)")
    ph.add_argument("--html", metavar="FILE", help="also write a chart (HTML that opens offline)")
    ph.add_argument("--json", action="store_true", help="print JSON")
    add_store_arg(ph)
    ph.set_defaults(func=cmd_phase)

    i = sub.add_parser("import", help="import measurements from CSV, CSV.gz or Parquet into the store")
    i.add_argument("file", help="input file: .csv, .csv.gz or .parquet (the columns of `data dump`)")
    i.add_argument("--device", metavar="NAME", type=device_id, help="store every row under this device id")
    i.add_argument("--device-kind", choices=DEVICE_KINDS, metavar="KIND",
                   help=f"kind of a device the file introduces without device columns ({'|'.join(DEVICE_KINDS)})")
    i.add_argument("--force", action="store_true",
                   help="import rows whose device name/fingerprint columns name another machine than the stored "
                        "device (refused otherwise); each such row's notes record it")
    i.add_argument("--json", action="store_true", help="print the import report as JSON")
    add_store_arg(i)
    i.set_defaults(func=cmd_import)


def _open(args):
    from measured import Store

    return Store(args.store)


def cmd_summary(args) -> int:
    store = _open(args)
    df = store.summary()
    if args.json:
        print_json(records(df), indent=2)
        return 0
    print(f"{store}")
    if df.empty:
        print("no measurements")
        return 0
    cols = ("device_id", "backend", "metric")
    widths = [max(len(c), int(df[c].str.len().max())) for c in cols]
    nums = ("configs", "measurements", "failed", "busy", "flagged")
    print("  ".join(f"{c:{w}s}" for c, w in zip(cols, widths)) + "  " + "  ".join(f"{c:>12s}" for c in nums))
    for r in df.itertuples(index=False):
        print("  ".join(f"{getattr(r, c):{w}s}" for c, w in zip(cols, widths)) + "  "
              + "  ".join(f"{getattr(r, c):12d}" for c in nums))
    return 0


def cmd_export(args) -> int:
    if args.data_command == "export":
        print("lowformer-nas: note: `data export` is now `data dump` (`export` writes a model); the old name still "
              "works", file=sys.stderr)
    store = _open(args)
    n = store.export(args.file, device=args.device, metric=args.metric)
    print(f"{n} measurements -> {args.file}")
    return 0


def cmd_import(args) -> int:
    from measured import import_results

    store = _open(args)
    # A bundle run's results bring its anchor sessions (results.anchors.csv beside them): the device's phase series.
    report, anchors, note = import_results(store, args.file, device_id=args.device,
                                           create_device_kind=args.device_kind, force=args.force)
    if args.json:
        print_json(report.to_dict() | {"anchors": anchors.to_dict() if anchors else None, "anchors_note": note})
    else:
        print(str(report))
        if anchors is not None or note:
            print(anchors.line() if anchors is not None else note)
    return 0


def cmd_noise(args) -> int:
    from measured import noise_report

    report = noise_report(_open(args).measurements(device=args.device))
    if args.json:
        print_json(report, indent=2)
        return 0
    for protocol, r in report.items():
        print(f"{args.device}  {protocol}: {r['configs']} configs x {r['repeats_per_config']:.1f} repeats; CV of "
              f"medians: median {r['cv_median_pct']:.2f}%, mean {r['cv_mean_pct']:.2f}%, p90 {r['cv_p90_pct']:.2f}%, "
              f"max {r['cv_max_pct']:.2f}%; {r['share_within_3pct']:.0%} of configs within 3%")
        for key, words in (("canonical", "canonical values (phase-normalised)"), ("ratio", "ratios to the reference")):
            c = r.get(key)
            if c:
                print(f"{'':{len(args.device)}s}  {words}: {c['configs']} configs; CV median {c['cv_median_pct']:.2f}%, "
                      f"p90 {c['cv_p90_pct']:.2f}%, max {c['cv_max_pct']:.2f}% (raw medians of the same configs: "
                      f"median {c['raw_cv_median_pct']:.2f}%, p90 {c['raw_cv_p90_pct']:.2f}%)")
    return 0


def cmd_phase(args) -> int:
    from measured import load_series

    store = _open(args)
    at = store.anchor_timings(device=args.device)
    if at.empty:
        raise UserError(f"device: no anchor timings of {args.device!r}; a paired campaign (`lowformer-nas measure`), "
                        "the drift check or `search --verify` times them")
    key = args.protocol or at.groupby("protocol")["session"].nunique().idxmax()
    if key not in set(at["protocol"]):
        raise UserError(f"protocol: {args.protocol!r} has no anchor timings of {args.device}; allowed: "
                        f"{', '.join(sorted(set(at['protocol'])))}")
    series = load_series(store, args.device, key)
    rows = phase_table(series)
    if args.json:
        print_json({"device": args.device, "protocol": key, "model": series.model,
                    "model_errors": series.model_errors, "sessions": rows}, indent=2)
    else:
        print_phase_table(series, rows)
    if args.html:
        from nas._html import write_html

        print(f"chart -> {write_html(phase_figure(series, rows), args.html)}")
    return 0


def phase_table(series) -> list[dict]:
    from measured import iter_phase_rows

    return list(iter_phase_rows(series))


def print_phase_table(series, rows: list[dict]) -> None:
    import math

    anchors = sorted({a for r in rows for a in r["values"]}, key=lambda a: series.canonical.values.get(a, 0)
                     if series.canonical else 0)
    errs = ", ".join(f"{m} {math.expm1(e) * 100:.2f}%" for m, e in series.model_errors.items()) or "no second session yet"
    print(f"{series.device}  {series.protocol}: {len(rows)} anchor sessions; phase model {series.model} (held-out "
          f"error per anchor: {errs}); times in ms, a/b against the canonical session (*)")
    print(f"{'time (UTC)':20s} {'source':9s} " + " ".join(f"{a:>10s}" for a in anchors) + f" {'a':>7s} {'b':>7s} {'±':>6s}")
    for r in rows:
        cells = " ".join(f"{r['values'][a]:10.3f}" if a in r["values"] else f"{'failed':>10s}" for a in anchors)
        fit = (f"{r['a']:+7.3f} {r['b']:+7.3f} {math.expm1(r['sd']) * 100:5.1f}%" if r["a"] is not None
               else f"{'-':>7s} {'-':>7s} {'-':>6s}")
        star = "*" if r["canonical"] else " "
        print(f"{r['timestamp'][:19]:19s}{star} {r['source'][:9]:9s} {cells} {fit}")


def phase_figure(series, rows: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    anchors = sorted({a for r in rows for a in r["values"]})
    for a in anchors:
        pts = [(r["timestamp"], r["values"][a]) for r in rows if a in r["values"]]
        fig.add_trace(go.Scatter(x=[t for t, _ in pts], y=[v for _, v in pts], mode="lines+markers", name=a))
    fig.update_layout(title=f"{series.device}: anchors over time ({series.protocol}; phase model {series.model})",
                      xaxis_title="time (UTC)", yaxis_title="median (ms)", yaxis_type="log")
    return fig
