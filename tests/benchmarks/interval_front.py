"""Offline (no timing): the 90 % intervals of `search --verify` front rows and of random hold-out rows, recomputed
from stored homes under today's rule and candidate rules, with coverage and median half-width per set.

    python tests/benchmarks/interval_front.py HOME [HOME ...]

A HOME is a LOWFORMER_NAS_HOME: one with ``runs/*/verify.json`` gives the front rows of each verify run in it (the
configs from the run's front.json, the measurements and their phases from the store), one whose store has the
campaign ``bench-holdout`` (tests/benchmarks/bench_phase_holdout.py) gives those rows. Each home is copied first
(its store through SQLite's backup API, read-only): nothing in it is written.

Per row: the predictor's canonical interval (half-width ``h``, log time) and the phase's widening ``z * sd``
(measured/_phase.py). Coverage is counted three ways: ``canon`` (the measurement mapped back to the canonical phase
by its row's phase, against the canonical interval: the predictor's own quality), ``now`` (the interval mapped into
the row's phase, against the raw measurement) and, for verify rows, ``study`` (the interval mapped into the phase
the study was scored in, as `search --verify` reports it). Half-widths are medians in % of log time (0.094 -> 9.4 %):
``half`` in the row's phase, ``hs`` in the study's, ``model`` the canonical (model) part alone. ``err``: the
canonical |error| p50/p90; ``shift/spread``: the set's median signed error and the rms about it; ``scale 80-98 %``:
the factors on every half-width that would put 80-98 % of the set inside (canonical; study phase beside it). A
front's 20 rows are near-duplicates whose errors move together, so the fronts of one predictor are also pooled.
Last line: JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import sqlite3
import tempfile

import numpy as np
from scipy import stats

C = 0.9
Z = float(stats.norm.ppf((1 + C) / 2))


def copy_home(src: str) -> str:
    dst = tempfile.mkdtemp(prefix="interval-front-")
    for d in ("predictors", "onboard"):
        if os.path.isdir(os.path.join(src, d)):
            shutil.copytree(os.path.join(src, d), os.path.join(dst, d))
    s = sqlite3.connect(f"file:{src}/store.sqlite?mode=ro", uri=True)
    d = sqlite3.connect(os.path.join(dst, "store.sqlite"))
    s.backup(d)
    d.close()
    s.close()
    return dst


# ---------------------------------------------------------------------------------------------- the rules
# A rule: (model quantile function or None for today's, how the phase's widening combines with the model's).


def q_today(cal, c):
    return None  # Calibration.quantile as it is


def q_marginal(cal, c):
    """The split-conformal rank ceil((n + 1) c) on the normalised scores, also at n <= 30."""
    from predictors import _interval as I

    s = np.sort(cal.scores)
    return float(s[min(I.conformal_rank(len(s), c), len(s)) - 1])


RULES = {
    "today (t, phase added)": (q_today, "linear"),
    "phase in quadrature": (q_today, "rss"),
    "marginal rank, phase added": (q_marginal, "linear"),
    "marginal rank, quadrature": (q_marginal, "rss"),
}


def combine(h: np.ndarray, sd: np.ndarray, how: str) -> np.ndarray:
    return h + Z * sd if how == "linear" else np.sqrt(h**2 + (Z * sd) ** 2)


def model_half(pred, configs, qfn) -> tuple[np.ndarray, np.ndarray]:
    """(canonical value, canonical log half-width) of ``configs`` under the quantile ``qfn`` (None: today's)."""
    from predictors import _interval as I

    cal = pred.calibration
    q = qfn(cal, C)
    orig = I.Calibration.quantile
    if q is not None:
        I.Calibration.quantile = lambda self, coverage: q
    try:
        iv = pred.predict_interval(configs, C, measured=False)
    finally:
        I.Calibration.quantile = orig
    return iv.value, np.log(iv.hi / iv.value)


# ---------------------------------------------------------------------------------------------- the rows


def _rows(store, dev, where) -> list[dict]:
    # Flagged rows too: a verify row timed beside a busy process is kept, flagged "loaded" (and never trained on).
    df = store.measurements(device=dev, metric="latency_ms", include_flagged=True)
    df = df[(df["status"] == "ok") & df["config_json"].notna() & where(df)]
    return df.to_dict("records")


def verify_sets(home: str, pred, store, dev):
    """{name: (rows, study phase)} of each verify run in ``home``: rows as stored, in the run's front order."""
    from nas.search._phase import stored_phase

    out = {}
    for vj in sorted(glob.glob(os.path.join(home, "runs", "*", "verify.json"))):
        run = os.path.dirname(vj)
        v = json.load(open(vj))
        settings = json.load(open(os.path.join(run, "settings.json")))
        key = v["objective"]
        study = stored_phase(key, (settings.get("phases") or {}).get(key))
        want = [r["hash"] for r in v["rows"] if r["measured"] is not None and not r.get("known")]
        created = pred.meta.get("created", "")
        stored = {r["config_hash"]: r for r in _rows(store, dev, lambda df: df["campaign"].isna()
                                                     & (df["timestamp"] > created)
                                                     & df["config_hash"].isin(want))}
        rows = [stored[h] for h in want if h in stored]
        out[f"front {os.path.basename(run)}"] = (rows, study)
    return out


def holdout_set(pred, store, dev):
    trained = set(pred.meta.get("training_data", {}).get("config_hashes", []))
    rows = _rows(store, dev, lambda df: (df["campaign"] == "bench-holdout") & ~df["config_hash"].isin(trained)
                 & df["flag"].isna())
    return {"hold-out": (rows, None)} if rows else {}


def score(pred, rows, study, rule) -> dict:
    """Coverage (canon, now, study) and median half-width of ``rows`` under ``rule``."""
    from measured import canonical_value, row_phase
    from search_spaces import LowFormerConfig

    qfn, how = rule
    configs = [LowFormerConfig.from_json(r["config_json"]) for r in rows]
    v, h = model_half(pred, configs, qfn)
    ph = [row_phase(r.get("phase")) for r in rows]
    ok = np.array([p is not None for p in ph])
    raw = np.array([r["value"] for r in rows], float)
    canon = np.array([canonical_value(r["value"], "latency_ms", p, r.get("ratio"), r.get("reference_value"))
                      for r, p in zip(rows, ph)], float)
    e_canon = np.abs(np.log(canon / v))
    sd = np.array([p.sd if p else 0.0 for p in ph])
    h_now = combine(h, sd, how)
    now_v = np.array([float(p.apply(x)) if p else x for p, x in zip(ph, v)])
    out = {"n": len(rows), "phased": int(ok.sum()),
           "canon": _pct(e_canon[ok] <= h[ok]), "now": _pct(np.abs(np.log(raw / now_v)) <= h_now),
           "half_now": round(float(np.median(h_now)) * 100, 1), "half_model": round(float(np.median(h)) * 100, 1),
           "err_canon_p50_p90": [round(float(x) * 100, 1) for x in np.percentile(e_canon[ok], [50, 90])] if ok.any()
           else None}
    if study is not None:
        h_s = combine(h, np.full(len(h), study.sd), how)
        out["study"] = _pct(np.abs(np.log(raw / study.apply(v))) <= h_s)
        out["half_study"] = round(float(np.median(h_s)) * 100, 1)
        out["scale_80_98_study"] = _scale_range(np.abs(np.log(raw / study.apply(v))) / h_s)
        out["_inside_study"] = (np.abs(np.log(raw / study.apply(v))) <= h_s).tolist()
    # The set's common shift (median signed canonical error) and the spread of the errors around it: a front's rows
    # share most of their error, which a per-row interval cannot know.
    signed = np.log(canon / v)[ok]
    if len(signed) > 1:
        out["shift_spread_pct"] = [round(float(np.median(signed)) * 100, 1),
                                   round(float(np.sqrt(np.mean((signed - np.median(signed)) ** 2))) * 100, 1)]
    out["_inside_canon"] = (e_canon <= h)[ok].tolist()
    # The factors s by which every model half-width of this set would have to be scaled for its canonical coverage
    # to land in 80-98 % (16-19 of 20): [the 80 % order statistic of |error| / h, the largest one).
    if ok.any():
        out["scale_80_98"] = _scale_range((e_canon / h)[ok])
    return out


def _scale_range(ratio: np.ndarray) -> list[float]:
    """[lowest, highest) factor on every half-width that puts 80-98 % of the rows inside: from the 80 % order
    statistic of |error| / half-width to the one above 98 %."""
    r = np.sort(ratio)
    k_lo, k_hi = math.ceil(0.8 * len(r)), math.floor(0.98 * len(r))
    return [round(float(r[k_lo - 1]), 2), round(float(r[min(k_hi, len(r) - 1)]), 2)]


def _pct(mask) -> float | None:
    mask = np.asarray(mask, bool)
    return round(float(mask.mean()) * 100, 1) if len(mask) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("homes", nargs="+")
    args = ap.parse_args()
    results: dict = {}
    for src in args.homes:
        tag = os.path.basename(src.rstrip("/"))
        home = copy_home(src)
        os.environ["LOWFORMER_NAS_HOME"] = home
        from measured import Store
        from predictors import load_predictor

        dev = os.listdir(os.path.join(home, "predictors"))[0]
        pred = load_predictor(dev, "latency_ms")
        store = Store(os.path.join(home, "store.sqlite"))
        ident = pred.meta.get("created", "?")
        sets = verify_sets(src, pred, store, dev)  # the runs are only read
        if not any(s.startswith("front") for s in sets):
            sets |= holdout_set(pred, store, dev)
        for name, (rows, study) in sets.items():
            if not rows:
                continue
            res = {rn: score(pred, rows, study, rule) for rn, rule in RULES.items()}
            results[f"{tag}: {name}"] = {"predictor": f"{pred.model_type} {ident}", "n_cal": pred.calibration.n,
                                         "phase_sd_pct": round(float(np.median(
                                             [r.get("phase") and json.loads(r["phase"])["sd"] or 0 for r in rows]))
                                             * 100, 2), **res}
    print_table(results)
    print(json.dumps({k: {rk: ({kk: vv for kk, vv in rv.items() if not kk.startswith("_")} if isinstance(rv, dict)
                              else rv) for rk, rv in v.items()} for k, v in results.items()}))


def print_table(results: dict) -> None:
    print(f"{'set':48s} {'rule':28s} {'n':>3s} {'canon':>6s} {'now':>6s} {'study':>6s} {'half':>5s} {'hs':>5s} {'model':>5s} "
          f"{'err p50/p90':>11s} {'shift/spread':>12s} {'scale 80-98 %':>13s} {'(study)':>9s}")
    for k, v in results.items():
        for rn in RULES:
            r = v[rn]
            err = "/".join(map(str, r["err_canon_p50_p90"] or ["-"]))
            print(f"{k[:48]:48s} {rn:28s} {r['n']:3d} {_f(r['canon'])} {_f(r['now'])} {_f(r.get('study'))} "
                  f"{r['half_now']:5.1f} {_f(r.get('half_study'), 5)} {r['half_model']:5.1f} {err:>11s} "
                  f"{'/'.join(map(str, r.get('shift_spread_pct') or ['-'])):>12s} {_range(r.get('scale_80_98')):>13s} "
                  f"{_range(r.get('scale_80_98_study')):>9s}")
    # Fronts of one predictor pooled: their rows are alike within a front, so one front is one draw of its error.
    by_pred: dict = {}
    for k, v in results.items():
        if ": front" in k:
            by_pred.setdefault(v["predictor"], []).append(v)
    for p, vs in by_pred.items():
        if len(vs) < 2:
            continue
        for rn in RULES:
            ins = sum((v[rn]["_inside_canon"] for v in vs), [])
            study = sum((v[rn].get("_inside_study", []) for v in vs), [])
            print(f"{'fronts pooled (' + str(len(vs)) + ' runs, ' + p[:22] + ')':48s} {rn:28s} {len(ins):3d} "
                  f"{_f(_pct(ins))} {'':6s} {_f(_pct(study))}")


def _range(r) -> str:
    return "-" if not r else f"{r[0]:.2f}-{r[1]:.2f}" if r[0] < r[1] else "none"


def _f(x, w: int = 6) -> str:
    return f"{x:{w}.1f}" if x is not None else "-".rjust(w)


if __name__ == "__main__":
    main()
