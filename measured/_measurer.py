"""Measuring many configs fast without giving up isolation.

A :class:`Measurer` keeps measuring processes (:mod:`measured._worker`) alive across configs: Python, torch
and the runtime are imported once per worker instead of once per config. Each config still runs in a
process of its own (never in the campaign's), with a timeout and a memory cap, and a worker that crashed,
hung or failed is replaced before the next config, so one bad config costs only itself.

For backends that run ONNX files (onnxruntime, TensorRT) the work of a config is split in two phases that
never overlap: first a chunk of configs is built and exported by one worker per core, all at once; then
one worker times them one after the other while the other workers sleep. Export and session creation stay
off the timed window, the timing never shares the machine with an export (the load monitor would count it
and it would disturb the numbers), and the export, which costs more than the timing of most configs, runs
on every core.

``fresh_process=True`` keeps the earlier protocol (one new Python process per config, export and timing in
it): the baseline of ``tests/benchmarks/bench_campaign.py``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Iterator, Sequence

from search_spaces import LowFormerConfig

from ._backends import BACKENDS
from ._harness import Protocol, make_measurement, stopwatch
from ._records import Measurement

DEFAULT_TIMEOUT_S = 900.0
# The children may together use this share of the machine's memory before allocations fail (becoming a
# stored "out of memory" instead of the kernel's OOM killer picking a victim).
MEMORY_FRACTION = 0.8
# A worker is replaced after this many configs, so slow growth (allocator fragmentation, caches) never
# accumulates over a long campaign.
MAX_JOBS_PER_WORKER = 100
# Configs exported per export phase and worker: enough to balance slow and fast exports across workers,
# few enough that the ONNX files of a chunk (up to ~200 MB each) fit in the temporary folder.
CHUNK_PER_WORKER = 4
MAX_EXPORT_WORKERS = 4
_TMP_PREFIX = "lowformer-campaign-"


@dataclasses.dataclass(frozen=True)
class Job:
    config: LowFormerConfig
    name: str | None = None
    repeat: int = 0


def is_gpu(backend: str) -> bool:
    return BACKENDS[backend].is_gpu()


def memory_limit_bytes(backend: str, share: float = 1.0) -> int | None:
    """The address-space cap of a child for a backend (None: uncapped), ``share`` of the campaign's
    MEMORY_FRACTION of RAM when several children run at once. GPU runtimes reserve far more virtual
    address space than they use (CUDA maps the whole device and host memory): a cap would break them."""
    if is_gpu(backend):
        return None
    import psutil

    return int(psutil.virtual_memory().total * MEMORY_FRACTION * share)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_export_workers(backend: str) -> int:
    """Workers of an export phase: one per usable core (at most MAX_EXPORT_WORKERS; 1 when the backend does
    not run ONNX files, which leaves nothing to export ahead)."""
    if not BACKENDS[backend].runs_onnx:
        return 1
    return max(1, min(MAX_EXPORT_WORKERS, usable_cores()))


# ---------------------------------------------------------------------------------------------- failures


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # it has just exited on its own
        pass


def failed(job: Job, protocol: Protocol, device_id: str, campaign: str | None, reason: str) -> Measurement:
    return make_measurement(
        job.config.hash, job.config.resolution, protocol, device_id, status="failed", reason=reason,
        repeat=job.repeat, campaign=campaign, notes=job.name,
    )


def crash_reason(returncode: int | None, log_tail: str = "") -> str:
    if returncode is not None and returncode < 0:
        hint = " (killed: out of memory?)" if returncode == -signal.SIGKILL else ""
        return f"crashed: {signal_name(returncode)}{hint}"
    tail = f": {log_tail}" if log_tail else ""
    return f"crashed: exit status {returncode}{tail}"


# ---------------------------------------------------------------------------------------------- one process per config


def run_in_child(job: Job, protocol: Protocol, device_id: str, campaign: str | None, timeout_s: float) -> Measurement:
    """Measure one job in a fresh Python process (the one-process-per-config protocol); failures come back
    as failed measurements."""
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
        kill_group(proc.pid)
        proc.communicate()
        return failed(job, protocol, device_id, campaign, f"timeout: no result after {timeout_s:.0f} s")
    except BaseException:
        # The campaign itself is being stopped: take the child down with it.
        kill_group(proc.pid)
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
        return failed(job, protocol, device_id, campaign, result["error"])
    tail = " ".join(err.strip().splitlines()[-1:])[-300:] if err else ""
    return failed(job, protocol, device_id, campaign, crash_reason(proc.returncode, tail))


# ---------------------------------------------------------------------------------------------- reusable workers


class WorkerGone(Exception):
    """The worker died (or hung) before it replied; ``str(err)`` is the stored reason."""


class Worker:
    """The campaign's handle on one measuring process (:mod:`measured._worker`), started lazily.

    Requests go to its stdin, replies come back as JSON lines on a pipe of their own; its prints go to a
    log file whose last line explains a crash.
    """

    def __init__(self, backend: str, threads: int, memory_limit: int | None, log_path: str):
        self.backend, self.threads, self.memory_limit, self.log_path = backend, threads, memory_limit, log_path
        self.proc: subprocess.Popen | None = None
        self.jobs = 0
        self._buf = b""
        self._fd: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        r, w = os.pipe()
        log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "measured._worker", "--result-fd", str(w), "--backend", self.backend]
        if self.memory_limit:
            cmd += ["--memory-limit", str(self.memory_limit)]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        try:
            # From the calling (main) thread: the worker's parent-death signal follows this thread.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, pass_fds=(w,),
                                         start_new_session=True)
        finally:
            os.close(w)
            log.close()
        self._fd, self._buf, self.jobs = r, b"", 0
        os.set_blocking(r, False)

    def send(self, request: dict) -> None:
        if not self.alive:
            self.stop()
            self.start()
        self.jobs += 1
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died while starting: the reply loop reports why

    def fileno(self) -> int:
        return self._fd

    def read_replies(self) -> list[dict]:
        """Replies complete so far (non-blocking; the 'ready' greeting skipped). WorkerGone at end of file."""
        try:
            chunk = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            raise WorkerGone(self.death_reason())
        if chunk:
            self._buf += chunk
        out = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                reply = json.loads(line)
            except ValueError:
                raise WorkerGone(f"crashed: unreadable reply {line[:80]!r}") from None
            if not isinstance(reply, dict):
                raise WorkerGone(f"crashed: unreadable reply {line[:80]!r}")
            if reply.get("ready") is True:
                continue
            if reply.get("ready") is False:
                raise WorkerGone(f"the measuring process could not start: {reply.get('error')}")
            out.append(reply)
        return out

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 4000))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-300:] if lines else ""

    def death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=10) if self.proc is not None else None
        except subprocess.TimeoutExpired:
            code = None
        return crash_reason(code, self.log_tail())

    def stop(self, polite: bool = False) -> None:
        """End the process (and anything it started); a polite stop asks it to exit first."""
        if self.proc is not None:
            if polite and self.alive:
                with contextlib.suppress(OSError, ValueError):
                    self.proc.stdin.write(b'{"op": "exit"}\n')
                    self.proc.stdin.flush()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
            kill_group(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self.proc, self._fd, self._buf = None, None, b""


@dataclasses.dataclass
class _Task:
    key: object  # what the caller gets back
    request: dict
    deadline: float = 0.0


def _run_tasks(tasks: Iterable[_Task], workers: Sequence[Worker], timeout_s: float,
               clock=time.monotonic) -> Iterator[tuple[object, dict | str]]:
    """Run tasks on the workers, each task on whichever worker is free; yield (key, reply) as replies come,
    or (key, reason) when the task's worker crashed, hung past ``timeout_s`` or failed (a str). A worker
    whose task did not succeed is stopped and starts afresh with its next task."""
    queue = collections.deque(tasks)
    idle = list(workers)
    busy: dict[Worker, _Task] = {}
    with selectors.DefaultSelector() as sel:
        try:
            while queue or busy:
                while idle and queue:
                    w, t = idle.pop(0), queue.popleft()
                    if w.alive and w.jobs >= MAX_JOBS_PER_WORKER:
                        w.stop(polite=True)
                    w.send(t.request)
                    t.deadline = clock() + timeout_s
                    busy[w] = t
                    sel.register(w.fileno(), selectors.EVENT_READ, w)
                wait = max(0.0, min(t.deadline for t in busy.values()) - clock())
                for key, _ in sel.select(timeout=min(wait, 1.0)):
                    w = key.data
                    try:
                        replies = w.read_replies()
                    except WorkerGone as gone:
                        replies = [str(gone)]
                    if not replies:
                        continue
                    t = busy.pop(w)
                    sel.unregister(w.fileno())
                    reply = replies[0]
                    if isinstance(reply, str) or "error" in reply:
                        w.stop()  # a fresh process for the next config
                    idle.append(w)
                    yield t.key, reply
                now = clock()
                for w, t in list(busy.items()):
                    if now > t.deadline:
                        sel.unregister(w.fileno())
                        w.stop()
                        del busy[w]
                        idle.append(w)
                        yield t.key, f"timeout: no result after {timeout_s:.0f} s"
        finally:
            for w in busy:  # the caller stopped early (a budget, Ctrl-C): nothing keeps running
                w.stop()


# Exported files go to memory (tmpfs) when it has room: written once, read once, deleted seconds later.
_SHM = "/dev/shm"
_SHM_MIN_FREE = 4 * 2**30


def _temp_root() -> str:
    try:
        if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) and shutil.disk_usage(_SHM).free >= _SHM_MIN_FREE:
            return _SHM
    except OSError:
        pass
    return tempfile.gettempdir()


def _remove_stale_folders(root: str) -> None:
    """Temporary folders of campaigns that were killed (SIGKILL leaves them behind)."""
    for name in os.listdir(root):
        if not name.startswith(_TMP_PREFIX):
            continue
        pid = name[len(_TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except OSError:
            pass


def _export_cost(job: Job) -> int:
    """What a config's export costs, roughly: its parameters (built, initialised, traced and written)."""
    from search_spaces import count

    try:
        return count(job.config).params
    except Exception:  # noqa: BLE001 (an order only: a config the counter refuses fails in its export, with the reason)
        return 0


