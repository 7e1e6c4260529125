"""The named variants' status rules, each on a constructed front: on the front, within uncertainty, dominated
(beyond the intervals, by whom and by how much), over budget (certain) and a budget straddled by the interval."""

import pandas as pd
import pytest

from nas.search import STATUSES, Constraint, StudyResults
from search_spaces import get_variant

ACC, LAT = "imagenet1k:top1_pct", "dev:latency_ms"
OBJECTIVES = [
    {"key": ACC, "direction": "maximize", "kind": "PredictorObjective", "metric": "top1_pct", "device": "imagenet1k"},
    {"key": LAT, "direction": "minimize", "kind": "PredictorObjective", "metric": "latency_ms", "device": "dev"},
]
BUDGET = Constraint("budget:dev", 10.0, "dev latency (upper end of its 90% interval) <= 10 ms", "ms", LAT, "upper")


def _row(name: str, acc, lat, *, ood=(), measured=(), risk="bound"):
    """A table row: (value, lo, hi) per objective; scored like the search does (pessimistic ends under bound)."""
    cfg = get_variant(name).config if name in ("B0", "B1", "B1.5", "B2", "B3") else get_variant("B1").config.with_(
        resolution={"F1": 176, "F2": 192, "F3": 208}[name])
    q = lat[2] if risk == "bound" else lat[0]
    c = (q - BUDGET.limit) / BUDGET.limit
    return {"trial": len(name), "hash": cfg.hash, "named": name if not name.startswith("F") else "", "n": 1,
            "macs": 1, "params": 1, ACC: acc[0], f"{ACC}_lo": acc[1], f"{ACC}_hi": acc[2],
            f"opt:{ACC}": acc[1] if risk == "bound" else acc[0], LAT: lat[0], f"{LAT}_lo": lat[1], f"{LAT}_hi": lat[2],
            f"opt:{LAT}": q, "c:budget:dev": c, "q:budget:dev": q, "violation": max(c, 0.0), "feasible": c <= 0,
            "ood": tuple(ood), "measured": tuple(measured), "resolution": cfg.resolution, "attention": "lowtention",
            "config": cfg.to_dict()}


@pytest.fixture
def statuses():
    f1 = _row("F1", (80.0, 79.8, 80.2), (5.0, 4.8, 5.2))
    f2 = _row("F2", (82.0, 81.8, 82.2), (8.0, 7.8, 8.2))
    rows = [
        f1, f2,
        _row("B0", (81.0, 80.9, 81.1), (6.0, 5.9, 6.1)),  # on the front
        _row("B1", (79.9, 79.0, 80.8), (5.5, 5.0, 6.0)),  # beaten by F1 on central values, not beyond the intervals
        _row("B1.5", (78.0, 77.9, 78.1), (6.0, 5.9, 6.1)),  # F1's worst beats its best: dominated
        _row("B2", (83.0, 82.9, 83.1), (12.0, 11.0, 13.0)),  # over the budget even at its lower end
        _row("B3", (84.0, 83.9, 84.1), (9.0, 7.0, 11.0)),  # straddles the budget
    ]
    for r in rows:  # front membership: F1, F2 and B0
        r["_front"] = r["named"] in ("", "B0")
    table = pd.DataFrame(rows)
    front = table[table.pop("_front")].sort_values(f"opt:{ACC}", ascending=False).reset_index(drop=True)
    front = front.assign(rank=range(1, len(front) + 1))
    res = StudyResults("t", {"risk": "bound", "confidence": 0.9}, OBJECTIVES, [BUDGET], table, front, len(rows), None)
    return {d["name"]: d for d in res.named_status()}, front


def test_on_the_front(statuses):
    s, front = statuses
    assert s["B0"]["status"] == "on the front" and s["B0"]["rank"] == int(front.loc[front["named"] == "B0", "rank"].iloc[0])
    assert s["B0"]["intervals"][LAT] == [5.9, 6.1] and s["B0"]["in_domain"] == {ACC: True, LAT: True}


def test_within_uncertainty(statuses):
    s, _ = statuses
    d = s["B1"]
    assert d["status"] == "within uncertainty"
    assert "is better on central values" in d["detail"] and "not beyond their 90% intervals" in d["detail"]


def test_dominated_beyond_the_intervals(statuses):
    s, front = statuses
    d = s["B1.5"]
    f1 = front[front[LAT] == 5.0].iloc[0]
    assert d["status"] == "dominated" and d["dominated_by"]["hash"] == f1["hash"]
    # The guaranteed margins: F1's worst (79.8 %, 5.2 ms) against B1.5's best (78.1 %, 5.9 ms).
    assert d["dominated_by"]["deltas"][ACC] == pytest.approx(1.7) and d["dominated_by"]["deltas"][LAT] == pytest.approx(-0.7)
    assert f"by front #{int(f1['rank'])}" in d["detail"] and "at the ends of the 90% intervals" in d["detail"]


def test_over_budget_names_the_bound(statuses):
    s, _ = statuses
    d = s["B2"]
    assert d["status"] == "over budget" and "is 11 ms even at the optimistic end of its interval" in d["detail"]
    assert d["violations"] == {"budget:dev": 13.0}


def test_a_straddled_budget_is_within_uncertainty(statuses):
    s, _ = statuses
    d = s["B3"]
    assert d["status"] == "within uncertainty" and d["budget"] == "straddled"
    assert "11 ms at the pessimistic end, 7 ms at the optimistic end" in d["detail"]
    assert "the search does not pick it, but it may meet the budget" in d["detail"]


def test_not_evaluated_and_the_status_vocabulary(statuses):
    s, _ = statuses
    assert s["E1"]["status"] == "not evaluated"
    assert {d["status"] for d in s.values()} <= set(STATUSES)


def test_without_intervals_the_rules_are_plain_dominance():
    rows = [_row("F1", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0), risk="mean"),
            _row("B1", (79.9, 79.9, 79.9), (5.5, 5.5, 5.5), risk="mean"),
            _row("B2", (83.0, 83.0, 83.0), (12.0, 12.0, 12.0), risk="mean")]
    table = pd.DataFrame(rows)
    front = table[table["named"] == ""].assign(rank=[1])
    res = StudyResults("t", {"risk": "mean", "confidence": None}, OBJECTIVES, [BUDGET], table, front, 3, None)
    s = {d["name"]: d for d in res.named_status()}
    assert s["B1"]["status"] == "dominated" and s["B1"]["dominated_by"]["deltas"][ACC] == pytest.approx(0.1)
    assert s["B2"]["status"] == "over budget" and "is 12 ms" in s["B2"]["detail"]
