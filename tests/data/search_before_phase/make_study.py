"""Writes a small study with the code of main b3f6b5f (the settings format before declarative settings and --phase)."""

import pathlib
import sys

from nas.search import CountObjective, FunctionObjective, SearchSettings, run_search
from search_spaces import count

out = pathlib.Path(sys.argv[1])
objs = [CountObjective("params"),
        FunctionObjective("jetson_tx2:latency_ms", "minimize", lambda cs: [1.0 + count(c).macs / 1.5e8 for c in cs],
                          device="jetson_tx2", metric="latency_ms")]
s = SearchSettings(devices=["jetson_tx2"], budgets_ms=[12.0], trials=8, study="old", seed=0, population_size=4,
                   runs_dir=str(out), max_params=5e6)
r = run_search(s, objectives=objs, progress=False, outputs=False)
print(r.n_trials, r.folder)
