"""The paper's numbers a study prints beside the local ones: read from the store (rows with source "paper",
seeded from the shipped paper measurements). Never typed by hand.

"Closest device" is the paper device of the same kind as the local measurement: a CPU backend compares with
the Raspberry Pi 5's ARM CPU (ONNX Runtime, the paper's CPU protocol); a GPU backend with the TITAN RTX
(latency) or the A40 (throughput). A finding the closest device has no number for falls back to the next
device in ``DEVICE_PREFERENCE`` and says so.
"""

from __future__ import annotations

import math

import pandas as pd

from search_spaces import get_variant

# Preference order of the paper's devices, per (local device kind, metric).
DEVICE_PREFERENCE: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "latency_ms"): ("rpi5_arm_cpu", "jetson_tx2", "iphone13", "titan_rtx_gpu", "a40_gpu"),
    ("cpu", "throughput_img_s"): ("rpi5_arm_cpu", "jetson_tx2", "iphone13", "titan_rtx_gpu", "a40_gpu"),
    ("gpu", "latency_ms"): ("titan_rtx_gpu", "a40_gpu", "jetson_tx2", "iphone13", "rpi5_arm_cpu"),
    ("gpu", "throughput_img_s"): ("a40_gpu", "titan_rtx_gpu", "jetson_tx2", "iphone13", "rpi5_arm_cpu"),
}
class PaperData:
    """The paper's measurements, looked up by model name (toy models) or variant (LowFormer configs).

    ``rows``: the store's rows with source "paper" (``Store.measurements(source="paper")``; the store is seeded
    with the shipped paper measurements on first use, so it is the one source of the paper's numbers).
    """

    ORIGIN = "the store (source 'paper')"

    def __init__(self, rows: pd.DataFrame | None = None):
        self.rows = rows if rows is not None and len(rows) else None
        self.used = False  # whether any lookup found a number

    @classmethod
    def load(cls, store) -> "PaperData":
        return cls(store.measurements(source="paper", status="ok"))

    @property
    def available(self) -> bool:
        return self.rows is not None

    def origin(self) -> str:
        if not self.available:
            return "no paper numbers were found in the store"
        return self.ORIGIN if self.used else "the store had no paper number for these findings"

    def devices(self) -> set[str]:
        return set(self.rows["device_id"].dropna()) if self.available else set()

    def is_throughput_device(self, device: str) -> bool:
        """Whether the paper times ``device`` by throughput (its relative figures are then throughput ratios)."""
        if not self.available:
            return False
        metrics = set(self.rows.loc[self.rows["device_id"] == device, "metric"])
        return "throughput_img_s" in metrics and "latency_ms" not in metrics

    # -------------------------------------------------------------------------------------------- lookups

    def _pick(self, mask) -> float | None:
        hit = self.rows[mask]
        if not len(hit):
            return None
        self.used = True
        return float(hit["value"].iloc[0])

    def toy(self, model: str, device: str, metric: str, resolution: int | None = None) -> float | None:
        """A toy model's figure (``resolution``: as the paper lists it; None: rows without one)."""
        if not self.available:
            return None
        r = self.rows
        mask = (r["name"] == model) & (r["family"] == "toy") & (r["device_id"] == device) & (r["metric"] == metric)
        col = r["resolution"]
        mask &= col.isna() if resolution is None else (col.astype(float) == float(resolution))
        return self._pick(mask)

    def variant(self, name: str, device: str, metric: str, resolution: int) -> float | None:
        """A figure of a named search-space variant at ``resolution`` (by config hash)."""
        if not self.available:
            return None
        r = self.rows
        h = get_variant(name).config.with_(resolution=resolution).hash
        return self._pick((r["config_hash"] == h) & (r["device_id"] == device) & (r["metric"] == metric))

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
