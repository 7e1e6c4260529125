"""A stored study as tables: one row per architecture, the feasible Pareto front, the named variants' status."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from search_spaces import knobs_to_config

from . import _constraints
from ._attrs import HASH, HI, LO, MACS, MEASURED, NAMED, OOD, PARAMS, PRED, ROUND, SETTINGS_ATTR
from ._constraints import Constraint
from ._named import named_status
from ._objectives import Evaluation
from ._pareto import pareto_mask, to_min

CLOSEST = 10  # infeasible configs shown when no config meets the constraints


def attention_label(attention: tuple) -> str:
    """The attention kinds a config uses (stages 3 and 4, unordered), as one legend entry."""
    kinds = sorted({a for a in attention if a is not None and a != "none"})
    return " + ".join(kinds) if kinds else "conv only"


@dataclasses.dataclass
class StudyResults:
    """A study's architectures as tables. Per objective key ``k`` the table holds the central value ``k`` (a
    prediction, or a stored measurement), its interval ``k_lo``/``k_hi`` (equal to ``k`` without uncertainty) and
    the value the search optimised, ``opt:k`` (the pessimistic end under risk "bound"); the front is computed on
    the optimised values."""

    name: str
    settings: dict[str, Any]
    objectives: list[dict[str, Any]]
    constraints: list[Constraint]
    table: pd.DataFrame  # one row per architecture (first trial that found it)
    front: pd.DataFrame  # feasible, non-dominated, rank 1 = best on the first objective
    n_trials: int
    study: optuna.Study
    round: int = 0

    @property
    def keys(self) -> list[str]:
        return [o["key"] for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o["direction"] for o in self.objectives]

    @property
    def risk(self) -> str:
        return self.settings.get("risk") or "mean"

    @property
    def confidence(self) -> float | None:
        return self.settings.get("confidence")

    @property
    def any_feasible(self) -> bool:
        return bool(self.table["feasible"].any()) if len(self.table) else False

    def closest(self, k: int = CLOSEST) -> pd.DataFrame:
        """The infeasible architectures with the smallest total (relative) violation."""
        t = self.table[~self.table["feasible"]]
        return t.sort_values(["violation", "trial"]).head(k)

    def predictor_keys(self) -> list[str]:
        return [o["key"] for o in self.objectives if o.get("kind") == "PredictorObjective"]

    def in_domain_share(self) -> dict[str, dict[str, float | None]]:
        """Per predictor objective: share of architectures (all / on the front) inside its training domain."""
        out = {}
        for key in self.predictor_keys():
            share = {}
            for part, t in (("all", self.table), ("front", self.front)):
                share[part] = None if not len(t) else float(np.mean([key not in x for x in t["ood"]]))
            out[key] = share
        return out

    def budget_on(self, key: str):
        """The constraint that budgets objective ``key`` (a device's latency or throughput), or None."""
        return next((c for c in self.constraints if c.objective == key), None)

    def intervals(self, row: pd.Series) -> dict[str, list[float]]:
        return {k: [float(row[f"{k}_lo"]), float(row[f"{k}_hi"])] for k in self.keys}

    def named_status(self) -> list[dict[str, Any]]:
        """For every B/E variant: on the front, within uncertainty, dominated (by which front config, by how much,
        beyond the intervals) or over budget (which bound); see :func:`named_status`."""
        return named_status(self)


@functools.lru_cache(maxsize=1 << 16)
def _knobs_hash(knobs: tuple) -> str:
    return knobs_to_config(dict(knobs)).hash


def trial_hash(t: optuna.trial.FrozenTrial) -> str:
    """The hash of the network a trial built, from its knobs: a trial stored before config identity 2 carries
    the hash of its knobs as typed in its user attrs, which would list one network several times."""
    return _knobs_hash(tuple(sorted(t.params.items())))


def load_results(study: optuna.Study, study_name: str | None = None, round_: int | None = None) -> StudyResults:
    """The tables of a stored study, of refinement round ``round_`` (default: the study's current round)."""
    meta = study.user_attrs.get(SETTINGS_ATTR, {})
    if round_ is None:
        round_ = int(meta.get("round", 0))
    described = next((r["objectives"] for r in meta.get("rounds", []) if r.get("round") == round_), None)
    objectives = described or meta.get("objectives") or [
        {"key": f"objective{i}", "direction": d.name.lower(), "label": f"objective {i}"} for i, d in enumerate(study.directions)
    ]
    constraints = [Constraint(**c) for c in meta.get("constraints", [])]
    keys = [o["key"] for o in objectives]
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if int(t.user_attrs.get(ROUND, 0)) == round_]
    by_hash: dict[str, dict[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs.get(HASH) is None:
            continue
        h = trial_hash(t)
        named = t.user_attrs.get(NAMED)
        if h in by_hash:
            row = by_hash[h]
            if named and named not in row["named"].split(","):
                row["named"] = ",".join(x for x in (row["named"], named) if x)
            row["n"] += 1
            continue
        by_hash[h] = _row(t, h, named, keys, constraints)
    columns = ["trial", "hash", "named", "n", "macs", "params", *keys]
    table = pd.DataFrame(list(by_hash.values()), columns=None if by_hash else columns)
    if not len(table):
        extra = [c for k in keys for c in (f"{k}_lo", f"{k}_hi", f"opt:{k}")]
        table = pd.DataFrame(columns=columns + extra + ["violation", "feasible", "ood", "measured", "resolution",
                                                        "attention", "config", "params_knobs"])
        table["feasible"] = table["feasible"].astype(bool)
    front = _front(table, keys, [o["direction"] for o in objectives])
    return StudyResults(study_name or study.study_name, meta, objectives, constraints, table, front, len(trials), study,
                        round_)


def _row(t: optuna.trial.FrozenTrial, h: str, named: str | None, keys: list[str], constraints) -> dict[str, Any]:
    e = evaluation_of(t)
    cons = _constraints.read(t, constraints)
    cons = cons if cons is not None else [float("inf")] * len(constraints)  # unknown: never feasible
    cfg = knobs_to_config(t.params)
    row = {"trial": t.number, "hash": h, "named": named or "", "n": 1,
           "macs": int(t.user_attrs[MACS]), "params": int(t.user_attrs[PARAMS])}
    row.update({k: v for k, v in zip(keys, e.values)})
    for k, lo, hi, opt in zip(keys, e.lo, e.hi, e.scored):
        row[f"{k}_lo"], row[f"{k}_hi"], row[f"opt:{k}"] = lo, hi, opt
    for c, v in zip(constraints, cons):
        row[f"c:{c.key}"] = float(v)
        row[f"q:{c.key}"] = c.limit * (1.0 + float(v))  # the constrained quantity, back from the violation
    row["violation"] = float(sum(v for v in cons if v > 0))
    row["feasible"] = all(v <= 0 for v in cons)
    row["ood"] = tuple(e.ood)
    row["measured"] = tuple(e.measured)
    row["resolution"] = cfg.resolution
    row["attention"] = attention_label(cfg.attention)
    row["config"] = cfg.to_dict()
    row["params_knobs"] = dict(t.params)
    return row


def evaluation_of(t: optuna.trial.FrozenTrial) -> Evaluation:
    """A stored trial's evaluation (trials of studies made before intervals: no intervals)."""
    scored = tuple(float(v) for v in t.values)
    values = tuple(float(v) for v in t.user_attrs.get(PRED, scored))
    return Evaluation(trial_hash(t), int(t.user_attrs[MACS]), int(t.user_attrs[PARAMS]), values,
                      tuple(t.user_attrs.get(OOD, ())), tuple(float(v) for v in t.user_attrs.get(LO, values)),
                      tuple(float(v) for v in t.user_attrs.get(HI, values)), tuple(t.user_attrs.get(MEASURED, ())),
                      scored)


def _front(table: pd.DataFrame, keys: list[str], directions: list[str]) -> pd.DataFrame:
    ok = table[table["feasible"].astype(bool)]
    if not len(ok):
        return ok.assign(rank=pd.Series(dtype=int))
    opt = [f"opt:{k}" for k in keys]
    front = ok[pareto_mask(to_min(ok[opt].to_numpy(dtype=float), directions))]
    asc = [d == "minimize" for d in directions]
    front = front.sort_values(opt + ["trial"], ascending=asc + [True]).reset_index(drop=True)
    return front.assign(rank=np.arange(1, len(front) + 1))
