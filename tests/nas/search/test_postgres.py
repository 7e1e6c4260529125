"""Workers on several machines share one study through PostgreSQL (here: two processes, one real server)."""

import os
import subprocess
import sys
import textwrap
import time

from nas.search import open_storage, open_study, run_search
from search_spaces import named_series

from .conftest import proxy_objectives, settings

_WORKER = textwrap.dedent("""
    import os, sys, time
    from nas.search import CountObjective, FunctionObjective, SearchSettings, run_search
    from search_spaces import count

    me, other = os.path.join(sys.argv[2], "ready-" + sys.argv[3]), os.path.join(sys.argv[2], "ready-" + sys.argv[4])

    def slow(cs):
        # Both workers overlap however fast each one starts: the first batch waits until the other is scoring too.
        if not os.path.exists(me):
            open(me, "w").close()
            deadline = time.monotonic() + 600
            while not os.path.exists(other) and time.monotonic() < deadline:
                time.sleep(0.02)
        return [1.0 + count(c).macs / 1.5e8 for c in cs]

    objs = [CountObjective("params"), FunctionObjective("jetson_tx2:latency_ms", "minimize", slow,
                                                        device="jetson_tx2", metric="latency_ms")]
    r = run_search(SearchSettings(trials=100, study="shared", seed=int(sys.argv[3]), budgets_ms=[12.0],
                                  population_size=20, storage=sys.argv[1], runs_dir=sys.argv[2]),
                   objectives=objs, progress=False, outputs=False)
    print("ran", r.ran)
""")


def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    runs = str(tmp_path / "runs")
    os.makedirs(runs)
    first = subprocess.Popen([sys.executable, "-c", _WORKER, postgres_url, runs, "1", "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    storage = open_storage(postgres_url, tmp_path, create=False)
    deadline = time.monotonic() + 600  # catches a hang only: the second worker starts once the study exists
    while not any(s.study_name == "shared" for s in storage.get_all_studies()):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first worker created no study in 600 s"
        time.sleep(0.05)
    second = subprocess.Popen([sys.executable, "-c", _WORKER, postgres_url, runs, "2", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=900) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [o[1][-2000:] for o in outs]
    ran = [int(o[0].split()[-1]) for o in outs]
    assert all(n > 0 for n in ran)  # both did work

    trials = open_study("shared", runs, postgres_url).get_trials()
    # The total is shared: each write is counted first (two writes racing for the last slot may both land).
    assert 100 <= len(trials) <= 101 and sum(ran) == len(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    names = [t.user_attrs["named"] for t in trials if "named" in t.user_attrs]
    assert set(names) == {v.name for v in named_series()}

    # A third, local call resumes the shared study and writes its outputs from the database.
    r = run_search(settings(trials=len(trials) + 5, study="shared", storage=postgres_url, runs_dir=runs, population_size=20,
                            seed=None), objectives=proxy_objectives(), progress=False, png=False)
    assert r.n_trials == len(trials) + 5 and (tmp_path / "runs" / "shared" / "report.md").exists()
