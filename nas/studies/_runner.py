"""Run a study: measure its models on this machine, store every measurement, write CSV, markdown and chart.

Toy models are timed in this process (``measured._harness``: export, warm-up, timed runs, busy check);
search-space configs (Figure 8) go through ``measured._campaign.run_campaign`` like any config, so they land
in the store exactly as a campaign's would.

Measurement cost is bounded per point: the protocol's warm-up and statistic are kept, but the number of
timed runs is chosen so that one point's timed runs take about ``POINT_BUDGET_S`` (never fewer than
``MIN_RUNS``, never more than the protocol's runs), and on a CPU backend a point above ``CPU_MAC_CAP`` MACs
is skipped (and listed as skipped). Every study run measures afresh (a new repeat index per point), unless
``resume`` reuses what an earlier run of the same study and mode stored.

On CPU and edge backends every model is timed paired with the reference (B0), as campaigns time configs
(``pairing``; ``alone`` keeps the unpaired protocol): each row records its median, its ratio to the reference
and the reference's median timed with it. A host's speed moves by tens of percent within a study's minutes; the
ratios do not, so the study's analysis (verdicts, ranks) runs on ``time_ms`` = ratio x the reference's median
over the whole run (one level for every model: no phases mixed), the raw medians kept in ``measured_ms``. A full
(not quick) paired run times the phase anchors at its start and every ``ANCHORS_EVERY_S`` seconds, like a
campaign, and stores them as the device's phase series; every stored row carries its phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import pathlib
import time
from typing import Any, Callable

import pandas as pd

from lowformer_common import UserError, atomic_write, read_at_most
from measured import (
    BACKENDS,
    HARNESS_METRICS,
    Device,
    Measurement,
    PhaseTracker,
    Protocol,
    get_backend,
    make_measurement,
    measure_runner,
    measurement_id,
)
from nas._html import write_html
from nas._layout import honest_log_axes

from ._base import Analysis, PaperContext, Study, UnknownStudy
from ._paper import PaperData, describe_device, preferred_devices
from ._verdict import RULES

# ------------------------------------------------------------------------------------------------------
# Measurement-cost choices (documented in CHOICES.md)
# ------------------------------------------------------------------------------------------------------
POINT_BUDGET_S = 3.0
MIN_RUNS = 10
CPU_MAC_CAP = 100e9
QUICK_RUNS, QUICK_WARMUP = 3, 1
# The phase anchors are timed at a full paired study's start, then again after this many seconds or models (as
# campaigns do; a quick run is a smoke test and times none).
ANCHORS_EVERY_S, ANCHORS_EVERY_MODELS = 300.0, 50
PAIRING_CHOICES = ("auto", "paired", "alone")
DEFAULT_OUT = pathlib.Path("runs") / "studies"  # under $LOWFORMER_NAS_HOME, where the README says a command keeps things


def _studies() -> dict[str, Study]:
    from ._attention import AttentionStudy
    from ._depthwise import DepthwiseStudy
    from ._fused import FusedMBConvStudy
    from ._resolution import ResolutionVsChannelsStudy
    from ._scaling import ResolutionScalingStudy

    return {s.name: s for s in (DepthwiseStudy(), FusedMBConvStudy(), ResolutionVsChannelsStudy(), AttentionStudy(),
                                ResolutionScalingStudy())}


def get_study(name: str) -> Study:
    studies = _studies()
    if name not in studies:
        raise UnknownStudy(f"study: unknown {name!r}; allowed: {'|'.join(studies)}|all")
    return studies[name]


@dataclasses.dataclass
class StudySettings:
    """How to run a study. ``device``: the id the local measurements are stored under (None: named after
    this machine's hardware fingerprint)."""

    device: str | None = None
    backend: str = "onnxruntime"
    metric: str = "latency_ms"
    batch: int | None = None  # None: 1 for latency, 200 for throughput (the paper's protocols)
    threads: int = 1
    precision: str = "fp32"
    quick: bool = False
    runs: int | None = None  # None: the protocol's 100 (3 in quick mode)
    warmup: int | None = None  # None: the protocol's 5 (1 in quick mode)
    budget_s: float = POINT_BUDGET_S
    mac_cap: float | None = None  # None: CPU_MAC_CAP on CPU backends, no cap on GPUs
    # Re-measure (never in quick mode), then mark busy, when other processes use more than this % of the CPU.
    busy_threshold_pct: float = Protocol.busy_threshold_pct
    resume: bool = False
    progress: bool = True
    out: str | os.PathLike | None = None
    # auto: paired with the reference on CPU and edge backends, alone on GPUs (the harness's rule); paired; alone.
    pairing: str = "auto"

    def validate(self) -> "StudySettings":
        if self.backend not in BACKENDS:
            raise UserError(f"backend: unknown {self.backend!r}; allowed: {'|'.join(BACKENDS)}")
        if self.metric not in HARNESS_METRICS:
            raise UserError(f"metric: must be one of {'|'.join(HARNESS_METRICS)} (got {self.metric!r})")
        if not (isinstance(self.budget_s, (int, float)) and self.budget_s > 0):
            raise UserError(f"budget_s: must be > 0 seconds (got {self.budget_s!r})")
        if self.mac_cap is not None and not self.mac_cap > 0:
            raise UserError(f"mac_cap: must be > 0 (got {self.mac_cap!r})")
        if not (isinstance(self.busy_threshold_pct, (int, float)) and 0 < self.busy_threshold_pct <= 100):
            raise UserError(f"busy_threshold_pct: must be in (0, 100] (got {self.busy_threshold_pct!r})")
        if self.pairing not in PAIRING_CHOICES:
            raise UserError(f"pairing: must be one of {'|'.join(PAIRING_CHOICES)} (got {self.pairing!r})")
        return self

    @property
    def device_kind(self) -> str:
        return BACKENDS[self.backend].device_kind

    @property
    def effective_mac_cap(self) -> float | None:
        if self.mac_cap is not None:
            return self.mac_cap
        return CPU_MAC_CAP if self.device_kind == "cpu" else None

    def protocol(self) -> Protocol:
        kw: dict[str, Any] = dict(backend=self.backend, threads=self.threads, precision=self.precision,
                                  busy_threshold_pct=self.busy_threshold_pct, pairing=self.pairing)
        if self.quick:
            # A smoke run: no re-measuring on a busy machine (that would multiply a test's time).
            kw.update(runs=QUICK_RUNS, warmup=QUICK_WARMUP, retries=0)
        if self.runs is not None:
            kw["runs"] = self.runs
        if self.warmup is not None:
            kw["warmup"] = self.warmup
        if self.metric == "throughput_img_s":
            return Protocol.throughput(**({"batch": self.batch} if self.batch else {}), **kw)
        return Protocol(batch=self.batch or 1, **kw)

    def campaign(self, study: str) -> str:
        return f"study:{study}:{'quick' if self.quick else 'full'}"


@dataclasses.dataclass
class StudyResult:
    study: Study
    settings: StudySettings
    device: Device
    protocol: Protocol
    backend_version: str
    results: pd.DataFrame
    analysis: Analysis
    paper_devices: tuple[str, ...]
    paper_device_text: str  # the closest paper device, described
    paper_origin: str
    seconds: float
    files: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    basis: str = ""  # what the analysis's times are (ratios at one reference level, or absolute medians)
    anchor_sessions: int = 0
    phase: str | None = None  # the latest anchor session's phase, in words

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.results["status"].value_counts().items()}

    def report(self) -> str:
        """The markdown report (also written as <study>.md)."""
        return render_report(self)


