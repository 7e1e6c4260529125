"""Onboarding designs compared offline on every config one host measured, pooled across runs (no timing taken).

    python tests/benchmarks/onboard_pool.py HOME [HOME ...] --splits 12 --seed 2

Each ``HOME`` is a home of ``tests/benchmarks/bench_phase_holdout.py`` on the same host (only read: its store is
opened read-only through a copy). Every ok row of the onboarded device is put in its home's canonical phase
(``measured.canonical_frame``); the homes' canonical phases differ by the host's drift between their first anchor
sessions, so each home is brought onto the first's scale by the median log ratio over the configs both measured
(the spread left after it is printed). The pool is the mean log value per config.

Then, for ``--splits`` random draws of ``--frac`` of the pool's non-anchor configs as candidates, each design picks
``--configs`` minus the anchors from them: ``random``, ``i`` (``predictors.informative_order``, what ``onboard``
uses), ``strata`` (the same I-optimal order, but each pick first covers a stratum of stage-3/4 blocks not yet held:
attention type x MLP or not x fused local block or not). The transfer from ``--source`` (as ``onboard`` trains it,
``predictors.transfer_from``) is fitted on the anchors plus the picks and scored on every pool config not trained on
(canonical phase; within ±10 %, MAPE, mean ± sd over splits), and so is the transfer with a per-stratum correction
(``+strata``: log offsets of the stage-3/4 strata, ridge-shrunk to zero, the ridge chosen by leave-one-out on the
transfer's residuals). The same two models cross-validated 10-fold over the whole pool give the ceiling of the model
form with five times the data. Beside it, the mean residual of each stage-3 stratum on the designs' test configs
says where the transfer misses. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

_ATT = ("lowtention", "mhsa", "relu_linear", "none")


def _home_rows(home: pathlib.Path, tmp: pathlib.Path) -> tuple[str, dict, list[str]]:
    """(device, {hash: (canonical value, config_json)}, anchors) of one home's onboarded device."""
    from measured import Store, canonical_frame
    from nas.onboard._session import _full_ok

    plans = sorted((home / "onboard").glob("*/round-*.json"))
    if not plans or not (home / "store.sqlite").is_file():
        raise SystemExit(f"home: {home}: no store.sqlite or onboarding plan (give homes of bench_phase_holdout.py)")
    plan = json.loads(plans[-1].read_text())
    copy = tmp / f"{home.name}.sqlite"
    shutil.copy2(home / "store.sqlite", copy)
    df = canonical_frame(_full_ok(Store(str(copy)).measurements(device=plan["device"], metric="latency_ms")))
    g = df.groupby("config_hash").agg(value=("value", "median"), config_json=("config_json", "first"))
    return plan["device"], {h: (float(r.value), r.config_json) for h, r in g.iterrows()}, plan["anchors"]


def _pool(homes: list[pathlib.Path]):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="lowformer-onboard-pool-"))
    try:
        runs = [_home_rows(h, tmp) for h in homes]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    devices = {d for d, _, _ in runs}
    if len(devices) != 1:
        raise SystemExit(f"homes: they onboarded different devices ({', '.join(sorted(devices))}); give one host's")
    ref, logs, cj = runs[0][1], {}, {}
    for _, rows, _ in runs:
        common = [h for h in rows if h in ref]
        lr = np.array([np.log(rows[h][0] / ref[h][0]) for h in common])
        shift = float(np.median(lr))
        print(f"  {len(rows)} configs, {len(common)} shared with the first home: scale {np.exp(shift):.3f}, "
              f"sd of log ratios after it {np.std(lr - shift) * 100:.1f} %")
        for h, (v, j) in rows.items():
            logs.setdefault(h, []).append(np.log(v) - shift)
            cj[h] = j
    hashes = sorted(logs)
    return hashes, np.exp([np.mean(logs[h]) for h in hashes]), [cj[h] for h in hashes], runs[0][2]


