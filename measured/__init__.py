"""Measurements: the latency/throughput harness, the measurement store with provenance, campaigns,
edge-device bundles and the shipped datasets."""

from ._records import (
    ACCURACY_DEVICE,
    DEVICE_KINDS,
    METRICS,
    MIN_TIMED_RUNS,
    PRECISIONS,
    SOURCES,
    STATUSES,
    Architecture,
    Device,
    Measurement,
    RecordError,
    check_device_id,
    full_results,
    out_of_space_hash,
    protocol_key,
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
    "backend_help": "._backends",
    "INT8_RECIPE": "._backends",
    "quantize_int8": "._backends",
    "Protocol": "._harness",
    "Timing": "._harness",
    "measure_config": "._harness",
    "HARNESS_METRICS": "._harness",
    "measure_runner": "._harness",
    "measurement_id": "._harness",
    "legacy_hash_map": "._identity",
    "noise_report": "._noise",
    "with_installed_driver": "._store",
    "measure_onnx": "._harness",
    "make_measurement": "._harness",
    "Job": "._campaign",
    "Measurer": "._measurer",
    "default_export_workers": "._measurer",
    "median_ci": "._harness",
    "ci_from_notes": "._harness",
    "LOCAL": "._campaign",
    "is_local_name": "._campaign",
    "same_machine": "._fingerprint",
    "CampaignReport": "._campaign",
    "run_campaign": "._campaign",
    "measure_configs": "._campaign",
    "resolve_local_device": "._campaign",
    "write_bundle": "._bundle",
    "BundleReport": "._bundle",
    "hardware_fingerprint": "._fingerprint",
    "local_device": "._fingerprint",
    "local_device_id": "._fingerprint",
    "LoadMonitor": "._fingerprint",
    # phases
    "Phase": "._phase",
    "PhaseError": "._phase",
    "PhaseSeries": "._phase",
    "PHASE_CHOICES": "._phase",
    "anchor_configs": "._phase",
    "anchor_hashes": "._phase",
    "canonical_frame": "._phase",
    "fit_phase": "._phase",
    "load_series": "._phase",
    "session_rows": "._phase",
    "time_anchor_session": "._phase",
    "ReferenceFailed": "._harness",
}


def __getattr__(name):
    if name in _STORE_API:
        import importlib

        return getattr(importlib.import_module(_STORE_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What users need (measured/README.md's API). Every name above, and every name of _STORE_API, stays importable
# from here: the other packages of this project use some of them (the import contract allows only public names).
__all__ = [
    "Store",
    "StoreError",
    "Device",
    "Architecture",
    "Measurement",
    "RecordError",
    "ImportReport",
    "ImportFileError",
    "Protocol",
    "Timing",
    "measure_config",
    "measure_onnx",
    "Job",
    "run_campaign",
    "CampaignReport",
    "write_bundle",
    "BundleReport",
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "get_backend",
    "LOCAL",
    "local_device_id",
    "noise_report",
    "METRICS",
    "ACCURACY_DEVICE",
]
