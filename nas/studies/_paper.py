"""The paper's numbers a study prints beside the local ones: read from the store (rows with source "paper"),
else from the shipped paper measurements file. Never typed by hand.

"Closest device" is the paper device of the same kind as the local measurement: a CPU backend compares with
the Raspberry Pi 5's ARM CPU (ONNX Runtime, the paper's CPU protocol); a GPU backend with the TITAN RTX
(latency) or the A40 (throughput). A finding the closest device has no number for falls back to the next
device in ``DEVICE_PREFERENCE`` and says so.
"""

from __future__ import annotations

import math
import pathlib

import pandas as pd

from search_spaces import get_variant

# Preference order of the paper's devices, per (local device kind, metric).
DEVICE_PREFERENCE: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "latency_ms"): ("rpi5_arm_cpu", "jetson_tx2", "iphone13", "titan_rtx_gpu", "a40_gpu"),
    ("cpu", "throughput_img_s"): ("rpi5_arm_cpu", "jetson_tx2", "iphone13", "titan_rtx_gpu", "a40_gpu"),
    ("gpu", "latency_ms"): ("titan_rtx_gpu", "a40_gpu", "jetson_tx2", "iphone13", "rpi5_arm_cpu"),
    ("gpu", "throughput_img_s"): ("a40_gpu", "titan_rtx_gpu", "jetson_tx2", "iphone13", "rpi5_arm_cpu"),
}
_REQUIRED = {"model", "device", "metric", "value"}
_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[2]


def paper_csv_candidates() -> list[pathlib.Path]:
    """Where the shipped paper measurements may be: measured/data (the package), then the project's
    shared data beside the checkout."""
    import measured

    data = pathlib.Path(measured.__file__).parent / "data"
    found = sorted(data.glob("*paper*.csv")) + sorted(data.glob("*paper*.csv.gz")) if data.is_dir() else []
    return found + [_PACKAGE_ROOT.parent / "shared" / "data" / "paper_measurements.csv"]


def _read_paper_csv() -> tuple[pd.DataFrame, str] | None:
    for path in paper_csv_candidates():
        if not path.is_file():
            continue
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError):
            continue
        if _REQUIRED <= set(df.columns):
            return df, str(path)
    return None


class PaperData:
    """The paper's measurements, looked up by model name (toy models) or variant (LowFormer configs).

    ``store_rows``: the store's rows with source "paper" (a DataFrame from ``Store.measurements``) or None;
    ``csv_rows``: the paper's measurement file (columns model, variant_note, device, metric, value,
    resolution, source, flag). Lookups try the store first.
    """

    def __init__(self, store_rows: pd.DataFrame | None = None, csv_rows: pd.DataFrame | None = None,
                 csv_origin: str | None = None):
        self.store_rows = store_rows if store_rows is not None and len(store_rows) else None
        csv_rows = csv_rows if csv_rows is not None and len(csv_rows) else None
        if csv_rows is not None and "flag" in csv_rows:
            csv_rows = csv_rows[csv_rows["flag"].isna()]
        self.csv_rows = csv_rows
        self.csv_origin = csv_origin
        self.used: set[str] = set()  # the origins lookups answered from

    @classmethod
    def load(cls, store=None) -> "PaperData":
        rows = None
        if store is not None:
            rows = store.measurements(source="paper", status="ok")
        found = _read_paper_csv()
        return cls(rows, *(found or (None, None)))

    @property
    def available(self) -> bool:
        return self.store_rows is not None or self.csv_rows is not None

    def origin(self) -> str:
        if not self.used:
            return "no paper numbers were found (neither in the store nor in a shipped file)" if not self.available \
                else "the store and the shipped file had no number for these findings"
        return " and ".join(sorted(self.used))

    def devices(self) -> set[str]:
        out: set[str] = set()
        if self.store_rows is not None:
            out |= set(self.store_rows["device_id"].dropna())
        if self.csv_rows is not None:
            out |= set(self.csv_rows["device"].dropna())
        return {d for d in out if d not in ("n/a",)}

    def is_throughput_device(self, device: str) -> bool:
        """Whether the paper times ``device`` by throughput (its relative figures are then throughput ratios)."""
        metrics = set()
        if self.store_rows is not None:
            metrics |= set(self.store_rows.loc[self.store_rows["device_id"] == device, "metric"])
        if self.csv_rows is not None:
            metrics |= set(self.csv_rows.loc[self.csv_rows["device"] == device, "metric"])
        return "throughput_img_s" in metrics and "latency_ms" not in metrics

    # -------------------------------------------------------------------------------------------- lookups

    def _pick(self, store_mask, csv_mask) -> float | None:
        if self.store_rows is not None and store_mask is not None:
            hit = self.store_rows[store_mask]
            if len(hit):
                self.used.add("the store (source 'paper')")
                return float(hit["value"].iloc[0])
        if self.csv_rows is not None and csv_mask is not None:
            hit = self.csv_rows[csv_mask]
            if len(hit):
                self.used.add(self.csv_origin)
                return float(hit["value"].iloc[0])
        return None

    @staticmethod
    def _res_mask(col: pd.Series, resolution: int | None) -> pd.Series:
        if resolution is None:
            return col.isna()
        return col.astype(float) == float(resolution)

    def toy(self, model: str, device: str, metric: str, resolution: int | None = None) -> float | None:
        """A toy model's figure (``resolution``: as the paper lists it; None: rows without one)."""
        s = c = None
        if self.store_rows is not None:
            r = self.store_rows
            s = (r["name"] == model) & (r["family"] == "toy") & (r["device_id"] == device) & (r["metric"] == metric)
            s &= self._res_mask(r["resolution"], resolution)
        if self.csv_rows is not None:
            r = self.csv_rows
            c = (r["model"] == model) & (r["device"] == device) & (r["metric"] == metric)
            c &= self._res_mask(r["resolution"], resolution)
        return self._pick(s, c)

    def variant(self, name: str, device: str, metric: str, resolution: int) -> float | None:
        """A figure of a named search-space variant at ``resolution`` (store: by config hash; file: by the
        paper's model name and variant note)."""
        v = get_variant(name)
        s = c = None
        if self.store_rows is not None:
            r = self.store_rows
            h = v.config.with_(resolution=resolution).hash
            s = (r["config_hash"] == h) & (r["device_id"] == device) & (r["metric"] == metric)
        if self.csv_rows is not None and v.paper_model:
            r = self.csv_rows
            note = r["variant_note"] if "variant_note" in r else pd.Series([None] * len(r), index=r.index)
            c = (r["model"] == v.paper_model) & (r["device"] == device) & (r["metric"] == metric)
            c &= note.isna() if v.paper_note is None else (note == v.paper_note)
            c &= self._res_mask(r["resolution"], resolution)
        return self._pick(s, c)

    def first(self, devices: tuple[str, ...], lookup) -> tuple[str | None, float | None]:
        """The first device of ``devices`` for which ``lookup(device)`` has a number."""
        for d in devices:
            v = lookup(d)
            if v is not None and math.isfinite(v):
                return d, v
        return None, None


def preferred_devices(kind: str, metric: str) -> tuple[str, ...]:
    return DEVICE_PREFERENCE[("gpu" if kind == "gpu" else "cpu", metric)]


def describe_device(store, device_id: str) -> str:
    """'rpi5_arm_cpu (Raspberry Pi5 ..., ONNX)' when the store knows the device, else the id."""
    if store is None:
        return device_id
    d = store.device(device_id)
    if d is None:
        return device_id
    framework = (d.protocol or {}).get("framework")
    return f"{device_id} ({d.name}{', ' + framework if framework else ''})"
