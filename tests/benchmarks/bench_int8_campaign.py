"""int8 campaigns against fp32 ones: configs per hour of each and where the time went (issue 18: int8 within 1.5x).

Run on a quiet machine (nothing else running: with 2 cores any other process distorts the timings):

    python tests/benchmarks/bench_int8_campaign.py              # the int8 study's configs (named variants + 30 sampled)
    python tests/benchmarks/bench_int8_campaign.py --rounds 2   # fp32 int8 | int8 fp32: drift hits both alike
    python tests/benchmarks/bench_int8_campaign.py --quick      # smoke run (the study's quick configs, 64 px)

In a throw-away home and store, with the measuring workers the int8 study uses (one set for every campaign): first B0
is measured at each precision, which makes the once-per-host files (the anchors' cached graphs, the int8 anchors
quantised) and times the anchors, so that the campaigns that follow pay what a user's campaigns pay on a host that
has measured before; then the configs are measured once per precision, each precision in its own campaign, paired
with B0 of its own precision (the default protocol). Per campaign: wall seconds, configs/h and the split of the
wall time (export phases, which for int8 include the quantisation; anchor sessions; timing). With ``--rounds 2`` a
second fresh store repeats it in the other order. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def _campaign(configs, names, store, device_id: str, precision: str, engines, campaign: str) -> dict:
    from measured import Protocol, measure_configs

    engine = engines.engine
    before = dict(engine.seconds) if engine is not None else {}
    t = time.perf_counter()
    got = measure_configs(configs, store=store, device_id=device_id, protocol=Protocol(precision=precision),
                          names=names, campaign=campaign, progress=False, measurer=engines)
    wall = time.perf_counter() - t
    after = engines.engine.seconds
    same = engines.engine is engine
    split = {k: round(v - (before.get(k, 0.0) if same else 0.0), 1) for k, v in after.items()}
    ok = [m for m in got if m is not None and m.status == "ok"]
    return {"precision": precision, "configs": len(configs), "ok": len(ok), "seconds": round(wall, 1),
            "configs_per_hour": round(len(configs) / wall * 3600), "split_s": split,
            "pairs_mean": round(statistics.mean(m.n for m in ok), 1) if ok else None,
            "from": time.strftime("%H:%M:%S", time.gmtime(time.time() - wall)), "to": time.strftime("%H:%M:%S", time.gmtime())}


def _round(order: tuple[str, ...], configs, names, device_id: str, folder: str) -> list[dict]:
    from measured import Store, measure_configs, Protocol
    from nas.studies._runner import _OneMeasurer
    from search_spaces import get_variant

    out = []
    with Store(os.path.join(folder, "store.sqlite"), seed=False) as store, _OneMeasurer() as engines:
        for p in order:
            t = time.perf_counter()
            measure_configs([get_variant("B0").config], store=store, device_id=device_id,
                            protocol=Protocol(precision=p), names=["B0"], campaign=f"warm:{p}", progress=False,
                            measurer=engines)
            print(f"warm-up {p} (B0, the anchors' files, an anchor session): {time.perf_counter() - t:.1f} s", flush=True)
        for p in order:
            r = _campaign(configs, names, store, device_id, p, engines, f"bench-int8:{p}")
            print(f"{p}: {r['configs']} configs in {r['seconds']} s = {r['configs_per_hour']} configs/h "
                  f"({r['ok']} ok, {r['pairs_mean']} pairs on average); split {r['split_s']}", flush=True)
            out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=30, help="sampled configs besides the named variants (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default 0, the int8 study's)")
    ap.add_argument("--rounds", type=int, default=1, choices=(1, 2), help="2: a second store, the other order")
    ap.add_argument("--quick", action="store_true", help="smoke run: the int8 study's quick configs (64 px)")
    args = ap.parse_args()

    from measured import local_device
    from nas.studies._int8 import Int8Settings, _configs

    device_id = local_device().device_id
    # B0 is each precision's reference and is measured in the warm-up: the campaigns measure the others.
    chosen = [(n, c) for n, c in _configs(Int8Settings(device=device_id, sample=args.sample, seed=args.seed,
                                                          quick=args.quick))
              if n != "B0"]
    configs, names = [c for _, c in chosen], [n for n, _ in chosen]
    rounds = []
    for i, order in enumerate((("fp32", "int8"), ("int8", "fp32"))[: args.rounds]):
        with tempfile.TemporaryDirectory(prefix="bench-int8-") as home:
            os.environ["LOWFORMER_NAS_HOME"] = home  # the anchor cache too: each round starts as a new host
            rounds.append(_round(order, configs, names, device_id, home))
    by = {p: [r for rr in rounds for r in rr if r["precision"] == p] for p in ("fp32", "int8")}
    ratio = sum(r["seconds"] for r in by["int8"]) / sum(r["seconds"] for r in by["fp32"])
    print(f"int8 / fp32 time per config: {ratio:.2f}x (goal <= 1.5x)")
    print(json.dumps({"device": device_id, "configs": len(configs), "rounds": rounds, "int8_over_fp32": round(ratio, 3)}))


if __name__ == "__main__":
    main()
