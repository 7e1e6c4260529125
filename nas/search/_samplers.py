"""Samplers by name, and NSGA-II without its per-trial rescans of the whole study.

Optuna's NSGA-II, on every trial, walks all completed trials to find the current generation, walks all trials
to find the cached parents, and recomputes the intersection search space: O(trials) each, so O(trials²) per
study, which dominates a 5,000-trial search. :class:`FastNSGAIISampler` keeps the same decisions (same
generations, same parents, same children for the same seed; a test checks it against Optuna's) and remembers
them instead. The search suggests every knob with fixed distributions on every trial, so the intersection
search space is those distributions.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from lowformer_common import MEASURE_EXTRA_HINT, missing_module

from . import _constraints
from ._constraints import Constraint
from ._errors import SearchError

SAMPLERS = ("nsga2", "tpe", "random", "gp")
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class FastNSGAIISampler(optuna.samplers.NSGAIISampler):
    def __init__(self, *, search_space: Mapping[str, BaseDistribution], **kwargs: Any):
        super().__init__(**kwargs)
        # Sorted by name, as Optuna's IntersectionSearchSpace returns it: the order drives the crossover RNG.
        self._fixed_space = {k: d for k, d in sorted(search_space.items()) if not d.single()}
        self._scanned = 0  # trials[:_scanned] are finished and counted in _per_generation
        self._per_generation: dict[int, int] = {}
        self._parents: dict[tuple[str, int], list[FrozenTrial]] = {}

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._fixed_space)

    def _generation_counts(self, study: Study) -> dict[int, int]:
        # Same rule as BaseGASampler.get_trial_generation: COMPLETE trials per generation. Finished trials at the
        # front of the list never change again, so they are counted once; the unfinished tail is re-read.
        key = self._get_generation_key()
        trials = study.get_trials(deepcopy=False)
        if self._scanned > len(trials):  # another study: start over
            self._scanned, self._per_generation = 0, {}
        while self._scanned < len(trials) and trials[self._scanned].state in _FINISHED:
            t = trials[self._scanned]
            if t.state == TrialState.COMPLETE:
                g = t.system_attrs.get(key, -1)
                self._per_generation[g] = self._per_generation.get(g, 0) + 1
            self._scanned += 1
        counts = dict(self._per_generation)
        for t in trials[self._scanned:]:
            if t.state == TrialState.COMPLETE:
                g = t.system_attrs.get(key, -1)
                counts[g] = counts.get(g, 0) + 1
        return counts

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key, None)
        if generation is not None:
            return generation
        counts = {g: n for g, n in self._generation_counts(study).items() if g >= 0}
        max_generation = max(counts, default=0)
        assert self._population_size is not None
        generation = max_generation if counts.get(max_generation, 0) < self._population_size else max_generation + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        # Parents of a generation are fixed once chosen (Optuna caches their ids in the study). Optuna returns
        # them in selection order the first time and in trial order afterwards: only the latter is remembered.
        k = (study.study_name, generation)
        if k in self._parents:
            return self._parents[k]
        attrs = study._storage.get_study_system_attrs(study._study_id)
        cached = self._get_parent_cache_key_prefix() + str(generation) in attrs
        parents = super().get_parent_population(study, generation)
        if cached:
            self._parents[k] = parents
        return parents

    def open_slots(self, study: Study) -> int:
        """Trials still missing from the current generation (a new one when it is full)."""
        counts = {g: n for g, n in self._generation_counts(study).items() if g >= 0}
        n = counts.get(max(counts, default=0), 0)
        assert self._population_size is not None
        return self._population_size - n if n < self._population_size else self._population_size


def make_sampler(name: str, seed: int | None, constraints: Sequence[Constraint] = (), population_size: int = 50,
                 search_space: Mapping[str, BaseDistribution] | None = None):
    if name not in SAMPLERS:
        raise SearchError("sampler", f"must be one of {'|'.join(SAMPLERS)} (got {name!r})")
    kw = _constraints.sampler_kwargs(constraints)
    if name == "nsga2":
        if search_space is None:
            return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed, **kw)
        return FastNSGAIISampler(search_space=search_space, population_size=population_size, seed=seed, **kw)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kw)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if missing_module("torch"):  # Optuna's GP sampler is written in torch
        raise SearchError("sampler", f"gp needs torch; {MEASURE_EXTRA_HINT}")
    return optuna.samplers.GPSampler(seed=seed, **kw)
