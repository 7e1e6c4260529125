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
from ._phase import phase_line
from ._refine import RefineRound, pick_for_refinement, refine_search, rounds_table
from ._report import amend_report, front_json, ranking_line, report_md, risk_line, write_outputs
from ._results import StudyResults, load_results
from ._runs import default_runs_dir, find_study_dir, study_folder
from ._samplers import SAMPLERS, FastNSGAIISampler, make_sampler
from ._errors import SearchError
from ._storage import check_study_name, open_storage, study_dir
from ._study import DISTRIBUTIONS, SearchResult, SearchSettings, open_study, run_search
from ._verify import VerifySummary, device_objective, store_measurer, summarise, verify_front, verify_markdown

# What users need to run, read and extend a search from Python. Every name imported above stays importable
# from here: the command line uses some of them (the import contract allows only public names).
__all__ = [
    "SearchSettings",
    "run_search",
    "SearchResult",
    "SearchError",
    "StudyResults",
    "load_results",
    "open_study",
    "export_pick",
    "verify_front",
    "refine_search",
    "write_charts",
    "next_steps",
    "Objective",
    "PredictorObjective",
    "CountObjective",
    "FunctionObjective",
    "build_objectives",
    "Constraint",
    "make_constraints",
    "SAMPLERS",
    "make_sampler",
    "RISKS",
    "DEFAULT_RISK",
    "DEFAULT_CONFIDENCE",
]
