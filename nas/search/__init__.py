"""Multi-objective architecture search with Optuna: accuracy (surrogate or proxy) vs predicted latency per device,
under latency budgets and size limits, risk-aware (budgets and objectives on the pessimistic ends of calibrated
prediction intervals by default), with the paper's named variants as fixed points."""

from ._charts import figures, measured_figure, write_charts, write_figures
from ._constraints import HAS_TRIAL_CONSTRAINTS, Constraint, format_quantity, make_constraints
from ._export import export_pick, front_entry, pick_id
from ._hints import next_steps
from ._named import STATUSES, named_status
from ._objectives import (
    ACCURACY_OBJECTIVES,
    DEFAULT_CONFIDENCE,
    DEFAULT_RISK,
    RISKS,
    CountObjective,
    Evaluation,
    Evaluator,
    FunctionObjective,
    Objective,
    PredictorObjective,
    Scores,
    build_objectives,
    check_confidence,
    check_risk,
)
from ._refine import RefineRound, pick_for_refinement, refine_search, rounds_table
from ._report import amend_report, front_json, ranking_line, report_md, risk_line, write_outputs
from ._results import StudyResults, load_results
from ._runs import default_runs_dir, find_study_dir, study_folder
from ._samplers import SAMPLERS, FastNSGAIISampler, make_sampler
from ._storage import SearchError, check_study_name, open_storage, study_dir
from ._study import DISTRIBUTIONS, SearchResult, SearchSettings, open_study, run_search
from ._verify import VerifySummary, device_objective, store_measurer, summarise, verify_front, verify_markdown

__all__ = [
    "ACCURACY_OBJECTIVES",
    "Constraint",
    "CountObjective",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RISK",
    "DISTRIBUTIONS",
    "Evaluation",
    "Evaluator",
    "FastNSGAIISampler",
    "FunctionObjective",
    "HAS_TRIAL_CONSTRAINTS",
    "Objective",
    "PredictorObjective",
    "RISKS",
    "RefineRound",
    "SAMPLERS",
    "STATUSES",
    "Scores",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "StudyResults",
    "VerifySummary",
    "build_objectives",
    "check_confidence",
    "check_risk",
    "check_study_name",
    "default_runs_dir",
    "export_pick",
    "find_study_dir",
    "figures",
    "format_quantity",
    "front_entry",
    "front_json",
    "load_results",
    "make_constraints",
    "make_sampler",
    "measured_figure",
    "named_status",
    "next_steps",
    "open_storage",
    "open_study",
    "pick_for_refinement",
    "refine_search",
    "report_md",
    "risk_line",
    "rounds_table",
    "run_search",
    "store_measurer",
    "study_dir",
    "study_folder",
    "verify_front",
    "verify_markdown",
    "amend_report",
    "device_objective",
    "pick_id",
    "ranking_line",
    "summarise",
    "write_charts",
    "write_figures",
    "write_outputs",
]
