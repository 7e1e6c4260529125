"""Analytic counts of a config (params, MACs, memory traffic, layers) read off its op graph. No torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._config import LowFormerConfig
from ._graph import OP_TYPES, QUANTITIES, STAGES, OpGraph, build_op_graph

_STAGE_INDEX = {s: i for i, s in enumerate(STAGES)}


class Counts:
    """Totals of one config: ``array[stage, op, quantity]`` with the axes STAGES x OP_TYPES x QUANTITIES.

    MACs follow the project's convention (docs/architecture.md §11): convolutions, transposed convolutions (scatter
    form), linears and the attention matmuls; norms, activations, adds and pooling count zero MACs
    but do count bytes (fp32 reads + writes) and layers.
    """

    __slots__ = ("config", "array", "out_shapes", "tokens")

    def __init__(self, config: LowFormerConfig, array: np.ndarray, out_shapes: dict, tokens: dict):
        self.config = config
        self.array = array
        self.out_shapes = out_shapes
        self.tokens = tokens

    @property
    def params(self) -> int:
        return int(self.array[:, :, 1].sum())

    @property
    def macs(self) -> int:
        return int(self.array[:, :, 0].sum())

    @property
    def bytes(self) -> int:
        return int(self.array[:, :, 2].sum())

    @property
    def layers(self) -> int:
        return int(self.array[:, :, 3].sum())

    def stage(self, name: str) -> dict[str, int]:
        row = self.array[_STAGE_INDEX[name]].sum(axis=0)
        return {q: int(v) for q, v in zip(QUANTITIES, row)}

    def per_op(self) -> dict[str, dict[str, int]]:
        tot = self.array.sum(axis=0)
        return {op: {q: int(v) for q, v in zip(QUANTITIES, tot[i])} for i, op in enumerate(OP_TYPES) if tot[i, 3]}

    def to_dict(self, name: str | None = None) -> dict[str, Any]:
        per_stage = {}
        for s in STAGES:
            d = self.stage(s)
            if s in self.out_shapes and s != "head":
                d["out_shape_CHW"] = list(self.out_shapes[s])
            d["per_op"] = {
                op: {q: int(v) for q, v in zip(QUANTITIES, self.array[_STAGE_INDEX[s], i])}
                for i, op in enumerate(OP_TYPES)
                if self.array[_STAGE_INDEX[s], i, 3]
            }
            per_stage[s] = d
        return {
            "name": name,
            "hash": self.config.hash,
            "resolution": self.config.resolution,
            "params": self.params,
            "macs": self.macs,
            "bytes": self.bytes,
            "layers": self.layers,
            "per_op": self.per_op(),
            "per_stage": per_stage,
        }


def count_graph(graph: OpGraph) -> Counts:
    arr = np.zeros((len(STAGES), len(OP_TYPES), len(QUANTITIES)), dtype=np.int64)
    out_shapes: dict = {}
    tokens = dict.fromkeys(STAGES, 0)
    for b in graph.blocks:
        si = _STAGE_INDEX[b.stage]
        arr[si] += b.totals
        out_shapes[b.stage] = b.parts[-1].out_shape
        for p in b.parts:
            if p.tokens > tokens[b.stage]:
                tokens[b.stage] = p.tokens
    return Counts(graph.config, arr, out_shapes, tokens)


def count(config: LowFormerConfig) -> Counts:
    """Params, MACs, bytes and layers of ``config``, in total, per stage and per op type."""
    return count_graph(build_op_graph(config))
