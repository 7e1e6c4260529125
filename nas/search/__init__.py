"""Multi-objective architecture search with Optuna: accuracy (surrogate or proxy) vs predicted latency per device,
under latency budgets and size limits, with the paper's named variants as fixed points."""

from ._charts import figures, measured_figure, write_charts, write_figures
from ._constraints import HAS_TRIAL_CONSTRAINTS, Constraint, format_quantity, make_constraints
from ._export import export_pick, front_entry
from ._objectives import (
    ACCURACY_OBJECTIVES,
    CountObjective,
    Evaluation,
    Evaluator,
    FunctionObjective,
    Objective,
    PredictorObjective,
    build_objectives,
)
from ._report import front_json, report_md, write_outputs
from ._results import StudyResults, load_results
from ._samplers import SAMPLERS, FastNSGAIISampler, make_sampler
from ._storage import SearchError, check_study_name, open_storage, study_dir
from ._study import DISTRIBUTIONS, SearchResult, SearchSettings, open_study, run_search
from ._verify import verify_front

__all__ = [
    "ACCURACY_OBJECTIVES",
    "Constraint",
    "CountObjective",
    "DISTRIBUTIONS",
    "Evaluation",
    "Evaluator",
    "FastNSGAIISampler",
    "FunctionObjective",
    "HAS_TRIAL_CONSTRAINTS",
    "Objective",
    "PredictorObjective",
    "SAMPLERS",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "StudyResults",
    "build_objectives",
    "check_study_name",
    "export_pick",
    "figures",
    "format_quantity",
    "front_entry",
    "front_json",
    "load_results",
    "make_constraints",
    "make_sampler",
    "measured_figure",
    "open_storage",
    "open_study",
    "report_md",
    "run_search",
    "study_dir",
    "verify_front",
    "write_charts",
    "write_figures",
    "write_outputs",
]
