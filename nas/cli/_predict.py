"""predictors train|eval|update|list|fewshot, predict: per-device predictors from the command line."""

from __future__ import annotations

import json
import pathlib
import sys

from lowformer_common import UserError
from search_spaces import variant_names

from ._common import add_store_arg, device_id, print_json, records

_METRIC_CHOICES = ("latency_ms", "throughput_img_s", "fps", "top1_pct")


def _device_args(p, metric_help="default: the device's protocol metric") -> None:
    p.add_argument("--device", required=True, type=device_id, metavar="NAME", help="device id (e.g. jetson_tx2, rpi5_arm_cpu, a40_gpu, imagenet1k)")
    p.add_argument("--metric", choices=_METRIC_CHOICES, metavar="M", help=f"{'|'.join(_METRIC_CHOICES)} ({metric_help})")


def register(sub) -> None:
    p = sub.add_parser("predictors", help="train, evaluate, update and list per-device predictors")
    actions = p.add_subparsers(dest="predictors_command", metavar="ACTION", parser_class=type(p))
    actions.required = True

    from predictors import MODEL_CHOICES

    t = actions.add_parser("train", help="train a predictor from the store, validate it and save it")
    _device_args(t)
    t.add_argument("--model", default="auto", choices=MODEL_CHOICES, metavar="MODEL",
                   help=f"{'|'.join(MODEL_CHOICES)} (default auto: the best by cross-validated MAPE)")
    t.add_argument("--source", type=device_id, metavar="DEVICE", help="source device of --model transfer")
    t.add_argument("--protocol", metavar="KEY", help="measuring protocol to train on (default: the one with most configs)")
    t.add_argument("--out", metavar="DIR", help="predictors directory (default: $LOWFORMER_NAS_HOME/predictors)")
    t.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    add_store_arg(t)
    t.set_defaults(func=cmd_train)

    e = actions.add_parser("eval", help="validation figures of every model type, MACs baseline included")
    _device_args(e)
    e.add_argument("--html", metavar="FILE",
                   help="write a predicted-vs-measured chart (HTML; plotly.js goes beside it, so it opens offline)")
    e.add_argument("--holdout", type=int, metavar="N", help="score on N random configs held out of training (default: cross-validation)")
    e.add_argument("--models", metavar="LIST", help="comma-separated model types (default: every applicable one)")
    e.add_argument("--intervals", metavar="MODEL",
                   help="also score the prediction intervals of this model type (default: the device's current "
                        "predictor's; 'none' to skip): coverage at 0.8/0.9/0.95 and median relative width, on the "
                        "hold-out, else leave-one-variant-out (<= 30 configs) or 5-fold")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_store_arg(e)
    e.set_defaults(func=cmd_eval)

    u = actions.add_parser("update", help="import measurements, retrain, compare before/after on a fixed hold-out")
    _device_args(u)
    u.add_argument("--measurements", required=True, metavar="FILE", help="CSV, CSV.gz or Parquet file of measurements")
    u.add_argument("--model", default=None, choices=MODEL_CHOICES, metavar="MODEL",
                   help="model type (default: the current predictor's, else auto)")
    u.add_argument("--out", metavar="DIR", help="predictors directory (default: $LOWFORMER_NAS_HOME/predictors)")
    u.add_argument("--force", action="store_true",
                   help="import rows whose device name/fingerprint columns name another machine than the stored "
                        "device (refused otherwise, as by `import`); each such row's notes record it")
    add_store_arg(u)
    u.set_defaults(func=cmd_update)

    ls = actions.add_parser("list", help="available predictors and their versions")
    ls.add_argument("--json", action="store_true", help="print every version of every predictor as JSON")
    ls.set_defaults(func=cmd_list)

    f = actions.add_parser("fewshot", help="few-shot transfer from a source device vs training from scratch")
    _device_args(f)
    f.add_argument("--source", required=True, type=device_id, metavar="DEVICE", help="device whose predictor is transferred")
    f.add_argument("--holdout", type=int, default=200, metavar="N", help="random hold-out configs (default 200)")
    f.add_argument("--sizes", default="10,20,50,100,200", metavar="LIST", help="training-set sizes (default 10,20,50,100,200)")
    f.add_argument("--repeats", type=int, default=5, metavar="R", help="random draws per size (default 5)")
    f.add_argument("--lgbm", action="store_true", help="also train LightGBM from scratch (sizes >= 50)")
    f.add_argument("--json", action="store_true", help="print the learning curves as JSON")
    add_store_arg(f)
    f.set_defaults(func=cmd_fewshot)

    pr = sub.add_parser("predict", help="predict a variant's or config's latency/throughput/top-1 on a device")
    _device_args(pr)
    pr.add_argument("--model", metavar="NAME", help=f"variant name ({', '.join(variant_names())})")
    pr.add_argument("--config", metavar="FILE", help="a JSON config file instead of a name")
    pr.add_argument("--resolution", type=int, metavar="R", help="input resolution (default: the variant's)")
    pr.add_argument("--confidence", type=float, default=0.9, metavar="C",
                    help="coverage of the prediction interval, in (0.5, 0.999) (default 0.9)")
    pr.add_argument("--phase", default="now", choices=("now", "typical", "slow", "canonical"),
                    help="the device's phase to predict for (phase-normalised predictors): now (default; on this "
                         "machine a quick anchor timing), typical, slow (its 90th-percentile session) or canonical")
    pr.add_argument("--force", action="store_true",
                    help="use a predictor trained against other anchors/reference than this version times (recorded)")
    add_store_arg(pr)
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.set_defaults(func=cmd_predict)


