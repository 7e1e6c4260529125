"""models, count, export: the search space from the command line."""

from __future__ import annotations

from lowformer_common import UserError
from search_spaces import STAGES, build_op_graph, count, get_variant, resolve, variant_names

from ._common import print_json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the named LowFormer variants",
                       description="The paper's named variants (B0-B3, E1-E3, the B1 ablations, the mlpless/shallow "
                                   "variants): input resolution, params, MACs and config hash of each.")
    p.add_argument("--json", action="store_true", help="a JSON list of {name, hash, resolution, params, macs}")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("count", help="params, MACs, memory traffic and layers of a variant or config",
                       description="Analytic counts of a variant or config file (no torch needed): params of the "
                                   "1000-class classifier, MACs of one image, memory traffic, layers per stage and op "
                                   "type; the counting convention is in docs/architecture.md (section 11).")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("export", help="write a variant or config as ONNX, or the K-th config of a study's front",
                       description="Build a variant, a config file or a config picked from a search study's front, "
                                   "and write it as ONNX (needs the measure extra) and/or as a config JSON.")
    _add_model_args(p, required=False)
    p.add_argument("--onnx", metavar="PATH", help="ONNX file to write")
    p.add_argument("--json-out", metavar="PATH", help="also write the config JSON")
    p.add_argument("--study", metavar="NAME", help="take the config from this search study's front (see --pick)")
    p.add_argument("--pick", default="1", metavar="ID",
                   help="which front config: its id (the short config hash of report.md/front.csv, stable when the study "
                        "is resumed) or its current rank K (1 = first; default 1)")
    p.add_argument("--torch", metavar="DIR",
                   help="write a standalone PyTorch module (needs only torch), its config JSON and the training recipe "
                        "into DIR (new or empty); see docs/training.md")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where studies live (default: ./runs, then $LOWFORMER_NAS_HOME/runs)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch.onnx exporter: torchscript (default) or dynamo")
    p.set_defaults(func=cmd_export)


def _add_model_args(p, required=True) -> None:
    p.add_argument("model", nargs="?", help=f"variant name ({', '.join(variant_names())})")
    p.add_argument("--config", metavar="FILE", help="a JSON config file instead of a name")
    p.add_argument("--resolution", type=int, metavar="R", help="input resolution (default: the variant's)")


def _resolve(args):
    if args.model is not None and args.config is not None:
        raise UserError("model: give a variant name or --config FILE, not both")
    return resolve(args.model, args.config, args.resolution)


def cmd_models(args) -> int:
    rows = []
    for name in variant_names():
        v = get_variant(name)
        c = count(v.config)
        rows.append(
            dict(name=name, hash=v.config.hash, resolution=v.config.resolution, params=c.params, macs=c.macs,
                 aliases=list(v.aliases), description=v.description)
        )
    if args.json:
        print_json(rows, indent=2)
        return 0
    print(f"{'name':22s} {'res':>4s} {'params (M)':>11s} {'MACs (M)':>10s}  {'hash':12s}  description")
    for r in rows:
        alias = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(f"{r['name']:22s} {r['resolution']:4d} {r['params'] / 1e6:11.3f} {r['macs'] / 1e6:10.2f}  "
              f"{r['hash'][:12]}  {r['description']}{alias}")
    return 0


def cmd_count(args) -> int:
    name, cfg = _resolve(args)
    c = count(cfg)
    d = c.to_dict(name)
    # Attention cost grows with the square of the tokens it attends over (docs/architecture.md §3.1).
    d["attention_tokens"] = build_op_graph(cfg).attention_tokens()
    if args.json:
        print_json(d, indent=2)
        return 0
    print(f"{name}  hash {cfg.hash[:12]}  {cfg.resolution} px")
    print(f"params {c.params:,}  MACs {c.macs:,}  memory traffic {c.bytes / 2**20:,.1f} MiB (fp32)  layers {c.layers}")
    print(f"{'stage':8s} {'params':>12s} {'MACs (M)':>10s} {'MiB':>8s} {'layers':>7s}  {'out (C,H,W)':13s} attention tokens")
    for s in STAGES:
        st = d["per_stage"][s]
        shape = "x".join(map(str, st.get("out_shape_CHW", []))) or "-"
        tokens = d["attention_tokens"].get(s) or "-"
        print(f"{s:8s} {st['params']:12,d} {st['macs'] / 1e6:10.2f} {st['bytes'] / 2**20:8.1f} {st['layers']:7d}  "
              f"{shape:13s} {tokens}")
    print(f"{'op type':15s} {'MACs (M)':>10s} {'MiB':>8s} {'layers':>7s}")
    for op, q in d["per_op"].items():
        print(f"{op:15s} {q['macs'] / 1e6:10.2f} {q['bytes'] / 2**20:8.1f} {q['layers']:7d}")
    return 0


def cmd_export(args) -> int:
    if args.study is not None:
        from nas.search import export_pick  # noqa: PLC0415 (search needs optuna; only load it when asked)

        return export_pick(args)
    if args.onnx is None and args.json_out is None and args.torch is None:
        raise UserError("export: give --onnx PATH, --json-out PATH and/or --torch DIR (or --study NAME --pick ID)")
    name, cfg = _resolve(args)
    if args.torch is not None:
        from search_spaces import write_torch_export

        paths = write_torch_export(cfg, args.torch, name)
        if not args.json:
            print(f"wrote {args.torch}/  ({', '.join(p.name for p in paths)}: a PyTorch module needing only torch, "
                  "its config, the training recipe; docs/training.md shows a training loop)")
    if args.json_out:
        from search_spaces import write_config_json

        write_config_json(args.json_out, cfg, name)
        if not args.json:
            print(f"wrote {args.json_out}")
    if args.onnx:
        from search_spaces import export_onnx

        export_onnx(cfg, args.onnx, exporter=args.exporter)
        if not args.json:
            print(f"wrote {args.onnx}  ({name}, {cfg.resolution} px, hash {cfg.hash[:12]})")
    if args.json:
        print_json({"name": name, "hash": cfg.hash, "id": cfg.short_hash, "config_json": args.json_out,
                          "onnx": args.onnx, "torch": args.torch}, indent=1)
    return 0
