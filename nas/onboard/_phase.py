"""Predictions for the machine as it is now: a phase-normalised predictor's canonical costs mapped into a phase.

A predictor trained on phase-normalised rows (``meta["phase"]``, see measured/_phase.py) predicts the device's
canonical phase. ``--phase now`` maps it into the device's current phase: on this machine a quick anchor session
(a few seconds; a session younger than ``NOW_MAX_AGE_S`` is reused), for another device its latest stored session
(a bundle's anchors); ``typical`` and ``slow`` use the median and the 90th-percentile session of its history. The
phase's own uncertainty widens the interval. A predictor trained against other anchors or another reference than
this version's is refused (one line) unless ``--force``, which is recorded in the output.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from lowformer_common import UserError


@dataclasses.dataclass
class PhaseChoice:
    which: str  # now | typical | slow | canonical
    phase: Any  # measured.Phase, or None: the predictor's own values (canonical, or not phase-normalised)
    words: str  # for outputs
    forced: str | None = None  # why --force was needed

    def to_dict(self) -> dict[str, Any]:
        p = self.phase
        return {"phase": self.which, "words": self.words, "forced": self.forced,
                "fit": None if p is None else {"model": p.model, "a": p.a, "b": p.b, "sd": p.sd, "n": p.n,
                                               "session": p.session, "timestamp": p.timestamp}}


def check_anchors(pred, force: bool = False) -> str | None:
    """None when the predictor was trained against this version's anchors and reference; with ``force`` the
    reason that was overridden; else a one-line UserError."""
    from measured import anchor_hashes

    info = pred.meta.get("phase") or {}
    trained = info.get("anchors")
    if not trained or trained == anchor_hashes():
        return None
    differ = sorted(k for k in set(trained) | set(anchor_hashes()) if trained.get(k) != anchor_hashes().get(k))
    who = getattr(pred, "device", None) or "device's"
    why = (f"the {who} predictor was trained against other anchors/reference than this version times "
           f"({', '.join(differ)})")
    if not force:
        raise UserError(f"phase: {why}; retrain it (lowformer-nas onboard) or pass --force to use it anyway")
    return why


def predictor_phase(store, pred, which: str = "now", *, force: bool = False,
                    refresh: Callable[[Any, str], None] | None = None) -> PhaseChoice:
    """The phase ``pred``'s predictions are mapped into (see the module doc). ``refresh(protocol, device)``: times
    the anchors now when the latest session is too old (default: on this machine, a worker; tests inject)."""
    from measured import PHASE_CHOICES, load_series
    from measured import NOW_MAX_AGE_S, age_s, describe_phase as describe

    if which not in PHASE_CHOICES:
        raise UserError(f"phase: must be one of {'|'.join(PHASE_CHOICES)} (got {which!r})")
    info = pred.meta.get("phase")
    if not info:
        return PhaseChoice(which, None, "as measured (this predictor was trained on values that are not "
                                        "phase-normalised)")
    forced = check_anchors(pred, force)
    key = (pred.meta.get("protocol") or {}).get("key")
    if which == "canonical" or key is None:
        return PhaseChoice("canonical", None, "canonical (the device's first anchor session)", forced)
    series = load_series(store, pred.device, key)
    if which == "now":
        latest = series.sessions[-1] if series.sessions else None
        if refresh is None:
            refresh = _local_refresh(store, pred.device)
        if refresh is not None and (latest is None or age_s(latest.timestamp) > NOW_MAX_AGE_S):
            refresh(_protocol(pred), pred.device)
            series = load_series(store, pred.device, key)
    if series.canonical is None or series.canonical.session != info.get("canonical_session"):
        raise UserError(f"phase: {pred.device} has no anchor session against the canonical one its predictor was "
                        "trained in; use --phase canonical, or retrain (lowformer-nas onboard)")
    phase = series.pick(which)
    when = f", anchors timed {phase.timestamp[:19]} UTC" if phase is not None else ""
    return PhaseChoice(which, phase, f"{which}: {describe(phase, series.canonical.values)}{when}", forced)


def _protocol(pred):
    """The protocol the predictor was trained on (None: it cannot run here), to time the anchors the same way."""
    from ._common import protocol_of

    return protocol_of(pred)


def _local_refresh(store, device_id: str):
    """A quick anchor session on this machine (stored, source "phase"), or None for another device."""
    from ._common import is_this_machine

    if not is_this_machine(device_id, store):
        return None

    def refresh(protocol, device):
        from measured import Measurer, session_rows

        if protocol is None:
            return
        with Measurer(protocol, device) as m:
            results = m.time_anchors()
        if results:
            store.add_anchor_timings(session_rows(results, device, protocol, source="phase"))
    return refresh


def in_phase(values, lo, hi, metric: str, choice: PhaseChoice, coverage: float = 0.9):
    """(values, lo, hi) mapped into ``choice``'s phase, the interval widened by its uncertainty (times are mapped;
    throughput through its time per image)."""
    from measured import fold_uncertainty

    v, a, b = (np.asarray(x, dtype=float) for x in (values, lo, hi))
    if choice.phase is None:
        return v, a, b
    if metric == "throughput_img_s":
        t, tlo, thi = fold_uncertainty(1e3 / v, 1e3 / b, 1e3 / a, choice.phase, coverage)
        return 1e3 / t, 1e3 / thi, 1e3 / tlo
    return fold_uncertainty(v, a, b, choice.phase, coverage)


def out_of_phase(values, lo, hi, metric: str, phase, coverage: float = 0.9):
    """The inverse of :func:`in_phase`: (values, lo, hi) predicted in ``phase`` (a measured.Phase) mapped back to the
    canonical phase, the phase's uncertainty taken out."""
    from measured import unfold_uncertainty

    v, a, b = (np.asarray(x, dtype=float) for x in (values, lo, hi))
    if phase is None:
        return v, a, b
    if metric == "throughput_img_s":
        t, tlo, thi = unfold_uncertainty(1e3 / v, 1e3 / b, 1e3 / a, phase, coverage)
        return 1e3 / t, 1e3 / thi, 1e3 / tlo
    return unfold_uncertainty(v, a, b, phase, coverage)