# ------------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------------


def choose_runs(per_run_s: float | None, protocol: Protocol, budget_s: float) -> int:
    """Timed runs for one point: about ``budget_s`` of timing, at least MIN_RUNS, at most the protocol's."""
    floor = min(MIN_RUNS, protocol.runs)
    if per_run_s is None or not per_run_s > 0:
        return protocol.runs
    return max(floor, min(protocol.runs, int(budget_s / per_run_s)))


def measure_toy(toy, protocol: Protocol, device_id: str, *, repeat: int = 0, campaign: str | None = None,
                budget_s: float = POINT_BUDGET_S, reference=None, **timer) -> Measurement:
    """Time one toy model in this process, paired with the reference when ``protocol.paired``; a failure (of the
    toy, or of the reference: never a ratio to nothing) becomes a failed measurement with its reason.
    ``reference``: (runner, config hash, name) to pair with (None: the protocol's, loaded once per process);
    ``timer``: ``clock``/``monitor`` for the harness (tests)."""
    from measured import ReferenceFailed, reference_runner

    backend = get_backend(protocol.backend, protocol.threads, protocol.precision)
    proto, timing, status, reason = protocol, None, "ok", None
    try:
        if protocol.paired and reference is None:
            reference = reference_runner(protocol)  # loaded once per process (the harness's cache)
        runner = backend.load_module(toy.build(), toy.input_shape(protocol.batch))
        runner()  # the first run initialises lazily: not representative of the next ones
        t0 = time.perf_counter()
        runner()
        per_run = time.perf_counter() - t0
        if protocol.paired:
            t0 = time.perf_counter()
            reference[0]()
            per_run += time.perf_counter() - t0  # a pair costs both runs
        proto = dataclasses.replace(protocol, runs=choose_runs(per_run, protocol, budget_s))
        timing, status, reason = measure_runner(runner, proto, reference=reference if protocol.paired else None,
                                                **timer)
    except MemoryError:
        status, reason = "failed", "out of memory"
    except ReferenceFailed as e:
        status, reason = "failed", str(e)
    except Exception as e:  # noqa: BLE001 (every failure is stored with its reason; the study goes on)
        status, reason = "failed", f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
    finally:
        backend.close()
    return make_measurement(
        toy.config_hash, toy.resolution, proto, device_id, timing=timing, status=status, reason=reason,
        backend_version=backend.version(), repeat=repeat, campaign=campaign, notes=f"study {toy.study}: {toy.name}",
    )


