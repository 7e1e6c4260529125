"""Search fixtures: analytic objectives (real MAC/parameter counts) behind the predictor interface, and the
PostgreSQL server of tests/conftest.py."""

from __future__ import annotations

import numpy as np
import pytest

from lowformer_common import UserError
from nas.search import CountObjective, FunctionObjective, SearchSettings
from predictors import PredictionInterval, Predictor, check_coverage
from search_spaces import count

DEVICES = ("jetson_tx2", "rpi5_arm_cpu", "a40_gpu")


class AnalyticPredictor(Predictor):
    """Stands in for ``predictors.TrainedPredictor`` with analytic values (MACs and memory traffic from
    search_spaces.count): the adapter and the search are exercised without trained models. Its intervals are
    +-5 % at 0.9 (scaled with the normal quantile), three times wider outside its 'domain' (resolution > 256); it
    follows the predictors.Predictor contract (tests/predictors/test_protocol.py)."""

    model_type = "analytic"
    version = "analytic-1"
    HALF_WIDTH_90 = 0.05

    def __init__(self, device: str, metric: str | None = None):
        if device not in DEVICES + ("imagenet1k",):
            raise UserError(f"device: no predictor for {device!r}; available: {', '.join(DEVICES)}")
        self.device = device
        self.metric = metric or ("throughput_img_s" if device == "a40_gpu" else "latency_ms")
        self.higher_is_better = self.metric in ("throughput_img_s", "top1_pct")
        self.meta = {"analytic": True}
        self.calls = 0

    def _ms(self, c) -> float:
        return (1.0 + c.macs / 1.5e8 + c.bytes / 4e8) * (3.0 if self.device == "rpi5_arm_cpu" else 1.0)

    def predict(self, configs) -> np.ndarray:
        self.calls += 1
        counts = [count(c) for c in configs]
        if self.metric == "top1_pct":
            return np.array([60 + 3 * np.log(k.params / 1e6) + 2 * np.log(k.macs / 1e8) for k in counts])
        ms = np.array([self._ms(k) for k in counts])
        return 20_000.0 / ms if self.metric == "throughput_img_s" else ms

    def in_domain_mask(self, configs) -> np.ndarray:
        return np.array([c.resolution <= 256 for c in configs], dtype=bool)

    def predict_interval(self, configs, coverage=0.9, measured=True) -> PredictionInterval:
        from scipy.stats import norm

        c = check_coverage(coverage)
        v = self.predict(configs)
        dom = self.in_domain_mask(configs)
        half = self.HALF_WIDTH_90 * norm.ppf((1 + c) / 2) / norm.ppf(0.95) * np.where(dom, 1.0, 3.0)
        return PredictionInterval(value=v, lo=v * (1 - half), hi=v * (1 + half), in_domain=dom, coverage=c,
                                  measured=np.zeros(len(v), bool), distance=np.where(dom, 0.0, 1.0))


@pytest.fixture
def loader():
    made = {}

    def load(device, metric=None):
        p = AnalyticPredictor(device, metric)
        made[p.device, p.metric] = p
        return p

    load.made = made
    return load


def macs_latency(device: str = "jetson_tx2"):
    """Analytic 'latency' from MACs (minimised) for objectives-only searches."""
    return FunctionObjective(f"{device}:latency_ms", "minimize", lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs],
                             device=device, metric="latency_ms")


def proxy_objectives(device: str = "jetson_tx2"):
    return [CountObjective("params"), macs_latency(device)]


def settings(**kw) -> SearchSettings:
    base = dict(trials=120, study="s", seed=0, budgets_ms=[12.0], population_size=20, runs_dir="runs")
    base.update(kw)
    return SearchSettings(**base)
