"""How repeatable are this device's measurements? Coefficient of variation of repeated medians."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lowformer_common import UserError

from ._harness import ci_from_notes
from ._records import full_results


def _cv_stats(g: pd.DataFrame, column: str) -> dict | None:
    """CV figures of ``column`` over the configs with >= 2 repeats of it, beside the raw medians' CV of the
    same configs and rows (so the two compare like with like)."""
    g = g[g[column].notna()]
    stats = g.groupby("config_hash")[column].agg(["count", "mean", "std"])
    raw = g.groupby("config_hash")["measured_value"].agg(["mean", "std"])
    stats = stats[stats["count"] >= 2]
    if stats.empty:
        return None
    cv = (stats["std"] / stats["mean"] * 100).to_numpy()
    raw = raw.loc[stats.index]
    raw_cv = (raw["std"] / raw["mean"] * 100).to_numpy()
    return {"configs": int(len(stats)), "cv_median_pct": round(float(np.median(cv)), 3),
            "cv_p90_pct": round(float(np.percentile(cv, 90)), 3), "cv_max_pct": round(float(np.max(cv)), 3),
            "raw_cv_median_pct": round(float(np.median(raw_cv)), 3),
            "raw_cv_p90_pct": round(float(np.percentile(raw_cv, 90)), 3)}


def _normalised_cv(g: pd.DataFrame) -> dict:
    """``canonical``: the CV of repeated canonical values (rows carrying a phase), ``ratio``: of repeated paired
    ratios; each beside the CV of the raw medians of the same rows. Absent where no config has two such rows."""
    from ._phase import canonical_frame

    out = {}
    if "phase" in g and g["phase"].notna().any():
        c = canonical_frame(g)
        c["canonical"] = c["value"].where(c["phase_normalised"])
        stats = _cv_stats(c, "canonical")
        if stats:
            out["canonical"] = stats
    if "ratio" in g and g["ratio"].notna().any():
        stats = _cv_stats(g.assign(measured_value=g["value"]), "ratio")
        if stats:
            out["ratio"] = stats
    return out


def noise_report(df: pd.DataFrame) -> dict:
    """CV (std / mean, ddof 1) of the medians of every config measured at least twice under one protocol.

    ``df`` holds ok measurements (``Store.measurements``). Returns the number of configs and repeats and
    the median, mean, 90th percentile and maximum CV in percent, per protocol; and, over every row of the
    protocol, the median number of timed runs and, where rows record it (adaptive timing), the median and
    90th percentile of the medians' 95 % CI half-width in percent; where rows carry them, the CV of repeated
    canonical values (``canonical``) and of repeated pair ratios (``ratio``), each beside the raw medians' CV of
    the same configs.
    """
    df = full_results(df)
    if df.empty:
        raise UserError("device: no measurements to assess")
    out = {}
    for protocol, g in df.groupby("protocol"):
        stats = g.groupby("config_hash")["value"].agg(["count", "mean", "std"])
        stats = stats[stats["count"] >= 2]
        if stats.empty:
            continue
        cv = (stats["std"] / stats["mean"] * 100).to_numpy()
        out[protocol] = {
            "configs": int(len(stats)),
            "repeats_per_config": float(stats["count"].mean()),
            "cv_median_pct": round(float(np.median(cv)), 3),
            "cv_mean_pct": round(float(np.mean(cv)), 3),
            "cv_p90_pct": round(float(np.percentile(cv, 90)), 3),
            "cv_max_pct": round(float(np.max(cv)), 3),
            "share_within_3pct": round(float(np.mean(cv <= 3.0)), 3),
        }
        n = pd.to_numeric(g["n"], errors="coerce").dropna() if "n" in g else pd.Series(dtype=float)
        if len(n):
            out[protocol]["runs_median"] = float(n.median())
        ci = pd.Series([ci_from_notes(v) for v in g["notes"]], dtype=float).dropna() if "notes" in g else pd.Series(dtype=float)
        if len(ci):
            out[protocol]["ci_half_pct_median"] = round(float(ci.median()), 3)
            out[protocol]["ci_half_pct_p90"] = round(float(np.percentile(ci, 90)), 3)
        out[protocol].update(_normalised_cv(g))
    if not out:
        raise UserError("device: no config was measured twice; run `lowformer-nas measure --sample 30 --repeats 5`")
    return out
