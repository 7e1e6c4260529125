"""``search --verify N``: measure the top-N front configs on this machine, print predicted vs measured, and say how
many are over budget and how many measured values fall inside their predicted intervals."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from lowformer_common import atomic_write
from search_spaces import LowFormerConfig

from ._constraints import ms_per_image
from ._results import StudyResults
from ._errors import SearchError

VERIFY_JSON = "verify.json"

# measure(configs, device_id) -> one entry per config: an object with ``value``, ``status``, ``reason`` and
# ``metric`` (measured.Measurement), or None when nothing usable was measured.
MeasureFn = Callable[[Sequence[LowFormerConfig], str], Sequence[Any]]


def store_measurer(store, protocol=None, progress: bool = True) -> MeasureFn:
    """Measure on this machine with the harness and keep the results in ``store`` (``measured.measure_configs``)."""

    def measure(configs, device_id):
        from measured import measure_configs

        # The campaign times the phase anchors first (before verify) and stamps every row with its phase.
        return measure_configs(list(configs), store=store, device_id=device_id, protocol=protocol, progress=progress,
                               anchor_source="verify")

    return measure


@dataclasses.dataclass
class VerifySummary:
    """What a set of measured front configs says about the predictions."""

    measured: int  # configs with a usable measurement
    over_budget: int | None  # of those, over the budget (None without a budget)
    inside: int | None  # of the predicted ones, inside their predicted interval (None without intervals)
    budget: str | None
    coverage: float | None  # the intervals' nominal coverage
    # Configs whose value in the study already was a stored measurement (the predictor reports it, see
    # predictors/README.md): their "prediction" is that measurement, which the harness then returns again, so they
    # test nothing and stay out of the coverage.
    known: int = 0
    # With a phase-normalised predictor (its predictions are canonical-phase costs) and rows that carry the phase
    # they were measured in: inside the interval in the canonical phase (the measurement mapped back: the
    # predictor's own quality) and in the phase of the measurement (the interval mapped into it, widened by the
    # phase's uncertainty: what a prediction "now" promises). None otherwise.
    inside_canonical: int | None = None
    inside_now: int | None = None
    phased: int | None = None  # the predicted rows that carry a phase
    # Rows timed in pairs beside a busy process (flag "loaded", measured/_harness.py): their ratio to the reference
    # and so their canonical value hold; their absolute value is the loaded moment's (the phase they carry says so).
    loaded: int = 0
    # The errors of the predicted rows, log(measured / predicted) in % (canonical phase where the rows carry one): their
    # median (``error_shift``) and their spread about it (``error_spread``, rms). A front's configs are alike, so they
    # share most of their error: where the spread is small beside the intervals, one run's coverage is close to a
    # single draw (all inside or many outside), whatever the intervals' calibration (tests/benchmarks/interval_front.py).
    error_shift: float | None = None
    error_spread: float | None = None

    @property
    def predicted(self) -> int:
        return self.measured - self.known

    def line(self) -> str:
        parts = []
        if self.over_budget is not None and self.measured:
            parts.append(f"{self.over_budget} of {self.measured} measured configs exceed the budget ({self.budget}): "
                         f"{self.over_budget / self.measured * 100:.0f}%")
        if self.inside is not None and self.predicted:
            parts.append(f"{self.inside} of {self.predicted} measured values lie inside their predicted "
                         f"{self.coverage:.0%} intervals ({self.inside / self.predicted * 100:.0f}%)")
        if self.phased:
            parts.append(f"in the canonical phase {self.inside_canonical} of {self.phased} inside "
                         f"({self.inside_canonical / self.phased * 100:.0f}%), in the phase they were measured in "
                         f"{self.inside_now} of {self.phased} ({self.inside_now / self.phased * 100:.0f}%)")
        if self.error_shift is not None:
            parts.append(f"measured / predicted{' in the canonical phase' if self.phased else ''}: median "
                         f"{self.error_shift:+.1f}%, spread ±{self.error_spread:.1f}% (alike configs share their error: "
                         "one front's coverage is close to a single draw)")
        if self.loaded:
            parts.append(f"{self.loaded} of the {self.measured} were timed beside a busy process (paired: the ratio to "
                         "the reference kept, the absolute value from that loaded phase; their budget judged in the "
                         "study's phase)")
        if self.known:
            parts.append(f"{self.known} of the {self.measured} had been measured before (their value in the study is "
                         "that measurement): left out of the coverage")
        return "; ".join(parts) or "nothing measured"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_objective(res: StudyResults, device: str | None) -> dict[str, Any]:
    from measured import ACCURACY_DEVICE

    times = [o for o in res.objectives if o.get("device") and o["device"] != ACCURACY_DEVICE]
    if device is None:
        if not times:
            raise SearchError("verify", "the study has no device objective to verify")
        return times[0]
    o = next((x for x in times if x["device"] == device), None)
    if o is None:
        raise SearchError("verify", f"the study has no objective for device {device!r}")
    return o


def _phase_coverage(m, value, pred: float, lo: float, hi: float, metric: str, coverage: float, use: bool,
                    study_phase=None) -> dict:
    """``inside_canonical`` / ``inside_now`` of one measured row (see VerifySummary); {} when not applicable.
    ``study_phase``: the phase the study's predictions were mapped into (search --phase), taken out again for the
    canonical interval; None when they are canonical."""
    from measured import canonical_value, row_phase

    phase = row_phase(getattr(m, "phase", None)) if use else None
    if phase is None:
        return {}
    from nas.onboard._phase import PhaseChoice, in_phase, out_of_phase

    c = coverage or 0.9
    cpred, clo, chi = (float(x[0]) for x in out_of_phase([pred], [lo], [hi], metric, study_phase, c))
    # The row's phase: the anchors timed before verify, its level set by the reference timed with this config
    # (beside a busy neighbour: the loaded moment itself).
    _, nlo, nhi = in_phase([cpred], [clo], [chi], metric, PhaseChoice("now", phase, ""), c)
    canon = canonical_value(value, metric, phase, getattr(m, "ratio", None), getattr(m, "reference_value", None))
    return {"measured_canonical": canon, "predicted_canonical": cpred, "interval_canonical": [clo, chi],
            "inside_canonical": bool(clo <= canon <= chi),
            "interval_now": [float(nlo[0]), float(nhi[0])], "inside_now": bool(nlo[0] <= value <= nhi[0])}


def study_phase(res: StudyResults, key: str):
    """The measured.Phase a study's predictions of objective ``key`` were mapped into (search --phase), or None."""
    from ._phase import stored_phase

    try:
        return stored_phase(key, (res.settings.get("phases") or {}).get(key))
    except SearchError:  # unreadable: verify scores the raw measurements only
        return None


