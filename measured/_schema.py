"""The store's schema: one SQLAlchemy Core table per record type, and the store's error type.

Kept apart from the store so that the importers (``_io``) can name columns and raise store errors without
importing the store that calls them.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import sqlalchemy as sa

from lowformer_common import UserError

from ._records import _FLOAT_FIELDS, _INT_FIELDS, Measurement


class StoreError(UserError):
    """The store cannot be opened, or a write would break its integrity. ``str(err)`` is one line."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# ---------------------------------------------------------------------------------------------- schema

metadata = sa.MetaData()

devices_table = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),  # JSON object
    sa.Column("spec", sa.Text, nullable=False),  # JSON object
    sa.Column("protocol", sa.Text, nullable=False),  # JSON object
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

architectures_table = sa.Table(
    "architectures",
    metadata,
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("family", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("config_json", sa.Text),
    sa.Column("resolution", sa.Integer),
    sa.Column("params", sa.BigInteger),
    sa.Column("macs", sa.BigInteger),
    sa.Column("in_space", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)


def _measurement_column(f: dataclasses.Field) -> sa.Column:
    # The table follows the record: a field added to Measurement becomes a column here.
    if f.name == "id":
        return sa.Column("id", sa.String(200), primary_key=True)
    if f.name == "device_id":
        return sa.Column(f.name, sa.String(200), sa.ForeignKey("devices.device_id"), nullable=False)
    if f.name == "config_hash":
        return sa.Column(f.name, sa.String(64), sa.ForeignKey("architectures.config_hash"), nullable=False)
    if f.name in _INT_FIELDS:
        return sa.Column(f.name, sa.Integer)
    if f.name in _FLOAT_FIELDS:
        return sa.Column(f.name, sa.Double)
    return sa.Column(f.name, sa.Text)


measurements_table = sa.Table(
    "measurements", metadata, *[_measurement_column(f) for f in dataclasses.fields(Measurement)]
)
sa.Index("ix_measurements_device_metric_status", measurements_table.c.device_id, measurements_table.c.metric,
         measurements_table.c.status)
sa.Index("ix_measurements_device_hash", measurements_table.c.device_id, measurements_table.c.config_hash)

# The device's state over time: each timing of an anchor (paired with the reference) at one moment. One
# ``session`` is one timing of the whole anchor set; a phase is fitted from a session (measured._phase).
anchor_timings_table = sa.Table(
    "anchor_timings",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(200), sa.ForeignKey("devices.device_id"), nullable=False),
    sa.Column("protocol", sa.String(200), nullable=False),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.String(40), nullable=False),
    sa.Column("anchor", sa.String(80), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # ok | failed
    sa.Column("reason", sa.Text),
    sa.Column("value", sa.Double),  # the anchor's median, in the metric's unit
    sa.Column("ratio", sa.Double),
    sa.Column("ratio_lo", sa.Double),
    sa.Column("ratio_hi", sa.Double),
    sa.Column("reference", sa.String(64)),
    sa.Column("reference_value", sa.Double),
    sa.Column("n", sa.Integer),
    sa.Column("source", sa.String(40), nullable=False),  # campaign | drift | verify | onboard | bundle | phase
    sa.Column("campaign", sa.Text),
)
sa.Index("ix_anchor_timings_device", anchor_timings_table.c.device_id, anchor_timings_table.c.protocol,
         anchor_timings_table.c.timestamp)
ANCHOR_COLUMNS = tuple(c.name for c in anchor_timings_table.columns)

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

ARCH_COLUMNS = ("family", "name", "config_json", "params", "macs", "in_space")
MEASUREMENT_COLUMNS = tuple(Measurement.fields())


def _column(name: str, values: list) -> pd.Series:
    """A result column with the record's types: floats (NaN for missing), plain ints or None, text or None.

    Nullable integers stay Python ints in an object column: a row then converts back with
    ``Measurement.from_mapping`` exactly (pandas' Int64 would hand it ``pd.NA``).
    """
    if name in _FLOAT_FIELDS:
        return pd.Series(values, dtype="float64")
    if name == "batch":
        return pd.Series(values, dtype="int64")
    if name == "in_space":
        return pd.Series(values, dtype="bool")
    return pd.Series(values, dtype=object)