def _time_ms(m: Measurement, protocol: Protocol) -> float:
    """Time per image in ms (NaN unless ok): latency / batch, or 1000 / throughput."""
    if m.status != "ok" or m.value is None:
        return math.nan
    return m.value / protocol.batch if protocol.metric == "latency_ms" else 1000.0 / m.value


def _per_run_s(m: Measurement, protocol: Protocol) -> float | None:
    """Seconds per timed run (a busy measurement's value still estimates the next model's run count)."""
    if not m.value:
        return None
    return m.value / 1e3 if protocol.metric == "latency_ms" else protocol.batch / m.value


def _measurement(row) -> Measurement:
    """A stored row (a pandas Series, NA for empty) as a Measurement."""
    values = {k: row[k] for k in Measurement.fields() if k in row}
    return Measurement.from_mapping({k: (None if pd.isna(v) else v) for k, v in values.items()})


class _Ledger:
    """What the store already holds for this device and protocol: ids (for fresh repeat indexes) and the
    rows an earlier run of this study stored (for ``resume``)."""

    def __init__(self, store, device_id: str, protocol: Protocol, campaign: str):
        df = store.measurements(device=device_id, metric=protocol.metric, status=None, protocol=protocol.key,
                                include_flagged=True)
        self.ids = set(df["id"]) if len(df) else set()
        self.device_id, self.protocol, self.previous = device_id, protocol, {}
        if len(df):
            mine = df[(df["campaign"] == campaign) & (df["status"] == "ok")].sort_values("timestamp")
            for _, r in mine.iterrows():
                self.previous[r["config_hash"]] = r

    def next_repeat(self, config_hash: str) -> int:
        r = 0
        while any(measurement_id(self.device_id, self.protocol.key, config_hash, r, s, self.protocol.runs) in self.ids
                  for s in ("ok", "failed")):
            r += 1
        return r

    def reuse(self, config_hash: str) -> Measurement | None:
        row = self.previous.get(config_hash)
        if row is None:
            return None
        return _measurement(row)

    def stored(self, store, config_hash: str, repeat: int) -> Measurement | None:
        """The result a campaign stored for ``repeat`` (when it found the job already done)."""
        df = store.measurements(device=self.device_id, metric=self.protocol.metric, status=None,
                                protocol=self.protocol.key, include_flagged=True)
        ids = {measurement_id(self.device_id, self.protocol.key, config_hash, repeat, s, self.protocol.runs)
               for s in ("ok", "failed")}
        hit = df[df["id"].isin(ids)]
        if not len(hit):
            return None
        row = hit.iloc[0]
        return _measurement(row)


