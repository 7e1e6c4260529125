"""What a search optimises: one small interface over the predictors, the analytic counts and plain functions.

An objective scores a batch of configs at once (predictors are much faster on batches than row by row), and the
:class:`Evaluator` scores every architecture (config hash) once per study.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from search_spaces import Counts, LowFormerConfig, count

from ._storage import SearchError

DIRECTIONS = ("minimize", "maximize")
ACCURACY_DEVICE = "imagenet1k"
ACCURACY_METRIC = "top1_pct"
# --objective: the accuracy side of the search. params/MACs are capacity proxies, so they are maximised:
# within the latency budget, the largest network is taken as the most accurate one.
ACCURACY_OBJECTIVES = ("surrogate", "params", "macs")


class Objective(abc.ABC):
    """One value per config, optimised in ``direction``. ``key`` names it in trials, tables and charts."""

    key: str
    direction: str
    label: str
    device: str | None = None
    metric: str | None = None

    @abc.abstractmethod
    def evaluate(self, configs: Sequence[LowFormerConfig], counts: Sequence[Counts]) -> np.ndarray:
        """Values of ``configs`` (their analytic ``counts`` come along, computed once)."""

    def in_domain(self, configs: Sequence[LowFormerConfig]) -> np.ndarray | None:
        """Per config, whether it lies where the objective was fitted; None when that has no meaning."""
        return None

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    @property
    def is_time(self) -> bool:
        """A device latency/throughput objective (the ones a ``--budget-ms`` applies to)."""
        return self.device is not None and self.device != ACCURACY_DEVICE

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "direction": self.direction, "label": self.label, "device": self.device,
                "metric": self.metric, "kind": type(self).__name__}


class CountObjective(Objective):
    """An analytic count of the search space (``params`` or ``macs``); maximised by default (capacity proxy)."""

    def __init__(self, quantity: str, direction: str = "maximize"):
        if quantity not in ("params", "macs"):
            raise SearchError("objective", f"count objective must be params or macs (got {quantity!r})")
        _check_direction(direction)
        self.key = self.metric = quantity
        self.direction = direction
        self.label = {"params": "parameters", "macs": "MACs"}[quantity]

    def evaluate(self, configs, counts) -> np.ndarray:
        return np.array([getattr(c, self.key) for c in counts], dtype=np.float64)


class FunctionObjective(Objective):
    """Any batch function ``fn(configs) -> values`` (benchmarks, tests, experiments)."""

    def __init__(self, key: str, direction: str, fn: Callable[[Sequence[LowFormerConfig]], Any], *,
                 label: str | None = None, device: str | None = None, metric: str | None = None):
        _check_direction(direction)
        self.key, self.direction, self.fn = key, direction, fn
        self.label, self.device, self.metric = label or key, device, metric

    def evaluate(self, configs, counts) -> np.ndarray:
        return np.asarray(self.fn(configs), dtype=np.float64)


class PredictorObjective(Objective):
    """Adapter of a trained predictor (``predictors.TrainedPredictor``): its predictions, its direction."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.device, self.metric = predictor.device, predictor.metric
        self.direction = "maximize" if predictor.higher_is_better else "minimize"
        self.key = f"{self.device}:{self.metric}"
        self.label = f"predicted {self.metric} ({self.device})"

    def evaluate(self, configs, counts) -> np.ndarray:
        return np.asarray(self.predictor.predict(list(configs)), dtype=np.float64).reshape(len(configs))

    def in_domain(self, configs) -> np.ndarray:
        mask = getattr(self.predictor, "in_domain_mask", None)  # batch form: featurises once
        if mask is not None:
            return np.asarray(mask(list(configs)), dtype=bool)
        return np.array([bool(self.predictor.in_domain(c)) for c in configs])

    def describe(self) -> dict[str, Any]:
        p = self.predictor
        meta = getattr(p, "meta", None) or {}
        # Version numbers count per folder (user, shipped): the creation time and training-data hash tell
        # two predictors of the same version apart.
        identity = f"{meta.get('created')}|{(meta.get('training_data') or {}).get('hash')}"
        return {**super().describe(), "model_type": getattr(p, "model_type", None), "version": getattr(p, "version", None),
                "identity": identity}


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise SearchError("direction", f"must be one of {'|'.join(DIRECTIONS)} (got {direction!r})")


PredictorLoader = Callable[..., Any]  # (device, metric=None) -> TrainedPredictor


def default_loader() -> PredictorLoader:
    try:
        from predictors import load_predictor
    except ImportError as e:
        raise SearchError("predictors", f"no trained predictors available ({e}); train them first or use the Python "
                                        "API with your own objectives") from None
    return load_predictor


def build_objectives(devices: Sequence[str], objective: str = "surrogate",
                     loader: PredictorLoader | None = None) -> list[Objective]:
    """The accuracy side first (surrogate or a count proxy), then one predicted time objective per device."""
    if objective not in ACCURACY_OBJECTIVES:
        raise SearchError("objective", f"must be one of {'|'.join(ACCURACY_OBJECTIVES)} (got {objective!r})")
    if not devices:
        raise SearchError("device", "give at least one --device to search for")
    load = loader or default_loader()
    first: Objective = (PredictorObjective(load(ACCURACY_DEVICE, ACCURACY_METRIC)) if objective == "surrogate"
                        else CountObjective(objective))
    return [first] + [PredictorObjective(load(d)) for d in devices]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything a study records about one architecture."""

    hash: str
    macs: int
    params: int
    values: tuple[float, ...]
    ood: tuple[str, ...] = ()  # keys of the objectives whose predictor has not seen its like


class Evaluator:
    """Scores configs with every objective, once per architecture: duplicates (same hash) come from a cache."""

    def __init__(self, objectives: Sequence[Objective]):
        keys = [o.key for o in objectives]
        if len(set(keys)) != len(keys):
            raise SearchError("objective", f"objective keys must be unique (got {keys})")
        self.objectives = list(objectives)
        self.cache: dict[str, Evaluation] = {}
        self.scored = 0  # architectures scored by this evaluator (not from the cache)

    def seed(self, evaluations) -> None:
        for e in evaluations:
            self.cache.setdefault(e.hash, e)

    def evaluate(self, configs: Sequence[LowFormerConfig]) -> list[Evaluation]:
        hashes = [c.hash for c in configs]
        new: dict[str, LowFormerConfig] = {}
        for h, c in zip(hashes, configs):
            if h not in self.cache:
                new.setdefault(h, c)
        if new:
            cfgs = list(new.values())
            counts = [count(c) for c in cfgs]
            columns = []
            ood = [[] for _ in cfgs]
            for o in self.objectives:
                v = o.evaluate(cfgs, counts)
                if v.shape != (len(cfgs),) or not np.all(np.isfinite(v)):
                    bad = next((i for i, x in enumerate(np.ravel(v)) if not np.isfinite(x)), 0)
                    raise SearchError(o.key, f"objective returned {v.shape} values or a non-finite one "
                                             f"(config {cfgs[min(bad, len(cfgs) - 1)].short_hash})")
                columns.append(v)
                dom = o.in_domain(cfgs)
                if dom is not None:
                    for i in np.flatnonzero(~np.asarray(dom, dtype=bool)):
                        ood[i].append(o.key)
            for i, (h, c) in enumerate(zip(new, counts)):
                self.cache[h] = Evaluation(h, int(c.macs), int(c.params), tuple(float(col[i]) for col in columns),
                                           tuple(ood[i]))
            self.scored += len(cfgs)
        return [self.cache[h] for h in hashes]
