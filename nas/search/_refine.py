"""``search --refine R``: hardware in the loop on this machine.

Each round measures K configs of the current front (half nearest the budget, half with the widest intervals: where
a wrong prediction costs most and where the predictor knows least), stores them, retrains the device's predictor
and continues the same study in a new round. A round is a set of trials of the same Optuna study (trial attribute
``round``): it starts from the previous round's front re-scored by the retrained predictor (enqueued, so the sampler
continues from there) and runs ``--trials`` trials of its own; the study's outputs show the latest round. A plain
resume keeps refusing a changed predictor; only a new round may bring one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pandas as pd

from ._results import StudyResults
from ._errors import SearchError
from ._study import SearchResult, SearchSettings, run_search
from ._verify import MeasureFn, VerifySummary, device_objective, measure_rows, near_budget_width, summarise

# retrain(device) -> a one-line description of the predictor it saved (the next round loads it).
RetrainFn = Callable[[str], str]


@dataclasses.dataclass
class RefineRound:
    """One round: the front of round ``round`` measured, and what that says about its predictions."""

    round: int
    picked: int
    summary: VerifySummary
    width_near_budget: float | None  # median relative width of the front's intervals within 10 % of the budget
    retrained: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "picked": self.picked, "summary": self.summary.to_dict(),
                "width_near_budget": self.width_near_budget, "retrained": self.retrained}


def pick_for_refinement(res: StudyResults, o: dict[str, Any], k: int) -> pd.DataFrame:
    """Up to ``k`` front configs not measured yet: alternately the one nearest the budget and the one with the widest
    interval. (A measured config's value already is its measurement: measuring it again teaches the predictor
    nothing and would count as a hit of its own interval.)"""
    key = o["key"]
    front = res.front
    if len(front) and "measured" in front:
        front = front[[key not in m for m in front["measured"]]]
    if not len(front):
        return front
    budget = res.budget_on(key)
    width = ((front[f"{key}_hi"] - front[f"{key}_lo"]) / front[key].abs()).to_numpy(dtype=float)
    by_width = list(np.argsort(-width, kind="stable"))
    if budget is not None:
        gap = np.abs(front[f"q:{budget.key}"].to_numpy(dtype=float) / budget.limit - 1)
        by_budget = list(np.argsort(gap, kind="stable"))
    else:
        by_budget = by_width
    chosen: list[int] = []
    for a, b in zip(by_budget, by_width):
        for i in (a, b):
            if i not in chosen and len(chosen) < k:
                chosen.append(i)
    return front.iloc[sorted(chosen)]


def refine_search(settings: SearchSettings, rounds: int, k: int, *, measure: MeasureFn, retrain: RetrainFn,
                  device: str | None = None, loader=None, first: SearchResult | None = None, progress: bool = False,
                  png: bool = True, log: Callable[[str], None] = print) -> tuple[SearchResult, list[RefineRound]]:
    """Run ``rounds`` refinement rounds after ``first`` (the study's search so far; run here when None).

    ``measure(configs, device)`` measures on this machine and stores the results where ``retrain(device)`` finds
    them; tests inject both.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SearchError("refine", f"must be a positive number of rounds (got {rounds!r})")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SearchError("refine-k", f"must be a positive number of configs per round (got {k!r})")
    result = first or run_search(settings, loader=loader, progress=progress, png=png)
    out: list[RefineRound] = []
    for _ in range(rounds):
        res = result.results
        o = device_objective(res, device)
        if not res.any_feasible:
            raise SearchError("refine", f"round {res.round} has no feasible config to measure")
        picked = pick_for_refinement(res, o, k)
        if not len(picked):
            log(f"round {res.round}: every front config has been measured already; nothing left to refine")
            break
        rows = measure_rows(res, picked, o, measure)
        step = RefineRound(res.round, len(picked), summarise(res, rows, o), near_budget_width(res, o))
        step.retrained = retrain(o["device"])
        log(f"round {res.round}: measured {len(picked)} front configs: {step.summary.line()}; retrained: {step.retrained}")
        out.append(step)
        nxt = dataclasses.replace(settings, study=result.study, round=res.round + 1)
        result = run_search(nxt, loader=loader, progress=progress, png=png)
    return result, out


def rounds_table(rounds: list[RefineRound]) -> str:
    """The per-round figures as a markdown table."""
    lines = ["| round | measured | over budget | inside interval | median width near budget |", "|---:|---:|---:|---:|---:|"]
    for r in rounds:
        s = r.summary
        over = "-" if s.over_budget is None else f"{s.over_budget} of {s.measured}"
        inside = "-" if s.inside is None else f"{s.inside} of {s.predicted} ({s.inside / max(s.predicted, 1):.0%})"
        width = "-" if r.width_near_budget is None else f"{r.width_near_budget:.1%}"
        lines.append(f"| {r.round} | {s.measured} | {over} | {inside} | {width} |")
    return "\n".join(lines)
