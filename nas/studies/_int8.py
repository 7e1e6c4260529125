"""``lowformer-nas study int8``: does the MACs-vs-latency story, and the named variants' order, survive int8?

The paper measures fp32 (and fp16 on GPUs) only; edge backbones are deployed quantised. This study measures the
same configs twice on this machine with onnxruntime, fp32 and static int8 (measured._backends.INT8_RECIPE), keeps
both in the store under their own protocols, and reports:

- Kendall τ of MACs vs latency under fp32 and under int8 (over every config measured both ways);
- the named B/E variants' latency order under each, and the τ between the two orders;
- int8 / fp32 time per config, and where int8 is *slower*, which op types of the quantised graph still run in
  fp32 (a node none of whose inputs comes from a DequantizeLinear: onnxruntime had no int8 kernel for it);
- a verdict: "holds" when both τ agree within 0.1 and the named order's τ is at least 0.8.

Configs are timed paired with B0 (the campaign's default on CPU), each precision with its own: fp32 configs with the
fp32 B0, int8 configs with the int8 B0 (measured._harness.reference_runner: like with like, so that the ratio's
interval closes as fast as fp32's). Each precision's times are its ratios to B0 times B0's median over that
precision's rows (one level per precision, so the τ and orders within a precision do not mix the host's phases; the
raw medians are kept as ``*_measured_ms``). ``int8 / fp32`` still compares two levels timed minutes apart.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pathlib
import statistics
import tempfile
from typing import Any

from lowformer_common import atomic_write

VARIANTS = ("B0", "B1", "B1.5", "B2", "B3", "E1", "E2", "E3")
QUICK_VARIANTS = ("B0", "B1", "E1")
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


@dataclasses.dataclass
class Int8Settings:
    device: str | None = None
    sample: int = 30  # random configs besides the named variants
    seed: int = 0
    threads: int = 1
    quick: bool = False  # 3 variants + 3 samples at 64 px, 10 timed runs: a smoke test
    busy_threshold_pct: float | None = None  # None: the harness's default (5 %)
    out: str | None = None
    progress: bool = True


def fp32_ops(int8_path: str) -> dict[str, int]:
    """Op types of a quantised graph that run in fp32: nodes (other than Q/DQ) none of whose inputs comes from a
    DequantizeLinear. Counted per op type."""
    import onnx

    g = onnx.load(int8_path, load_external_data=False).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    out: collections.Counter = collections.Counter()
    for n in g.node:
        if n.op_type not in _QDQ and n.input and not any(i in dq_out for i in n.input):
            out[n.op_type] += 1
    return dict(out.most_common())


def _fallback_ops(config) -> dict[str, int]:
    from measured import quantize_int8
    from search_spaces import export_onnx

    with tempfile.TemporaryDirectory(prefix="lowformer-int8-ops-") as tmp:
        path = export_onnx(config, os.path.join(tmp, "m.onnx"))
        r = config.resolution
        return fp32_ops(quantize_int8(path, os.path.join(tmp, "m.int8.onnx"), (1, 3, r, r)))


def _tau(a, b) -> float | None:
    from scipy.stats import kendalltau

    if len(a) < 3:
        return None
    t = kendalltau(a, b).statistic
    return None if t is None or math.isnan(t) else float(t)


def _one_level(ms: list) -> tuple[list[float | None], list[float | None], bool]:
    """(times, raw medians, whether any was paired): each ok measurement's ratio x the median of the reference
    medians of the rows paired with its reference (one level per reference: int8 rows stored before the int8
    reference existed were paired with another B0), or its own median where it carries no ratio; None unless ok."""
    ok = [m is not None and m.status == "ok" and m.value is not None for m in ms]
    raw = [m.value if k else None for m, k in zip(ms, ok)]
    paired = [k and bool(m.ratio and m.reference_value) for m, k in zip(ms, ok)]
    refs = collections.defaultdict(list)
    for m, p in zip(ms, paired):
        if p:
            refs[m.reference].append(m.reference_value)
    if not refs:
        return raw, raw, False
    level = {r: statistics.median(v) for r, v in refs.items()}
    return [m.ratio * level[m.reference] if p else v for m, p, v in zip(ms, paired, raw)], raw, True


def _configs(s: Int8Settings) -> list[tuple[str | None, Any]]:
    from search_spaces import get_variant, sample_configs

    named = [(n, get_variant(n).config) for n in (QUICK_VARIANTS if s.quick else VARIANTS)]
    if s.quick:
        named = [(n, c.with_(resolution=64)) for n, c in named]
    sampled = [(None, c) for c in sample_configs(3 if s.quick else s.sample, seed=s.seed,
                                                  resolutions=[64] if s.quick else None)]
    return named + sampled


def run_int8_study(s: Int8Settings, store, log=print) -> dict[str, Any]:
    """Measure (or reuse stored) fp32 and int8 latencies and write int8.md / int8.json; returns the JSON object."""
    from measured import Protocol, measure_configs
    from measured import INT8_RECIPE
    from search_spaces import count

    from ._runner import _OneMeasurer

    chosen = _configs(s)
    configs, names = [c for _, c in chosen], [n for n, _ in chosen]
    # Quick: the fewest timed runs a stored row counts as a full measurement with (measured.MIN_TIMED_RUNS).
    runs = {"runs": 10, "warmup": 1, "target_ci_pct": None} if s.quick else {}
    if s.busy_threshold_pct is not None:
        runs["busy_threshold_pct"] = s.busy_threshold_pct
    protos = {p: Protocol(precision=p, threads=s.threads, **runs) for p in ("fp32", "int8")}
    # One campaign per precision, in the same measuring workers (started once: a torch import each); each request
    # carries its campaign's protocol, precision included.
    with _OneMeasurer() as engines:
        got = {p: measure_configs(configs, store=store, device_id=s.device, protocol=proto, names=names,
                                  campaign=f"study:int8:{'quick' if s.quick else 'full'}", progress=s.progress,
                                  measurer=engines)
               for p, proto in protos.items()}
    level = {p: _one_level(got[p]) for p in protos}
    rows = []
    for i, (name, cfg) in enumerate(chosen):
        f, q = got["fp32"][i], got["int8"][i]
        rows.append({"name": name, "id": cfg.short_hash, "macs": count(cfg).macs,
                     "fp32_ms": level["fp32"][0][i], "int8_ms": level["int8"][0][i],
                     "fp32_measured_ms": level["fp32"][1][i], "int8_measured_ms": level["int8"][1][i],
                     "status": f"fp32 {f.status if f else 'missing'}, int8 {q.status if q else 'missing'}"})
    both = [r for r in rows if r["fp32_ms"] and r["int8_ms"]]
    for r in both:
        r["int8_over_fp32"] = r["int8_ms"] / r["fp32_ms"]
    named = [r for r in both if r["name"]]
    slower = [r for r in both if r["int8_over_fp32"] > 1.0]
    by_id = {c.short_hash: c for _, c in chosen}
    for r in [r for r in slower if r["name"]] or slower[:3]:  # why: what the quantised graph left in fp32
        r["fp32_ops"] = _fallback_ops(by_id[r["id"]])
    result = {
        "device": got["fp32"][0].device_id if got["fp32"] and got["fp32"][0] else s.device,
        "protocols": {p: proto.key for p, proto in protos.items()}, "quick": s.quick,
        "recipe": INT8_RECIPE, "measured": {p: _provenance(got[p]) for p in protos},
        "values": ("ratios to B0 x B0's median over each precision's rows (one level per precision)"
                   if level["fp32"][2] and level["int8"][2] else "absolute medians (timed alone)"),
        "configs": len(rows), "measured_both": len(both),
        "tau_macs_fp32": _tau([r["macs"] for r in both], [r["fp32_ms"] for r in both]),
        "tau_macs_int8": _tau([r["macs"] for r in both], [r["int8_ms"] for r in both]),
        "named_order_fp32": [r["name"] for r in sorted(named, key=lambda r: r["fp32_ms"])],
        "named_order_int8": [r["name"] for r in sorted(named, key=lambda r: r["int8_ms"])],
        "tau_named_fp32_vs_int8": _tau([r["fp32_ms"] for r in named], [r["int8_ms"] for r in named]),
        "int8_slower": [r["name"] or r["id"] for r in slower], "rows": rows,
    }
    result["verdict"] = _verdict(result)
    _write(result, s, log)
    return result


def _provenance(ms: list) -> dict[str, Any]:
    """When the rows of one precision were timed, and with which package versions (as their rows record them)."""
    ok = [m for m in ms if m is not None and m.status == "ok"]
    if not ok:
        return {}
    versions = json.loads(ok[0].versions) if ok[0].versions else None
    return {"from": min(m.timestamp for m in ok), "to": max(m.timestamp for m in ok), "versions": versions}


def _verdict(r: dict[str, Any]) -> str:
    a, b, n = r["tau_macs_fp32"], r["tau_macs_int8"], r["tau_named_fp32_vs_int8"]
    if a is None or b is None:
        return "n/a (too few configs measured both ways)"
    same = abs(a - b) <= 0.1 and (n is None or n >= 0.8)
    return ("holds: MACs rank latency as well under int8 as under fp32" if same else
            "changes: int8 ranks configs differently from fp32") + (
        f" (τ MACs-latency {a:.2f} fp32, {b:.2f} int8" + (f"; named order τ {n:.2f})" if n is not None else ")"))


def _measured_lines(measured: dict[str, Any]) -> list[str]:
    spans = [f"{p} {v['from']} to {v['to']}" for p, v in measured.items() if v]
    if not spans:
        return []
    versions = next((v.get("versions") for v in measured.values() if v and v.get("versions")), None)
    words = ", ".join(f"{k} {x}" for k, x in (versions or {}).items())
    return [f"Measured: {'; '.join(spans)}" + (f" ({words})." if words else "."), ""]


def _write(r: dict[str, Any], s: Int8Settings, log) -> None:
    from lowformer_common import home_dir

    folder = pathlib.Path(s.out) if s.out else home_dir() / "runs" / "studies" / "int8"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# int8 vs fp32 on `{r['device']}` (onnxruntime{', quick mode' if r['quick'] else ''})", "",
             f"Quantisation: {r['recipe']}.", "", f"Times: {r['values']}.", "", *_measured_lines(r.get("measured") or {}),
             f"**Verdict: {r['verdict']}**", "",
             "| config | id | MACs (M) | fp32 (ms) | int8 (ms) | int8 / fp32 | fp32 ops left in the int8 graph |",
             "|---|---|---:|---:|---:|---:|---|"]
    for x in r["rows"]:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        ops = ", ".join(f"{k} {v}" for k, v in (x.get("fp32_ops") or {}).items())
        lines.append(f"| {x['name'] or '-'} | `{x['id']}` | {x['macs'] / 1e6:.0f} | {f(x['fp32_ms'])} | {f(x['int8_ms'])} | "
                     f"{f(x.get('int8_over_fp32'))} | {ops} |")
    lines += ["", f"Named variants, fastest first: fp32 {' < '.join(r['named_order_fp32'])}; int8 "
              f"{' < '.join(r['named_order_int8'])}.",
              f"int8 slower than fp32 for: {', '.join(r['int8_slower']) or 'none'}."]
    atomic_write(folder / "int8.md", "\n".join(lines) + "\n")
    atomic_write(folder / "int8.json", json.dumps(r, indent=1, default=str) + "\n")
    r["files"] = {"md": str(folder / "int8.md"), "json": str(folder / "int8.json")}
    log("\n".join(lines))
    log(f"wrote {folder / 'int8.md'}, {folder / 'int8.json'}")
