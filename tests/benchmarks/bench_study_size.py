"""Study folder size: the default search a user runs (`lowformer-nas search --device jetson_tx2 --budget-ms 12
--trials 3000 --seed 0`, outputs and PNG charts included) in a private $LOWFORMER_NAS_HOME; the bytes of its folder,
of its journal, of each file, and of the same study copied into Optuna's plain journal form (what every study's
journal held before a set of distributions was written once per file). Sizes are bytes, the same on a busy machine;
the wall time is not.

Run: python tests/benchmarks/bench_study_size.py [--trials 3000] [--device jetson_tx2] [--budget-ms 12]
The last line is a JSON object; goal: the folder <= 6 MB (6,000,000 bytes; plotly.js is shared once per home).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

GOAL_BYTES = 6_000_000


def plain_journal_bytes(folder: pathlib.Path, study: str, out: pathlib.Path) -> int:
    """The study's journal as Optuna's own backend writes it (every trial with its distributions)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from nas.search import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.copy_study(from_study_name=study, from_storage=open_storage(None, folder, create=False),
                      to_storage=JournalStorage(JournalFileBackend(str(out))), to_study_name=study)
    return out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3000)
    ap.add_argument("--device", default="jetson_tx2")
    ap.add_argument("--budget-ms", default="12")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-study-size-") as home:
        env = {**os.environ, "LOWFORMER_NAS_HOME": home}
        cmd = [sys.executable, "-c", "import sys; from nas.cli import main; sys.exit(main())", "search", "--device",
               args.device, "--budget-ms", args.budget_ms, "--trials", str(args.trials), "--seed", "0", "--study",
               "size", "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        folder = pathlib.Path(home) / "runs" / "size"
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
        total = sum(files.values())
        plain = plain_journal_bytes(folder, "size", pathlib.Path(home) / "plain.journal")
        shared = {p.name: p.stat().st_size for p in pathlib.Path(home).glob("plotly*.js")}
    journal = files["study.journal"]
    print(f"{args.trials} trials: folder {total / 1e6:.2f} MB (journal {journal / 1e6:.2f} MB; in Optuna's plain form "
          f"{plain / 1e6:.2f} MB); search {wall:.1f} s")
    print(json.dumps({
        "bench": "study_size", "trials": args.trials, "command": " ".join(cmd[3:]), "folder_bytes": total,
        "journal_bytes": journal, "journal_bytes_per_trial": round(journal / args.trials),
        "plain_journal_bytes": plain, "files": files, "shared_outside_folder": shared, "goal_bytes": GOAL_BYTES,
        "meets_goal": total <= GOAL_BYTES, "search_wall_s": round(wall, 1), "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
