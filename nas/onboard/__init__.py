"""Onboarding a device without data (anchors, source ranking, informative design, scratch vs transfer) and
the drift check that proposes it when this machine no longer runs as its predictor says."""

from ._common import ANCHORS, anchor_jobs, known_sources
from ._common import is_this_machine
from ._drift import DriftReport, DriftRow, drift_check, drift_disabled
from ._session import (
    DESIGNS,
    OnboardResult,
    OnboardSettings,
    design_configs,
    evaluate_campaign,
    holdout_configs,
    onboard_bundle,
    onboard_local,
    onboard_results,
    train_best,
)

__all__ = [
    "ANCHORS",
    "DESIGNS",
    "DriftReport",
    "DriftRow",
    "OnboardResult",
    "OnboardSettings",
    "anchor_jobs",
    "design_configs",
    "drift_check",
    "drift_disabled",
    "evaluate_campaign",
    "holdout_configs",
    "is_this_machine",
    "known_sources",
    "onboard_bundle",
    "onboard_local",
    "onboard_results",
    "train_best",
]