# ---------------------------------------------------------------------------------------------- helpers


def _progress(desc: str):
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False, disable=None, file=sys.stderr)


def _open_store(url):
    from measured import Store

    return Store(url)


def quantised_key(device: str, protocol: dict) -> str:
    """The predictor key of a device's measurements under ``protocol``: ``<device>+int8`` for int8 rows (their own
    predictor, e.g. `search --device <device>+int8`), else the device id."""
    precision = str(protocol.get("precision") or "fp32")
    return f"{device}+{precision}" if precision == "int8" else device


def _device_metric(store, device: str, metric: str | None) -> tuple[str, dict]:
    """(metric, device protocol); the default metric is the device's protocol metric."""
    from measured import ACCURACY_DEVICE

    dev = store.device(device)
    if dev is None:
        known = ", ".join(d.device_id for d in store.devices()) or "none"
        raise UserError(f"device: unknown device {device!r}; the store has: {known}")
    if metric is None:
        m = str(dev.protocol.get("metric", ""))
        if device == ACCURACY_DEVICE:
            metric = "top1_pct"
        elif m.startswith("throughput"):
            metric = "throughput_img_s"
        elif m.startswith("latency") or dev.kind != "dataset":
            metric = "latency_ms"
        else:
            metric = "top1_pct"
    return metric, dev.protocol


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def _num(v, fmt=".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _print_figures(results: dict, chosen: str | None, metric: str, method: str) -> None:
    print(f"validation: {method}, figures in {metric}")
    print(f"{'model':12s} {'n':>5s} {'MAPE %':>8s} {'RMSE':>10s} {'±5%':>6s} {'±10%':>6s} {'Kendall τ':>10s} {'Spearman':>9s}")
    for name, r in results.items():
        mark = " *" if name == chosen else ""
        if "skipped" in r:
            print(f"{name + mark:12s} skipped: {r['skipped']}")
            continue
        print(f"{name + mark:12s} {r['n']:5d} {r['mape']:8.2f} {r['rmse']:10.4g} {_pct(r['within_5']):>6s} "
              f"{_pct(r['within_10']):>6s} {_num(r['kendall_tau']):>10s} {_num(r['spearman']):>9s}")


def _out_root(out) -> pathlib.Path:
    from predictors import user_dir

    return pathlib.Path(out) if out else user_dir()


def _figures_only(results: dict) -> dict:
    from predictors import figures_only

    return {k: figures_only(v) for k, v in results.items()}


def _load_source(name: str):
    from predictors import load_predictor

    return load_predictor(name)


# ---------------------------------------------------------------------------------------------- train


def cmd_train(args) -> int:
    from predictors import cv_method, save_version, train, training_data

    store = _open_store(args.store)
    metric, protocol = _device_metric(store, args.device, args.metric)
    data = training_data(store.measurements(device=args.device), args.device, metric, args.protocol)
    key = quantised_key(args.device, data.protocol)
    if key != args.device:  # int8 rows train a predictor of their own: never a new version of the fp32 one
        import dataclasses

        data = dataclasses.replace(data, device=key)
    source = _load_source(args.source) if args.source else None
    if args.model == "transfer" and source is None:
        raise UserError("source: --model transfer needs --source DEVICE")
    if args.model == "shared":  # the common cost profile of every other device in the store
        source = _shared_source(store, data)()
    pred, results = train(data, args.model, source=source, device_protocol=protocol, progress=_progress("validating"))
    if source is not None and args.model != "shared":
        pred.meta["transfer_source"] = {"device": source.device, "metric": source.metric, "version": source.version,
                                        "model_type": source.model_type}
    figures = _train_interval_figures(store, data, pred.model_type)
    if figures is not None:  # shown by `predictors list`
        pred.meta["interval_figures"] = figures.to_dict()
    path = save_version(_out_root(args.out) / key / metric, pred.estimator, pred.meta)
    if args.json:
        meta = json.loads((path / "meta.json").read_text())
        print_json(meta, indent=2)
        return 0
    print(f"{key} / {metric}: {data.n_configs} configs ({data.n_rows} measurements, protocol {data.protocol['key']})"
          + (f", {data.n_out_of_space} out-of-space rows" if data.n_out_of_space else ""))
    _print_figures(results, pred.meta["model_name"], metric, cv_method(data.n_configs))
    if pred.meta.get("surrogate"):
        print(f"note: this is an {pred.meta['label']}")
    print(f"saved {pred.meta['model_type']} predictor v{path.name[1:].lstrip('0')} -> {path}")
    return 0


def _train_interval_figures(store, data, model: str):
    """Leave-one-variant-out figures of the trained model type on a device with at most LOO_MAX configs (a few
    seconds); None above (``predictors eval`` scores those) or where a fold cannot be trained."""
    from predictors import LOO_MAX, PredictorError, interval_coverage, variant_groups

    if data.n_configs > LOO_MAX or model == "transfer":
        return None
    src = _shared_source(store, data) if model == "shared" else None
    try:
        return interval_coverage(data, model, groups=variant_groups(data.names, [c.hash for c in data.configs],
                                                                    per_variant=True), source=src)
    except PredictorError:
        return None


# ---------------------------------------------------------------------------------------------- eval


def _chart(path: str, title: str, metric: str, names: list, truth, results: dict) -> None:
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    lo, hi = float(np.min(truth)), float(np.max(truth))
    for name, r in results.items():
        if "oof" not in r:
            continue
        fig.add_trace(go.Scatter(
            x=truth, y=r["oof"], mode="markers", name=f"{name} (MAPE {r['mape']:.1f}%)", text=names,
            hovertemplate="%{text}<br>measured %{x:.4g}<br>predicted %{y:.4g}<extra>" + name + "</extra>",
        ))
        lo, hi = min(lo, float(np.min(r["oof"]))), max(hi, float(np.max(r["oof"])))
    for f, dash, label in ((1.0, "solid", "exact"), (1.1, "dot", "+10%"), (0.9, "dot", "-10%")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", name=label,
                                 line=dict(color="gray", dash=dash, width=1), hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title=f"measured {metric}", yaxis_title=f"predicted {metric}", template="plotly_white")
    from nas._html import write_html

    write_html(fig, path)


def cmd_eval(args) -> int:
    import numpy as np

    from predictors import cv_method, evaluate_models, evaluation_models, random_holdout, training_data

    store = _open_store(args.store)
    metric, _ = _device_metric(store, args.device, args.metric)
    data = training_data(store.measurements(device=args.device), args.device, metric)
    models = evaluation_models(metric)
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        known = sorted({k.split("_")[0] for k in models})
        bad = [m for m in wanted if m not in known]
        if bad or not wanted:
            raise UserError(f"models: unknown {bad[0] if bad else args.models!r}; allowed for {metric}: {', '.join(known)}")
        models = {k: v for k, v in models.items() if k.split("_")[0] in wanted}
    holdout = random_holdout(data.n_configs, args.holdout) if args.holdout else None
    results = evaluate_models(data, models, progress=_progress("validating"), holdout=holdout)
    method = f"random hold-out of {args.holdout} configs" if holdout is not None else cv_method(data.n_configs)
    coverage = _interval_coverage(args, data, metric, holdout, store)
    if args.json:
        print_json({"device": args.device, "metric": metric, "method": method, "n_configs": data.n_configs,
                    "models": _figures_only(results), "intervals": coverage and coverage.to_dict()}, indent=2)
    else:
        print(f"{args.device} / {metric}: {data.n_configs} configs, protocol {data.protocol['key']}")
        _print_figures(results, None, metric, method)
        if coverage is not None:
            _print_coverage(coverage)
    if args.html:
        names = [n or c.short_hash for n, c in zip(data.names, data.configs)]
        truth = data.values
        if holdout is not None:
            names = [n for n, h in zip(names, holdout) if h]
            truth = data.values[holdout]
        _chart(args.html, f"{args.device}: predicted vs measured {metric} ({method})", metric, names, np.asarray(truth), results)
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _shared_source(store, data):
    """For --model shared: per held-out fold, the common cost profile of the other devices without those configs."""
    from predictors import check_shared_fit, profile_rows, shared_profile

    everything = store.measurements()
    check_shared_fit(data.device, data.metric, data.X[: data.n_configs], data.n_configs,
                     profile_rows(everything, data.device))
    return lambda held=(): shared_profile(profile_rows(everything, data.device, held))


def _interval_coverage(args, data, metric: str, holdout, store=None):
    """The calibration figures of the intervals (None with --intervals none)."""
    from predictors import LOO_MAX, PredictorError, interval_coverage, load_predictor, variant_groups

    model = args.intervals
    if model == "none":
        return None
    if model is None:
        try:
            model = load_predictor(args.device, metric).model_type
        except PredictorError:
            model = "auto"
    src = _shared_source(store, data) if model == "shared" and store is not None else None
    if holdout is not None:
        return interval_coverage(data, model, holdout=holdout, progress=_progress("intervals"), source=src)
    if data.n_configs <= LOO_MAX:  # leave-one-variant-out: every named variant and ablation on its own
        groups = variant_groups(data.names, [c.hash for c in data.configs], per_variant=True)
    else:
        groups = [f"fold{i % 5}" for i in range(data.n_configs)]  # 5 folds over the configs in hash order
    return interval_coverage(data, model, groups=groups, progress=_progress("intervals"), source=src)


def _print_coverage(rep) -> None:
    print(f"prediction intervals: {rep.model} model ({rep.intervals_method}), {rep.method}, {rep.n} configs")
    print(f"{'nominal':>8s} {'empirical':>10s} {'median width':>13s}")
    for r in rep.rows():
        win = r.get("median_relative_width_in_domain")
        print(f"{r['nominal']:8.2f} {r['empirical'] * 100:9.0f}% {r['median_relative_width'] * 100:12.1f}%"
              + ("" if win is None else f"  (in domain: {win * 100:.1f}%, {rep.n_in_domain} configs)"))


# ---------------------------------------------------------------------------------------------- update


def cmd_update(args) -> int:
    from predictors import PredictorError, cv_method, load_predictor, update

    store = _open_store(args.store)
    if not pathlib.Path(args.measurements).is_file():
        raise UserError(f"measurements: {args.measurements}: no such file")
    before = store.measurements(device=args.device)  # empty for a device the file introduces
    from measured import import_results

    report, anchors, note = import_results(store, args.measurements, device_id=args.device, force=args.force)
    print(str(report))
    if anchors is not None or note:
        print(anchors.line() if anchors is not None else note)  # a bundle run's anchors: the device's phase series
    metric, protocol = _device_metric(store, args.device, args.metric)
    try:
        previous = load_predictor(args.device, metric)
    except PredictorError:
        previous = None
    u = update(before, store.measurements(device=args.device), args.device, metric, model=args.model, previous=previous,
               device_protocol=protocol, root=_out_root(args.out), progress=_progress("validating"))
    if u.holdout is not None:
        print(f"fixed hold-out: {u.n_holdout} configs (chosen by config hash), never trained on below")
        _print_figures(u.holdout, None, metric, f"{u.model} model trained without the hold-out; before: on the data "
                                                "before the import")
    else:
        print(f"hold-out too small ({u.n_holdout} of {u.data.n_configs} configs): cross-validated figures below")
    _print_figures(u.results, u.predictor.meta["model_name"], metric,
                   cv_method(u.data.n_configs) + " on all data after the import")
    kept = f"; previous: {previous.path}" if previous is not None else ""
    print(f"saved {u.predictor.model_type} predictor v{u.path.name[1:].lstrip('0')} -> {u.path}{kept}")
    return 0


# ---------------------------------------------------------------------------------------------- list, fewshot


def cmd_list(args) -> int:
    from predictors import available_predictors, predictor_versions

    rows = [dict(device=d, metric=m, versions=predictor_versions(d, m)) for d, m in available_predictors()]
    if args.json:
        print_json(rows, indent=2)
        return 0
    if not rows:
        print("no predictors (train one: lowformer-nas predictors train --device ID)")
        return 0
    table = []
    for r in rows:
        users = [v for v in r["versions"] if v["origin"] == "user"]
        latest = users[-1] if users else r["versions"][-1]
        val = latest.get("validation") or {}
        error = f"{val['mape']:.1f} % ({val.get('method') or '?'})" if val.get("mape") is not None else "-"
        configs = latest.get("n_configs")
        iv = latest.get("intervals")
        ivs = "-" if not iv else " / ".join(f"{x['empirical'] * 100:.0f}:{x['median_relative_width'] * 100:.2g}" for x in iv)
        table.append((r["device"], r["metric"], latest["model_type"] or "?", f"v{latest['version']} {latest['origin']}",
                      "-" if configs is None else f"{configs:,}", error, ivs, str(len(r["versions"]))))
    heads = ("device", "metric", "model", "in use", "configs", "validation MAPE",
             "intervals 0.8 / 0.9 / 0.95 (covered:width %)", "versions")
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    right = {4, 7}  # numbers
    for line in [heads] + table:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip())
    print("\nconfigs: the distinct architectures a predictor was trained on; validation MAPE: its error on configs "
          "held out of training; intervals: share of held-out configs inside the interval at each nominal coverage and "
          "its median width in % of the value (leave-one-variant-out or a hold-out; '-': not scored, run lowformer-nas "
          "predictors eval --device D). A user-trained version is used over the shipped one.")
    return 0


