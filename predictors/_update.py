"""Retraining a device's predictor after new measurements arrived (``predictors update``, ``search --refine``).

:func:`update` compares the model trained *without* a fixed hold-out (configs chosen by config hash, 20 %, so the
same ones at every update) on the data before and after the new measurements, on that hold-out, then trains on
everything and saves a new version; the earlier versions stay.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ._base import PredictorError, from_cost
from ._metrics import regression_report
from ._persist import save_version
from ._predictor import TrainedPredictor, load_predictor_dir, user_dir
from ._train import TrainingData, holdout_mask, train, training_data

_MIN_HOLDOUT = 3


def update_model(previous: TrainedPredictor | None, model: str | None = None) -> str:
    """The model type to retrain: ``model`` if given, else the current predictor's, else auto. A transfer predictor
    grows into a device model of its own once the device has data."""
    m = model or (previous.model_type if previous is not None else None) or "auto"
    return "auto" if m == "transfer" else m


def _source_for(store, device: str, model: str):
    """The common cost profile of every other device in ``store`` when ``model`` is the cross-device one."""
    if model != "shared":
        return None
    from ._shared import profile_rows, shared_profile

    return shared_profile(profile_rows(store.measurements(), device))


@dataclasses.dataclass
class UpdateResult:
    """A retrained predictor, where it was saved, its validation figures, and the fixed hold-out comparison
    (``holdout``: {"before": figures, "after": figures} or None when the hold-out is too small)."""

    predictor: TrainedPredictor
    path: pathlib.Path
    model: str
    results: dict[str, dict]
    data: TrainingData
    holdout: dict[str, dict] | None
    n_holdout: int
    previous: TrainedPredictor | None


def holdout_comparison(old: TrainingData | None, new: TrainingData, model: str) -> tuple[dict[str, dict] | None, int]:
    """Figures of ``model`` trained without the fixed hold-out on the data before (``old``) and after (``new``),
    scored on the hold-out configs of ``new``; (None, size) when either side would have fewer than 3 configs."""
    h_new = holdout_mask([c.hash for c in new.configs])
    n_held = int(h_new.sum())
    if n_held < _MIN_HOLDOUT or (~h_new).sum() < _MIN_HOLDOUT:
        return None, n_held
    held = {c.hash for c, h in zip(new.configs, h_new) if h}
    truth = new.values[h_new]
    Xh = new.X[: new.n_configs][h_new]
    rows: dict[str, dict] = {}
    for label, data in (("before", old), ("after", new)):
        if data is None:
            rows[label] = {"skipped": "no earlier measurements"}
            continue
        fit = data.subset(np.array([c.hash not in held for c in data.configs]))
        try:
            est = train(fit, model)[0].estimator
        except PredictorError as e:
            rows[label] = {"skipped": str(e)}
            continue
        rows[label] = regression_report(truth, from_cost(new.metric, est.predict(Xh)))
    return rows, n_held


def _save(pred: TrainedPredictor, root: pathlib.Path | None) -> tuple[TrainedPredictor, pathlib.Path]:
    path = save_version((pathlib.Path(root) if root else user_dir()) / pred.device / pred.metric, pred.estimator, pred.meta)
    return load_predictor_dir(path), path


def update(before: pd.DataFrame, after: pd.DataFrame, device: str, metric: str, *, model: str | None = None,
           previous: TrainedPredictor | None = None, device_protocol: Mapping[str, Any] | None = None,
           root: pathlib.Path | None = None, progress: Callable | None = None) -> UpdateResult:
    """Retrain (device, metric) on ``after`` (the store's rows once the new measurements are in), compare with
    ``before`` on the fixed hold-out, save the new version under ``root`` (default: the user's predictors)."""
    try:
        old = training_data(before, device, metric) if len(before) else None
    except PredictorError:
        old = None
    new = training_data(after, device, metric)
    m = update_model(previous, model)
    if m == "shared":  # an imported file brings one device's rows, not the other devices' common profile
        m = "additive"
    rows, n_held = holdout_comparison(old, new, m)
    pred, results = train(new, m, device_protocol=device_protocol, progress=progress)
    loaded, path = _save(pred, root)
    return UpdateResult(loaded, path, m, results, new, rows, n_held, previous)


def retrain_from_store(store, device: str, metric: str, *, previous: TrainedPredictor | None = None,
                       model: str | None = None, root: pathlib.Path | None = None,
                       progress: Callable | None = None) -> tuple[TrainedPredictor, pathlib.Path]:
    """Train (device, metric) afresh on the store's measurements (``previous``'s model type unless ``model``) and
    save it as a new version: the next ``load_predictor`` returns it."""
    dev = store.device(device)
    data = training_data(store.measurements(device=device), device, metric)
    m = update_model(previous, model)
    pred, _ = train(data, m, source=_source_for(store, device, m),
                    device_protocol=dev.protocol if dev is not None else None, progress=progress)
    return _save(pred, root)
