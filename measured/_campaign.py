"""Campaigns: measure hundreds of configs unattended.

Each config runs in a child process with a timeout and a memory cap, so a crash, an out-of-memory or a
hang becomes a stored failure with its reason and the campaign goes on. Every result is stored the
moment it arrives (one transaction per config), and measurement ids are deterministic, so a campaign
killed at any point and restarted loses nothing and re-measures nothing, and two campaigns writing one
store never duplicate a row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Iterable, Sequence

from lowformer_common import UserError
from search_spaces import LowFormerConfig

from ._backends import BACKENDS
from ._harness import Protocol, make_measurement, measurement_id
from ._records import Architecture, Device, Measurement, full_results

DEFAULT_TIMEOUT_S = 900.0
# The child may use this share of the machine's memory before allocations fail (becoming a stored
# "out of memory" instead of the kernel's OOM killer picking a victim).
MEMORY_FRACTION = 0.8


def _is_gpu(backend: str) -> bool:
    return BACKENDS[backend].device_kind == "gpu"


def memory_limit_bytes(backend: str) -> int | None:
    """The child's address-space cap for a backend (None: uncapped). GPU runtimes reserve far more virtual
    address space than they use (CUDA maps the whole device and host memory): a cap would break them."""
    if _is_gpu(backend):
        return None
    import psutil

    return int(psutil.virtual_memory().total * MEMORY_FRACTION)


@dataclasses.dataclass(frozen=True)
class Job:
    config: LowFormerConfig
    name: str | None = None
    repeat: int = 0


@dataclasses.dataclass
class CampaignReport:
    planned: int = 0
    skipped: int = 0  # already stored: resumed
    ok: int = 0
    failed: int = 0
    busy: int = 0
    seconds: float = 0.0
    measurements: list[Measurement] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.planned} planned, {self.skipped} already stored, {self.ok} measured, "
            f"{self.failed} failed, {self.busy} marked busy in {self.seconds:.0f} s"
        )


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_in_child(job: Job, protocol: Protocol, device_id: str, campaign: str | None, timeout_s: float) -> Measurement:
    """Measure one job in a fresh Python process; failures come back as failed measurements."""
    payload = json.dumps(
        {
            "config": job.config.canonical_json(),
            "name": job.name,
            "repeat": job.repeat,
            "protocol": dataclasses.asdict(protocol),
            "device_id": device_id,
            "campaign": campaign,
            "memory_limit_bytes": memory_limit_bytes(protocol.backend),
        }
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(protocol.threads), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "measured._child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # so a timeout kills the child's whole process group
    )
    try:
        out, err = proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        return _failed(job, protocol, device_id, campaign, f"timeout: no result after {timeout_s:.0f} s")
    except BaseException:
        # The campaign itself is being stopped: take the child down with it.
        _kill_group(proc.pid)
        raise
    result = None
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if result and "measurement" in result:
        return Measurement(**result["measurement"]).validate()
    if result and "error" in result:
        return _failed(job, protocol, device_id, campaign, result["error"])
    if proc.returncode < 0:
        why = _signal_name(proc.returncode)
        hint = " (killed: out of memory?)" if proc.returncode == -signal.SIGKILL else ""
        return _failed(job, protocol, device_id, campaign, f"crashed: {why}{hint}")
    tail = " ".join(err.strip().splitlines()[-1:])[-300:] if err else ""
    return _failed(job, protocol, device_id, campaign, f"crashed: exit status {proc.returncode}: {tail}")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it has just exited on its own
        pass


def _failed(job: Job, protocol: Protocol, device_id: str, campaign: str | None, reason: str) -> Measurement:
    return make_measurement(
        job.config.hash, job.config.resolution, protocol, device_id, status="failed", reason=reason,
        repeat=job.repeat, campaign=campaign, notes=job.name,
    )


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
) -> CampaignReport:
    """Measure every job not yet stored for ``device`` under ``protocol``; store each result as it comes."""
    from tqdm import tqdm

    jobs = list(jobs)
    store.add_device(device)
    todo = pending(store, jobs, protocol, device.device_id, retry_failed)
    report = CampaignReport(planned=len(jobs), skipped=len(jobs) - len(todo))
    t0 = time.perf_counter()
    bar = tqdm(todo, desc=f"measuring on {device.device_id}", unit="config", disable=not progress, dynamic_ncols=True)
    for job in bar:
        m = run_in_child(job, protocol, device.device_id, campaign, timeout_s)
        store.add_measurements([m], archs=[Architecture.from_config(job.config, job.name)])
        report.measurements.append(m)
        setattr(report, m.status, getattr(report, m.status) + 1)
        if m.value is not None:
            bar.set_postfix_str(f"last {m.value:.1f} {'ms' if protocol.metric == 'latency_ms' else 'img/s'}; "
                                f"failed {report.failed}, busy {report.busy}")
    report.seconds = time.perf_counter() - t0
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
) -> list[Measurement | None]:
    """Measure configs on this machine (stored, resumable): one entry per config, in order.

    Each entry is the config's ok measurement under ``protocol`` on this device, else its failed or busy one
    (with the reason), else None. Results already stored are reused. Used by ``search --verify``.
    """
    protocol = protocol or Protocol()
    device = resolve_local_device(store, device_id, gpu=_is_gpu(protocol.backend))
    jobs = [Job(c, (names[i] if names else None)) for i, c in enumerate(configs)]
    run_campaign(jobs, protocol, device, store, campaign=campaign, progress=progress)
    df = full_results(store.measurements(device=device.device_id, metric=protocol.metric, status=None,
                                         protocol=protocol.key))
    df = df[df["config_hash"].isin({c.hash for c in configs})].copy()
    # Per config: ok before failed before busy, then the latest (UTC ISO timestamps sort as text).
    df["_rank"] = df["status"].map({"ok": 0, "failed": 1, "busy": 2})
    best = df.sort_values(["_rank", "timestamp"], ascending=[True, False]).drop_duplicates("config_hash")
    by_hash = {r["config_hash"]: r for r in best.drop(columns="_rank").to_dict("records")}
    return [Measurement.from_mapping(by_hash[c.hash]) if c.hash in by_hash else None for c in configs]


def resolve_local_device(store, device_id: str | None, gpu: bool = False) -> Device:
    """The device this machine measures as. A name given by the user is created with this machine's
    fingerprint; an existing device that is another machine (a Jetson, say) is refused."""
    from ._fingerprint import local_device, same_machine

    here = local_device(gpu=gpu)
    if device_id in (None, "", "local"):
        return here
    existing = store.device(device_id)
    if existing is None:
        return dataclasses.replace(here, device_id=device_id)
    if existing.source != "harness" or not same_machine(existing):
        raise UserError(
            f"device: {device_id!r} is another machine ({existing.name}); measure it there, or with "
            f"`lowformer-nas bundle` and `lowformer-nas import FILE --device {device_id}`"
        )
    return existing
