"""The drift check: does this machine still run as its predictor says?

Two hosts with one fingerprint were measured 1.85x apart, and a host can change (another VM host, a new
kernel, a thermal limit). Whenever a command measures or searches on a device id that is this machine and
has a predictor, the anchors (named variants) are measured, once per host and day (cached under
``$LOWFORMER_NAS_HOME/drift/``), and compared with the predictor: outside its prediction interval where
the predictor has one (``predict_interval``), else beyond ±10 %, it says so and proposes onboarding.
The measurements are not stored: they check the predictor; they are not data for it.

A predictor trained on phase-normalised rows (``meta["phase"]``) is checked differently: the phase anchors are
timed (paired; a session younger than two minutes is reused) and stored as a session of the device's series, the
phase is fitted against the canonical session, and the check reports how far each anchor moved and the fitted
parameters. A phase that fits its anchors (held-out error within ``PHASE_FIT_BOUND``) is simply the device's
new state: predictions "now" use it, nothing to re-onboard. Only anchors that the phase model cannot fit (the
cost structure changed: a new onnxruntime, another thread count) propose re-onboarding.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import pathlib
import re
from typing import Any, Callable, Sequence

import numpy as np

from lowformer_common import UserError, home_dir, read_at_most, strict_loads, utc_now, write_json
from search_spaces import LowFormerConfig, get_variant

from ._common import ANCHORS, is_this_machine, protocol_of

TOLERANCE = 0.10  # without a prediction interval: measured within ±10 % of the prediction
# A phase whose leave-one-anchor-out error exceeds this no longer describes the device: propose re-onboarding.
PHASE_FIT_BOUND = 0.05
COVERAGE = 0.9
ENV = "LOWFORMER_NAS_DRIFT_CHECK"  # "0" / "off" / "no": never check
_MAX_CACHE_BYTES = 1 << 20


@dataclasses.dataclass
class DriftRow:
    name: str
    measured: float | None
    predicted: float
    lo: float
    hi: float

    @property
    def inside(self) -> bool | None:
        return None if self.measured is None else self.lo <= self.measured <= self.hi

    @property
    def ratio(self) -> float | None:
        return None if self.measured is None else self.measured / self.predicted


@dataclasses.dataclass
class DriftReport:
    device: str
    predictor: str  # "<model type> v<version>"
    metric: str
    rows: list[DriftRow]
    band: str  # how the tolerance was set
    cached: bool
    onboard_command: str = "lowformer-nas onboard --device local"

    @property
    def measured(self) -> list[DriftRow]:
        return [r for r in self.rows if r.measured is not None]

    @property
    def drifted(self) -> bool:
        """Most anchors outside their band (one outlier is noise, not drift)."""
        rows = self.measured
        return bool(rows) and sum(not r.inside for r in rows) * 2 > len(rows)

    def lines(self) -> list[str]:
        rows = self.measured
        if not rows:
            return [f"drift check: no anchor could be measured on {self.device}; skipped"]
        ratio = float(np.exp(np.mean([np.log(r.ratio) for r in rows])))
        out_n = sum(not r.inside for r in rows)
        if not self.drifted:
            return [f"drift check: {self.device} runs as its predictor says ({len(rows) - out_n} of {len(rows)} anchors "
                    f"within {self.band}; measured / predicted {ratio:.2f})"]
        worst = max(rows, key=lambda r: abs(np.log(r.ratio)))
        unit = "ms" if self.metric == "latency_ms" else self.metric
        return [
            f"drift: this machine no longer runs as the {self.device} predictor ({self.predictor}) says: {out_n} of "
            f"{len(rows)} anchors outside {self.band}, measured / predicted {ratio:.2f} on average ({worst.name}: "
            f"{worst.measured:.4g} {unit} measured, {worst.predicted:.4g} predicted)",
            f"drift: its predictions (and a search on them) are off by about {abs(ratio - 1) * 100:.0f}% here; "
            f"onboard this machine: {self.onboard_command}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "predictor": self.predictor, "metric": self.metric, "band": self.band,
                "cached": self.cached, "drifted": self.drifted,
                "rows": [dataclasses.asdict(r) | {"inside": r.inside} for r in self.rows]}


@dataclasses.dataclass
class PhaseDriftReport:
    """The drift check of a phase-normalised predictor: the device's phase now against its canonical session."""

    device: str
    predictor: str
    moved: dict[str, float]  # anchor -> now / canonical
    phase: Any  # measured.Phase, None when no phase could be fitted
    failed: dict[str, str]  # anchor -> reason
    cached: bool  # a recent session was reused
    onboard_command: str = "lowformer-nas onboard --device local"
    reason: str | None = None  # why no phase could be fitted

    @property
    def drifted(self) -> bool:
        """The anchors do not fit the phase model (or no phase could be fitted): the cost structure changed."""
        return self.phase is None or self.phase.sd > np.log1p(PHASE_FIT_BOUND)

    def lines(self) -> list[str]:
        moved = ", ".join(f"{k} {(v - 1) * 100:+.1f}%" for k, v in self.moved.items())
        failed = f"; failed: {', '.join(f'{k} ({v})' for k, v in self.failed.items())}" if self.failed else ""
        if self.phase is None:
            return [f"drift: no phase of {self.device} could be fitted ({self.reason}){failed}",
                    f"drift: predictions use the canonical phase; onboard this machine: {self.onboard_command}"]
        fit = (f"phase {self.phase.model} a={self.phase.a:+.3f} b={self.phase.b:+.3f}, held-out error per anchor "
               f"±{np.expm1(self.phase.sd) * 100:.1f}%")
        if not self.drifted:
            return [f"drift check: {self.device} anchors moved against the canonical phase: {moved}{failed}; {fit}: "
                    "phase updated, predictions with --phase now use it"]
        return [f"drift: the anchors of {self.device} no longer fit one phase ({moved}; {fit}, bound "
                f"±{PHASE_FIT_BOUND:.0%}){failed}: the cost structure changed (a new runtime, other threads?)",
                f"drift: the {self.predictor} predictor's costs no longer transfer by a phase; onboard this machine: "
                f"{self.onboard_command}"]

    def to_dict(self) -> dict[str, Any]:
        p = self.phase
        return {"device": self.device, "predictor": self.predictor, "moved": self.moved, "failed": self.failed,
                "cached": self.cached, "drifted": self.drifted, "reason": self.reason,
                "phase": None if p is None else {"model": p.model, "a": p.a, "b": p.b, "sd": p.sd, "n": p.n,
                                                 "session": p.session, "timestamp": p.timestamp}}


