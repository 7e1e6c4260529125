"""Store fixtures: the same contract on a SQLite file and on PostgreSQL (the server: tests/conftest.py)."""

from __future__ import annotations

import pytest

from measured import Architecture, Device, Measurement
from search_spaces import get_variant


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request):
    """The same contract on both databases (PostgreSQL is only started when a test asks for it)."""
    return request.getfixturevalue(f"{request.param}_url")


# ---------------------------------------------------------------------------------------------- records

TS = "2026-11-21T10:00:00+00:00"


def cpu_device(device_id: str = "local_cpu", **fingerprint) -> Device:
    return Device(device_id, f"test machine {device_id}", "cpu", fingerprint or {"cpu": "Test CPU", "cores": 2},
                  {}, {"metric": "latency_ms"}, "harness")


def arch(name: str = "B1", resolution: int | None = None) -> Architecture:
    cfg = get_variant(name).config
    if resolution is not None:
        cfg = cfg.with_(resolution=resolution)
    return Architecture.from_config(cfg, name)


def measurement(a: Architecture, device_id: str = "local_cpu", value: float = 12.5, **fields) -> Measurement:
    base = dict(device_id=device_id, config_hash=a.config_hash, metric="latency_ms", value=value,
                backend="onnxruntime", batch=1, resolution=a.resolution, threads=2, warmup=5, n=20,
                p10=None if value is None else value * 0.9, p90=None if value is None else value * 1.1, busy_pct=3.5, backend_version="1.20.0", versions='{"numpy": "2.0"}', os="Linux",
                timestamp=TS, campaign="c1")
    base.update(fields)
    return Measurement(**base).validate()
