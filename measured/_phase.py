"""The device's state over time: anchors timed (paired) now and then, and a phase model fitted from them.

A host's timings move by tens of percent within an hour, and not uniformly: small, latency-bound models slow
down more than large, compute-bound ones (measured/README.md, Phases). A *session* times the anchors, each paired
with the reference, at one moment; a *phase* is the map from the device's canonical session (its first complete
one) to a session, fitted on the anchors:

- ``scale``:     log t = log t0 + a                 (1 parameter, needs >= 2 anchors)
- ``loglinear``: log t = log t0 + a + b * log t0    (2 parameters, needs >= 3 anchors)

with t0 the time in the canonical phase (ms). A phase is never fitted from fewer anchors than its model needs
plus one (a fit must leave a residual to judge it). The model is chosen per device by held-out fit: each anchor
is left out in turn, predicted from the others, over every session; the lower RMS error in log space wins
(ties: the simpler). Its leave-one-out error is the phase's uncertainty, folded into intervals "now".

Every measurement a campaign stores carries the phase of the latest session before it (``Measurement.phase``);
its canonical value is the inverse map. Rows without a phase are used as measured and said to be so.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
import uuid
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from lowformer_common import UserError, utc_now

MODELS = ("scale", "loglinear")
PARAMS = {"scale": 1, "loglinear": 2}
# A session with fewer ok anchors cannot fit the model (one residual at least; see the module doc).
MIN_ANCHORS = {m: k + 1 for m, k in PARAMS.items()}
PHASE_CHOICES = ("now", "typical", "slow", "canonical")
SLOW_QUANTILE = 0.9
# A session older than this no longer stands for "now" on this machine (a quick anchor timing replaces it). Two
# minutes: on a quiet 2-core Xeon the B0 beside --verify's rows ran 3 % slower than in a session reused 8 minutes
# earlier, which put 9 of 20 rows inside their intervals instead of 16 (docs/results.md, 2026-12-03, evening).
NOW_MAX_AGE_S = 120.0
ANCHOR_MAX_PAIRS = 30  # an anchor's timing stops here at the latest (its ratio's CI target: the protocol's)


class PhaseError(UserError):
    """A phase cannot be fitted (too few anchors) or does not fit the anchors."""


# ---------------------------------------------------------------------------------------------- the anchors


def anchor_configs() -> list[tuple[str, Any]]:
    """(name, config) of the phase anchors, smallest first: B0 at 160 px (small, latency-bound: the configs that
    drift most), B1-unfused, B1, E2 and B3 (large, compute-bound), 10-126 ms on the shipped host; the reference B0
    is a point of every session too (ratio 1)."""
    from search_spaces import get_variant

    return [("B0@160", get_variant("B0").config.with_(resolution=160)), ("B1-unfused", get_variant("B1-unfused").config),
            ("B1", get_variant("B1").config), ("E2", get_variant("E2").config), ("B3", get_variant("B3").config)]


def anchor_hashes(reference: str = "B0") -> dict[str, str]:
    """{name: config hash} of the anchors and the reference (what a predictor records it was trained against)."""
    from search_spaces import get_variant

    return {n: c.hash for n, c in anchor_configs()} | {reference: get_variant(reference).config.hash}


def time_anchor_session(protocol, *, load: Callable | None = None, **timer) -> list[dict[str, Any]]:
    """Time every anchor paired with the reference, in this process; one result per anchor (ok with the ratio,
    its CI and the reference's median, or failed with the reason). ``load(protocol, name, config)`` gives
    (runner, hash, name) (default: :func:`measured._harness.reference_runner`); ``timer``: clock/monitor."""
    from ._harness import _LOADED, measure_runner, pairing_fields, reference_runner

    own = load is None
    load = load or (lambda p, name=None, config=None: reference_runner(p, name, config))
    p = dataclasses.replace(protocol, runs=min(protocol.runs, ANCHOR_MAX_PAIRS), retries=0, pairing="paired")
    out = []
    for name, cfg in anchor_configs():
        row: dict[str, Any] = {"anchor": name, "config_hash": cfg.hash, "status": "failed"}
        try:
            ref = load(p)
            runner = load(p, name, cfg)
            timing, status, reason = measure_runner(runner[0], p, reference=ref, **timer)
        except Exception as e:  # noqa: BLE001 (a failed anchor is a failed point, with its reason)
            row["reason"] = f"{type(e).__name__}: {e}".replace("\n", " ")[:400]
            out.append(row)
            continue
        fields = pairing_fields(timing, p)
        if status != "ok" or fields.get("flag"):
            row["reason"] = reason or fields.get("flag_note")
        else:
            row.update(status="ok", n=timing.n, **{k: fields[k] for k in ("ratio", "ratio_lo", "ratio_hi", "reference",
                                                                          "reference_value")})
        out.append(row)
    if own:  # the anchors' sessions (over 1 GB in all) are not kept beside the configs; the reference's is
        for key in [k for k in _LOADED if k[-1] in {n for n, _ in anchor_configs()}]:
            del _LOADED[key]
    return out


def session_rows(results: Sequence[dict[str, Any]], device_id: str, protocol, *, source: str,
                 campaign: str | None = None, session: str | None = None, timestamp: str | None = None,
                 ) -> list[dict[str, Any]]:
    """The store's rows of one session: each anchor's value is its ratio times the session's reference median
    (pooled over the anchors' pairs: the drift within the session cancels), plus the reference (ratio 1)."""
    # Session ids sort in time order (nanoseconds first): two sessions within one second of each other keep their order.
    session = session or f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
    ts = timestamp or utc_now()
    ok = [r for r in results if r.get("status") == "ok"]
    pooled = float(np.median([r["reference_value"] for r in ok])) if ok else None
    # Throughput rows carry img/s; the phase works on time, so the pooled value is kept in the metric's unit.
    rows = []
    for r in results:
        row = {"id": uuid.uuid4().hex, "device_id": device_id, "protocol": protocol.key, "session": session,
               "timestamp": ts, "anchor": r["anchor"], "config_hash": r["config_hash"], "status": r["status"],
               "reason": r.get("reason"), "n": r.get("n"), "source": source, "campaign": campaign}
        if r.get("status") == "ok":
            row.update(ratio=r["ratio"], ratio_lo=r["ratio_lo"], ratio_hi=r["ratio_hi"], reference=r["reference"],
                       reference_value=r["reference_value"], value=_scaled(pooled, r["ratio"], protocol.metric))
        rows.append(row)
    if ok:
        rows.append({"id": uuid.uuid4().hex, "device_id": device_id, "protocol": protocol.key, "session": session,
                     "timestamp": ts, "anchor": protocol.reference, "config_hash": ok[0]["reference"], "status": "ok",
                     "value": pooled, "ratio": 1.0, "ratio_lo": 1.0, "ratio_hi": 1.0, "reference": ok[0]["reference"],
                     "reference_value": pooled, "n": int(sum(r.get("n") or 0 for r in ok)), "source": source,
                     "campaign": campaign})
    return rows


def _scaled(pooled: float, ratio: float, metric: str) -> float:
    return pooled * ratio if metric == "latency_ms" else pooled / ratio  # throughput: a larger time, fewer img/s


# ---------------------------------------------------------------------------------------------- the phase model


@dataclasses.dataclass
class Phase:
    """The map from the canonical session to ``session``: log t = log t0 + a + b log t0 (t in ms)."""

    model: str
    a: float
    b: float
    sd: float  # leave-one-anchor-out RMS error of the fit, in log space (the phase's own uncertainty)
    n: int  # anchors it was fitted on
    session: str
    canonical: str
    timestamp: str

    def apply(self, t0):
        """Times in the canonical phase -> times in this phase (ms; arrays welcome)."""
        x = np.log(np.asarray(t0, dtype=float))
        return np.exp(x + self.a + self.b * x)

    def invert(self, t):
        """Times in this phase -> times in the canonical phase."""
        y = np.log(np.asarray(t, dtype=float))
        return np.exp((y - self.a) / (1 + self.b))

    def factor(self, t0: float) -> float:
        """How much slower than canonical a model of ``t0`` ms runs in this phase."""
        return float(self.apply(t0) / t0)

    def to_json(self) -> str:
        return json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Phase":
        d = json.loads(text)
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def at_reference(phase: Phase, ref_ms: float, ref0_ms: float) -> Phase:
    """``phase`` with its level ``a`` set so that it maps the reference's canonical time ``ref0_ms`` onto
    ``ref_ms``, the reference's median timed in pairs with a config: the slope ``b`` (the shape, which needs the
    anchors) stays the session's, the level follows the host to the minute. A config's canonical value is then
    ref0 * ratio^(1 / (1 + b)): the session's shape applied to the config's own ratio."""
    a = math.log(ref_ms) - (1 + phase.b) * math.log(ref0_ms)
    return dataclasses.replace(phase, a=a)


def _design(x: np.ndarray, model: str) -> np.ndarray:
    return np.ones((len(x), 1)) if model == "scale" else np.column_stack([np.ones(len(x)), x])


def fit_params(t0: np.ndarray, t1: np.ndarray, model: str) -> tuple[float, float]:
    """(a, b) by least squares of log(t1 / t0) on log t0 (b = 0 for ``scale``)."""
    x, y = np.log(t0), np.log(t1) - np.log(t0)
    coef, *_ = np.linalg.lstsq(_design(x, model), y, rcond=None)
    return float(coef[0]), float(coef[1]) if model == "loglinear" else 0.0


def loo_errors(t0: np.ndarray, t1: np.ndarray, model: str) -> np.ndarray:
    """Each anchor left out, predicted from the others: the log errors (held-out fit)."""
    out = []
    for i in range(len(t0)):
        keep = np.arange(len(t0)) != i
        a, b = fit_params(t0[keep], t1[keep], model)
        x = math.log(t0[i])
        out.append(math.log(t1[i]) - (x + a + b * x))
    return np.asarray(out)


def _paired(canonical: dict[str, float], now: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = sorted(set(canonical) & set(now))
    return np.array([canonical[n] for n in names]), np.array([now[n] for n in names]), names


def fit_phase(canonical: dict[str, float], now: dict[str, float], model: str, *, session: str = "",
              canonical_session: str = "", timestamp: str = "") -> Phase:
    """The phase of ``now`` ({anchor: ms}) against ``canonical``; PhaseError with too few common anchors."""
    if model not in MODELS:
        raise PhaseError(f"phase model: must be one of {'|'.join(MODELS)} (got {model!r})")
    t0, t1, names = _paired(canonical, now)
    need = MIN_ANCHORS[model]  # one more than the parameters: the leave-one-out error needs a fit without each
    if len(names) < need:
        raise PhaseError(f"phase: {len(names)} anchors timed in both sessions; the {model} model needs at least {need}")
    a, b = fit_params(t0, t1, model)
    sd = float(np.sqrt(np.mean(loo_errors(t0, t1, model) ** 2)))
    return Phase(model, a, b, sd, len(names), session, canonical_session, timestamp)


def choose_model(sessions: Sequence[dict[str, float]], canonical: dict[str, float]) -> tuple[str, dict[str, float]]:
    """The model with the lowest leave-one-anchor-out RMS error (log space) over ``sessions`` against
    ``canonical``, and every candidate's error; a model some session cannot fit is not a candidate. Without any
    session to compare: ``loglinear`` when the anchors allow it (the issue's 98-minute gap: 85 % within ±10 %
    against 51 % for one scale), else ``scale``."""
    errors: dict[str, float] = {}
    for model in MODELS:
        errs = []
        for s in sessions:
            t0, t1, names = _paired(canonical, s)
            if len(names) < MIN_ANCHORS[model]:
                errs = []
                break
            errs.append(loo_errors(t0, t1, model))
        if errs:
            errors[model] = float(np.sqrt(np.mean(np.concatenate(errs) ** 2)))
    if not errors:
        return ("loglinear" if len(canonical) >= MIN_ANCHORS["loglinear"] else "scale"), errors
    best = min(errors.values())
    # Ties (within 2 % of the error) go to the simpler model: fewer parameters, less to go wrong between anchors.
    return next(m for m in MODELS if m in errors and errors[m] <= best * 1.02), errors


# ---------------------------------------------------------------------------------------------- the series


@dataclasses.dataclass
class Session:
    session: str
    timestamp: str
    source: str
    values: dict[str, float]  # {anchor: ms} of the ok anchors
    failed: dict[str, str]  # {anchor: reason}
    reference: str | None = None  # what its anchors were paired with (measured._backends.reference_id)


def sessions(anchor_df: pd.DataFrame, metric: str = "latency_ms") -> list[Session]:
    """The sessions of an ``anchor_timings`` frame (one device and protocol), oldest first; values in ms (per
    image for throughput: the phase maps times)."""
    out = []
    if anchor_df is None or anchor_df.empty:
        return out
    for sid, g in anchor_df.groupby("session", sort=False):
        ok = g[g["status"] == "ok"]
        bad = g[g["status"] != "ok"]
        ms = [float(v) if metric != "throughput_img_s" else 1e3 / float(v) for v in ok["value"]]
        refs = ok["reference"].dropna() if "reference" in ok else ()
        out.append(Session(str(sid), str(g["timestamp"].min()), str(g["source"].iloc[0]),
                           dict(zip(map(str, ok["anchor"]), ms)),
                           {str(a): str(r) for a, r in zip(bad["anchor"], bad["reason"])},
                           str(refs.iloc[0]) if len(refs) else None))
    return sorted(out, key=lambda s: (s.timestamp, s.session))


def current_reference(series: Sequence[Session]) -> list[Session]:
    """The sessions paired with the latest session's reference (and those with no ok anchor). One phase series maps
    one pair of models' times: int8 sessions stored before the int8 reference existed were paired with another B0
    (measured._backends.reference_id) and are left out once a session with the int8 one exists."""
    ref = next((s.reference for s in reversed(series) if s.reference), None)
    return [s for s in series if s.reference in (None, ref)]


def canonical_session(series: Sequence[Session]) -> Session | None:
    """The device's canonical phase: its first session that can fit the two-parameter model."""
    return next((s for s in series if len(s.values) >= MIN_ANCHORS["loglinear"]), None)


@dataclasses.dataclass
class PhaseSeries:
    """A device's sessions, the canonical one, the chosen model and every session's phase against it."""

    device: str
    protocol: str
    sessions: list[Session]
    canonical: Session | None
    model: str
    model_errors: dict[str, float]  # held-out RMS error (log space) of each candidate
    phases: dict[str, Phase]  # session id -> its phase (sessions that cannot fit it are absent)

    def latest(self) -> Phase | None:
        return next((self.phases[s.session] for s in reversed(self.sessions) if s.session in self.phases), None)

    def at(self, timestamp: str) -> Phase | None:
        """The phase of the latest session at or before ``timestamp`` (ISO, UTC)."""
        best = None
        for s in self.sessions:
            if s.timestamp[:19] <= timestamp[:19] and s.session in self.phases:
                best = self.phases[s.session]
        return best

    def pick(self, which: str) -> Phase | None:
        """The phase a budget is held against: now (the latest), typical (the median session by its slowdown
        at the anchors' median time), slow (the 90th percentile), canonical (no change)."""
        if which not in PHASE_CHOICES:
            raise PhaseError(f"phase: must be one of {'|'.join(PHASE_CHOICES)} (got {which!r})")
        if which == "canonical" or self.canonical is None:
            return None
        if which == "now":
            return self.latest()
        phases = list(self.phases.values())
        if not phases:
            return None
        mid = float(np.median(list(self.canonical.values.values())))
        ranked = sorted(phases, key=lambda p: p.factor(mid))
        q = 0.5 if which == "typical" else SLOW_QUANTILE
        return ranked[min(len(ranked) - 1, int(round(q * (len(ranked) - 1))))]


def phase_series(anchor_df: pd.DataFrame, device: str, protocol: str) -> PhaseSeries:
    """Every session of ``device`` under ``protocol`` fitted against the canonical one with the model chosen by
    held-out fit (sessions with too few ok anchors carry no phase)."""
    series = sessions(anchor_df[(anchor_df["device_id"] == device) & (anchor_df["protocol"] == protocol)]
                      if anchor_df is not None and len(anchor_df) else anchor_df, protocol.split("|")[0])
    series = current_reference(series)
    canon = canonical_session(series)
    if canon is None:
        return PhaseSeries(device, protocol, series, None, "loglinear", {}, {})
    others = [s.values for s in series if s is not canon]
    model, errors = choose_model(others, canon.values)
    phases = {}
    for s in series:
        try:
            phases[s.session] = fit_phase(canon.values, s.values, model, session=s.session,
                                          canonical_session=canon.session, timestamp=s.timestamp)
        except PhaseError:
            continue
    return PhaseSeries(device, protocol, series, canon, model, errors, phases)


def load_series(store, device: str, protocol: str) -> PhaseSeries:
    return phase_series(store.anchor_timings(device=device, protocol=protocol), device, protocol)


# ---------------------------------------------------------------------------------------------- canonical values


def row_phase(text) -> Phase | None:
    """The phase a row carries (None: not phase-normalised, or unreadable)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return Phase.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None


def paired_value(value: float, ratio, reference_value, metric: str) -> float:
    """A paired row's value as its median pair ratio times the reference's median (``value`` for a row timed
    alone): on a host whose load changes within a timing, the median of the ratios holds where the ratio of the
    two medians does not, and the row's phase level is set by that reference median (:func:`at_reference`)."""
    ok = all(isinstance(x, (int, float)) and np.isfinite(x) and x > 0 for x in (ratio, reference_value))
    if not ok:
        return value
    if metric == "throughput_img_s":
        return float(reference_value / ratio)  # img/s: the time ratio inverted
    return float(ratio * reference_value)


def canonical_value(value: float, metric: str, phase: Phase | None, ratio=None, reference_value=None) -> float:
    """A row's value in the canonical phase (as measured when it carries no phase). Throughput: via the time.
    ``ratio``/``reference_value``: a paired row's (see :func:`paired_value`)."""
    if phase is None or value is None or not np.isfinite(value):
        return value
    value = paired_value(value, ratio, reference_value, metric)
    if metric == "throughput_img_s":
        return float(1e3 / phase.invert(1e3 / value))  # the phase maps ms: ms per image
    return float(phase.invert(value))


def canonical_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (Store.measurements) with ``value`` in the canonical phase where a row carries a phase, the value
    as measured in ``measured_value`` and ``phase_normalised`` saying which rows were converted. Rows of one
    device must share one canonical session; the others are left as measured (and say so)."""
    out = df.copy()
    out["measured_value"] = out["value"]
    flags, values = [], []
    empty = pd.Series([None] * len(out), index=out.index)
    for v, metric, ph, r, ref in zip(out["value"], out["metric"], out.get("phase", empty), out.get("ratio", empty),
                                     out.get("reference_value", empty)):
        p = row_phase(ph)
        flags.append(p is not None)
        values.append(canonical_value(v, metric, p, r, ref))
    out["value"] = pd.Series(values, index=out.index, dtype="float64")
    out["phase_normalised"] = pd.Series(flags, index=out.index, dtype=bool)
    return out


def _widening(phase: Phase, coverage: float) -> float:
    """The phase's own uncertainty as a log-normal factor at ``coverage`` (its leave-one-out error ``sd``)."""
    from scipy.stats import norm

    return math.exp(float(norm.ppf(0.5 + coverage / 2)) * phase.sd)


def fold_uncertainty(pred, lo, hi, phase: Phase | None, coverage: float = 0.9):
    """(pred, lo, hi) of canonical-phase predictions mapped into ``phase``, the interval widened by the phase's
    own uncertainty (its leave-one-out error, as a log-normal factor at ``coverage``).

    The factor multiplies the mapped interval (log half-widths add, h + z sd), not in quadrature: adding in
    quadrature, as for independent errors, brought the 90 % intervals of three onboarded predictors on their
    60-config hold-outs (phase sd 1.5-3.5 %) from 83-90 % coverage to 80-85 % (predictors/README.md, 2026-12-03): the
    anchors' leave-one-out error understates how far a phase misses configs that are not anchors."""
    if phase is None:
        return np.asarray(pred, float), np.asarray(lo, float), np.asarray(hi, float)
    widen = _widening(phase, coverage)
    return phase.apply(pred), phase.apply(lo) / widen, phase.apply(hi) * widen


def unfold_uncertainty(pred, lo, hi, phase: Phase | None, coverage: float = 0.9):
    """The inverse of :func:`fold_uncertainty`: (pred, lo, hi) mapped into ``phase`` back to the canonical phase,
    the phase's uncertainty taken out again (``search --verify`` scores a study predicted "now" in the canonical
    phase too)."""
    if phase is None:
        return np.asarray(pred, float), np.asarray(lo, float), np.asarray(hi, float)
    widen = _widening(phase, coverage)
    return (phase.invert(pred), phase.invert(np.asarray(lo, float) * widen),
            phase.invert(np.asarray(hi, float) / widen))


def age_s(timestamp: str, now: _dt.datetime | None = None) -> float:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return (now - _dt.datetime.fromisoformat(timestamp)).total_seconds()


def describe(phase: Phase | None, canonical: dict[str, float] | None = None) -> str:
    """``loglinear a=+0.123 b=-0.045 (B0 x1.21, B3 x1.12; ±1.3%)`` — for outputs."""
    if phase is None:
        return "canonical"
    txt = f"{phase.model} a={phase.a:+.3f} b={phase.b:+.3f} (±{(math.exp(phase.sd) - 1) * 100:.1f}%"
    if canonical:
        lo, hi = min(canonical.values()), max(canonical.values())
        txt += f"; {lo:.3g} ms x{phase.factor(lo):.2f}, {hi:.3g} ms x{phase.factor(hi):.2f}"
    return txt + ")"


def iter_phase_rows(series: PhaseSeries) -> Iterable[dict[str, Any]]:
    """One row per session for tables and charts: time, source, anchors ok, each anchor's ms, the fit."""
    for s in series.sessions:
        p = series.phases.get(s.session)
        yield {"session": s.session, "timestamp": s.timestamp, "source": s.source, "anchors_ok": len(s.values),
               "failed": s.failed, "values": s.values, "model": p.model if p else None,
               "a": p.a if p else None, "b": p.b if p else None, "sd": p.sd if p else None,
               "canonical": series.canonical is not None and s.session == series.canonical.session}


# The public name (measured.describe_phase): "describe" alone says nothing outside this module.
describe_phase = describe