def phase_drift_check(device_id: str, predictor, store, protocol, *, time_session=None,
                      onboard_command: str = "lowformer-nas onboard --device local") -> PhaseDriftReport:
    """Time the anchors now (unless a session younger than two minutes exists), store them, fit the phase.
    ``time_session(protocol, device_id)``: the anchors' results (default: a measuring worker; tests inject)."""
    from measured import PhaseError, fit_phase, load_series, session_rows
    from measured import NOW_MAX_AGE_S, age_s

    from ._phase import check_anchors

    name = f"{predictor.model_type} v{predictor.version}"
    try:
        check_anchors(predictor)
    except UserError as e:  # other anchors than this version times: no phase can be compared, say so
        return PhaseDriftReport(device_id, name, {}, None, {}, True, onboard_command, str(e).removeprefix("phase: "))
    series = load_series(store, device_id, protocol.key)
    latest = series.sessions[-1] if series.sessions else None
    cached = latest is not None and age_s(latest.timestamp) <= NOW_MAX_AGE_S
    if not cached:
        results = (time_session or _time_session)(protocol, device_id)
        store.add_anchor_timings(session_rows(results, device_id, protocol, source="drift"))
        series = load_series(store, device_id, protocol.key)
        latest = series.sessions[-1]
    canon = series.canonical
    if canon is None or canon.session != (predictor.meta.get("phase") or {}).get("canonical_session"):
        return PhaseDriftReport(device_id, name, {}, None, latest.failed, cached, onboard_command,
                                "no canonical session of its predictor in this store")
    moved = {k: latest.values[k] / canon.values[k] for k in canon.values if k in latest.values}
    try:
        # The check judges the fit of the two-parameter model (the most a phase can explain).
        phase = fit_phase(canon.values, latest.values, "loglinear", session=latest.session,
                          canonical_session=canon.session, timestamp=latest.timestamp)
    except PhaseError as e:
        return PhaseDriftReport(device_id, name, moved, None, latest.failed, cached, onboard_command, str(e))
    return PhaseDriftReport(device_id, name, moved, phase, latest.failed, cached, onboard_command)


def _time_session(protocol, device_id: str) -> list[dict]:
    from measured import Measurer

    with Measurer(protocol, device_id) as m:
        return m.time_anchors() or []


def drift_disabled() -> bool:
    """Whether $LOWFORMER_NAS_DRIFT_CHECK turns the check off (0, off, no, false)."""
    return os.environ.get(ENV, "").strip().lower() in ("0", "off", "no", "false")




def _cache_path(device_id: str, protocol_key: str, day: str):
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", protocol_key)
    return home_dir() / "drift" / device_id / f"{day}_{safe}.json"