def cmd_fewshot(args) -> int:
    from predictors import AdditiveModel, LGBMModel, few_shot_curve, random_holdout, training_data

    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"sizes: a comma-separated list of integers (got {args.sizes!r})") from None
    if not sizes or min(sizes) < 1:
        raise UserError("sizes: positive integers")
    store = _open_store(args.store)
    metric, _ = _device_metric(store, args.device, args.metric)
    data = training_data(store.measurements(device=args.device), args.device, metric)
    source = _load_source(args.source)
    h = random_holdout(data.n_configs, args.holdout)
    pool = data.subset(~h)
    scratch = {"additive": AdditiveModel()}
    if args.lgbm:
        scratch["lgbm"] = LGBMModel()
    df = few_shot_curve(source.estimator, pool.X[: pool.n_configs], pool.y[: pool.n_configs], data.X[: data.n_configs][h],
                        data.y[: data.n_configs][h], sizes=sizes, repeats=args.repeats, scratch=scratch, metric=metric,
                        progress=not args.json)
    agg = df.groupby(["size", "method"], sort=True)[["within_10", "kendall_tau", "mape"]].mean().reset_index()
    if args.json:
        print_json({"device": args.device, "source": args.source, "metric": metric, "holdout": args.holdout,
                    "repeats": args.repeats, "rows": records(agg)}, indent=2)
        return 0
    print(f"{args.device} / {metric}: hold-out {args.holdout} configs, pool {pool.n_configs}, source {args.source} "
          f"({source.model_type} v{source.version}), mean of {args.repeats} draws")
    print("| training configs | method | within ±10% | Kendall τ | MAPE % |")
    print("|---:|---|---:|---:|---:|")
    for r in agg.itertuples(index=False):
        print(f"| {r.size} | {r.method} | {r.within_10 * 100:.1f}% | {r.kendall_tau:.3f} | {r.mape:.2f} |")
    return 0


