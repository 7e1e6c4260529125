"""Per-device latency/throughput predictors and the accuracy surrogate.

Features come from the analytic op counts (:func:`featurize`, one versioned schema); estimators follow the
scikit-learn contract (:class:`MacsBaseline`, :class:`AdditiveModel`, :class:`LGBMModel`,
:class:`TransferModel`, :class:`AccuracySurrogate`); trained predictors are saved without pickle and loaded
by the search with :func:`load_predictor`.
"""

from ._additive import ALPHA_GRID, DEFAULT_TERMS, TERMS, AdditiveModel, MacsBaseline, design_matrix
from ._base import HIGHER_IS_BETTER, PREDICTABLE_METRICS, CostModel, PredictorError, from_cost, to_cost
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
from ._lgbm import LGBMModel
from ._metrics import cross_val_predict, cv_method, kendall_tau, mape, regression_report, rmse, spearman, within
from ._persist import estimator_from_json, estimator_to_json, load_version, save_version
from ._predictor import (
    SHIPPED_DIR,
    TrainedPredictor,
    available_predictors,
    default_metric,
    domain_mask,
    domain_of,
    domain_violations,
    load_predictor,
    load_predictor_dir,
    predictor_versions,
    user_dir,
)
from ._surrogate import AccuracySurrogate
from ._train import (
    MODEL_CHOICES,
    TrainingData,
    candidate_models,
    evaluate_models,
    evaluation_models,
    holdout_mask,
    random_holdout,
    train,
    training_data,
)
from ._transfer import TransferModel, few_shot_curve, transfer_from

__all__ = [
    "ALPHA_GRID",
    "AccuracySurrogate",
    "AdditiveModel",
    "CostModel",
    "DEFAULT_TERMS",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "HIGHER_IS_BETTER",
    "LGBMModel",
    "MODEL_CHOICES",
    "MacsBaseline",
    "N_FEATURES",
    "PREDICTABLE_METRICS",
    "PredictorError",
    "SCHEMA_HASH",
    "SCHEMA_VERSION",
    "SHIPPED_DIR",
    "TERMS",
    "TrainedPredictor",
    "TrainingData",
    "TransferModel",
    "available_predictors",
    "candidate_models",
    "cross_val_predict",
    "cv_method",
    "default_metric",
    "design_matrix",
    "domain_mask",
    "domain_of",
    "domain_violations",
    "estimator_from_json",
    "estimator_to_json",
    "evaluate_models",
    "evaluation_models",
    "featurize",
    "featurize_one",
    "few_shot_curve",
    "from_cost",
    "holdout_mask",
    "in_space_mask",
    "kendall_tau",
    "load_predictor",
    "load_predictor_dir",
    "load_version",
    "mape",
    "out_of_space_features",
    "predictor_versions",
    "random_holdout",
    "regression_report",
    "rmse",
    "save_version",
    "schema",
    "spearman",
    "to_cost",
    "train",
    "training_data",
    "transfer_from",
    "user_dir",
    "within",
]
