"""Real rows for the predictor tests: the paper's measurements as the store serves them."""

import functools

import pytest

from measured import Store


@pytest.fixture(scope="session")
def paper_df(tmp_path_factory):
    """Every ok, unflagged measurement of a freshly seeded store (the shipped paper data)."""
    store = Store(str(tmp_path_factory.mktemp("paper-store") / "store.sqlite"))
    try:
        return store.measurements()
    finally:
        store.close()


@pytest.fixture(scope="session")
def paper_data(paper_df):
    """paper_data(device, metric) -> TrainingData of the paper's rows (cached)."""
    from predictors import training_data

    return functools.lru_cache(maxsize=None)(lambda device, metric="latency_ms": training_data(paper_df, device, metric))


PAPER_DEVICES = [
    ("jetson_tx2", "latency_ms"),
    ("rpi5_arm_cpu", "latency_ms"),
    ("iphone13", "latency_ms"),
    ("titan_rtx_gpu", "latency_ms"),
    ("a40_gpu", "throughput_img_s"),
]
