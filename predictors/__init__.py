"""Per-device latency/throughput predictors and the accuracy surrogate.

Features come from the analytic op counts (:func:`featurize`, one versioned schema); estimators follow the
scikit-learn contract (:class:`MacsBaseline`, :class:`AdditiveModel`, :class:`LGBMModel`,
:class:`TransferModel`, :class:`AccuracySurrogate`); trained predictors are saved without pickle and loaded
by the search with :func:`load_predictor`. Every prediction comes with a calibrated interval
(:meth:`TrainedPredictor.predict_interval`, :class:`PredictionInterval`); :class:`Predictor` is the interface
the search relies on.
"""

from ._additive import ALPHA_GRID, DEFAULT_TERMS, TERMS, AdditiveModel, MacsBaseline, design_matrix
from ._base import HIGHER_IS_BETTER, PREDICTABLE_METRICS, CostModel, PredictorError, from_cost, to_cost
from ._design import CRITERIA, design_rows, informative_order, random_order, rank_sources
from ._coverage import COVERAGES, CoverageReport, interval_coverage, variant_groups
from ._features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    N_FEATURES,
    SCHEMA_HASH,
    SCHEMA_VERSION,
    featurize,
    featurize_one,
    in_space_mask,
    out_of_space_features,
    schema,
)
from ._interval import (
    COVERAGE_RANGE,
    DEFAULT_COVERAGE,
    KEY_NAMES,
    Calibration,
    PredictionInterval,
    check_coverage,
    key_features,
)
from ._lgbm import LGBMModel
from ._metrics import (
    LOO_MAX,
    cross_val_predict,
    cv_method,
    cv_splits,
    kendall_tau,
    mape,
    regression_report,
    rmse,
    spearman,
    within,
)
from ._persist import estimator_from_json, estimator_to_json, load_version, save_version
from ._predictor import (
    SHIPPED_DIR,
    TrainedPredictor,
    available_predictors,
    default_metric,
    domain_excess,
    domain_mask,
    domain_of,
    domain_violations,
    load_predictor,
    load_predictor_dir,
    predictor_versions,
    user_dir,
)
from ._protocol import Predictor
from ._shared import SHARED_MIN_CONFIGS, check_shared_fit, profile_rows, shared_model, shared_profile
from ._surrogate import AccuracySurrogate
from ._train import (
    MODEL_CHOICES,
    TrainingData,
    calibrate,
    candidate_models,
    evaluate_models,
    evaluation_models,
    figures_only,
    holdout_mask,
    random_holdout,
    train,
    training_data,
)
from ._transfer import (
    FEW_SHOT_METHODS,
    SELECTIONS,
    TransferModel,
    choose_by_validation,
    few_shot_curve,
    few_shot_table,
    transfer_from,
)
from ._update import UpdateResult, holdout_comparison, retrain_from_store, update, update_model

# What users need (the README's and predictors/README.md's API). Every name imported above stays importable
# from here: the other packages of this project use some of them (the import contract allows only public names).
__all__ = [
    "Predictor",
    "TrainedPredictor",
    "PredictionInterval",
    "PredictorError",
    "load_predictor",
    "available_predictors",
    "predictor_versions",
    "default_metric",
    "featurize",
    "schema",
    "FEATURE_NAMES",
    "CostModel",
    "MacsBaseline",
    "AdditiveModel",
    "LGBMModel",
    "TransferModel",
    "AccuracySurrogate",
    "transfer_from",
    "MODEL_CHOICES",
    "TrainingData",
    "training_data",
    "train",
    "evaluate_models",
    "candidate_models",
    "update",
    "retrain_from_store",
    "save_version",
    "load_version",
    "regression_report",
    "interval_coverage",
    "few_shot_curve",
]