def predictor_is_phased(device: str, metric: str) -> bool:
    """Whether the device's newest predictor learnt canonical-phase costs (its predictions are canonical)."""
    from predictors import PredictorError, load_predictor

    try:
        return bool(load_predictor(device, metric).meta.get("phase"))
    except (PredictorError, ValueError, OSError):
        return False


def measure_rows(res: StudyResults, rows: pd.DataFrame, o: dict[str, Any], measure: MeasureFn,
                 phased: bool | None = None) -> list[dict[str, Any]]:
    """Measure ``rows`` (of the study's table) as device ``o`` and compare with their predictions. ``phased``:
    whether the predictions are canonical-phase costs (default: the device's predictor says)."""
    if phased is None:
        phased = predictor_is_phased(o["device"], o["metric"])
    # A study predicted in a phase (search --phase now|typical|slow): its intervals are held against the raw
    # measurements, and mapped back to the canonical phase for the predictor's own quality.
    mapped = study_phase(res, o["key"])
    configs = [LowFormerConfig.from_dict(c) for c in rows["config"]]
    # One entry per config, aligned: a config without a usable result says why instead of shifting the rest.
    measured = list(measure(configs, o["device"]))
    if len(measured) != len(configs):
        raise SearchError("verify", f"the measuring function returned {len(measured)} results for {len(configs)} configs")
    budget = res.budget_on(o["key"])
    key = o["key"]
    out = []
    for (_, r), m in zip(rows.iterrows(), measured):
        ok = m is not None and getattr(m, "status", "ok") == "ok" and m.value is not None
        value = float(m.value) if ok else None
        over = inside = None
        if budget is not None and value is not None:
            over = ms_per_image(o["metric"], value) > budget.limit
        lo, hi = float(r[f"{key}_lo"]), float(r[f"{key}_hi"])
        known = key in r.get("measured", ())
        if value is not None and lo < hi and not known:
            inside = bool(lo <= value <= hi)
        pc = _phase_coverage(m, value, float(r[key]), lo, hi, o["metric"], res.confidence,
                             phased and inside is not None, mapped)
        extra = {}
        if over is not None and getattr(m, "flag", None) == "loaded" and "measured_canonical" in pc:
            # Timed beside a busy process: the budget was held in the study's phase, so the row is judged by its
            # value there (canonical, mapped into that phase), the loaded value kept beside it.
            extra["over_budget_as_measured"] = over
            over = ms_per_image(o["metric"], _in_study_phase(pc["measured_canonical"], o["metric"], mapped)) > budget.limit
        out.append({"rank": None if pd.isna(r.get("rank")) else int(r["rank"]), "hash": r["hash"], "metric": o["metric"],
                    "predicted": float(r[key]), "interval": [lo, hi], "measured": value, "inside": inside,
                    "known": known, "flag": getattr(m, "flag", None), **pc,
                    "status": getattr(m, "status", "ok") if m is not None else "missing",
                    "reason": getattr(m, "reason", None) if m is not None else "no measurement stored",
                    "over_budget": over, **extra})
    return out


