"""Campaigns: measure hundreds of configs unattended.

Each config runs in a measuring process of its own with a timeout and a memory cap (:mod:`measured._measurer`:
reused across configs, replaced after any failure), so a crash, an out-of-memory or a hang becomes a stored
failure with its reason and the campaign goes on. Every result is stored the moment it arrives (one
transaction per config), and measurement ids are deterministic, so a campaign killed at any point and
restarted loses nothing and re-measures nothing, and two campaigns writing one store never duplicate a row.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable, Sequence

from lowformer_common import UserError
from search_spaces import LowFormerConfig

from ._harness import Protocol, measurement_id
from ._measurer import (  # noqa: F401  (re-exported: the campaign's public face)
    DEFAULT_TIMEOUT_S,
    MEMORY_FRACTION,
    Job,
    Measurer,
    is_gpu,
    memory_limit_bytes,
    run_in_child,
)
from ._records import Architecture, Device, Measurement, full_results


@dataclasses.dataclass
class CampaignReport:
    planned: int = 0
    skipped: int = 0  # already stored: resumed
    ok: int = 0
    failed: int = 0
    busy: int = 0
    seconds: float = 0.0
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    anchor_sessions: int = 0  # times the phase anchors were timed (paired timing only)
    phase: str | None = None  # the latest session's phase, in words
    # Wall seconds per phase (export, timing and within it session/warmup/pairs/..., anchors), when the measurer
    # reports them (measured.Measurer.seconds); the rest of ``seconds`` is storing rows and starting up.
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def line(self) -> str:
        anchors = (f"; anchors timed {self.anchor_sessions}x, phase {self.phase}" if self.anchor_sessions or self.phase
                   else "")
        return (
            f"{self.planned} planned, {self.skipped} already stored, {self.ok} measured, "
            f"{self.failed} failed, {self.busy} marked busy in {self.seconds:.0f} s{anchors}"
        )


# Anchors are timed again during a campaign after this many seconds or configs, whichever comes first. A session
# costs about as much as 5-8 configs (five anchors, each paired with the reference); every row's level is tracked by
# the reference timed with it anyway (PhaseTracker.stamp), so the anchors give the shape of the phase and the clock
# sets the cadence: at 1,500 configs/h and more, 200 configs take longer than 5 minutes.
ANCHORS_EVERY_S = 300.0
ANCHORS_EVERY_CONFIGS = 200


class PhaseTracker:
    """Times the phase anchors during a campaign (at its start, then every ``every_s`` seconds or ``every_n``
    configs), stores each session and stamps every ok row with the phase of the latest one."""

    def __init__(self, store, device_id: str, protocol: Protocol, engine, *, campaign: str | None, source: str,
                 every_s: float, every_n: int, clock: Callable[[], float]):
        self.store, self.device_id, self.protocol, self.engine = store, device_id, protocol, engine
        self.campaign, self.source, self.every_s, self.every_n, self.clock = campaign, source, every_s, every_n, clock
        self.last: float | None = None
        self.since = 0
        self.phase = None
        self.canonical_ref: float | None = None  # the reference's time in the canonical session (ms)
        self.sessions = 0
        self.words: str | None = None

    def due(self) -> bool:
        return self.last is None or self.since >= self.every_n or self.clock() - self.last >= self.every_s

    def refresh(self) -> None:
        """Time the anchors now (the timing worker is idle between configs), store them, fit the phase. At the
        start, a stored session of this device and protocol younger than ``every_s`` is taken instead."""
        from ._phase import load_series, session_rows

        if self.last is None and self._adopt():
            return
        self.last, self.since = self.clock(), 0
        results = self.engine.time_anchors()
        if results is None:
            self.every_s, self.every_n = float("inf"), 1 << 62  # this engine cannot time anchors
            return
        rows = session_rows(results, self.device_id, self.protocol, source=self.source, campaign=self.campaign)
        self.store.add_anchor_timings(rows)
        self.sessions += 1
        series = load_series(self.store, self.device_id, self.protocol.key)
        failed = [r["anchor"] for r in results if r.get("status") != "ok"]
        # A session that gave no phase (anchors failed, or timed beside a busy process and so refused) keeps the
        # latest one's shape; each paired row still sets its level from the reference timed with it (stamp).
        self._take(series, (series.phases.get(rows[0]["session"]) or series.latest()) if rows else None,
                   f", {len(failed)} anchors failed ({', '.join(failed)})" if failed else "")

    def _adopt(self) -> bool:
        """Take the latest stored session when it is complete and younger than ``every_s`` (the campaign just
        before this one, an onboarding, a drift check): it is as recent as one this campaign would time within its
        cadence, and timing it again would cost as much as several configs; the next is due when it is ``every_s``
        old. Whether one was taken: False when there is none to take."""
        from ._phase import age_s, anchor_configs, load_series

        series = load_series(self.store, self.device_id, self.protocol.key)
        last = series.sessions[-1] if series.sessions else None
        if last is None or last.session not in series.phases or last.failed:
            return False
        if not {n for n, _ in anchor_configs()} <= set(last.values):
            return False
        try:
            age = age_s(last.timestamp)
        except (TypeError, ValueError):
            return False
        if not 0 <= age < self.every_s:
            return False
        self.last, self.since = self.clock() - age, 0
        self._take(series, series.phases[last.session], f" (anchors timed {age:.0f} s before the campaign)")
        return True

    def _take(self, series, phase, note: str) -> None:
        """Make ``phase`` (of ``series``) the campaign's, with the reference's canonical time and the words."""
        from ._phase import describe

        self.phase = phase
        self.canonical_ref = series.canonical.values.get(self.protocol.reference) if series.canonical else None
        self.words = describe(phase, series.canonical.values if series.canonical else None) + note

    def stamp(self, m: Measurement) -> Measurement:
        """``m`` with its phase: the latest session's, its level moved to the reference's median timed with ``m``
        itself (:func:`measured._phase.at_reference`): the session gives the shape, the pairs the moment."""
        from ._phase import at_reference

        self.since += 1
        if m.status != "ok" or self.phase is None:
            return m
        phase = self.phase
        ref0 = self.canonical_ref
        if m.reference_value is not None and ref0 is not None:
            ref = m.reference_value if m.metric == "latency_ms" else 1e3 / m.reference_value
            phase = at_reference(phase, ref, ref0)
        return dataclasses.replace(m, phase=phase.to_json())


def pending(store, jobs: Sequence[Job], protocol: Protocol, device_id: str, retry_failed: bool = False) -> list[Job]:
    """The jobs without a stored result (ok, or failed unless ``retry_failed``) for this device and protocol."""
    df = store.measurements(device=device_id, metric=protocol.metric, status=None, protocol=protocol.key,
                            include_flagged=True)
    # Ids carry the run count when it is below MIN_TIMED_RUNS, so a quick run only satisfies a quick
    # campaign and never stands in for a full measurement.
    have = set(df["id"]) if len(df) else set()
    statuses = ("ok",) if retry_failed else ("ok", "failed")
    out = []
    for j in jobs:
        ids = {measurement_id(device_id, protocol.key, j.config.hash, j.repeat, s, protocol.runs) for s in statuses}
        if not ids & have:
            out.append(j)
    return out


def run_campaign(
    jobs: Iterable[Job],
    protocol: Protocol,
    device: Device,
    store,
    *,
    campaign: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retry_failed: bool = False,
    progress: bool = True,
    export_workers: int | None = None,
    fresh_process: bool = False,
    max_seconds: float | None = None,
    on_result: Callable[[Job, Measurement], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    measurer: Callable[..., Measurer] = Measurer,
    anchors_every_s: float | None = ANCHORS_EVERY_S,
    anchors_every: int = ANCHORS_EVERY_CONFIGS,
    anchor_source: str = "campaign",
    phase_tracker: PhaseTracker | None = None,
) -> CampaignReport:
    """Measure every job not yet stored for ``device`` under ``protocol``; store each result as it comes.

    ``export_workers``/``fresh_process``: how configs are measured (:class:`measured.Measurer`).
    ``max_seconds``: stop starting new configs after this long (what was measured stays stored; the rest
    is measured by the next run). ``on_result(job, measurement)`` is called after each result is stored.
    ``measurer``: what measures (a :class:`measured.Measurer` by default; tests pass a fake with its
    constructor's signature). With paired timing and a measurer that can (``time_anchors``), the phase anchors
    are timed at the start and every ``anchors_every_s`` seconds or ``anchors_every`` configs (None: never), stored
    as a session (source ``anchor_source``) and every ok row carries the latest session's phase.
    ``phase_tracker``: one the caller keeps across calls (a study measuring one config per call), used instead
    of a new one: its anchors are timed only when it is due.
    """
    from tqdm import tqdm

    jobs = list(jobs)
    store.add_device(device)
    todo = pending(store, jobs, protocol, device.device_id, retry_failed)
    report = CampaignReport(planned=len(jobs), skipped=len(jobs) - len(todo))
    t0 = clock()
    unit = "ms" if protocol.metric == "latency_ms" else "img/s"
    with tqdm(total=len(todo), desc=f"measuring on {device.device_id}", unit="config", disable=not progress,
              dynamic_ncols=True) as bar, \
            measurer(protocol, device.device_id, campaign=campaign, timeout_s=timeout_s, export_workers=export_workers,
                     fresh_process=fresh_process) as engine:
        tracker = phase_tracker
        can_time = hasattr(engine, "time_anchors")
        if tracker is None and todo and protocol.paired and anchors_every_s is not None and can_time:
            tracker = PhaseTracker(store, device.device_id, protocol, engine, campaign=campaign, source=anchor_source,
                                   every_s=anchors_every_s, every_n=anchors_every, clock=clock)
        if tracker is not None and todo and tracker.due():
            tracker.refresh()
        results = engine.measure(todo)
        try:
            for job, m in results:
                if tracker is not None:
                    m = tracker.stamp(m)
                store.add_measurements([m], archs=[Architecture.from_config(job.config, job.name)])
                report.measurements.append(m)
                setattr(report, m.status, getattr(report, m.status) + 1)
                bar.update(1)
                if m.value is not None:
                    bar.set_postfix_str(f"last {m.value:.1f} {unit} ({m.n} runs); failed {report.failed}, "
                                        f"busy {report.busy}")
                if on_result is not None:
                    on_result(job, m)
                if max_seconds is not None and clock() - t0 >= max_seconds:
                    break
                if tracker is not None and tracker.due() and len(report.measurements) < len(todo):
                    tracker.refresh()  # between configs: the timing worker is idle while this generator waits
        finally:
            results.close()  # stops whatever is still running
    if tracker is not None:
        report.anchor_sessions, report.phase = tracker.sessions, tracker.words
    report.phase_seconds = dict(getattr(engine, "seconds", {}))
    report.seconds = clock() - t0
    return report


def measure_configs(
    configs: Sequence[LowFormerConfig],
    *,
    store,
    device_id: str | None = None,
    protocol: Protocol | None = None,
    names: Sequence[str | None] | None = None,
    campaign: str | None = None,
    progress: bool = True,
    **campaign_options,
) -> list[Measurement | None]:
    """Measure configs on this machine (stored, resumable): one entry per config, in order.

    Each entry is the config's ok measurement under ``protocol`` on this device (an unflagged one first, else one
    flagged ``suspect`` because its pairs disagreed), else its failed or busy one (with the reason), else None. Results already stored are reused. Used by ``search --verify``.
    ``campaign_options``: those of :func:`run_campaign` (``export_workers``, ``timeout_s``, ...).
    """
    protocol = protocol or Protocol()
    device = resolve_local_device(store, device_id, gpu=is_gpu(protocol.backend))
    jobs = [Job(c, (names[i] if names else None)) for i, c in enumerate(configs)]
    run_campaign(jobs, protocol, device, store, campaign=campaign, progress=progress, **campaign_options)
    df = full_results(store.measurements(device=device.device_id, metric=protocol.metric, status=None,
                                         protocol=protocol.key, include_flagged=True))
    df = df[df["config_hash"].isin({c.hash for c in configs})].copy()
    # Per config: ok before failed before busy, a flagged ok row (its pairs disagreed) after an unflagged one,
    # then the latest (UTC ISO timestamps sort as text).
    df["_rank"] = df["status"].map({"ok": 0, "failed": 2, "busy": 3}) + (df["status"].eq("ok") & df["flag"].notna())
    best = df.sort_values(["_rank", "timestamp"], ascending=[True, False]).drop_duplicates("config_hash")
    by_hash = {r["config_hash"]: r for r in best.drop(columns="_rank").to_dict("records")}
    return [Measurement.from_mapping(by_hash[c.hash]) if c.hash in by_hash else None for c in configs]


LOCAL = "local"


def is_local_name(device_id: str | None) -> bool:
    """Whether a --device value means "this machine" (left out, empty or ``local``)."""
    return device_id in (None, "", LOCAL)


def resolve_local_device(store, device_id: str | None, gpu: bool = False) -> Device:
    """The device this machine measures as. ``local`` (or nothing) is this machine's own id; a new name is
    created with this machine's fingerprint; an existing device that is another machine (a Jetson, or a
    host with the same fingerprint but another CPU identity) is refused with one line."""
    from ._fingerprint import local_device, same_fingerprint, same_machine
    from ._records import check_device_id

    here = local_device(gpu=gpu)
    if is_local_name(device_id):
        return here
    check_device_id(device_id, "device")
    existing = store.device(device_id)
    if existing is None:
        return dataclasses.replace(here, device_id=device_id)
    if existing.source == "harness" and same_machine(existing):
        return existing
    if existing.source == "harness" and same_fingerprint(existing):
        raise UserError(
            f"device: {device_id!r} was measured on another host with this machine's fingerprint "
            f"({existing.name}, {here.fingerprint.get('usable_cores')} cores); such hosts have differed by 1.85x, so "
            f"its data cannot stand for this one. This machine is {here.device_id!r}: use --device local "
            "(and `lowformer-nas onboard` for a predictor of its own)"
        )
    raise UserError(
        f"device: {device_id!r} is another machine ({existing.name}); measure it there, or with "
        f"`lowformer-nas bundle` and `lowformer-nas import FILE --device {device_id}` "
        f"(`lowformer-nas onboard --device {device_id} --bundle DIR` for a predictor); this machine is --device local"
    )
