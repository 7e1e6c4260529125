"""A stand-in for the measuring workers: an analytic device (a sum of per-op-type costs that differ from
MACs, plus 2 % deterministic 'noise'), so onboarding runs end to end without timing anything."""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest

from measured import Timing, make_measurement
from predictors import DEFAULT_TERMS, design_matrix, featurize

# ms per unit of DEFAULT_TERMS: conv, pointwise, depthwise, attention MACs, memory-bound bytes, layers, intercept.
COEF = np.array([2.0e-8, 1.2e-8, 1.5e-7, 4.0e-8, 2.0e-9, 0.01, 0.5])


def analytic_ms(config, scale: float = 1.0) -> float:
    base = float((design_matrix(featurize([config]), DEFAULT_TERMS) @ COEF)[0])
    jitter = int(hashlib.sha256(config.hash.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF - 0.5  # in [-0.5, 0.5]
    return scale * base * (1 + 0.04 * jitter)


class FakeMeasurer:
    """measured.Measurer's interface; ``stop_after``: raise KeyboardInterrupt after that many results (a
    crash mid-campaign); ``log``: every job measured, across instances."""

    def __init__(self, protocol, device_id, *, campaign=None, timeout_s=None, export_workers=None, fresh_process=False,
                 scale=1.0, stop_after=None, log=None):
        self.protocol, self.device_id, self.campaign = protocol, device_id, campaign
        self.scale, self.stop_after, self.log = scale, stop_after, log if log is not None else []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def measure(self, jobs):
        for job in jobs:
            if self.stop_after is not None and len(self.log) >= self.stop_after:
                raise KeyboardInterrupt
            ms = analytic_ms(job.config, self.scale)
            timing = Timing(np.full(12, ms / 1e3), 0.0)
            self.log.append(job)
            yield job, make_measurement(job.config.hash, job.config.resolution, self.protocol, self.device_id,
                                        timing=timing, repeat=job.repeat, campaign=self.campaign, notes=job.name)


@pytest.fixture
def fake_measurer():
    """fake_measurer(**options) -> (a measurer factory for OnboardSettings / run_campaign, the shared job log)."""

    def make(**options):
        log = options.pop("log", [])
        return functools.partial(FakeMeasurer, log=log, **options), log

    return make
