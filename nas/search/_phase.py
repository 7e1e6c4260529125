"""The device phase a study's latency budgets are held against (``search --phase``).

A phase-normalised predictor predicts the device's canonical phase (measured/_phase.py). A study maps each time
objective into the chosen phase, as ``predict --phase`` does (nas/onboard/_phase.py): ``now`` (the default; on this
machine a quick anchor timing, for another device its latest anchor session), ``typical``, ``slow`` or
``canonical``; the phase model's own uncertainty widens every interval. The phase fitted when the study was made is
stored with it (``phases`` in its settings) and reused on resume and in later refinement rounds: every trial of a
study is scored in one phase. A device whose predictor is not phase-normalised has no phase series: by default (and
with ``--phase canonical``) its values are the predictor's own; any other explicit phase is an error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

from lowformer_common import UserError
from measured import Phase

from ._errors import SearchError
from ._objectives import Objective, PredictorObjective

DEFAULT_PHASE = "now"  # what `predict --phase` uses by default
NO_SERIES = "no phase series"
_TIME_METRICS = ("latency_ms", "throughput_img_s")


def _phased_objectives(objectives: Sequence[Objective]) -> list[PredictorObjective]:
    return [o for o in objectives if isinstance(o, PredictorObjective) and o.is_time and o.metric in _TIME_METRICS]


def _record(which: str, words: str, phase: Phase | None, forced: str | None = None) -> dict[str, Any]:
    return {"phase": which, "words": words, "forced": forced, "fit": None if phase is None else dataclasses.asdict(phase)}


def stored_phase(key: str, rec: Any) -> Phase | None:
    """The phase a study stored for objective ``key`` (validated: settings files are read back)."""
    fit = rec.get("fit") if isinstance(rec, dict) else None
    if fit is None:
        return None
    try:
        phase = Phase(**{f.name: fit[f.name] for f in dataclasses.fields(Phase)})
        ok = all(isinstance(getattr(phase, k), (int, float)) and math.isfinite(getattr(phase, k)) for k in ("a", "b", "sd"))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise SearchError("phase", f"the study's stored phase of {key} is unreadable; start a new --study")
    return phase


def resolve_phases(objectives: Sequence[Objective], which: str | None, stored: dict[str, Any] | None,
                   open_store: Callable[[], Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """Set ``phase`` on every time objective of a phase-normalised predictor; return the study's phase setting and
    one record per objective key (what it is predicted in, the fit). ``stored``: a resumed study's records (None
    for a new study); ``open_store()``: the measurement store the anchor sessions are read from."""
    objs = _phased_objectives(objectives)
    if stored is not None:  # a resumed study keeps the phase it was scored in (none stored: canonical values)
        for o in objs:
            o.phase = stored_phase(o.key, stored.get(o.key))
        return which or "canonical", {o.key: stored[o.key] for o in objs if o.key in stored}
    records, store = {}, None
    for o in objs:
        pred = o.predictor
        if not (getattr(pred, "meta", None) or {}).get("phase"):
            if which not in (None, "canonical"):
                raise SearchError("phase", f"{o.device} has {NO_SERIES} (its predictor is not phase-normalised), so "
                                           f"there is no {which!r} phase; use --phase canonical or leave --phase out")
            records[o.key] = _record("canonical", f"{NO_SERIES} (the predictor's values as measured)", None)
            continue
        from nas.onboard._phase import predictor_phase

        store = store if store is not None else open_store()
        try:
            choice = predictor_phase(store, pred, which or DEFAULT_PHASE)
        except UserError as e:
            if which is not None:
                raise SearchError("phase", str(e).removeprefix("phase: ")) from None
            records[o.key] = _record("canonical", f"{NO_SERIES} usable, canonical ({str(e).removeprefix('phase: ')})",
                                     None)
            continue
        o.phase = choice.phase
        records[o.key] = _record(choice.which, choice.words, choice.phase, choice.forced)
    if which is not None:
        return which, records
    used = {r["phase"] for r in records.values()}
    return (DEFAULT_PHASE if DEFAULT_PHASE in used else "canonical"), records


def phase_line(settings: dict[str, Any]) -> str:
    """The phase a study's budgets are held against, in one line (terminal, report.md)."""
    which = settings.get("phase") or "canonical"
    recs = settings.get("phases") or {}
    if not recs:
        return f"phase {which}: the predictors' own values" + ("" if "phase" in settings else " (a study made before phases)")
    return f"phase {which}: " + "; ".join(f"{k}: {r.get('words', r.get('phase'))}" for k, r in recs.items())


def phase_word(settings: dict[str, Any]) -> str:
    """The phase of a study in a word or two (chart titles): ``now``, ``canonical``, ``canonical (no phase series)``."""
    which = settings.get("phase") or "canonical"
    recs = settings.get("phases") or {}
    if recs and all(r.get("fit") is None and NO_SERIES in str(r.get("words")) for r in recs.values()):
        return f"{which} ({NO_SERIES})"
    return which
