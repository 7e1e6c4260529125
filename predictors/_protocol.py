"""The interface a search relies on: one (device, metric) predictor with intervals and a training domain.

:class:`predictors.TrainedPredictor` is the implementation the package ships; anything else a search should
score with (an analytic stand-in in tests, a remote model) subclasses :class:`Predictor` and passes the same
contract tests (tests/predictors/test_protocol.py).
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import numpy as np

from search_spaces import LowFormerConfig

from ._interval import DEFAULT_COVERAGE, PredictionInterval


class Predictor(abc.ABC):
    """Predictions of one metric on one device, with calibrated intervals.

    Attributes every implementation sets: ``device``, ``metric``, ``higher_is_better`` (throughput, top-1),
    ``model_type``, ``version`` and ``meta`` (a sidecar-like dict; may be empty).
    """

    device: str
    metric: str
    higher_is_better: bool
    model_type: str = "?"
    version: Any = None
    meta: Mapping[str, Any] = {}

    @abc.abstractmethod
    def predict(self, configs: Sequence[LowFormerConfig]) -> np.ndarray:
        """The model's values for a batch of configs (never a stored measurement: validation compares these)."""

    @abc.abstractmethod
    def predict_interval(self, configs: Sequence[LowFormerConfig], coverage: float = DEFAULT_COVERAGE,
                         measured: bool = True) -> PredictionInterval:
        """Central values and intervals holding the truth with probability ``coverage``; with ``measured``, a
        config with a stored measurement of this device and protocol reports that measurement instead."""

    @abc.abstractmethod
    def in_domain_mask(self, configs: Sequence[LowFormerConfig]) -> np.ndarray:
        """Per config, whether it lies inside what the predictor was trained on."""

    @property
    def is_surrogate(self) -> bool:
        return bool(self.meta.get("surrogate"))

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`predict_interval` has calibration data to work from."""
        return True

    @property
    def identity(self) -> str:
        """What tells two predictors of one (device, metric) apart (a resumed study checks it)."""
        return f"{self.model_type}|{self.version}"

    def predict_one(self, config: LowFormerConfig) -> float:
        return float(self.predict([config])[0])

    def in_domain(self, config: LowFormerConfig) -> bool:
        return bool(self.in_domain_mask([config])[0])