def _resolve_device(store, settings: StudySettings, paper: PaperData) -> Device:
    from measured import resolve_local_device

    if settings.device is not None and settings.device in paper.devices():
        raise UserError(f"device: {settings.device!r} is one of the paper's devices; give the id to store this "
                        "machine's measurements under (or leave --device out: named after this machine)")
    device = resolve_local_device(store, settings.device, gpu=BACKENDS[settings.backend].is_gpu())
    return device.validate()


class _InProcessAnchors:
    """Times the phase anchors in this process (a study times its toys here; no worker to ask)."""

    def __init__(self, protocol: Protocol, time_anchors: Callable[[], list[dict]] | None = None):
        self.protocol, self._time = protocol, time_anchors

    def time_anchors(self) -> list[dict]:
        if self._time is not None:
            return self._time()
        from measured import time_anchor_session

        return time_anchor_session(self.protocol)


def phase_tracker(settings: StudySettings, store, device: Device, protocol: Protocol, campaign: str, *,
                  time_anchors: Callable[[], list[dict]] | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> PhaseTracker | None:
    """The tracker that times the anchors during a full paired study (None: a quick or unpaired run)."""
    if settings.quick or not protocol.paired:
        return None
    return PhaseTracker(store, device.device_id, protocol, _InProcessAnchors(protocol, time_anchors),
                        campaign=campaign, source="study", every_s=ANCHORS_EVERY_S, every_n=ANCHORS_EVERY_MODELS,
                        clock=clock)


class _OneMeasurer:
    """One :class:`measured.Measurer` for the campaigns of a study run, as a ``run_campaign`` ``measurer`` factory:
    each search-space point (or each precision of the int8 study) is a campaign of its own, with its own protocol,
    but the measuring workers (a torch and onnxruntime import each) start once per study run, not once per
    campaign, and are reused config after config as in any campaign (replaced after a failure). Each request
    carries its campaign's protocol; workers are started for a backend and thread count, so a campaign that
    differs in those (or in the measurer's options) gets a new engine."""

    def __init__(self):
        self.engine, self._key = None, None

    def __call__(self, protocol: Protocol, device_id: str, **options):
        from measured import Measurer

        key = (protocol.backend, protocol.threads, device_id, sorted(options.items()))
        if self.engine is not None and key != self._key:
            self.engine.close()
            self.engine = None
        if self.engine is None:
            self.engine, self._key = Measurer(protocol, device_id, **options), key
        self.engine.protocol = protocol
        return contextlib.nullcontext(self.engine)  # closed with the study's run, not with each campaign

    def __enter__(self) -> "_OneMeasurer":
        return self

    def __exit__(self, *exc) -> None:
        if self.engine is not None:
            self.engine.close()


def measure_points(study: Study, points, settings: StudySettings, store, device: Device,
                   protocol: Protocol, *, tracker: PhaseTracker | None = None, **timer) -> pd.DataFrame:
    """Measure (or reuse, or skip) every point; store each result as it comes; one row per point. ``tracker``
    times the phase anchors when due (between points) and stamps each row with its phase; ``timer``:
    ``clock``/``monitor`` for the harness (tests)."""
    from tqdm import tqdm

    from measured import Job, run_campaign

    campaign = settings.campaign(study.name)
    ledger = _Ledger(store, device.device_id, protocol, campaign)
    cap = settings.effective_mac_cap
    rows, s_per_mac = [], None
    bar = tqdm(points, desc=f"{study.name} on {device.device_id}", unit="model", disable=not settings.progress,
               dynamic_ncols=True)
    with _OneMeasurer() as engines:  # one measuring worker for every search-space config
        for p in bar:
            bar.set_postfix_str(f"{p.name} @{p.resolution}")
            row: dict[str, Any] = dict(name=p.name, resolution=p.resolution, kind=p.kind, config_hash=p.config_hash,
                                       macs=p.macs, params=p.params, **dict(p.meta))
            m, reused = None, False
            # A point that is only useful with a partner (a Figure 3 cell) is gated by the costlier of the two.
            gate = p.meta.get("cell_macs", p.macs)
            if cap is not None and gate > cap:
                row.update(status="skipped", reason=f"{gate / 1e9:.0f} GMACs is above the cap of {cap / 1e9:.0f} GMACs")
            else:
                m = ledger.reuse(p.config_hash) if settings.resume else None
                reused = m is not None
                if m is None:
                    if tracker is not None and tracker.due():
                        tracker.refresh()  # between models: nothing else is timing
                    repeat = ledger.next_repeat(p.config_hash)
                    if p.kind == "toy":
                        m = measure_toy(p, protocol, device.device_id, repeat=repeat, campaign=campaign,
                                        budget_s=settings.budget_s, **timer)
                        m = tracker.stamp(m) if tracker is not None else m
                        store.add_measurements([m], archs=[p.architecture()])
                    else:
                        est = s_per_mac * p.macs if s_per_mac else None
                        proto = dataclasses.replace(protocol, runs=choose_runs(est, protocol, settings.budget_s))
                        # The study's tracker times the anchors (not one session per point) and stamps the row.
                        report = run_campaign([Job(p.config, p.name, repeat)], proto, device, store, campaign=campaign,
                                              progress=False, anchors_every_s=None, phase_tracker=tracker,
                                              measurer=engines)
                        m = (report.measurements[0] if report.measurements
                             else ledger.stored(store, p.config_hash, repeat))
                    if m is not None:
                        ledger.ids.add(m.id)
            if m is None and "status" not in row:
                row.update(status="failed", reason="the campaign returned no measurement")
            if m is not None:
                per_run = _per_run_s(m, protocol)
                if per_run:
                    s_per_mac = per_run / max(p.macs, 1)
                row.update(status=m.status, reason=m.reason, value=m.value, p10=m.p10, p90=m.p90, n=m.n,
                           time_ms=_time_ms(m, protocol), busy_pct=m.busy_pct, measurement_id=m.id, reused=reused,
                           **_pairing_columns(m, protocol))
            rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("value", "p10", "p90", "time_ms", "busy_pct", *PAIRED_COLUMNS):
        if c not in df:
            df[c] = math.nan
    df["time_ms"] = df["time_ms"].astype(float)
    return df


# The columns a paired row adds to a study's results (NaN for a row timed alone).
PAIRED_COLUMNS = ("ratio", "ratio_lo", "ratio_hi", "reference_ms")


def _pairing_columns(m: Measurement, protocol: Protocol) -> dict[str, Any]:
    """A row's pairing, its ratio to the reference with the CI, the reference's time per image timed with it."""
    out: dict[str, Any] = {"pairing": m.pairing or "alone", "flag": m.flag}
    if m.status == "ok" and m.ratio is not None and m.reference_value:
        ref_ms = m.reference_value / protocol.batch if protocol.metric == "latency_ms" else 1e3 / m.reference_value
        out.update(ratio=m.ratio, ratio_lo=m.ratio_lo, ratio_hi=m.ratio_hi, reference_ms=ref_ms)
    return out


def one_phase(results: pd.DataFrame, reference: str = "B0") -> tuple[pd.DataFrame, str]:
    """``results`` with ``time_ms`` in one phase, and what it is, in words. Paired ok rows: their ratio times the
    reference's median time over the run (the median of every row's reference median: one level for all, so no
    row carries the host's speed at its own moment); the raw medians move to ``measured_ms``. Rows without a
    ratio (timed alone, or reused from a run before pairing) keep their absolute median and the words say so."""
    out = results.copy()
    if "measured_ms" not in out:
        out["measured_ms"] = out["time_ms"]
    ratio = pd.to_numeric(out.get("ratio"), errors="coerce") if "ratio" in out else pd.Series(math.nan, out.index)
    ref = pd.to_numeric(out.get("reference_ms"), errors="coerce") if "reference_ms" in out else ratio * math.nan
    paired = (out["status"] == "ok") & (ratio > 0) & (ref > 0)
    ok = out["status"] == "ok"
    if not paired.any():
        out["basis"] = "absolute"
        return out, ("absolute medians, each timed alone at its own moment (the host's speed at that moment is "
                     "in every value: compare within a quiet run only)")
    level = float(ref[paired].median())
    out.loc[paired, "time_ms"] = ratio[paired] * level
    out["basis"] = ["ratio" if p else ("absolute" if o else None) for p, o in zip(paired, ok)]
    words = (f"ratios to the reference {reference} (timed in adjacent pairs with each model) x {reference}'s median "
             f"over the run, {level:.4g} ms: one level for every model, no phases mixed; raw medians in measured_ms")
    alone = int((ok & ~paired).sum())
    if alone:
        words += f"; {alone} ok row(s) without a ratio (timed alone) keep their absolute median"
    return out, words


# ------------------------------------------------------------------------------------------------------
# running and writing
# ------------------------------------------------------------------------------------------------------


def run_study(name: str, settings: StudySettings | None = None, store=None, *,
              time_anchors: Callable[[], list[dict]] | None = None, clock: Callable[[], float] = time.perf_counter,
              **timer) -> StudyResult:
    """Run one study end to end (see the module docstring). ``store``: a ``measured._store.Store``
    (None: the default store). ``time_anchors``/``clock``: how the phase anchors are timed and when they are due
    (tests); ``timer``: ``clock``/``monitor`` for the harness (tests)."""
    settings = (settings or StudySettings()).validate()
    study = get_study(name)
    protocol = settings.protocol()
    backend = get_backend(settings.backend, settings.threads, settings.precision)  # unavailable: one-line error
    if store is None:
        from measured import Store

        store = Store()
    paper = PaperData.load(store)
    device = _resolve_device(store, settings, paper)
    store.add_device(device)
    t0 = time.perf_counter()
    points = study.points(settings.quick)
    tracker = phase_tracker(settings, store, device, protocol, settings.campaign(name), time_anchors=time_anchors,
                            clock=clock)
    measured = measure_points(study, points, settings, store, device, protocol, tracker=tracker, **timer)
    results, basis = one_phase(measured, protocol.reference)
    ctx = PaperContext(paper, preferred_devices(settings.device_kind, settings.metric))
    analysis = study.analyse(results, ctx, settings.quick)
    result = StudyResult(study, settings, device, protocol, backend.version(), results, analysis, ctx.devices,
                         describe_device(store, ctx.closest), paper.origin(), time.perf_counter() - t0, basis=basis,
                         anchor_sessions=tracker.sessions if tracker else 0, phase=tracker.words if tracker else None)
    write_outputs(result)
    return result


def output_dir(settings: StudySettings, study: str) -> pathlib.Path:
    if settings.out is not None:
        return pathlib.Path(settings.out)
    from lowformer_common import home_dir

    return home_dir() / DEFAULT_OUT / study


def write_outputs(result: StudyResult) -> None:
    out = output_dir(result.settings, result.study.name)
    name = result.study.name
    files = {"csv": out / f"{name}.csv", "findings": out / f"{name}_findings.csv", "markdown": out / f"{name}.md",
             "chart": out / f"{name}.html"}
    result.files = files
    atomic_write(files["csv"], result.results.to_csv(index=False))
    findings = pd.DataFrame([f.to_dict() for f in result.analysis.findings])
    findings["values"] = result.basis  # what the local figures were computed on (ratios, or absolute medians)
    atomic_write(files["findings"], findings.to_csv(index=False))
    atomic_write(files["markdown"], result.report())
    write_chart(result.analysis.figure, result.study, result.device.device_id, result.settings.backend,
                result.settings.quick, files["chart"])


QUICK_NOTE = "quick mode: tiny grids, 3 timed runs: a smoke test, not comparable with the paper"


def write_chart(fig, study: Study, device_id: str, backend: str, quick: bool, path: pathlib.Path) -> pathlib.Path:
    """A study's chart: titled with the study, device and backend; quick-mode runs say so in the title and
    across the plot; full-number ticks on its log axes."""
    title = f"{study.title} ({study.source}) on {device_id}, {backend}"
    if quick:
        title = f"[quick mode] {title}<br><sup>{QUICK_NOTE}</sup>"
        fig.add_annotation(text="quick mode", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font={"size": 64, "color": "rgba(200,0,0,0.12)"})
    fig.update_layout(title=title)
    honest_log_axes(fig)
    return write_html(fig, path)


# ------------------------------------------------------------------------------------------------------
# redrawing a chart from a finished run's CSV
# ------------------------------------------------------------------------------------------------------

_MAX_RESULTS_BYTES = 10 * 2**20
_RESULT_COLUMNS = ("name", "resolution", "kind", "config_hash", "status", "time_ms", "measurement_id")
_RESULT_STATUSES = ("ok", "failed", "busy", "skipped")


def read_results(path: pathlib.Path, study: Study) -> tuple[pd.DataFrame, bool | None]:
    """A study's results CSV as written by ``write_outputs``, checked against the study: its config hashes
    must be the points of the full or the quick run. Returns (results, quick: None where both runs have the
    same points)."""
    try:
        data = read_at_most(path, _MAX_RESULTS_BYTES)
    except OSError:
        raise UserError(f"redraw: {path}: no results of study {study.name} there (run the study first, or give "
                        "--out DIR, the folder it wrote to)") from None
    if len(data) > _MAX_RESULTS_BYTES:
        raise UserError(f"redraw: {path}: more than {_MAX_RESULTS_BYTES} bytes; a study's results are under that")
    try:
        df = pd.read_csv(io.BytesIO(data), dtype={"config_hash": str, "measurement_id": str, "status": str})
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"redraw: {path}: not a results CSV ({type(e).__name__})") from None
    missing = [c for c in _RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"redraw: {path}: missing column(s) {', '.join(missing)}")
    bad = sorted(set(df["status"].astype(str)) - set(_RESULT_STATUSES))
    if bad:
        raise UserError(f"redraw: {path}: status {bad[0]!r} not in {'|'.join(_RESULT_STATUSES)}")
    times = pd.to_numeric(df["time_ms"], errors="coerce")
    if ((df["status"] == "ok") & ~(times > 0)).any() or (times < 0).any():
        raise UserError(f"redraw: {path}: time_ms must be a positive number for every ok row")
    df["time_ms"] = times.astype(float)
    hashes = set(df["config_hash"])
    modes = [q for q in (False, True) if {p.config_hash for p in study.points(q)} == hashes]
    if len(df) != len(hashes) or not modes:
        raise UserError(f"redraw: {path}: its rows are not the models of study {study.name} (full or quick run)")
    return df, (modes[0] if len(modes) == 1 else None)


