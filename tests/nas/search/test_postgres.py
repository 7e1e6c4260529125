"""Workers on several machines share one study through PostgreSQL (here: two processes, one real server)."""

import os

from nas.search import open_study, run_search
from search_spaces import named_series

from .conftest import proxy_objectives, run_two_workers, settings


def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    runs = str(tmp_path / "runs")
    os.makedirs(runs)
    ran = run_two_workers(postgres_url, runs, "shared", 100, seeds=(1, 2))
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