def _in_study_phase(canonical: float, metric: str, phase) -> float:
    """A canonical value mapped into the study's phase (unchanged without one; throughput via its time)."""
    if phase is None:
        return float(canonical)
    if metric == "throughput_img_s":
        return float(1e3 / phase.apply(1e3 / canonical))
    return float(phase.apply(canonical))


def summarise(res: StudyResults, rows: list[dict[str, Any]], o: dict[str, Any]) -> VerifySummary:
    budget = res.budget_on(o["key"])
    got = [r for r in rows if r["measured"] is not None]
    with_iv = [r for r in got if r["inside"] is not None]
    phased = [r for r in with_iv if r.get("inside_canonical") is not None]
    return VerifySummary(
        measured=len(got),
        over_budget=sum(bool(r["over_budget"]) for r in got) if budget is not None else None,
        inside=sum(r["inside"] for r in with_iv) if with_iv else None,
        budget=budget.label if budget is not None else None,
        coverage=res.confidence if with_iv else None,
        known=sum(bool(r.get("known")) for r in got),
        inside_canonical=sum(r["inside_canonical"] for r in phased) if phased else None,
        inside_now=sum(r["inside_now"] for r in phased) if phased else None,
        phased=len(phased) or None,
        loaded=sum(r.get("flag") == "loaded" for r in got),
        **_error_spread(phased or with_iv, canonical=bool(phased)),
    )


def _error_spread(rows: list[dict[str, Any]], canonical: bool) -> dict[str, float]:
    """{error_shift, error_spread} (VerifySummary) of ``rows`` in %, {} with fewer than 3 rows."""
    if len(rows) < 3:
        return {}
    m, p = ("measured_canonical", "predicted_canonical") if canonical else ("measured", "predicted")
    e = np.log([r[m] / r[p] for r in rows]) * 100
    shift = float(np.median(e))
    return {"error_shift": round(shift, 2), "error_spread": round(float(np.sqrt(np.mean((e - shift) ** 2))), 2)}


_FLAG_WORDS = {"suspect": "  (suspect: its pairs disagreed)", "loaded": "  (timed beside a busy process)"}


