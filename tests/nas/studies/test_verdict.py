import math

import pytest

pytest.importorskip("torch")  # nas.studies builds toy models

from nas.studies import HOLDS, NA, REVERSED, RULES, WEAKER, Finding, judge_ratio, judge_share  # noqa: E402


@pytest.mark.parametrize("local, paper, verdict", [
    (1.5, 1.42, HOLDS),        # same direction, bigger
    (1.2, 1.42, HOLDS),        # log 1.2 = 0.18 >= half of log 1.42 = 0.175
    (1.1, 1.42, WEAKER),       # same direction, less than half
    (1.01, 1.42, WEAKER),      # within noise
    (0.99, 1.42, WEAKER),      # opposite but within noise: no effect here
    (0.8, 1.42, REVERSED),
    (0.5, 0.7, HOLDS),         # below 1 both
    (2.0, 0.7, REVERSED),
    (1.3, 1.02, NA),           # the paper's own effect is within noise
    (None, 1.4, NA),
    (1.4, None, NA),
    (math.nan, 1.4, NA),
])
def test_judge_ratio(local, paper, verdict):
    assert judge_ratio(local, paper) == verdict


def test_judge_ratio_is_symmetric_in_log_space():
    assert judge_ratio(1 / 1.5, 1 / 1.42) == judge_ratio(1.5, 1.42) == HOLDS


@pytest.mark.parametrize("share, verdict", [(1.0, HOLDS), (0.75, HOLDS), (0.6, WEAKER), (0.5, WEAKER),
                                            (0.2, REVERSED), (None, NA)])
def test_judge_share(share, verdict):
    assert judge_share(share) == verdict


def test_finding_line_and_rules():
    f = Finding("s", "k", "claim", 1.5, 1.42, "rpi5_arm_cpu", HOLDS)
    assert f.line() == "[   holds] k: here 1.50x; paper 1.42x (rpi5_arm_cpu)"
    g = Finding("s", "k", "", 0.8, None, None, HOLDS, "share", "why")
    assert "here 80%" in g.line() and "paper: no number" in g.line() and "[why]" in g.line()
    assert set(RULES) == {"ratio", "share"} and all("holds" in r and "reversed" in r for r in RULES.values())
