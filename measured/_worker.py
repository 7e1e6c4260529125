"""A measuring worker: one process that a campaign reuses for config after config.

Run as ``python -m measured._worker --result-fd FD [--memory-limit BYTES] [--backend NAME]``. It imports
torch and the backend once (the seconds a fresh process per config paid every time), then reads one JSON
request per line from stdin and writes one JSON reply per line to the file descriptor ``FD`` (a pipe the
campaign made). Everything else the libraries print (fd 1 and 2) goes to the campaign's log file, so a
stray print can never corrupt a reply.

Requests:

- ``{"op": "export", "id", "config", "batch", "path"}``: write the config's ONNX file (no timing) and reply
  ``{"id", "ok": true, "seconds"}``;
- ``{"op": "measure", "id", "config", "protocol", "device_id", "name", "repeat", "campaign", "onnx"}``:
  load the exported file (``onnx``) or build the config, time it and reply ``{"id", "measurement": {...}}``;
- ``{"op": "anchors", "id", "protocol"}``: time the phase anchors, each paired with the reference, and reply
  ``{"id", "anchors": [...]}`` (:func:`measured._phase.time_anchor_session`);
- ``{"op": "exit"}``.

A failure replies ``{"id", "error": "<one line>"}``; the campaign then replaces the worker, so a config
never runs in a process an earlier failure may have left in a bad state. A crash, an out-of-memory kill or
a hang (the campaign's timeout) costs only the config it happened on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from ._child import cap_memory, die_with_parent, error_message


def _preload(backend: str | None) -> None:
    # The imports every request needs, paid once per worker instead of once per config.
    import numpy  # noqa: F401
    import torch  # noqa: F401

    from search_spaces import build_model, export_onnx  # noqa: F401

    if backend:
        from ._backends import BACKENDS

        cls = BACKENDS.get(backend)
        if cls is not None and cls.available():
            try:
                cls.version()
            except Exception:  # noqa: BLE001 (an unusable backend is reported by the first request)
                pass
        if cls is not None and cls.runs_onnx:
            import onnx  # noqa: F401  (the exporter imports it on its first export)


def _export(req: dict) -> dict:
    from search_spaces import LowFormerConfig, export_onnx

    t0 = time.perf_counter()
    config = LowFormerConfig.from_json(req["config"])
    batch = int(req.get("batch", 1))
    export_onnx(config, req["path"], batch=batch)
    if req.get("precision") == "int8":  # quantised here too, ahead of timing (measured._backends.int8_path)
        from ._backends import int8_path, quantize_int8

        r = config.resolution
        quantize_int8(req["path"], int8_path(req["path"]), (batch, 3, r, r))
    return {"ok": True, "seconds": time.perf_counter() - t0}


def _measure(req: dict) -> dict:
    from search_spaces import LowFormerConfig

    from ._harness import Protocol, measure_config

    config = LowFormerConfig.from_json(req["config"])
    protocol = Protocol(**req["protocol"])
    m, _ = measure_config(config, protocol, req["device_id"], name=req.get("name"), repeat=req.get("repeat", 0),
                          campaign=req.get("campaign"), onnx_path=req.get("onnx"))
    return {"measurement": m.to_dict()}


def _anchors(req: dict) -> dict:
    from ._harness import Protocol
    from ._phase import time_anchor_session

    return {"anchors": time_anchor_session(Protocol(**req["protocol"]))}


_OPS = {"export": _export, "measure": _measure, "anchors": _anchors}


def serve(requests, reply) -> None:
    """Answer requests (an iterable of JSON lines) with ``reply(dict)`` until ``exit`` or end of input. A reply
    carries ``phases``: where the request's time went (:data:`measured._harness.STOPWATCH`)."""
    from ._harness import STOPWATCH

    for line in requests:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        op = req.get("op")
        if op == "exit":
            return
        STOPWATCH.clear()
        try:
            if op not in _OPS:
                raise ValueError(f"unknown request {op!r}")
            out = _OPS[op](req)
        except Exception as e:  # noqa: BLE001 (every failure becomes a stored reason)
            if not isinstance(e, MemoryError):
                traceback.print_exc(file=sys.stderr)
            out = {"error": error_message(e)}
        reply({"id": req.get("id"), **out, **({"phases": dict(STOPWATCH)} if STOPWATCH else {})})


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m measured._worker")
    p.add_argument("--result-fd", type=int, required=True)
    p.add_argument("--memory-limit", type=int, default=0)
    p.add_argument("--backend")
    args = p.parse_args(argv)
    out = os.fdopen(args.result_fd, "w", encoding="utf-8", buffering=1)
    # Whatever a library prints goes to the log (fd 2), never into the replies.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    cap_memory(args.memory_limit or None)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        _preload(args.backend)
    except Exception as e:  # noqa: BLE001 (the campaign stores it with the config it was meant for)
        reply({"ready": False, "error": error_message(e)})
        return 1
    reply({"ready": True, "pid": os.getpid()})
    serve(sys.stdin, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
