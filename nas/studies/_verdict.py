"""Verdicts: does a finding of the paper hold on this device?

Every finding compares a *ratio of times* (one model's time over another's, > 1 meaning slower) measured
here with the same ratio in the paper. Effects are compared on a log scale, so 2x slower and 2x faster are
the same size. The rules are printed with every study's output.
"""

from __future__ import annotations

import dataclasses
import math

HOLDS, WEAKER, REVERSED, NA = "holds", "weaker", "reversed", "n/a"
VERDICTS = (HOLDS, WEAKER, REVERSED, NA)

# Ratios within this band of 1 count as "no effect": the harness's repeated medians vary by up to ~3%.
NOISE = 0.03
# A local effect at least this share of the paper's (on the log scale) is the same finding.
HALF = 0.5
# The share of grid cells that must show the paper's direction (findings without published numbers).
SHARE_HOLDS, SHARE_WEAKER = 0.75, 0.5

RATIO_RULE = (
    "holds: the local time ratio points the paper's way (both above or both below 1) and its effect is at "
    f"least {HALF:.0%} of the paper's (|log ratio|); weaker: the same way but smaller, or within ±{NOISE:.0%} "
    f"of 1 (no effect beyond noise); reversed: the opposite way, beyond ±{NOISE:.0%}; n/a: no paper number, "
    f"or the paper's own ratio is within ±{NOISE:.0%} of 1"
)
SHARE_RULE = (
    f"holds: the paper's direction in at least {SHARE_HOLDS:.0%} of the measured grid cells (a cell within "
    f"±{NOISE:.0%} of 1 counts against it); weaker: in at least {SHARE_WEAKER:.0%}; reversed: in fewer"
)
RULES = {"ratio": RATIO_RULE, "share": SHARE_RULE}


def _ok(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def judge_ratio(local: float | None, paper: float | None, noise: float = NOISE, half: float = HALF) -> str:
    """Verdict for a local time ratio against the paper's (see ``RATIO_RULE``)."""
    if not _ok(local) or not _ok(paper):
        return NA
    band = math.log1p(noise)
    p, q = math.log(paper), math.log(local)
    if abs(p) < band:
        return NA
    if abs(q) < band:
        return WEAKER
    if (p > 0) != (q > 0):
        return REVERSED
    return HOLDS if abs(q) >= half * abs(p) else WEAKER


def judge_share(share: float | None) -> str:
    """Verdict from the share of cells that show the paper's direction (see ``SHARE_RULE``)."""
    if share is None or not math.isfinite(share):
        return NA
    if share >= SHARE_HOLDS:
        return HOLDS
    return WEAKER if share >= SHARE_WEAKER else REVERSED


def beyond_noise(ratio: float, direction: int, noise: float = NOISE) -> bool:
    """Whether ``ratio`` lies beyond the noise band on the side ``direction`` (+1: above 1, -1: below 1)."""
    return _ok(ratio) and (math.log(ratio) * direction > math.log1p(noise))


@dataclasses.dataclass(frozen=True)
class Finding:
    """One finding of the paper, checked here."""

    study: str
    key: str  # short id: "pair A: time dw/ungrouped"
    claim: str  # what the paper shows, in words
    local: float | None  # the local figure (a time ratio, or a share of cells for "share" findings)
    paper: float | None  # the paper's figure on ``paper_device`` (same unit), None if unpublished
    paper_device: str | None
    verdict: str
    rule: str = "ratio"  # key of RULES
    note: str | None = None

    def line(self) -> str:
        fmt = (lambda x: f"{x:.0%}") if self.rule == "share" else (lambda x: f"{x:.2f}x")
        paper = f"paper {fmt(self.paper)} ({self.paper_device})" if self.paper is not None else "paper: no number"
        local = f"here {fmt(self.local)}" if self.local is not None else "here: not measured"
        note = f"  [{self.note}]" if self.note else ""
        return f"[{self.verdict:>8s}] {self.key}: {local}; {paper}{note}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
