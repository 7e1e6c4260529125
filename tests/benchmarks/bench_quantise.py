"""What int8 quantisation (measured.quantize_int8) costs per model, with and without measured._quantise's shortcuts,
and whether both give the same int8 model.

    python tests/benchmarks/bench_quantise.py                        # B0 B1 E1 and 2 sampled configs, 2 rounds
    python tests/benchmarks/bench_quantise.py --model B0 --rounds 1  # smoke run

Each model is exported once, then quantised ``--rounds`` times each way, plain and shortcut alternating (so that
drift hits both alike); reports the process CPU seconds of each (robust to a shared machine, unlike wall seconds;
the calibration session's threads are counted too) and whether the two int8 files are byte for byte the same.
The first quantisation of a process pays the library's imports: one warm-up model goes first, untimed.
The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time


def _configs(models: list[str], samples: int) -> list[tuple[str, object]]:
    from search_spaces import get_variant, sample_config

    out = [(m, get_variant(m).config) for m in models]
    return out + [(f"sample{s}", sample_config(random.Random(s))) for s in range(samples)]


def _quantise(src: str, out: str, cfg, shortcuts: bool) -> float:
    from measured._backends import quantize_int8

    r = cfg.resolution
    c0 = time.process_time()
    quantize_int8(src, out, (1, 3, r, r), shortcuts=shortcuts)
    return time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="named variants (default B0 B1 E1)")
    p.add_argument("--samples", type=int, default=2, help="sampled configs (random.Random(0..n-1))")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    from search_spaces import export_onnx, get_variant

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quantise-") as d:
        warm = export_onnx(get_variant("B0").config.with_(resolution=32), os.path.join(d, "warm.onnx"))
        _quantise(warm, os.path.join(d, "warm.int8.onnx"), get_variant("B0").config.with_(resolution=32), True)
        for name, cfg in _configs(a.model or ["B0", "B1", "E1"], a.samples if not a.model else 0):
            src = export_onnx(cfg, os.path.join(d, f"{name}.onnx"))
            cpu = {False: [], True: []}
            for _ in range(a.rounds):
                for sc in (False, True):
                    cpu[sc].append(_quantise(src, os.path.join(d, f"{name}.{int(sc)}.onnx"), cfg, sc))
            same = open(os.path.join(d, f"{name}.0.onnx"), "rb").read() == open(os.path.join(d, f"{name}.1.onnx"), "rb").read()
            row = {"model": name, "hash": cfg.hash[:12], "plain_cpu_s": round(statistics.median(cpu[False]), 2),
                   "shortcut_cpu_s": round(statistics.median(cpu[True]), 2), "identical": same}
            rows.append(row)
            print(f"{name:10s} plain {row['plain_cpu_s']:5.2f} s  shortcuts {row['shortcut_cpu_s']:5.2f} s CPU  "
                  f"{'identical' if same else 'DIFFERENT'}", flush=True)
    print(json.dumps({"rows": rows, "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
