"""The paper's named variants judged against a study's front, with the uncertainty of every value.

Per variant, one of:

- ``on the front``: the search's front (on the values it optimised) contains it;
- ``over budget``: a constraint fails even at the optimistic end of the variant's interval (certainly over); the
  detail names the constraint and both ends;
- ``dominated``: a front config's pessimistic values beat the variant's optimistic ones on every objective
  (strictly on one): better beyond any doubt the intervals leave. The detail names it and the guaranteed margins;
- ``within uncertainty``: off the front, but neither claim above holds beyond the intervals: no front config beats
  it by more than their intervals allow, and no budget is broken at the optimistic end. A variant whose interval
  straddles a budget lands here (the detail says so): the risk-aware search does not pick it, because its
  pessimistic end is over, yet it may well meet the budget.

Claims against a variant (over budget, dominated) must hold beyond the intervals, as a measurement would have to
show them; the search's own choices use the pessimistic ends.

Without intervals (exact objectives, ``--risk mean`` with point values only) pessimistic = optimistic = central
value and the rules reduce to plain dominance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from search_spaces import named_series

from ._pareto import dominates, to_min

if TYPE_CHECKING:
    from ._results import StudyResults

STATUSES = ("on the front", "within uncertainty", "dominated", "over budget", "not evaluated")


def _ends(rows: pd.DataFrame, res: "StudyResults", end: str) -> np.ndarray:
    """Minimised objective matrix of the pessimistic (``end="bad"``) or optimistic ends of ``rows``."""
    cols = []
    for k, d in zip(res.keys, res.directions):
        worse_is_high = d == "minimize"
        pick = "hi" if (end == "bad") == worse_is_high else "lo"
        cols.append(rows[f"{k}_{pick}"].to_numpy(dtype=float))
    return to_min(np.column_stack(cols) if cols else np.empty((len(rows), 0)), res.directions)


def _fmt_delta(res: "StudyResults", deltas: dict[str, float], ref: pd.Series) -> str:
    parts = []
    for o in res.objectives:
        k = o["key"]
        rel = f" ({deltas[k] / ref[k] * 100:+.1f}%)" if ref[k] else ""
        parts.append(f"{k} {deltas[k]:+.4g}{rel}")
    return ", ".join(parts)


_TIME_PER_IMAGE = ("throughput_img_s", "fps")


def _optimistic_quantity(res: "StudyResults", c, r: pd.Series) -> float:
    """A constraint's quantity at the optimistic end of the row's interval (ms per image is 1000/throughput)."""
    if c.objective is None:
        return float(r[f"q:{c.key}"])
    metric = next((o.get("metric") for o in res.objectives if o["key"] == c.objective), None)
    k = c.objective
    return 1000.0 / float(r[f"{k}_hi"]) if metric in _TIME_PER_IMAGE else float(r[f"{k}_lo"])


def _budget_check(res: "StudyResults", r: pd.Series) -> tuple[list[str], list[str]]:
    """(constraints broken even at the optimistic end, constraints broken only at the pessimistic end), as text."""
    certain, straddled = [], []
    for c in res.constraints:
        if r[f"c:{c.key}"] <= 0 or c.key == "domain":  # outside the domain is not over a budget (in_domain says it)
            continue
        q, opt = float(r[f"q:{c.key}"]), _optimistic_quantity(res, c, r)
        if c.objective is None:
            certain.append(f"{c.label} (is {q:.4g} {c.unit})")
            continue
        k = c.objective
        lo, hi = float(r[f"{k}_lo"]), float(r[f"{k}_hi"])
        ends = f"value {float(r[k]):.4g}" + (f", interval {lo:.4g}-{hi:.4g}" if lo < hi else "")
        if opt > c.limit:
            where = " even at the optimistic end of its interval" if lo < hi else ""
            certain.append(f"{c.label}: is {opt:.4g} {c.unit}{where} ({ends})")
        else:
            scored = "at the pessimistic end" if c.bound else "at the central value"
            straddled.append(f"{c.label}: {q:.4g} {c.unit} {scored}, {opt:.4g} {c.unit} at the optimistic end "
                             f"({ends}), so the search does not pick it, but it may meet the budget")
    return certain, straddled


def named_status(res: "StudyResults") -> list[dict[str, Any]]:
    out = []
    front = res.front
    front_bad = _ends(front, res, "bad") if len(front) else None
    front_mid = to_min(front[res.keys].to_numpy(dtype=float), res.directions) if len(front) else None
    span = None
    if front_mid is not None:
        span = np.ptp(front_mid, axis=0)
        span[span == 0] = 1.0
    conf = f"{res.confidence:.0%} " if res.confidence else ""
    for v in named_series():
        rows = res.table[res.table["named"].str.split(",").apply(lambda n: v.name in n)]
        if not len(rows):
            rows = res.table[res.table["hash"] == v.config.hash]
        d: dict[str, Any] = {"name": v.name, "hash": v.config.hash}
        if not len(rows):
            out.append({**d, "status": "not evaluated", "detail": "the study ran fewer trials than there are named variants"})
            continue
        r = rows.iloc[0]
        d["values"] = {k: float(r[k]) for k in res.keys}
        d["intervals"] = res.intervals(r)
        d["measured"] = {k: k in r["measured"] for k in res.keys}
        d["in_domain"] = {k: k not in r["ood"] for k in res.predictor_keys()}
        d["macs"], d["params"] = int(r["macs"]), int(r["params"])
        certain, straddled = _budget_check(res, r) if not r["feasible"] else ([], [])
        if certain:
            out.append({**d, "status": "over budget", "detail": "; ".join(certain + straddled),
                        "violations": {c.key: float(r[f"q:{c.key}"]) for c in res.constraints}})
            continue
        on = front[front["hash"] == r["hash"]]
        if len(on):
            rank = int(on["rank"].iloc[0])
            out.append({**d, "status": "on the front", "rank": rank, "detail": f"front #{rank}"})
            continue
        good = _ends(rows.iloc[[0]], res, "good")[0]
        beyond = np.flatnonzero(dominates(front_bad, good)) if front_bad is not None else []
        if len(beyond):
            # The front config that beats it by the widest guaranteed margin (objectives scaled by the front's span).
            best = beyond[np.argmax(np.min((good - front_bad[beyond]) / span, axis=1))]
            f = front.iloc[best]
            bad_f = _ends(front.iloc[[best]], res, "bad")[0]
            sign = np.array([-1.0 if dd == "maximize" else 1.0 for dd in res.directions])
            deltas = {k: float((bf - g) * sg) for k, bf, g, sg in zip(res.keys, bad_f, good, sign)}
            beyond_note = f" at the ends of the {conf}intervals" if res.confidence else ""
            detail = f"by front #{int(f['rank'])} ({f['hash'][:12]}){beyond_note}: " + _fmt_delta(res, deltas, r)
            # Never silently: when the dominating config lies outside a predictor's training domain, its interval
            # there rests on the far-field prior rather than on data like it.
            ext = [k for k in res.predictor_keys() if k in f["ood"]]
            if ext:
                detail += f" (that config is extrapolated for {', '.join(ext)})"
            out.append({**d, "status": "dominated", "detail": detail,
                        "dominated_by": {"hash": f["hash"], "rank": int(f["rank"]), "deltas": deltas, "extrapolated": ext}})
            continue
        if straddled:
            out.append({**d, "status": "within uncertainty", "detail": "interval straddles the budget: " + "; ".join(straddled),
                        "budget": "straddled"})
            continue
        mid = to_min(np.array([[r[k] for k in res.keys]], dtype=float), res.directions)[0]
        dom = np.flatnonzero(dominates(front_mid, mid)) if front_mid is not None else []
        if len(dom):
            best = dom[np.argmin(np.linalg.norm((front_mid[dom] - mid) / span, axis=1))]
            f = front.iloc[best]
            deltas = {k: float(f[k] - r[k]) for k in res.keys}
            detail = (f"front #{int(f['rank'])} ({f['hash'][:12]}) is better on central values ({_fmt_delta(res, deltas, r)}) "
                      f"but not beyond their {conf}intervals")
        else:
            detail = f"not beaten on central values; off the front only at the pessimistic ends of the {conf}intervals"
        out.append({**d, "status": "within uncertainty", "detail": detail})
    return out
