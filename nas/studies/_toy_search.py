"""The search behind Table 1's open choices: kernel size, where the stride sits, layers per stage.

The paper gives each toy model's channels, conv type and MACs, says the depthwise models have twice the
layers per stage, and nothing else. This search enumerates

* one kernel size for all six models (``KERNELS``),
* one stride placement for all six ("first": the conv opening a stage has stride 2; "last": its last one),
* a depth vector (layers per stage, 1..``MAX_DEPTH`` each) per throughput group (A: toy#1/#2,
  B: toy#3/#4, C: toy#5/#6), the depthwise model of the group getting twice the layers,

and keeps the choices under which all six models are within ``TOLERANCE`` of the paper's MACs, preferring
(1) fewer distinct depth vectors (the paper may well have used one design for all pairs), then (2) the
smallest worst-case MAC error, then (3) fewer layers. MACs are counted with FlopCounterMode per distinct
layer (a model's MACs are the sum of its layers', which ``test_toys`` checks on whole models).

Run ``python -m nas.studies._toy_search`` to print the result; CHOICES.md records it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

from . import _toys

KERNELS = (3, 5, 7)
STRIDES = ("first", "last")
MAX_DEPTH = 6
TOLERANCE = 0.02
GROUPS = ("A", "B", "C")


@functools.lru_cache(maxsize=None)
def layer_macs(cin: int, cout: int, kernel: int, stride: int, groups: int, size: int) -> int:
    """MACs of one toy conv layer on a ``size`` x ``size`` input (FlopCounterMode)."""
    from search_spaces import ConvLayer

    return _toys.count_macs(ConvLayer(cin, cout, kernel, stride, groups=groups), (1, cin, size, size))


def model_macs(channels, depths, depthwise: bool, kernel: int, stride_at: str, resolution: int = 224) -> int:
    total, size = 0, resolution
    for cin, cout, s, g in _toys.table1_layers(channels, depths, depthwise, kernel, stride_at):
        total += layer_macs(cin, cout, kernel, s, g, size)
        size = -(-size // s)
    return total


@dataclasses.dataclass(frozen=True)
class Choice:
    kernel: int
    stride_at: str
    depths: dict  # group -> depth vector of the ungrouped model
    errors: dict  # toy model -> relative MAC error vs the paper
    distinct: int

    @property
    def worst(self) -> float:
        return max(abs(e) for e in self.errors.values())

    @property
    def key(self):
        return (self.distinct, round(self.worst, 6), sum(map(sum, self.depths.values())), self.kernel,
                STRIDES.index(self.stride_at))


def _models_by_group():
    groups: dict[str, dict[bool, tuple]] = {}
    for r in _toys.table1_rows():
        channels = tuple(_toys._ints(r["channels_c0_c4"].replace(";", " ")))
        dw = r["depthwise"].strip().lower() == "true"
        groups.setdefault(r["throughput_group"], {})[dw] = (r["toy_model"], channels, float(r["macs_m"]) * 1e6)
    return groups


def candidates(kernel: int, stride_at: str, tolerance: float = TOLERANCE, max_depth: int = MAX_DEPTH):
    """{group: {depths: {model: error}}} for the depth vectors within ``tolerance`` for both models."""
    out = {}
    for g, models in _models_by_group().items():
        ok = {}
        for depths in itertools.product(range(1, max_depth + 1), repeat=5):
            errs = {}
            for dw, (name, channels, paper) in models.items():
                d = tuple(x * (_toys.DEPTHWISE_DEPTH_FACTOR if dw else 1) for x in depths)
                errs[name] = model_macs(channels, d, dw, kernel, stride_at) / paper - 1
            if max(abs(e) for e in errs.values()) <= tolerance:
                ok[depths] = errs
        out[g] = ok
    return out


def _best(cands: dict, groups: tuple[str, ...]):
    """The depth vector shared by ``groups`` with the smallest worst-case error (or None)."""
    common = set.intersection(*(set(cands[g]) for g in groups))
    best = None
    for d in common:
        errs = {m: e for g in groups for m, e in cands[g][d].items()}
        key = (max(abs(e) for e in errs.values()), sum(d), d)
        if best is None or key < best[0]:
            best = (key, d, errs)
    return best


def _partitions(items: tuple[str, ...]):
    """Every way to split ``items`` into groups sharing a depth vector."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [(first,) + part[i]] + part[i + 1 :]
        yield [(first,)] + part


def search(kernels=KERNELS, strides=STRIDES, tolerance: float = TOLERANCE, max_depth: int = MAX_DEPTH) -> list[Choice]:
    """All admissible choices, best first (see the module docstring for the order)."""
    found = []
    for kernel, stride_at in itertools.product(kernels, strides):
        cands = candidates(kernel, stride_at, tolerance, max_depth)
        for part in _partitions(GROUPS):
            picks = [_best(cands, block) for block in part]
            if any(p is None for p in picks):
                continue
            depths, errors = {}, {}
            for block, (_, d, errs) in zip(part, picks):
                depths.update({g: d for g in block})
                errors.update(errs)
            found.append(Choice(kernel, stride_at, dict(sorted(depths.items())), errors, len(part)))
    return sorted(found, key=lambda c: c.key)


def main() -> int:
    results = search()
    if not results:
        print(f"no choice puts all six models within {TOLERANCE:.0%} of the paper's MACs")
        return 1
    print(f"{len(results)} admissible choices; the best 10:")
    for c in results[:10]:
        errs = ", ".join(f"{m} {e:+.2%}" for m, e in c.errors.items())
        print(f"  k={c.kernel} stride={c.stride_at} depths={c.depths} "
              f"(distinct {c.distinct}, worst {c.worst:.2%}): {errs}")
    best = results[0]
    chosen = (best.kernel, best.stride_at, best.depths)
    current = (_toys.KERNEL, _toys.STRIDE_AT, _toys.TABLE1_DEPTHS)
    print("the constants in _toys.py", "are the best choice" if chosen == current else f"differ from it: {current}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
