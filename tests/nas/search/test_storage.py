import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas.search import SearchError, check_study_name, open_storage, run_search
from nas.search._storage import mask_url

from .conftest import proxy_objectives, settings


def test_journal_is_optunas_format():
    """The study file opens with Optuna's own journal backend (dashboards, other tools)."""
    run_search(settings(trials=30), objectives=proxy_objectives(), progress=False, outputs=False)
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend("runs/s/study.journal")))
    assert len(study.trials) == 30 and all("hash" in t.user_attrs for t in study.trials)


def test_sqlite_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    r = run_search(settings(trials=25, storage=url), objectives=proxy_objectives(), progress=False, outputs=False)
    assert r.n_trials == 25
    assert len(optuna.load_study(study_name="s", storage=open_storage(url, create=False)).trials) == 25


def test_open_storage_errors(tmp_path):
    with pytest.raises(SearchError, match="^study: no study in"):
        open_storage(None, tmp_path / "none", create=False)
    with pytest.raises(SearchError, match="^storage: 'redis://h': give a database URL"):
        open_storage("redis://h", create=True)
    assert mask_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"


@pytest.mark.parametrize("name", ["ok", "jetson_tx2-12ms", "a.b-c_d", "x" * 100])
def test_good_study_names(name):
    assert check_study_name(name) == name
