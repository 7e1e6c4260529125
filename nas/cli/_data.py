"""data summary, data dump, data noise, import: the measurement store from the command line."""

from __future__ import annotations

import sys

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
    store = _open(args)
    report = store.import_file(args.file, device_id=args.device, create_device_kind=args.device_kind, force=args.force)
    if args.json:
        print_json(report.to_dict())
    else:
        print(str(report))
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
    return 0