class Measurer:
    """Measures jobs on this machine, one result at a time (see the module doc).

    ``export_workers``: processes of an export phase (default: one per usable core, at most 4; 1 measures
    each config in one worker, export included). ``fresh_process``: one new process per config instead.
    Use as a context manager (or call :meth:`close`): the workers end with it.
    """

    def __init__(self, protocol: Protocol, device_id: str, *, campaign: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, export_workers: int | None = None, fresh_process: bool = False):
        self.protocol, self.device_id, self.campaign, self.timeout_s = protocol, device_id, campaign, timeout_s
        self.fresh_process = fresh_process
        n = default_export_workers(protocol.backend) if export_workers is None else int(export_workers)
        self.export_workers = max(1, n) if BACKENDS[protocol.backend].runs_onnx else 1
        self._tmp: str | None = None
        self._workers: list[Worker] = []
        # Wall seconds per phase: "export" (export phases, workers' start-up included), "timing" (timing phases),
        # "anchors" (anchor sessions), and inside "timing" the timing worker's own split ("session", "warmup",
        # "pairs", "runs", "reference": :data:`measured._harness.STOPWATCH`).
        self.seconds: collections.Counter = collections.Counter()

    # ------------------------------------------------------------------ lifecycle

    def _folder(self) -> str:
        if self._tmp is None:
            root = _temp_root()
            _remove_stale_folders(root)
            self._tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=root)
        return self._tmp

    def _pool(self) -> list[Worker]:
        if not self._workers:
            limit = memory_limit_bytes(self.protocol.backend, 1.0 / self.export_workers)
            self._workers = [Worker(self.protocol.backend, self.protocol.threads, limit,
                                    os.path.join(self._folder(), f"worker-{i}.log")) for i in range(self.export_workers)]
        return self._workers

    def close(self) -> None:
        for w in self._workers:
            w.stop(polite=True)
        self._workers = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ measuring

    def _request(self, job: Job, onnx: str | None) -> dict:
        return {"op": "measure", "config": job.config.canonical_json(), "name": job.name, "repeat": job.repeat,
                "protocol": dataclasses.asdict(self.protocol), "device_id": self.device_id, "campaign": self.campaign,
                "onnx": onnx}

    def _result(self, job: Job, reply: dict | str, what: str = "") -> Measurement:
        if isinstance(reply, str):
            return failed(job, self.protocol, self.device_id, self.campaign, what + reply)
        if "measurement" in reply:
            return Measurement(**reply["measurement"]).validate()
        return failed(job, self.protocol, self.device_id, self.campaign, what + str(reply.get("error", "no result")))

    def time_anchors(self) -> list[dict] | None:
        """Time the phase anchors (each paired with the reference) in the timing worker, between configs (the
        other workers are idle then); one result per anchor (:func:`measured._phase.time_anchor_session`), or
        None with the one-process-per-config protocol, which keeps no worker."""
        if self.fresh_process:
            return None
        from ._phase import anchor_configs

        task = _Task("anchors", {"op": "anchors", "protocol": dataclasses.asdict(self.protocol)})
        # Several models, each exported once per worker: a budget of a config's timeout per anchor.
        with stopwatch("anchors", self.seconds):
            replies = list(_run_tasks([task], self._pool()[:1], self.timeout_s * len(anchor_configs())))
        for _, reply in replies:
            if isinstance(reply, dict) and "anchors" in reply:
                return reply["anchors"]
            reason = reply if isinstance(reply, str) else str(reply.get("error", "no result"))
            return [{"anchor": n, "config_hash": c.hash, "status": "failed", "reason": reason}
                    for n, c in anchor_configs()]
        return None

    def measure(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Measurement]]:
        """Measure every job; yield (job, measurement) as each is done (failures as failed measurements)."""
        jobs = list(jobs)
        if self.fresh_process:
            for job in jobs:
                yield job, run_in_child(job, self.protocol, self.device_id, self.campaign, self.timeout_s)
        elif self.export_workers > 1:
            yield from self._measure_in_phases(jobs)
        else:
            pool = self._pool()[:1]
            tasks = (_Task(i, self._request(j, None)) for i, j in enumerate(jobs))
            for i, reply in self._timed(_run_tasks(tasks, pool, self.timeout_s), "timing"):
                yield jobs[i], self._result(jobs[i], reply)

    def _measure_in_phases(self, jobs: list[Job]) -> Iterator[tuple[Job, Measurement]]:
        pool, folder = self._pool(), self._folder()
        size = CHUNK_PER_WORKER * len(pool)
        for start in range(0, len(jobs), size):
            chunk = jobs[start:start + size]
            # Phase 1, every worker: build and export each distinct config of the chunk once, the largest first (the
            # phase lasts until its slowest worker is done: small exports last fill the gaps evenly).
            configs = {j.config.hash: j.config for j in sorted(chunk, key=_export_cost, reverse=True)}
            paths = {h: os.path.join(folder, f"{h[:16]}.onnx") for h in configs}
            tasks = [_Task(h, {"op": "export", "config": c.canonical_json(), "batch": self.protocol.batch,
                               "path": paths[h], "precision": self.protocol.precision}) for h, c in configs.items()]
            with stopwatch("export", self.seconds):
                export_error = {h: reply if isinstance(reply, str) else reply["error"]
                                for h, reply in _run_tasks(tasks, pool, self.timeout_s)
                                if isinstance(reply, str) or "error" in reply}
            # Phase 2, one worker, the others idle: time the exported files one by one.
            remaining = collections.Counter(j.config.hash for j in chunk)
            todo = []
            for i, j in enumerate(chunk):
                if j.config.hash in export_error:
                    yield j, self._result(j, export_error[j.config.hash], "export: ")
                    self._done(remaining, j, paths)
                else:
                    todo.append(_Task(i, self._request(j, paths[j.config.hash])))
            for i, reply in self._timed(_run_tasks(todo, pool[:1], self.timeout_s), "timing"):
                j = chunk[i]
                yield j, self._result(j, reply)
                self._done(remaining, j, paths)
            for p in paths.values():  # whatever a stopped chunk left
                with contextlib.suppress(OSError):
                    os.unlink(p)

    def _timed(self, replies: Iterator[tuple[object, dict | str]], phase: str) -> Iterator[tuple[object, dict | str]]:
        """``replies``, the time spent waiting for each added to ``seconds[phase]`` (not the caller's time between
        them: storing a row, an anchor session) and the worker's own split of it added too."""
        try:
            while True:
                with stopwatch(phase, self.seconds):
                    item = next(replies, None)
                if item is None:
                    return
                if isinstance(item[1], dict):
                    self.seconds.update(item[1].get("phases") or {})
                yield item
        finally:
            replies.close()  # a caller that stops early stops the workers' tasks now (_run_tasks)

    @staticmethod
    def _done(remaining: collections.Counter, job: Job, paths: dict[str, str]) -> None:
        remaining[job.config.hash] -= 1
        if remaining[job.config.hash] == 0:
            with contextlib.suppress(OSError):
                os.unlink(paths[job.config.hash])
