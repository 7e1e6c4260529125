import os
import pathlib

import pytest

TESTS = pathlib.Path(__file__).parent
DATA = TESTS / "data"


def pytest_collection_modifyitems(config, items):
    # Tests that need torch skip cleanly where the `measure` extra is not installed.
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        skip = pytest.mark.skip(reason="needs the measure extra (torch)")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own LOWFORMER_NAS_HOME: no test reads or writes the user's store."""
    monkeypatch.setenv("LOWFORMER_NAS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs torch (the measure extra)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
