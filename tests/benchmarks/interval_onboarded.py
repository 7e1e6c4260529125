"""Offline (no timing): coverage and median width of an onboarded predictor's 90 % intervals under candidate
calibrations of its small-n quantile (Student-t today; the marginal conformal rank ceil((n+1)c); the
training-conditional rank; Student-t on a robust scale) and two ways of folding in the phase's uncertainty (added
whole, today; in quadrature), on the rows of a hold-out campaign or of a --verify run stored in a home.

    python tests/benchmarks/interval_onboarded.py HOME [HOME ...]     # a home of bench_phase_holdout.py or search --verify

Each home is copied first (read-only use). Rows: campaign "bench-holdout", else the verify rows (campaign empty,
not trained on). Canonical coverage: the measurement mapped back by its row's phase against the predictor's own
interval; now: the interval mapped into the row's phase against the raw measurement. Last line: JSON.
"""

import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import numpy as np
from scipy import stats

HOMES = {os.path.basename(h.rstrip("/")): h for h in sys.argv[1:]}
C = 0.9


def copy_home(src, tag):
    dst = os.path.join(tempfile.mkdtemp(prefix="interval-onboarded-"), tag)
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for d in ("predictors", "onboard"):
        if os.path.isdir(f"{src}/{d}"):
            shutil.copytree(f"{src}/{d}", f"{dst}/{d}")
    s = sqlite3.connect(f"file:{src}/store.sqlite?mode=ro", uri=True)
    d = sqlite3.connect(f"{dst}/store.sqlite")
    s.backup(d)
    d.close()
    s.close()
    return dst


def main() -> None:
    from predictors import _interval as I
    from predictors import load_predictor
    from measured import Store, canonical_value, row_phase
    from search_spaces import LowFormerConfig

    orig_q = I.Calibration.quantile

    def q_t(self, c):  # Student-t on normalised scores (today's n <= 30 path)
        s = self.scores
        n = len(s)
        rms = float(np.sqrt(np.mean(s**2)))
        return float(stats.t.ppf((1 + c) / 2, n - 1) * rms * math.sqrt(1 + 1 / n))

    def q_marg(self, c):  # marginal split-conformal rank ceil((n+1)c)
        s = np.sort(self.scores)
        n = len(s)
        k = math.ceil((n + 1) * c)
        return float(s[min(k, n) - 1])

    def q_pac(self, c):
        s = np.sort(self.scores)
        n = len(s)
        k = I.conformal_rank(n, c, 0.9)
        return float(s[min(k, n) - 1])

    def q_robust(self, c):  # normal quantile on a robust scale (1.4826 MAD about 0) of the scores, t-factor
        s = self.scores
        n = len(s)
        sc = 1.4826 * float(np.median(np.abs(s)))
        return float(stats.t.ppf((1 + c) / 2, n - 1) * sc * math.sqrt(1 + 1 / n))

    cands = {"t(today)": q_t, "marginal-rank": q_marg, "pac-rank": q_pac, "t-robust-scale": q_robust}
    out = {}
    for tag, src in HOMES.items():
        if not os.path.isdir(src + "/predictors"):
            continue
        home = copy_home(src, tag)
        os.environ["LOWFORMER_NAS_HOME"] = home
        store = Store(os.path.join(home, "store.sqlite"))
        dev = os.listdir(os.path.join(home, "predictors"))[0]
        try:
            pred = load_predictor(dev, "latency_ms")
        except Exception as e:
            print(tag, "no predictor:", e)
            continue
        df = store.measurements(device=dev, metric="latency_ms")
        trained = set(pred.meta.get("training_data", {}).get("config_hashes", []))
        camp = df["campaign"].astype(object)
        sel = camp == "bench-holdout"
        if not sel.any():  # a --verify home: the rows measured after the predictor was made
            sel = camp.isna() & (df["timestamp"] > pred.meta.get("created", ""))
        d = df[sel & ~df["config_hash"].isin(trained) & df["config_json"].notna()]
        if not len(d):
            print(tag, "no rows")
            continue
        configs = [LowFormerConfig.from_json(j) for j in d["config_json"]]
        ph = [row_phase(p) for p in d["phase"]]
        raw = d["value"].to_numpy(float)
        canon = np.array(
            [
                canonical_value(v, "latency_ms", p, r, ref)
                for v, p, r, ref in zip(raw, ph, d["ratio"], d["reference_value"])
            ]
        )
        res = {
            "n": len(d),
            "n_cal": pred.calibration.n,
            "model": pred.model_type,
            "phase_sd_pct": [round(p.sd * 100, 1) for p in ph[:1] if p],
        }
        for name, fn in cands.items():
            I.Calibration.quantile = lambda self, coverage, fn=fn: fn(self, I.check_coverage(coverage))
            iv = pred.predict_interval(configs, C, measured=False)
            I.Calibration.quantile = orig_q
            z = stats.norm.ppf((1 + C) / 2)
            lh = np.log(iv.hi / iv.value)
            cov_c = float(np.mean((iv.lo <= canon) & (canon <= iv.hi)))
            row = {
                "canon_cov": round(cov_c * 100, 1),
                "canon_width_med": round(float(np.median(iv.relative_width)) * 100, 1),
            }
            for comb in ("linear", "rss"):
                cov = []
                wid = []
                for i, p in enumerate(ph):
                    sd = p.sd if p else 0.0
                    h = lh[i] + z * sd if comb == "linear" else math.hypot(lh[i], z * sd)
                    v = p.apply(iv.value[i]) if p else iv.value[i]
                    lo, hi = v * math.exp(-h), v * math.exp(h)
                    cov.append(lo <= raw[i] <= hi)
                    wid.append((hi - lo) / v)
                row[f"now_cov_{comb}"] = round(float(np.mean(cov)) * 100, 1)
                row[f"now_width_{comb}"] = round(float(np.median(wid)) * 100, 1)
            res[name] = row
        res["canon_err_pct"] = np.round(
            np.percentile(np.abs(np.log(canon / pred.predict(configs))) * 100, [50, 90]), 1
        ).tolist()
        out[tag] = res
        print(tag, json.dumps(res), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
