"""Is the x86 predictor's interval calibration right, judged without its 200-config hold-out? (predictors/README.md)

Computational figures only (no timing). Three checks on the local CPU dataset (x86, 1,156 configs; the hold-out is
``random_holdout(n, 200, seed=0)``, as in ``interval_table.py``):

1. **Nested hold-outs inside the 956 training configs**: ``--repeats`` times a random 200 of the 956 held out, the
   predictor trained and calibrated (``train(..., "auto")``: model choice, 5-fold out-of-fold residuals, conformal
   quantile, fitted growth) on the other 756, its intervals scored on the 200; also without the difficulty scaling
   (growth 0: a plain conformal quantile of the out-of-fold |residuals|) and with the marginal conformal rank
   (calibration format 2) instead of the training-conditional one (format 3); median relative widths of both. This is the figure a calibration choice may
   be tuned on; the 200-config hold-out is the test set and is never used for a choice.
2. **How hard the hold-out is**: every one of the 1,156 configs predicted by a 5-fold cross-validated model of the
   shipped type that did not see it (one design for hold-out and training configs alike); the share of hold-out
   configs whose error exceeds the 0.8 / 0.9 / 0.95 quantile of the others' errors, and how often a random 200 of
   the 1,156 exceeds it as much (permutation p, ``--permutations`` draws). A diagnosis of the test set, no choice.
3. The sampling band of a coverage figure on 200 configs: the central 95 % of Binomial(200, c) / 200.

Run: python tests/benchmarks/interval_nested.py [--repeats 10] [--permutations 10000]
The last line printed is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from measured import Store  # noqa: E402
from predictors import COVERAGES, random_holdout, train, training_data  # noqa: E402
from predictors._interval import residuals  # noqa: E402
from predictors._metrics import cross_val_predict  # noqa: E402
from predictors._train import candidate_models  # noqa: E402

X86 = ("x86_64-amd-epyc-2c-24g", "latency_ms")
HOLDOUT = 200


def _conformal(scores: np.ndarray, c: float) -> float:
    """The ceil((n + 1) c)-th smallest score (as predictors' Calibration.quantile with more than 30 configs)."""
    k = int(np.ceil((len(scores) + 1) * c))
    return float(np.partition(scores, k - 1)[k - 1])


def nested(inner, repeats: int) -> list[dict]:
    """Coverage of the whole training procedure on random 200-config hold-outs inside ``inner`` (seeds 1..repeats)."""
    out = []
    for seed in range(1, repeats + 1):
        h = random_holdout(inner.n_configs, HOLDOUT, seed=seed)
        pred, _ = train(inner.subset(~h), "auto")
        X, t = inner.X[: inner.n_configs][h], inner.values[h]
        ivs = {c: pred.predict_interval_features(X, c) for c in COVERAGES}
        cov = {c: float(np.mean(iv.contains(t))) for c, iv in ivs.items()}
        width = {c: float(np.median(iv.relative_width)) for c, iv in ivs.items()}
        g = pred.calibration
        # The same calibration with the marginal conformal rank (format 2) instead of the training-conditional one.
        conf, g.confidence = g.confidence, None
        ivs = {c: pred.predict_interval_features(X, c) for c in COVERAGES}
        marginal = {c: float(np.mean(iv.contains(t))) for c, iv in ivs.items()}
        width_marginal = {c: float(np.median(iv.relative_width)) for c, iv in ivs.items()}
        g.confidence = conf
        # The same residuals without the difficulty scaling (growth 0): a plain conformal quantile of |r|.
        err = np.abs(residuals("log", t, pred.predict_features(X)))
        flat = {c: float(np.mean(err <= _conformal(np.abs(g.residuals), c))) for c in COVERAGES}
        out.append({"seed": seed, "model": pred.meta["model_name"], "coverage": cov, "coverage_no_growth": flat,
                    "coverage_marginal": marginal, "width": width, "width_marginal": width_marginal,
                    "growth": [g.gamma, g.beta, g.kappa]})
        print(f"nested seed {seed}: {pred.meta['model_name']}, coverage "
              + " / ".join(f"{v * 100:.1f}" for v in cov.values()) + " %", flush=True)
    return out


def hardness(data, holdout: np.ndarray, model_name: str, permutations: int) -> dict:
    """Share of hold-out configs beyond the others' error quantiles, under one symmetric 5-fold design."""
    est = candidate_models(data.metric, model_name.split("_")[0])[model_name]
    err = np.abs(residuals("log", data.values, cross_val_predict(est, data.X, data.y, seed=0)))
    rng = np.random.default_rng(0)
    draws = [rng.choice(data.n_configs, HOLDOUT, replace=False) for _ in range(permutations)]
    out = {}
    for c in COVERAGES:
        thr = np.quantile(err[~holdout], c)
        share = float(np.mean(err[holdout] > thr))
        perm = np.array([np.mean(err[d] > thr) for d in draws])
        out[c] = {"share_beyond": share, "expected": 1 - c, "p": float(np.mean(perm >= share))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="nested hold-outs inside the 956 training configs")
    ap.add_argument("--permutations", type=int, default=10000, help="random 200-config draws for the p value")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOWFORMER_NAS_HOME"] = home  # a fresh store: the shipped datasets only
        store = Store(str(pathlib.Path(home) / "store.sqlite"))
        data = training_data(store.measurements(device=X86[0]), *X86)
        store.close()
    holdout = random_holdout(data.n_configs, HOLDOUT, seed=0)
    runs = nested(data.subset(~holdout), args.repeats)
    summary = {c: {"mean": float(np.mean([r["coverage"][c] for r in runs])),
                   "min": float(np.min([r["coverage"][c] for r in runs])),
                   "max": float(np.max([r["coverage"][c] for r in runs])),
                   "mean_no_growth": float(np.mean([r["coverage_no_growth"][c] for r in runs])),
                   "mean_marginal": float(np.mean([r["coverage_marginal"][c] for r in runs])),
                   "width": float(np.mean([r["width"][c] for r in runs])),
                   "width_marginal": float(np.mean([r["width_marginal"][c] for r in runs]))} for c in COVERAGES}
    hard = hardness(data, holdout, runs[0]["model"], args.permutations)
    band = {c: [float(stats.binom.ppf(0.025, HOLDOUT, c) / HOLDOUT), float(stats.binom.ppf(0.975, HOLDOUT, c) / HOLDOUT)]
            for c in COVERAGES}
    print()
    print("| nominal | nested coverage inside the 956 (mean, min-max) | median width (mean) | marginal rank: coverage, "
          "width (mean) | the same, "
          "growth 0 (mean) | 95 % band of a 200-config figure | hold-out configs beyond the others' error quantile "
          "(expected) | permutation p |")
    print("|---|---|---|---|---|---|---|---|")
    for c in COVERAGES:
        s, h = summary[c], hard[c]
        print(f"| {c:g} | {s['mean'] * 100:.1f} % ({s['min'] * 100:.1f}-{s['max'] * 100:.1f}) | "
              f"{s['width'] * 100:.1f} % | {s['mean_marginal'] * 100:.1f} %, {s['width_marginal'] * 100:.1f} % | "
              f"{s['mean_no_growth'] * 100:.1f} % | "
              f"{band[c][0] * 100:.1f}-{band[c][1] * 100:.1f} % | {h['share_beyond'] * 100:.1f} % "
              f"({h['expected'] * 100:.0f} %) | {h['p']:.3f} |")
    print(json.dumps({"script": "interval_nested", "repeats": runs, "nested": summary, "hardness": hard, "band": band},
                     default=str))


if __name__ == "__main__":
    main()
