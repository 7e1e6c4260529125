"""``search --verify N``: measure the top-N front configs on this machine, print predicted vs measured."""

from __future__ import annotations

import json
from typing import Any, Callable

from lowformer_common import atomic_write
from search_spaces import LowFormerConfig

from ._constraints import ms_per_image
from ._results import StudyResults
from ._storage import SearchError

VERIFY_JSON = "verify.json"


def verify_front(res: StudyResults, n: int, folder, *, store, device: str | None = None, protocol=None,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure the top-``n`` front configs on this machine (as the study's device) and compare.

    ``store``: the measurement store the results go to (``measured.Store``); ``protocol``: how to time
    (default: ``measured.Protocol()``, the paper's CPU protocol with onnxruntime on one thread).
    """
    if not isinstance(n, int) or n < 1:
        raise SearchError("verify", f"must be a positive number of configs (got {n!r})")
    from measured import ACCURACY_DEVICE, measure_configs

    times = [o for o in res.objectives if o.get("device") and o["device"] != ACCURACY_DEVICE]
    if device is None:
        if not times:
            raise SearchError("verify", "the study has no device objective to verify")
        o = times[0]
    else:
        o = next((x for x in times if x["device"] == device), None)
        if o is None:
            raise SearchError("verify", f"the study has no objective for device {device!r}")
    if not res.any_feasible:
        raise SearchError("verify", "the study has no feasible config to measure")
    top = res.front.head(n)
    configs = [LowFormerConfig.from_dict(c) for c in top["config"]]
    # One entry per config, aligned: a config without a usable result says why instead of shifting the rest.
    measured = measure_configs(configs, store=store, device_id=o["device"], protocol=protocol)
    budget = next((c for c in res.constraints if c.objective == o["key"]), None)
    rows = []
    for (_, r), m in zip(top.iterrows(), measured):
        value = m.value if m is not None and m.status == "ok" else None
        over = None
        if budget is not None and value is not None:
            over = ms_per_image(m.metric, value) > budget.limit
        rows.append({"rank": int(r["rank"]), "hash": r["hash"], "metric": o["metric"], "predicted": float(r[o["key"]]),
                     "measured": value, "status": m.status if m is not None else "missing",
                     "reason": m.reason if m is not None else "no measurement stored", "over_budget": over})
    log(f"{'#':>3s} {'hash':12s} {'predicted':>10s} {'measured':>10s}  {o['metric']} on {o['device']}")
    for r in rows:
        meas = f"{r['measured']:10.3f}" if r["measured"] is not None else f"{r['status']:>10s}"
        flag = "  OVER BUDGET" if r["over_budget"] else ""
        log(f"{r['rank']:3d} {r['hash'][:12]} {r['predicted']:10.3f} {meas}{flag}")
    ok = [r for r in rows if r["over_budget"] is not None]
    if budget is not None and ok:
        k = sum(r["over_budget"] for r in ok)
        log(f"{k} of {len(ok)} measured configs exceed the budget ({budget.label}): {k / len(ok) * 100:.0f}%")
    atomic_write(folder / VERIFY_JSON, json.dumps({"device": o["device"], "objective": o["key"], "rows": rows}, indent=1) + "\n")
    return rows