def _strata(X: np.ndarray) -> np.ndarray:
    """(n, 2) stratum labels of stage 3 and 4: attention type x MLP x fused local block (0: no blocks)."""
    from predictors import FEATURE_INDEX as FI

    out = []
    for s in (3, 4):
        att = sum((j + 1) * (X[:, FI[f"att{s}_{a}"]] > 0) for j, a in enumerate(_ATT))
        fused = X[:, FI[f"layers.stage{s}.conv"]] > 1  # the downsampling block has at most one dense conv
        k = att * 4 + 2 * X[:, FI[f"mlp{s}"]].astype(int) + fused.astype(int)
        out.append(s * 100 + np.where(X[:, FI[f"depth{s}"]] > 0, k, 0))
    return np.column_stack(out)


def _strata_order(Xc, Xa, ec, ea, n: int, ridge: float = 1e-2) -> list[int]:
    """The I-optimal greedy order, each pick first covering the most strata not yet held."""
    from predictors._design import _scaled, design_rows

    Zc, Zk = _scaled(design_rows(Xc, ec), design_rows(Xa, ea))
    Sc, covered = _strata(Xc), set(_strata(Xa).ravel().tolist())
    Minv = np.linalg.inv(ridge * np.eye(Zc.shape[1]) + Zk.T @ Zk)
    chosen, free = [], np.ones(len(Zc), bool)
    for _ in range(min(n, len(Zc))):
        A = Zc @ Minv
        score = ((A @ Zc.T) ** 2).mean(axis=1) / (1.0 + np.einsum("ij,ij->i", A, Zc))
        gain = np.where(free, [len(set(r.tolist()) - covered) for r in Sc], -1)
        top = np.flatnonzero(gain == gain.max())
        b = int(top[np.argmax(score[top])])
        chosen.append(b)
        free[b] = False
        covered |= set(Sc[b].tolist())
        u = Minv @ Zc[b]
        Minv -= np.outer(u, u) / (1.0 + Zc[b] @ u)
    return chosen


class _StrataCorrected:
    """The transfer times exp(offset of each stage-3/4 stratum the config is in), offsets ridge-shrunk to 0."""

    def __init__(self, src):
        self.src = src

    def _F(self, X):
        S = _strata(X)
        return np.column_stack([(S == k).any(axis=1) for k in self.keys_]).astype(float)

    def fit(self, X, y):
        from predictors import transfer_from

        self.m_ = transfer_from(self.src).fit(X, y)
        r = np.log(y / self.m_.predict(X))
        self.keys_ = sorted(set(_strata(X).ravel().tolist()) - {300, 400})
        F, best = self._F(X), None
        for lam in np.logspace(-2, 2, 9):
            H = F @ np.linalg.solve(F.T @ F + lam * np.eye(F.shape[1]), F.T)
            err = float(np.mean(((r - H @ r) / (1 - np.diag(H))) ** 2))  # leave-one-out, closed form
            best = min(best or (err, lam), (err, lam))
        self.beta_ = np.linalg.solve(F.T @ F + best[1] * np.eye(F.shape[1]), F.T @ r)
        return self

    def predict(self, X):
        return self.m_.predict(X) * np.exp(self._F(X) @ self.beta_)


def _models(src):
    from predictors import transfer_from

    return {"transfer": lambda: transfer_from(src), "+strata": lambda: _StrataCorrected(src)}


