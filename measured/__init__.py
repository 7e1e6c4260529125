"""Measurements: the latency/throughput harness, the measurement store with provenance, campaigns,
edge-device bundles and the shipped datasets."""

from ._records import (
    ACCURACY_DEVICE,
    DEVICE_KINDS,
    METRICS,
    PRECISIONS,
    SOURCES,
    STATUSES,
    Architecture,
    Device,
    Measurement,
    RecordError,
    out_of_space_hash,
    protocol_key,
    utc_now,
)

# Imported on first use, so `import measured` stays light (the store needs pandas and SQLAlchemy).
_STORE_API = {
    "EXPORT_COLUMNS": "._io",
    "ImportFileError": "._io",
    "ImportReport": "._io",
    "Store": "._store",
    "StoreError": "._store",
    "default_url": "._store",
    # harness, campaigns, bundles
    "BACKENDS": "._backends",
    "Backend": "._backends",
    "BackendUnavailable": "._backends",
    "get_backend": "._backends",
    "available_backends": "._backends",
    "Protocol": "._harness",
    "Timing": "._harness",
    "measure_config": "._harness",
    "measure_module": "._harness",
    "measure_onnx": "._harness",
    "make_measurement": "._harness",
    "Job": "._campaign",
    "CampaignReport": "._campaign",
    "run_campaign": "._campaign",
    "measure_configs": "._campaign",
    "resolve_local_device": "._campaign",
    "write_bundle": "._bundle",
    "hardware_fingerprint": "._fingerprint",
    "local_device": "._fingerprint",
    "local_device_id": "._fingerprint",
    "LoadMonitor": "._fingerprint",
}


def __getattr__(name):
    if name in _STORE_API:
        import importlib

        return getattr(importlib.import_module(_STORE_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCURACY_DEVICE",
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "CampaignReport",
    "Job",
    "LoadMonitor",
    "Protocol",
    "Timing",
    "available_backends",
    "get_backend",
    "hardware_fingerprint",
    "local_device",
    "local_device_id",
    "make_measurement",
    "measure_config",
    "measure_configs",
    "measure_module",
    "measure_onnx",
    "resolve_local_device",
    "run_campaign",
    "write_bundle",
    "Architecture",
    "DEVICE_KINDS",
    "Device",
    "EXPORT_COLUMNS",
    "ImportFileError",
    "ImportReport",
    "METRICS",
    "Measurement",
    "PRECISIONS",
    "RecordError",
    "SOURCES",
    "STATUSES",
    "Store",
    "StoreError",
    "default_url",
    "out_of_space_hash",
    "protocol_key",
    "utc_now",
]