# ---------------------------------------------------------------------------------------------- predict


def cmd_predict(args) -> int:
    from nas.onboard._phase import in_phase
    from predictors import check_coverage, load_predictor
    from search_spaces import resolve

    if args.model is not None and args.config is not None:
        raise UserError("model: give a variant name (--model) or --config FILE, not both")
    if args.model is None and args.config is None:
        raise UserError("model: give a variant name (--model NAME) or --config FILE")
    try:
        coverage = check_coverage(args.confidence)
    except UserError:
        raise UserError(f"confidence: must be a number in (0.5, 0.999) (got {args.confidence:g})") from None
    name, cfg = resolve(args.model, args.config, args.resolution)
    pred = load_predictor(args.device, args.metric)
    if pred.calibrated:
        iv = pred.predict_interval([cfg], coverage)
        value, lo, hi, measured, inside = float(iv.value[0]), float(iv.lo[0]), float(iv.hi[0]), bool(iv.measured[0]), bool(
            iv.in_domain[0])
    else:
        value, lo, hi, measured, inside = pred.predict_one(cfg), None, None, False, pred.in_domain(cfg)
    choice = _phase_choice(args, pred)
    if choice is not None and choice.phase is not None:
        v, a, b = in_phase([value], [lo if lo is not None else value], [hi if hi is not None else value], pred.metric,
                           choice, coverage)
        value, lo, hi = float(v[0]), (float(a[0]) if lo is not None else None), (float(b[0]) if hi is not None else None)
    if not inside and not measured:
        why = "; ".join(pred.domain_violations(cfg)[:3])
        print(f"lowformer-nas: warning: {name} lies outside what the {pred.device} {pred.metric} predictor was trained on "
              f"({why}); the prediction is an extrapolation", file=sys.stderr)
    out = {"device": pred.device, "metric": pred.metric, "value": value,
           "interval": None if lo is None else [lo, hi], "coverage": coverage if lo is not None else None,
           "measured": measured, "model_type": pred.model_type, "predictor_version": pred.version, "in_domain": inside,
           "phase": choice.to_dict() if choice is not None else None}
    if args.json:
        print_json(out, indent=None)
        return 0
    unit = {"latency_ms": "ms", "throughput_img_s": "img/s", "fps": "fps", "top1_pct": "% top-1"}.get(pred.metric, "")
    what = "measured" if measured else ("accuracy surrogate, not a trained network's result" if pred.is_surrogate else "")
    note = f" ({what})" if what else ""
    iv_text = "" if lo is None else f", {coverage:.0%} interval [{lo:.4g}, {hi:.4g}]"
    print(f"{name} on {pred.device}: {value:.4g} {unit}{iv_text}{note}  [{pred.model_type} predictor v{pred.version}"
          f"{'' if inside else ', out of domain'}{'' if pred.calibrated else ', no calibration data'}]")
    if choice is not None:
        print(f"phase {choice.words}" + (f"; --force: {choice.forced}" if choice.forced else ""))
    return 0


def _phase_choice(args, pred):
    """The phase the prediction is for (None for metrics without a time: accuracy)."""
    from nas.onboard._phase import predictor_phase

    if pred.metric not in ("latency_ms", "throughput_img_s"):
        return None
    if not pred.meta.get("phase"):
        return predictor_phase(None, pred, args.phase)
    return predictor_phase(_open_store(args.store), pred, args.phase, force=args.force)