def print_rows(rows: list[dict[str, Any]], o: dict[str, Any], log: Callable[[str], None]) -> None:
    log(f"{'#':>3s} {'hash':12s} {'predicted':>10s} {'interval':>21s} {'measured':>10s}  {o['metric']} on {o['device']}")
    for r in rows:
        meas = f"{r['measured']:10.3f}" if r["measured"] is not None else f"{r['status']:>10s}"
        lo, hi = r["interval"]
        iv = f"[{lo:9.3f}, {hi:9.3f}]" if lo < hi else f"{'-':>21s}"
        flags = ("  OVER BUDGET" if r["over_budget"] else "") + ("  outside interval" if r["inside"] is False else "") + (
            "  (measured before)" if r.get("known") else "") + _FLAG_WORDS.get(r.get("flag"), "")
        rank = f"{r['rank']:3d}" if r["rank"] is not None else "  -"
        log(f"{rank} {r['hash'][:12]} {r['predicted']:10.3f} {iv} {meas}{flags}")


def verify_markdown(rows: list[dict[str, Any]], o: dict[str, Any], summary: VerifySummary) -> str:
    """The verification as a report.md section: every measured config beside its prediction."""
    lines = [f"## Verification on this machine ({len(rows)} front configs measured)\n",
             f"{o['metric']} on `{o['device']}`; " + summary.line() + ".\n",
             "| # | id | predicted | interval | measured | note |", "|---:|---|---:|---|---:|---|"]
    for r in rows:
        lo, hi = r["interval"]
        iv = f"[{lo:.4g}, {hi:.4g}]" if lo < hi else "-"
        meas = f"{r['measured']:.4g}" if r["measured"] is not None else r["status"]
        note = ", ".join(x for x, on in (("OVER BUDGET", r["over_budget"]), ("outside interval", r["inside"] is False),
                                         ("measured before", r.get("known")),
                                         ("timed beside a busy process", r.get("flag") == "loaded")) if on)
        rank = "-" if r["rank"] is None else str(r["rank"])
        lines.append(f"| {rank} | `{r['hash'][:12]}` | {r['predicted']:.4g} | {iv} | {meas} | {note} |")
    return "\n".join(lines) + "\n"


def verify_front(res: StudyResults, n: int, folder, *, store=None, device: str | None = None, protocol=None,
                 log: Callable[[str], None] = print, measure: MeasureFn | None = None,
                 phased: bool | None = None) -> list[dict[str, Any]]:
    """Measure the top-``n`` front configs on this machine (as the study's device) and compare.

    ``measure``: how to measure (default: the harness on this machine, results kept in ``store``, a
    ``measured.Store``; ``protocol``: how to time, default ``measured.Protocol()``, the paper's CPU protocol).
    ``phased``: whether the predictions are canonical-phase costs (default: the device's predictor says).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SearchError("verify", f"must be a positive number of configs (got {n!r})")
    o = device_objective(res, device)
    if not res.any_feasible:
        raise SearchError("verify", "the study has no feasible config to measure")
    if measure is None:
        if store is None:
            raise SearchError("verify", "needs a measurement store or a measuring function")
        measure = store_measurer(store, protocol)
    rows = measure_rows(res, res.front.head(n), o, measure, phased)
    print_rows(rows, o, log)
    summary = summarise(res, rows, o)
    log(summary.line())
    atomic_write(folder / VERIFY_JSON, json.dumps({"device": o["device"], "objective": o["key"], "summary": summary.to_dict(),
                                                   "rows": rows}, indent=1) + "\n")
    return rows


def near_budget_width(res: StudyResults, o: dict[str, Any], share: float = 0.1) -> float | None:
    """Median relative interval width of the front configs whose constrained value lies within ``share`` of the
    budget (None without a budget or such configs)."""
    budget = res.budget_on(o["key"])
    if budget is None or not len(res.front):
        return None
    q = res.front[f"q:{budget.key}"].to_numpy(dtype=float)
    near = res.front[np.abs(q / budget.limit - 1) <= share]
    if not len(near):
        return None
    k = o["key"]
    return float(np.median((near[f"{k}_hi"] - near[f"{k}_lo"]) / near[k].abs()))