def _read_cache(path) -> dict[str, float] | None:
    """{anchor: measured value} from a cache file, or None when absent or not ours."""
    try:
        raw = read_at_most(path, _MAX_CACHE_BYTES)
        if len(raw) > _MAX_CACHE_BYTES:
            return None
        data = strict_loads(raw)
    except (OSError, ValueError):  # a FIFO or another non-regular file too: refused unread, measured again
        return None
    if not isinstance(data, dict) or data.get("device") != pathlib.Path(path).parent.name:
        return None  # not the cache of the device whose folder it lives in
    values = data.get("values")
    if not isinstance(values, dict):
        return None
    out = {}
    for k, v in values.items():
        if k in ANCHORS and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0)):
            out[k] = v
    return out if set(out) == set(ANCHORS) else None




def measure_anchors(protocol, device_id: str, *, progress: bool = False) -> dict[str, float | None]:
    """{anchor: median} measured now in worker processes (not stored); None where a run failed or was busy."""
    from measured import Job, Measurer

    jobs = [Job(get_variant(n).config, n) for n in ANCHORS]
    out: dict[str, float | None] = {n: None for n in ANCHORS}
    from tqdm import tqdm

    with Measurer(protocol, device_id) as m, tqdm(total=len(jobs), desc="drift check: anchors", unit="model",
                                                  disable=not progress, leave=False) as bar:
        for job, meas in m.measure(jobs):
            out[job.name] = meas.value if meas.status == "ok" else None
            bar.update(1)
    return out


def drift_check(
    device_id: str,
    *,
    store=None,
    predictor=None,
    measure: Callable[[Any, str], dict[str, float | None]] | None = None,
    today: str | None = None,
    progress: bool = False,
    onboard_command: str | None = None,
    log: Callable[[str], None] | None = None,
    time_session: Callable[[Any, str], list[dict]] | None = None,
) -> DriftReport | PhaseDriftReport | None:
    """Compare this machine's anchors with ``device_id``'s predictor (None when the device is not this
    machine, has no predictor, or its protocol cannot run here). ``predictor``, ``measure(protocol,
    device_id)`` and ``today`` (YYYY-MM-DD, UTC) are injectable (tests); ``log`` gets one line before the anchors
    are timed, so a command never spends that time unannounced."""
    from predictors import PredictorError, load_predictor

    if predictor is None:
        if not is_this_machine(device_id, store):
            return None
        try:
            predictor = load_predictor(device_id)
        except PredictorError:
            return None
    protocol = protocol_of(predictor)
    if protocol is None:
        return None
    if measure is None and time_session is None:
        from measured import BACKENDS

        if not BACKENDS[protocol.backend].available():
            return None  # its runtime is not installed here: nothing to compare
    if predictor.meta.get("phase") and store is not None and protocol.paired:
        return phase_drift_check(device_id, predictor, store, protocol, time_session=time_session,
                                 onboard_command=onboard_command or "lowformer-nas onboard --device local")
    day = today or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    path = _cache_path(device_id, protocol.key, day)
    values = _read_cache(path)
    cached = values is not None
    if values is None:
        if log is not None:
            log(f"drift check: timing {len(ANCHORS)} anchor models on {device_id} (once a day; {ENV}=off skips it)")
        values = (measure or (lambda p, d: measure_anchors(p, d, progress=progress)))(protocol, device_id)
        write_json(path, {"device": device_id, "protocol": protocol.key, "day": day, "measured_at": utc_now(),
                          "values": values})
    configs = [get_variant(n).config for n in ANCHORS]
    lo, hi, band = _band(predictor, configs)
    pred = predictor.predict(configs)
    rows = [DriftRow(n, values.get(n), float(p), float(a), float(b)) for n, p, a, b in zip(ANCHORS, pred, lo, hi)]
    return DriftReport(device_id, f"{predictor.model_type} v{predictor.version}", predictor.metric, rows, band, cached,
                       onboard_command or "lowformer-nas onboard --device local")


def _band(predictor, configs: Sequence[LowFormerConfig]) -> tuple[np.ndarray, np.ndarray, str]:
    """(lo, hi, words): the predictor's interval at COVERAGE when it has one, else ±TOLERANCE."""
    pred = np.asarray(predictor.predict(configs), dtype=float)
    interval = getattr(predictor, "predict_interval", None)
    if interval is not None:
        try:
            iv = interval(configs, COVERAGE)
            lo, hi = np.asarray(iv.lo, dtype=float), np.asarray(iv.hi, dtype=float)
            if lo.shape == pred.shape and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                # The interval, but never narrower than the measurement noise of a median (±2 %).
                lo, hi = np.minimum(lo, pred * 0.98), np.maximum(hi, pred * 1.02)
                return lo, hi, f"the predictor's {COVERAGE:.0%} interval"
        except Exception:  # noqa: BLE001 (a predictor without calibration data: fall back to the fixed band)
            pass
    return pred * (1 - TOLERANCE), pred * (1 + TOLERANCE), f"±{TOLERANCE:.0%} of its predictions"
