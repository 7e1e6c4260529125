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

__all__ = [
    "ACCURACY_DEVICE",
    "Architecture",
    "DEVICE_KINDS",
    "Device",
    "METRICS",
    "Measurement",
    "PRECISIONS",
    "RecordError",
    "SOURCES",
    "STATUSES",
    "out_of_space_hash",
    "protocol_key",
    "utc_now",
]
