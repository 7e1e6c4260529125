"""Dominance on objective vectors: the study's front, the live front size and the named variants' status.

Optuna keeps its own front test private (``Study.best_trials`` returns trials, with duplicates of one
architecture and only when the sampler recorded the constraints), so the reports use this one on the
architecture table, feasible rows only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def to_min(values, directions: Sequence[str]) -> np.ndarray:
    """Objective values turned so that every column is minimised."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=np.float64).reshape(-1, len(directions)) * sign


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows of ``a`` dominate ``b`` (both already minimised; broadcasts)."""
    return np.all(a <= b, axis=-1) & np.any(a < b, axis=-1)


def pareto_mask(y: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``y`` (minimised). Equal rows are all kept."""
    y = np.asarray(y, dtype=np.float64)
    keep = np.ones(len(y), dtype=bool)
    for i in range(len(y)):
        if keep[i]:
            # Dominance is transitive, so testing against survivors only is enough.
            keep &= ~dominates(y[i], y)
    return keep


class LiveFront:
    """The feasible front size during a search, updated batch by batch."""

    def __init__(self, directions: Sequence[str]):
        self.directions = list(directions)
        self.front = np.empty((0, len(self.directions)))
        self.counts = np.empty(0, dtype=int)  # architectures per distinct value vector (ties are common)

    def add(self, values) -> None:
        if not len(values):
            return
        y = np.vstack([self.front, to_min(values, self.directions)])
        c = np.concatenate([self.counts, np.ones(len(values), dtype=int)])
        y, inverse = np.unique(y, axis=0, return_inverse=True)
        c = np.bincount(inverse.ravel(), weights=c, minlength=len(y)).astype(int)
        keep = pareto_mask(y)
        self.front, self.counts = y[keep], c[keep]

    def __len__(self) -> int:
        return int(self.counts.sum())
