"""What a study is: the models it measures, and how it turns their times into tables, findings and a chart."""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Callable, ClassVar, Sequence

import pandas as pd

from lowformer_common import UserError

from ._paper import PaperData
from ._verdict import Finding


@dataclasses.dataclass
class PaperContext:
    """The paper's numbers for one local setting: ``devices`` are the paper's devices, closest first."""

    data: PaperData
    devices: tuple[str, ...]

    @property
    def closest(self) -> str:
        return self.devices[0]

    def first(self, lookup: Callable[[str], float | None]) -> tuple[str | None, float | None]:
        """(device, value) of the closest device for which ``lookup(device)`` has a number."""
        return self.data.first(self.devices, lookup)

    def toy_time_ms(self, model: str, device: str, resolution: int | None) -> float | None:
        """A toy model's time per image on a paper device: its latency, or 1000 / its throughput."""
        v = self.data.toy(model, device, "latency_ms", resolution)
        if v is not None:
            return v
        thr = self.data.toy(model, device, "throughput_img_s", resolution)
        return 1000.0 / thr if thr else None

    def relative_time(self, model: str, device: str, resolution: int | None) -> float | None:
        """A printed relative figure of the paper as a ratio of times (relative throughput is inverted)."""
        v = self.data.toy(model, device, "relative_latency", resolution)
        if v is not None:
            return v
        thr = self.data.toy(model, device, "relative_throughput", resolution)
        return 1.0 / thr if thr else None

    def pct_to_time_ratio(self, pct: float | None, device: str) -> float | None:
        """A printed % change (of latency, or of throughput on a throughput device) as a ratio of times."""
        if pct is None or not math.isfinite(pct):
            return None
        ratio = 1.0 + pct / 100.0
        if ratio <= 0:
            return None
        return 1.0 / ratio if self.data.is_throughput_device(device) else ratio

    def note_fallback(self, device: str | None) -> str | None:
        if device is None or device == self.closest:
            return None
        return f"{self.closest} has no number for this; {device} is the closest that has"


@dataclasses.dataclass
class Analysis:
    """What a study reports: markdown tables, the findings with verdicts, a plotly figure, notes."""

    tables: list[tuple[str, pd.DataFrame]]
    findings: list[Finding]
    figure: Any  # plotly.graph_objects.Figure
    notes: list[str] = dataclasses.field(default_factory=list)


class Study(abc.ABC):
    """One of the paper's hardware experiments, rerun on the local device."""

    name: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]  # where the paper reports it ("Table 1", "Figure 3", ...)

    @abc.abstractmethod
    def points(self, quick: bool = False) -> Sequence:
        """The models to measure: ``ToyModel`` or ``ConfigPoint`` records (see ``_toys``)."""

    @abc.abstractmethod
    def analyse(self, results: pd.DataFrame, paper: PaperContext, quick: bool = False) -> Analysis:
        """Tables, findings and chart from ``results`` (one row per point, ``time_ms`` per image; NaN
        where a point failed, was skipped or measured on a busy machine)."""


def times_by(results: pd.DataFrame, *keys: str) -> dict:
    """{(key values...): time_ms} of the usable points (ok status)."""
    ok = results[results["status"] == "ok"]
    out = {}
    for _, r in ok.iterrows():
        k = tuple(r[c] for c in keys)
        out[k if len(k) > 1 else k[0]] = float(r["time_ms"])
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b <= 0 or a <= 0:
        return None
    return a / b


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def fmt(x, digits: int = 2, suffix: str = "") -> str:
    """A table cell: a number, or '–' for missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}{suffix}"


class UnknownStudy(UserError):
    pass
