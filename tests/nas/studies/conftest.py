import pytest


@pytest.fixture(scope="session")
def paper_store(tmp_path_factory):
    """A store seeded with the shipped paper measurements: the one source of the paper's numbers."""
    from measured import Store

    return Store(str(tmp_path_factory.mktemp("paper") / "store.sqlite"))


@pytest.fixture(scope="session")
def paper_rows(paper_store):
    return paper_store.measurements(source="paper")


def paper_value(rows, name, device, metric, resolution=None, config_hash=None):
    """The stored paper figure these tests compare against (looked up independently of PaperData)."""
    r = rows[(rows["device_id"] == device) & (rows["metric"] == metric)]
    r = r[r["config_hash"] == config_hash] if config_hash else r[(r["name"] == name) & (r["family"] == "toy")]
    if resolution is not None:
        r = r[r["resolution"] == resolution]
    assert len(r), (name, device, metric)
    return float(r["value"].iloc[0])