def _stored_provenance(store, results: pd.DataFrame) -> dict[str, str] | None:
    """Device, backend, metric and campaign of the measurements behind ``results``, from the store."""
    ids = set(results["measurement_id"].dropna())
    if not ids or store is None:
        return None
    rows = store.measurements(status=None, include_flagged=True)
    rows = rows[rows["id"].isin(ids)]
    if not len(rows):
        return None
    out = {}
    for col in ("device_id", "backend", "metric", "campaign"):
        values = sorted(set(rows[col].dropna()))
        if len(values) != 1:
            raise UserError(f"redraw: the results mix {col}s {', '.join(values)}; redraw one run at a time")
        out[col] = values[0]
    return out


def redraw_study(name: str, settings: StudySettings | None = None, store=None) -> pathlib.Path:
    """Draw a study's chart again from the results CSV a run wrote to its output folder (``settings.out``):
    nothing is measured. Device, backend and mode come from the store's rows of those measurements; where
    the store does not hold them, from ``settings`` (``device`` is then required)."""
    settings = (settings or StudySettings()).validate()
    study = get_study(name)
    path = output_dir(settings, name) / f"{name}.csv"
    results, quick = read_results(path, study)
    if store is None:
        from measured import Store

        store = Store()
    prov = _stored_provenance(store, results)
    if prov is not None:
        device_id, backend, metric = prov["device_id"], prov["backend"], prov["metric"]
        quick = prov["campaign"].endswith(":quick")
    else:
        if settings.device is None:
            raise UserError(f"device: the measurements behind {path} are not in the store; give --device ID "
                            "(and --backend/--metric where they differ from the defaults)")
        device_id, backend, metric = settings.device, settings.backend, settings.metric
        quick = settings.quick if quick is None else quick
    kind = BACKENDS[backend].device_kind if backend in BACKENDS else "cpu"
    ctx = PaperContext(PaperData.load(store), preferred_devices(kind, metric))
    analysis = study.analyse(results, ctx, quick)
    return write_chart(analysis.figure, study, device_id, backend, quick, path.with_suffix(".html"))


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join("–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                                       for v in r.tolist()) + " |")
    return "\n".join(lines)


def protocol_line(result: StudyResult) -> str:
    p, s = result.protocol, result.settings
    cap = s.effective_mac_cap
    return (f"{p.backend} {result.backend_version}, {p.threads} thread(s), {p.metric}, batch {p.batch}, {p.precision}; "
            f"warm-up {p.warmup}, median of up to {p.runs} timed runs per model (fewer for slow models: about "
            f"{s.budget_s:g} s of timed runs per model, never fewer than {min(MIN_RUNS, p.runs)})"
            + (f"; models above {cap / 1e9:.0f} GMACs skipped" if cap else "")
            + (f"; each model paired with {p.reference} (A B | B A runs)" if p.paired else "; each model timed alone"))


def render_report(result: StudyResult) -> str:
    s, a = result.study, result.analysis
    counts = result.counts()
    lines = [
        f"# Study `{s.name}`: {s.title} ({s.source})",
        "",
        f"- device: `{result.device.device_id}` ({result.device.name})",
        f"- protocol: {protocol_line(result)}",
        f"- paper device (closest first): {result.paper_device_text}; "
        f"fallbacks {', '.join(result.paper_devices[1:])}",
        f"- paper numbers from: {result.paper_origin}",
        f"- models: {', '.join(f'{v} {k}' for k, v in counts.items())}; {result.seconds:.0f} s",
    ]
    if result.basis:
        lines.append(f"- times analysed (verdicts, ranks): {result.basis}")
    if result.anchor_sessions:
        lines.append(f"- phase anchors timed {result.anchor_sessions}x; latest phase: {result.phase}")
    if result.settings.quick:
        lines.append("- **quick mode**: reduced sizes and 3 timed runs: a smoke test, not comparable with the paper")
    lines.append("")
    for title, table in a.tables:
        lines += [f"## {title}", "", _md_table(table), ""]
    lines += ["## Findings", ""]
    lines += [f"- {f.line()}" + (f"  \n  paper: {f.claim}" if f.claim else "") for f in a.findings]
    lines += ["", "## Verdict rules", ""]
    for key in sorted({f.rule for f in a.findings}):
        lines.append(f"- {key} findings: {RULES[key]}")
    problems = result.results[result.results["status"] != "ok"]
    if len(problems):
        lines += ["", "## Not measured", ""]
        lines += [f"- {r['name']} @{r['resolution']}: {r['status']}: {r['reason']}" for _, r in problems.iterrows()]
    if a.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(lines) + "\n"
