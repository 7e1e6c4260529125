"""The paper's five hardware experiments, rerun on any device: ``lowformer-nas study NAME``.

``depthwise`` (Table 1), ``fused-mbconv`` (Figure 3), ``resolution-vs-channels`` (Table 2), ``attention``
(Table 3) and ``resolution-scaling`` (Figure 8). Each measures its models here, stores the measurements,
writes a CSV, a markdown report and a chart, prints the paper's numbers for the closest device beside the
local ones and a verdict per finding. The toy models' open choices are in ``_toys`` (see CHOICES.md).
Needs the ``measure`` extra (torch, onnxruntime).
"""

from ._base import Analysis, PaperContext, Study, UnknownStudy
from ._paper import DEVICE_PREFERENCE, PaperData, preferred_devices
from ._runner import (
    CPU_MAC_CAP,
    MIN_RUNS,
    POINT_BUDGET_S,
    StudyResult,
    StudySettings,
    choose_runs,
    get_study,
    measure_toy,
    redraw_study,
    render_report,
    run_study,
)
from ._toys import (
    ConfigPoint,
    ToyModel,
    build_attention_stack,
    build_conv_stack,
    build_mbconv_stack,
    build_table1,
    count_macs,
    count_params,
    fig3_toys,
    fig8_points,
    table1_toys,
    table2_toys,
    table3_toys,
)
from ._verdict import HOLDS, NA, REVERSED, RULES, VERDICTS, WEAKER, Finding, judge_ratio, judge_share

__all__ = [
    "Analysis",
    "CPU_MAC_CAP",
    "ConfigPoint",
    "DEVICE_PREFERENCE",
    "Finding",
    "HOLDS",
    "MIN_RUNS",
    "NA",
    "POINT_BUDGET_S",
    "PaperContext",
    "PaperData",
    "REVERSED",
    "RULES",
    "Study",
    "StudyResult",
    "StudySettings",
    "ToyModel",
    "UnknownStudy",
    "VERDICTS",
    "WEAKER",
    "build_attention_stack",
    "build_conv_stack",
    "build_mbconv_stack",
    "build_table1",
    "choose_runs",
    "count_macs",
    "count_params",
    "fig3_toys",
    "fig8_points",
    "get_study",
    "judge_ratio",
    "judge_share",
    "measure_toy",
    "preferred_devices",
    "redraw_study",
    "render_report",
    "run_study",
    "table1_toys",
    "table2_toys",
    "table3_toys",
]
