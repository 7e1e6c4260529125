"""Search fixtures: analytic objectives (real MAC/parameter counts) behind the predictor interface, and the
PostgreSQL server of tests/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

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


# A search process of its own (a worker sharing a study): argv storage ("" for the journal file), runs folder,
# this worker's and the other's names, trials, sampler ("" for the default), seed, study.
_WORKER = textwrap.dedent("""
    import os, sys, time
    from nas.search import CountObjective, FunctionObjective, SearchSettings, run_search
    from search_spaces import count

    storage = sys.argv[1] or None
    me, other = os.path.join(sys.argv[2], "ready-" + sys.argv[3]), os.path.join(sys.argv[2], "ready-" + sys.argv[4])

    def slow(cs):
        # Both workers overlap however fast each one starts: the first batch waits until the other is scoring too.
        if not os.path.exists(me):
            open(me, "w").close()
            deadline = time.monotonic() + 600
            while not os.path.exists(other) and time.monotonic() < deadline:
                time.sleep(0.02)
        return [1.0 + count(c).macs / 1.5e8 for c in cs]

    objs = [CountObjective("params"), FunctionObjective("jetson_tx2:latency_ms", "minimize", slow,
                                                        device="jetson_tx2", metric="latency_ms")]
    r = run_search(SearchSettings(trials=int(sys.argv[5]), study=sys.argv[8], seed=int(sys.argv[7]), budgets_ms=[12.0],
                                  sampler=sys.argv[6] or None, population_size=20, storage=storage,
                                  runs_dir=sys.argv[2]),
                   objectives=objs, progress=False, outputs=False)
    print("ran", r.ran)
""")


def run_two_workers(storage: str, runs: str, study: str, trials: int, seeds=(7, 7), sampler: str = "") -> list[int]:
    """Two search processes on one study (the second started once the first has created it); the trials each ran."""
    def start(me: str, other: str, seed: int):
        return subprocess.Popen([sys.executable, "-c", _WORKER, storage, runs, me, other, str(trials), sampler,
                                 str(seed), study], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("1", "2", seeds[0])
    deadline = time.monotonic() + 600  # catches a hang only: the second worker starts once the study exists
    while not _study_exists(storage, runs, study):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first worker created no study in 600 s"
        time.sleep(0.05)
    second = start("2", "1", seeds[1])
    outs = [p.communicate(timeout=900) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [o[1][-2000:] for o in outs]
    return [int(o[0].split()[-1]) for o in outs]


def _study_exists(storage: str, runs: str, study: str) -> bool:
    if not storage:
        journal = os.path.join(runs, study, "study.journal")
        return os.path.exists(journal) and os.path.getsize(journal) > 0
    from nas.search import open_storage

    try:
        return any(s.study_name == study for s in open_storage(storage, None, create=False).get_all_studies())
    except Exception:  # noqa: BLE001 (the SQLite file is being created)
        return False
