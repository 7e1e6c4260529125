"""Analytic counting speed: 10,000 random configs on one core, against building + FlopCounterMode one model.

Run: python tests/benchmarks/bench_count.py. The last line is a JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import time

from search_spaces import _graph, count, get_variant, sample_configs

N = 10_000


def _clear_caches() -> None:
    for f in (_graph._stem_conv, _graph._conv_block, _graph._attention_unit, _graph._mlp_unit, _graph._local_unit, _graph._head):
        f.cache_clear()


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    t0 = time.perf_counter()
    configs = list(sample_configs(N, seed=0))
    sample_s = time.perf_counter() - t0

    _clear_caches()
    t0 = time.perf_counter()
    macs = [count(c).macs for c in configs]
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in configs:
        count(c)
    warm_s = time.perf_counter() - t0
    print(f"sampled {N} configs in {sample_s:.2f} s; counted them in {cold_s:.2f} s (cold caches), {warm_s:.2f} s (warm)")

    result = {
        "configs": N,
        "configs_per_s": round(N / cold_s, 1),
        "configs_per_s_warm": round(N / warm_s, 1),
        "configs_per_s_incl_sampling": round(N / (cold_s + sample_s), 1),
        "mean_gmacs": round(sum(macs) / N / 1e9, 3),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        from search_spaces import build_model

        torch.set_num_threads(1)
        cfg = get_variant("B1").config
        t0 = time.perf_counter()
        model = build_model(cfg)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(torch.randn(1, 3, cfg.resolution, cfg.resolution))
        torch_s = time.perf_counter() - t0
        assert fc.get_total_flops() // 2 == count(cfg).macs
        result["torch_build_flopcounter_B1_s"] = round(torch_s, 3)
        result["speedup_vs_torch"] = round(torch_s * N / cold_s, 1)
        print(f"torch: build + FlopCounterMode of B1 took {torch_s:.3f} s")
    except ModuleNotFoundError:
        result["torch_build_flopcounter_B1_s"] = None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
