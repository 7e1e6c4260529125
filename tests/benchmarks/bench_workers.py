"""Shared studies: trials/s and distinct architectures/s of 1, 2 and 4 workers on one study, on the journal file
and on PostgreSQL. Every worker is its own process with the same seed and the real objectives (the accuracy
surrogate and the jetson_tx2 latency predictor); the study's total is --trials.

Run: python tests/benchmarks/bench_workers.py [--trials 3000] [--pg-trials 1000] [--workers 1 2 4]
     [--postgres URL|auto|none]
     --postgres auto (default) starts a throw-away server when initdb/pg_ctl are installed (as tests/conftest.py);
     URL: a server URL without a database part (postgresql://user@host:port); each run gets a fresh database.
The last line is a JSON object. ``distinct_share`` is distinct architectures / trials; NSGA-II repeats some
architectures by itself, so compare the share of n workers with the one of a single worker. ``ran`` is what each
worker wrote: a worker that joins after the others finished runs nothing (raise --trials).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

_WORKER = """
import sys
from nas.search import SearchSettings, run_search
storage = sys.argv[1] or None
r = run_search(SearchSettings(devices=["jetson_tx2"], budgets_ms=[12.0], trials=int(sys.argv[3]), study="bench",
                              seed=0, storage=storage, runs_dir=sys.argv[2]), progress=False, outputs=False)
print("ran", r.ran)
"""


def _study_exists(storage: str, runs: str) -> bool:
    if not storage:
        journal = os.path.join(runs, "bench", "study.journal")
        return os.path.exists(journal) and os.path.getsize(journal) > 0
    from nas.search import open_storage

    try:
        return any(s.study_name == "bench" for s in open_storage(storage, None, create=False).get_all_studies())
    except Exception:  # noqa: BLE001 (not created yet)
        return False


def run_workers(n: int, storage: str, trials: int) -> dict:
    """``n`` worker processes on one new study; wall time from the first start to the last exit."""
    from nas.search import open_study

    runs = tempfile.mkdtemp(prefix="bench-workers-")
    cmd = [sys.executable, "-c", _WORKER, storage, runs, str(trials)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    while not _study_exists(storage, runs):  # the others join the study the first one created
        if procs[0].poll() is not None:
            raise RuntimeError(procs[0].stderr.read()[-2000:])
        time.sleep(0.05)
    procs += [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(n - 1)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(err[-2000:])
    trials_done = [t for t in open_study("bench", runs, storage or None).get_trials() if t.state.name == "COMPLETE"]
    distinct = len({t.user_attrs["hash"] for t in trials_done})
    shutil.rmtree(runs, ignore_errors=True)
    ran = [int(out.split()[-1]) for out, _ in outs]
    return {"workers": n, "ran": ran, "trials": len(trials_done), "distinct": distinct,
            "distinct_share": round(distinct / max(len(trials_done), 1), 3), "wall_s": round(wall, 1),
            "trials_per_s": round(len(trials_done) / wall, 1), "distinct_per_s": round(distinct / wall, 1)}


def fresh_database(server: str) -> str:
    import sqlalchemy as sa

    from measured import with_installed_driver

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(with_installed_driver(sa.engine.make_url(f"{server}/postgres")), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{server}/{name}"


def start_server() -> tuple[str, callable] | None:
    """A throw-away PostgreSQL server (trust auth, 127.0.0.1, a free port); None without the binaries."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    bindir = dirs[0] if dirs else (os.path.dirname(shutil.which("initdb")) if shutil.which("initdb") else None)
    if bindir is None:
        return None
    root = tempfile.mkdtemp(prefix="bench-pg-")
    prefix = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(root, "data")
    subprocess.run(prefix + [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=100"
    subprocess.run(prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "log"), "-o", opts,
                             "-w", "start"], check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}", stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3000, help="trials of each journal study")
    ap.add_argument("--pg-trials", type=int, default=1000, help="trials of each PostgreSQL study")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--postgres", default="auto", help="server URL, auto (start one) or none")
    args = ap.parse_args()
    storages = {"journal": (lambda: "", args.trials)}
    stop = None
    if args.postgres == "auto":
        started = start_server()
        if started:
            server, stop = started
            storages["postgresql"] = (lambda: fresh_database(server), args.pg_trials)
    elif args.postgres != "none":
        storages["postgresql"] = (lambda: fresh_database(args.postgres), args.pg_trials)
    rows = []
    try:
        for kind, (make, trials) in storages.items():
            for n in args.workers:
                row = {"storage": kind, **run_workers(n, make(), trials)}
                print(row, flush=True)
                rows.append(row)
    finally:
        if stop:
            stop()
    print(json.dumps({"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                      "rows": rows}))


if __name__ == "__main__":
    main()
