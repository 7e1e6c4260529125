"""A stored study as tables: one row per architecture, the feasible Pareto front, the named variants' status."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from search_spaces import knobs_to_config, named_series

from . import _constraints
from ._attrs import HASH, MACS, NAMED, OOD, PARAMS, SETTINGS_ATTR
from ._constraints import Constraint, format_quantity
from ._pareto import dominates, pareto_mask, to_min

CLOSEST = 10  # infeasible configs shown when no config meets the constraints


def attention_label(attention: tuple) -> str:
    """The attention kinds a config uses (stages 3 and 4, unordered), as one legend entry."""
    kinds = sorted({a for a in attention if a is not None and a != "none"})
    return " + ".join(kinds) if kinds else "conv only"


@dataclasses.dataclass
class StudyResults:
    name: str
    settings: dict[str, Any]
    objectives: list[dict[str, Any]]
    constraints: list[Constraint]
    table: pd.DataFrame  # one row per architecture (first trial that found it)
    front: pd.DataFrame  # feasible, non-dominated, rank 1 = best on the first objective
    n_trials: int
    study: optuna.Study

    @property
    def keys(self) -> list[str]:
        return [o["key"] for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o["direction"] for o in self.objectives]

    @property
    def any_feasible(self) -> bool:
        return bool(self.table["feasible"].any()) if len(self.table) else False

    def closest(self, k: int = CLOSEST) -> pd.DataFrame:
        """The infeasible architectures with the smallest total (relative) violation."""
        t = self.table[~self.table["feasible"]]
        return t.sort_values(["violation", "trial"]).head(k)

    def in_domain_share(self) -> dict[str, dict[str, float | None]]:
        """Per predictor objective: share of architectures (all / on the front) inside its training domain."""
        out = {}
        for o in self.objectives:
            if o.get("kind") != "PredictorObjective":
                continue
            share = {}
            for part, t in (("all", self.table), ("front", self.front)):
                share[part] = None if not len(t) else float(np.mean([o["key"] not in x for x in t["ood"]]))
            out[o["key"]] = share
        return out

    def named_status(self) -> list[dict[str, Any]]:
        """For every B/E variant: on the front, dominated (by which front config, by how much) or over budget."""
        out = []
        front_y = to_min(self.front[self.keys].to_numpy(), self.directions) if len(self.front) else None
        span = None
        if front_y is not None:
            span = np.ptp(front_y, axis=0)
            span[span == 0] = 1.0
        for v in named_series():
            rows = self.table[self.table["named"].str.split(",").apply(lambda n: v.name in n)]
            if not len(rows):
                rows = self.table[self.table["hash"] == v.config.hash]
            d: dict[str, Any] = {"name": v.name, "hash": v.config.hash}
            if not len(rows):
                out.append({**d, "status": "not evaluated", "detail": "the study ran fewer trials than there are named variants"})
                continue
            r = rows.iloc[0]
            d["values"] = {k: float(r[k]) for k in self.keys}
            d["macs"], d["params"] = int(r["macs"]), int(r["params"])
            if not r["feasible"]:
                over = [f"{c.label} (is {c.shown(r[f'q:{c.key}'])})" for c in self.constraints
                        if r[f"c:{c.key}"] > 0]
                out.append({**d, "status": "over budget", "detail": "; ".join(over),
                            "violations": {c.key: float(r[f"q:{c.key}"]) for c in self.constraints}})
                continue
            on = self.front[self.front["hash"] == r["hash"]]
            if len(on):
                rank = int(on["rank"].iloc[0])
                out.append({**d, "status": "on the front", "rank": rank, "detail": f"front #{rank}"})
                continue
            y = to_min(np.array([[r[k] for k in self.keys]]), self.directions)[0]
            dom = np.flatnonzero(dominates(front_y, y))
            if not len(dom):  # cannot happen for a feasible row; kept to never crash a report
                out.append({**d, "status": "dominated", "detail": "by a config outside the front"})
                continue
            # The most similar dominating config: the smallest step in objective space (scaled by the front's span).
            best = dom[np.argmin(np.linalg.norm((front_y[dom] - y) / span, axis=1))]
            f = self.front.iloc[best]
            deltas = {k: float(f[k] - r[k]) for k in self.keys}
            detail = f"by front #{int(f['rank'])} ({f['hash'][:12]}): " + ", ".join(
                f"{o['key']} {format_quantity(deltas[o['key']], o.get('metric'), signed=True)}"
                + (f" ({deltas[o['key']] / r[o['key']] * 100:+.1f}%)"
                                                           if r[o["key"]] else "")
                for o in self.objectives)
            out.append({**d, "status": "dominated", "detail": detail,
                        "dominated_by": {"hash": f["hash"], "rank": int(f["rank"]), "deltas": deltas}})
        return out


@functools.lru_cache(maxsize=1 << 16)
def _knobs_hash(knobs: tuple) -> str:
    return knobs_to_config(dict(knobs)).hash


def trial_hash(t: optuna.trial.FrozenTrial) -> str:
    """The hash of the network a trial built, from its knobs: a trial stored before config identity 2 carries
    the hash of its knobs as typed in its user attrs, which would list one network several times."""
    return _knobs_hash(tuple(sorted(t.params.items())))


def load_results(study: optuna.Study, study_name: str | None = None) -> StudyResults:
    meta = study.user_attrs.get(SETTINGS_ATTR, {})
    objectives = meta.get("objectives") or [
        {"key": f"objective{i}", "direction": d.name.lower(), "label": f"objective {i}"} for i, d in enumerate(study.directions)
    ]
    constraints = [Constraint(**c) for c in meta.get("constraints", [])]
    keys = [o["key"] for o in objectives]
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    by_hash: dict[str, dict[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs.get(HASH) is None:
            continue
        cfg = knobs_to_config(t.params)
        h = trial_hash(t)
        named = t.user_attrs.get(NAMED)
        if h in by_hash:
            row = by_hash[h]
            if named and named not in row["named"].split(","):
                row["named"] = ",".join(x for x in (row["named"], named) if x)
            row["n"] += 1
            continue
        cons = _constraints.read(t, constraints)
        cons = cons if cons is not None else [float("inf")] * len(constraints)  # unknown: never feasible
        row = {"trial": t.number, "hash": h, "named": named or "", "n": 1,
               "macs": int(t.user_attrs[MACS]), "params": int(t.user_attrs[PARAMS])}
        row.update({k: float(v) for k, v in zip(keys, t.values)})
        for c, v in zip(constraints, cons):
            row[f"c:{c.key}"] = float(v)
            row[f"q:{c.key}"] = c.limit * (1.0 + float(v))  # the constrained quantity, back from the violation
        row["violation"] = float(sum(v for v in cons if v > 0))
        row["feasible"] = all(v <= 0 for v in cons)
        row["ood"] = tuple(t.user_attrs.get(OOD, ()))
        row["resolution"] = cfg.resolution
        row["attention"] = attention_label(cfg.attention)
        row["config"] = cfg.to_dict()
        row["params_knobs"] = dict(t.params)
        by_hash[h] = row
    columns = ["trial", "hash", "named", "n", "macs", "params", *keys]
    table = pd.DataFrame(list(by_hash.values()), columns=None if by_hash else columns)
    if not len(table):
        table = pd.DataFrame(columns=columns + ["violation", "feasible", "ood", "resolution", "attention", "config"])
        table["feasible"] = table["feasible"].astype(bool)
    front = _front(table, keys, [o["direction"] for o in objectives])
    return StudyResults(study_name or study.study_name, meta, objectives, constraints, table, front, len(trials), study)


def _front(table: pd.DataFrame, keys: list[str], directions: list[str]) -> pd.DataFrame:
    ok = table[table["feasible"].astype(bool)]
    if not len(ok):
        return ok.assign(rank=pd.Series(dtype=int))
    front = ok[pareto_mask(to_min(ok[keys].to_numpy(), directions))]
    asc = [d == "minimize" for d in directions]
    front = front.sort_values(keys + ["trial"], ascending=asc + [True]).reset_index(drop=True)
    return front.assign(rank=np.arange(1, len(front) + 1))
