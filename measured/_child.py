"""Child process of a campaign in the one-process-per-config mode (``fresh_process=True``, the protocol
before measuring workers): measure one job read as JSON from stdin, print the result as JSON (last line).

Run as ``python -m measured._child``; the parent kills it on timeout and stores crashes as failures. The
helpers below are shared with the reusable worker (:mod:`measured._worker`).
"""

from __future__ import annotations

import json
import sys
import traceback


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the campaign dies (even by SIGKILL), so no orphan keeps measuring
    and disturbs the next campaign's timings. (The signal follows the parent *thread*: campaigns start
    their children from the main thread.)"""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent's process-group kill still covers timeouts and interrupts


def cap_memory(limit_bytes: int | None) -> None:
    """Cap the address space, so a huge config fails with MemoryError / bad_alloc (stored as "out of
    memory") instead of the kernel's OOM killer picking a victim."""
    if not limit_bytes:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ImportError, ValueError, OSError):
        pass  # not on this OS: the parent still reports the crash


def error_message(e: BaseException) -> str:
    """One line for a stored failure; allocation failures of any runtime read as "out of memory"."""
    if isinstance(e, MemoryError):
        return "out of memory (the child's memory cap was reached)"
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
    if "bad_alloc" in msg or "bad allocation" in msg.lower() or "Failed to allocate" in msg:
        msg = f"out of memory: {msg}"
    return msg


def main() -> int:
    die_with_parent()
    job = json.loads(sys.stdin.read())
    cap_memory(job.get("memory_limit_bytes"))
    try:
        from search_spaces import LowFormerConfig

        from ._harness import Protocol, measure_config

        config = LowFormerConfig.from_json(job["config"])
        protocol = Protocol(**job["protocol"])
        m, _ = measure_config(
            config, protocol, job["device_id"], name=job.get("name"), repeat=job.get("repeat", 0),
            campaign=job.get("campaign"),
        )
        result = {"measurement": m.to_dict()}
    except Exception as e:  # noqa: BLE001 (every failure becomes a stored reason)
        if not isinstance(e, MemoryError):
            traceback.print_exc(file=sys.stderr)
        result = {"error": error_message(e)}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