def _ceiling(X, y, src) -> dict:
    """10-fold over the whole pool: what each model form reaches with ~135 configs to learn from."""
    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), 10)
    out = {}
    for name, make in _models(src).items():
        e = np.concatenate([make().fit(X[np.setdiff1d(np.arange(len(y)), f)], y[np.setdiff1d(np.arange(len(y)), f)])
                            .predict(X[f]) / y[f] - 1 for f in folds])
        out[name] = {"within_10": round(float(np.mean(np.abs(e) <= 0.1) * 100), 1),
                     "mape": round(float(np.mean(np.abs(e)) * 100), 2)}
        print(f"  10-fold over the pool, {name:9s} within ±10 % {out[name]['within_10']:5.1f}, MAPE {out[name]['mape']:.2f} %")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("homes", type=pathlib.Path, nargs="+")
    ap.add_argument("--source", default="x86_64-amd-epyc-2c-24g")
    ap.add_argument("--configs", type=int, default=30)
    ap.add_argument("--splits", type=int, default=12)
    ap.add_argument("--frac", type=float, default=0.6, help="share of the pool's configs a design may pick from")
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("LOWFORMER_NAS_HOME", tempfile.mkdtemp(prefix="lowformer-onboard-pool-home-"))
    os.environ["LOWFORMER_NAS_DRIFT_CHECK"] = "off"
    from predictors import featurize, informative_order, load_predictor, random_order
    from search_spaces import LowFormerConfig

    hashes, y, cj, anchor_hashes = _pool([h.resolve() for h in args.homes])
    X = featurize([LowFormerConfig.from_json(j) for j in cj])
    idx = {h: i for i, h in enumerate(hashes)}
    anchors = [idx[h] for h in anchor_hashes if h in idx]
    others = [i for i in range(len(hashes)) if i not in anchors]
    src = load_predictor(args.source).estimator
    print(f"pool: {len(hashes)} configs ({len(anchors)} anchors); source {args.source}")
    rng, n = np.random.default_rng(args.seed), args.configs - len(anchors)
    scores: dict[str, list] = {}
    resid: dict[int, list] = {}
    for split in range(args.splits):
        cands = list(rng.choice(others, size=int(args.frac * len(others)), replace=False))
        Xc, Xa = X[cands], X[anchors]
        ec, ea = src.predict(Xc), src.predict(Xa)
        picks = {"random": random_order(len(cands), n, seed=split),
                 "i": informative_order(Xc, n, X_known=Xa, expected_cost=ec, expected_cost_known=ea),
                 "strata": _strata_order(Xc, Xa, ec, ea, n)}
        for name, order in picks.items():
            train = anchors + [cands[i] for i in order]
            test = np.setdiff1d(np.arange(len(hashes)), train)
            for model, make in _models(src).items():
                e = make().fit(X[train], y[train]).predict(X[test]) / y[test] - 1
                scores.setdefault(f"{name} / {model}", []).append(
                    (float(np.mean(np.abs(e) <= 0.1) * 100), float(np.mean(np.abs(e)) * 100)))
                if model == "transfer":
                    for k, r in zip(_strata(X[test])[:, 0], -np.log1p(e)):
                        resid.setdefault(int(k), []).append(float(r))
    out = {"pool": len(hashes), "splits": args.splits, "frac": args.frac, "designs": {}, "ceiling": _ceiling(X, y, src)}
    for name, v in scores.items():
        v = np.array(v)
        out["designs"][name] = {"within_10": round(v[:, 0].mean(), 1), "within_10_sd": round(v[:, 0].std(), 1),
                                "within_10_min": round(v[:, 0].min(), 1), "mape": round(v[:, 1].mean(), 2)}
        print(f"  {name:20s} within ±10 % {v[:, 0].mean():5.1f} ± {v[:, 0].std():.1f} (min {v[:, 0].min():.1f}), "
              f"MAPE {v[:, 1].mean():.2f} ± {v[:, 1].std():.2f} %")
    print("stage-3 strata, mean measured/predicted log residual over every design's test configs:")
    names = {0: "no stage-3 blocks"} | {(j + 1) * 4 + 2 * m + f: f"{a}, {'MLP' if m else 'no MLP'}, "
                                        f"{'fused' if f else 'unfused'} local" for j, a in enumerate(_ATT)
                                        for m in (0, 1) for f in (0, 1)}
    out["stage3_residual_pct"] = {}
    for k in sorted(resid):
        v = np.array(resid[k]) * 100
        out["stage3_residual_pct"][names[k - 300 if k else 0]] = round(float(v.mean()), 1)
        print(f"  {names[k - 300 if k else 0]:40s} {v.mean():+6.1f} % (sd {v.std():.1f}, {len(v)} predictions)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
