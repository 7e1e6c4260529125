"""Prediction speed of the available predictors: one config, and 10,000 configs in one batch, on one core.

Goal (issue 4): < 1 ms for one config, < 1 s for 10,000 (featurisation included: configs are new to the
predictor, as in a search); with 90 % prediction intervals (issues 10, 17) <= 1.5 s for 10,000 cold (featurisation
included; "intervals of features" is the part beyond featurising, what a search pays per predictor once it has
featurised a batch for all of them). Run:
python tests/benchmarks/bench_predict.py [DEVICE ...]. The last line is a JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

from predictors import available_predictors, featurize, featurize_one, load_predictor
from search_spaces import _graph, count, sample_configs

N = 10_000
N_ONE = 300


def _clear_caches() -> None:
    # Part templates are cached across configs; a search meets new ones all the time.
    for f in (_graph._stem_conv, _graph._conv_block, _graph._attention_unit, _graph._mlp_unit, _graph._local_unit, _graph._head):
        f.cache_clear()


def main(devices: list[str]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    pairs = [(d, m) for d, m in available_predictors() if not devices or d in devices]
    configs = list(sample_configs(N, seed=123))
    singles = list(sample_configs(N_ONE, seed=456))

    _clear_caches()
    t0 = time.perf_counter()
    for c in configs:
        count(c)
    count_s = time.perf_counter() - t0
    _clear_caches()
    t0 = time.perf_counter()
    X = featurize(configs)
    feat_s = time.perf_counter() - t0
    print(f"{N} configs (cold part caches): search_spaces.count {count_s:.3f} s, featurize {feat_s:.3f} s")

    result: dict = {"configs": N, "count_batch_s": round(count_s, 4), "featurize_batch_s": round(feat_s, 4), "predictors": {}}
    for device, metric in pairs:
        pred = load_predictor(device, metric)
        _clear_caches()
        t0 = time.perf_counter()
        pred.predict(configs)
        batch_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred.predict(configs)
        batch_warm = time.perf_counter() - t0
        _clear_caches()
        t0 = time.perf_counter()
        pred.predict_interval(configs, 0.9)
        interval_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred.predict_interval_features(X, 0.9, hashes=[c.hash for c in configs])
        interval_features = time.perf_counter() - t0
        featurize_one.cache_clear()  # new configs: no cached features
        times = []
        for c in singles:
            t0 = time.perf_counter()
            pred.predict_one(c)
            times.append(time.perf_counter() - t0)
        one_ms = statistics.median(times) * 1e3
        t0 = time.perf_counter()
        pred.in_domain_mask(configs)
        dom = time.perf_counter() - t0
        print(f"{device}/{metric} ({pred.model_type} v{pred.version}): one config {one_ms:.3f} ms (median of {N_ONE}), "
              f"{N} configs {batch_cold:.3f} s cold / {batch_warm:.3f} s warm, with intervals {interval_cold:.3f} s cold "
              f"({interval_features:.3f} s of it beyond featurising), "
              f"in_domain batch {dom:.3f} s")
        result["predictors"][f"{device}/{metric}"] = {
            "model_type": pred.model_type,
            "one_config_ms": round(one_ms, 4),
            "one_config_ms_p90": round(sorted(times)[int(0.9 * len(times))] * 1e3, 4),
            "batch_10k_s": round(batch_cold, 4),
            "batch_10k_warm_s": round(batch_warm, 4),
            "batch_10k_interval_s": round(interval_cold, 4),
            "batch_10k_interval_features_s": round(interval_features, 4),
        }
    if result["predictors"]:
        vals = result["predictors"].values()
        result["one_config_ms"] = max(v["one_config_ms"] for v in vals)
        result["batch_10k_s"] = max(v["batch_10k_s"] for v in vals)
        result["batch_10k_interval_s"] = max(v["batch_10k_interval_s"] for v in vals)
    if hasattr(os, "getloadavg"):
        result["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other work on the machine skews the timings
    result["python"] = platform.python_version()
    result["cpu"] = platform.processor() or platform.machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
