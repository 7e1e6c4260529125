"""Re-score onboarding's candidates offline on a finished run: what each would have predicted for a hold-out.

    python tests/benchmarks/onboard_refit.py /tmp/lowformer-bench-phase-XXXX               # campaign bench-holdout
    python tests/benchmarks/onboard_refit.py HOME --campaign NAME --round 0 --json

``HOME`` is a throw-away home of ``tests/benchmarks/bench_phase_holdout.py`` (or any home whose store holds an
onboarding round of a device and a campaign measured afterwards). It is only read: the store and the onboarding
plans are copied into a temporary home first. From the round's own rows (its anchors and designed configs, as
``onboard`` trained on them) each candidate is trained the way ``onboard`` trains it -- the model types from
scratch, the transfer from every known device's predictor, the cross-device model (``shared``) -- and scored on the
campaign by ``nas.onboard.evaluate_campaign``: predictions mapped into each hold-out row's phase against the measured
medians (within ±10 %, MAPE), and in the canonical phase. Beside them: which candidate onboarding picks now (the
lowest cross-validated MAPE on the round's configs) and which the rule before 2026-12-03 picked (scratch or the
transfer from the source ranked best on the anchors). No timing is taken; the last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import tempfile


def _copy_home(home: pathlib.Path) -> pathlib.Path:
    if not (home / "store.sqlite").is_file():
        raise SystemExit(f"home: {home}/store.sqlite: no such file (give a home of bench_phase_holdout.py)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="lowformer-onboard-refit-"))
    shutil.copy2(home / "store.sqlite", tmp / "store.sqlite")
    if (home / "onboard").is_dir():
        shutil.copytree(home / "onboard", tmp / "onboard")
    return tmp


def _plan(device: str | None, round_: int | None):
    from nas.onboard._common import home_dir, read_plan

    files = sorted((home_dir() / "onboard").glob("*/round-*.json"))
    plans = [read_plan(f) for f in files]
    plans = [p for p in plans if (device is None or p["device"] == device) and (round_ is None or p["round"] == round_)]
    if not plans:
        raise SystemExit("home: no onboarding plan (onboard/<device>/round-<n>.json) matches")
    return plans[-1]


def _candidates(store, data, device: str, ranking: list[dict]):
    """[(label, TrainedPredictor, cross-validated MAPE)] of every candidate onboarding compares."""
    from nas.onboard._session import _shared_source, _training_sources
    from predictors import PredictorError, train

    out = []
    pred, res = train(data, "auto")
    out.append(("from scratch", pred, res[pred.meta["model_name"]]["mape"]))
    for name, src in _training_sources("auto", ranking, device).items():
        try:
            pred, res = train(data, "transfer", source=src)
        except (PredictorError, ValueError):
            continue
        out.append((f"transfer from {name}", pred, res[pred.meta["model_name"]]["mape"]))
    shared = _shared_source(store, device, data)
    if shared is not None:
        pred, res = train(data, "shared", source=shared)
        out.append(("cross-device (shared)", pred, res[pred.meta["model_name"]]["mape"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("home", type=pathlib.Path)
    ap.add_argument("--campaign", default="bench-holdout")
    ap.add_argument("--device", default=None, help="the onboarded device (default: the one with a plan)")
    ap.add_argument("--round", type=int, default=None, help="the onboarding round (default: the latest)")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args()

    tmp = _copy_home(args.home.resolve())
    os.environ["LOWFORMER_NAS_HOME"] = str(tmp)
    os.environ["LOWFORMER_NAS_DRIFT_CHECK"] = "off"
    from measured import Store
    from nas.onboard import evaluate_campaign
    from nas.onboard._common import campaign_name
    from nas.onboard._session import _full_ok, _rank, train_round
    from predictors import training_data

    say = (lambda *a: None) if args.json else print
    plan = _plan(args.device, args.round)
    device, metric = plan["device"], "latency_ms"
    store = Store(str(tmp / "store.sqlite"))
    df = _full_ok(store.measurements(device=device, metric=metric))
    ids = set(df.loc[df["campaign"] == campaign_name(plan["round"]), "id"])
    rows = df[df["id"].isin(ids) & df["config_hash"].isin(set(plan["anchors"]) | set(plan["design"]))]
    data = training_data(rows, device, metric)
    ranking = _rank(device, metric, plan["anchors"], df[df["id"].isin(ids)])
    say(f"{device}, onboarding round {plan['round']}: {data.n_configs} configs; hold-out campaign {args.campaign!r}")
    table = []
    for label, pred, cv in _candidates(store, data, device, ranking):
        r = evaluate_campaign(store, device, args.campaign, predictor=pred)
        canon = r.get("canonical") or {}
        table.append({"candidate": label, "model": pred.meta["model_name"], "cv_mape": round(cv, 2),
                      "within_10": round(r["within_10"] * 100, 1), "mape": round(r["mape"], 2),
                      "within_10_canonical": round(canon["within_10"] * 100, 1) if canon else None, "n": r["n"]})
        say(f"  {label:40s} cv MAPE {cv:5.2f}% | hold-out {table[-1]['within_10']:5.1f}% within ±10%, "
            f"MAPE {r['mape']:5.2f}%" + (f" (canonical phase {table[-1]['within_10_canonical']:.1f}%)" if canon else ""))
    # What `onboard` saves now, trained by its own code path on the same rows.
    res = train_round(store, device, metric, plan, protocol_key=None, source_setting="auto", out=None,
                      log=(lambda s: None), ids=ids)  # saved into the temporary home: the newest predictor there
    chosen = evaluate_campaign(store, device, args.campaign)
    top = ranking[0]["source"] if ranking else None
    old = min((t for t in table if t["candidate"] in ("from scratch", f"transfer from {top}")),
              key=lambda t: (t["cv_mape"], t["candidate"] != "from scratch"))
    out = {"device": device, "round": plan["round"], "campaign": args.campaign, "n_train": data.n_configs,
           "candidates": table, "chosen": res.chosen, "chosen_source": res.source,
           "chosen_within_10": round(chosen["within_10"] * 100, 1), "chosen_mape": round(chosen["mape"], 2),
           "previous_rule": old["candidate"], "previous_within_10": old["within_10"]}
    say(f"onboard now picks: {res.chosen}{' from ' + res.source if res.source else ''} -> "
        f"{out['chosen_within_10']:.1f}% within ±10%, MAPE {out['chosen_mape']:.2f}%; the previous rule picked "
        f"{old['candidate']} -> {old['within_10']:.1f}%")
    print(json.dumps(out))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
