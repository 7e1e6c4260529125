"""Saving and loading estimators and predictor versions without pickle.

An estimator becomes a JSON document (its type, its constructor parameters, its learned attributes) plus
text artefacts (LightGBM models, ``booster.model_to_string()``). Nested estimators (the additive base of
a LightGBM residual model, the source of a transfer) nest in the JSON, their artefacts get a file-name
prefix. A predictor version is a directory written atomically (a temporary directory, then one
``os.replace``): ``meta.json`` (the sidecar), ``model.json`` and any ``*.txt`` artefacts.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator

from lowformer_common import write_json

from ._base import ESTIMATORS, CostModel, PredictorError
from ._features import SCHEMA_HASH

FORMAT = 1
META = "meta.json"
MODEL = "model.json"


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def _from_json(v: Any) -> Any:
    # Constructor parameters are tuples where they are sequences (hashable, equal after a round trip).
    if isinstance(v, list):
        return tuple(_from_json(x) for x in v)
    return v


def estimator_to_json(est, prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """(JSON document, {artefact file name: text}) of an estimator, fitted or not."""
    if isinstance(est, FrozenEstimator):
        est = est.estimator
    if not isinstance(est, CostModel):
        raise TypeError(f"cannot save {type(est).__name__}: not a predictors estimator")
    texts: dict[str, str] = {}
    params: dict[str, Any] = {}
    for k, v in est.get_params(deep=False).items():
        if isinstance(v, BaseEstimator):
            doc, t = estimator_to_json(v, f"{prefix}{k}.")
            params[k] = {"__estimator__": doc}
            texts.update(t)
        else:
            params[k] = _jsonable(v)
    doc: dict[str, Any] = {"type": type(est).__name__, "params": params, "fitted": None}
    if est.__sklearn_is_fitted__():
        state, t = est._state(prefix)
        doc["fitted"] = _jsonable(state)
        doc["schema_hash"] = est.schema_hash_
        texts.update(t)
    return doc, texts


def estimator_from_json(doc: dict[str, Any], texts: dict[str, str], prefix: str = ""):
    classes = ESTIMATORS
    name = doc.get("type")
    if name not in classes:
        raise PredictorError(f"model.json: unknown model type {name!r}; this version knows {', '.join(classes)}")
    params = {}
    for k, v in doc["params"].items():
        if isinstance(v, dict) and "__estimator__" in v:
            sub = estimator_from_json(v["__estimator__"], texts, f"{prefix}{k}.")
            params[k] = FrozenEstimator(sub) if sub.__sklearn_is_fitted__() else sub
        else:
            params[k] = _from_json(v)
    est = classes[name](**params)
    if doc.get("fitted") is not None:
        if doc.get("schema_hash") != SCHEMA_HASH:
            raise PredictorError(
                f"model: trained on feature schema {str(doc.get('schema_hash'))[:12]}, this code has {SCHEMA_HASH[:12]}; retrain it"
            )
        est._load_state(doc["fitted"], texts, prefix)
        est.schema_hash_ = SCHEMA_HASH
    return est


def version_dirs(root: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(version, directory) of the complete versions under ``root``, oldest first."""
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit() and (p / META).is_file():
                out.append((int(p.name[1:]), p))
    return sorted(out)


def save_version(root: pathlib.Path, estimator, meta: dict[str, Any]) -> pathlib.Path:
    """Write ``estimator`` and its sidecar as the next version under ``root``; earlier versions stay."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc, texts = estimator_to_json(estimator)
    for attempt in range(5):
        existing = version_dirs(root)
        version = (existing[-1][0] + 1) if existing else 1
        final = root / f"v{version:04d}"
        tmp = root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            m = dict(meta, version=version, format=FORMAT)
            for name, text in texts.items():
                (tmp / name).write_text(text, encoding="utf-8")
            write_json(tmp / MODEL, doc, fsync=True)
            write_json(tmp / META, m, fsync=True)  # written last: a directory with meta.json is complete
            try:
                os.rename(tmp, final)  # fails if another process took this version number
            except OSError:
                if final.exists():
                    continue
                raise
            return final
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    raise PredictorError(f"{root}: could not claim a new version directory (concurrent writers?)")


def load_version(path: pathlib.Path) -> tuple[Any, dict[str, Any]]:
    """(estimator, sidecar) of a version directory; a schema mismatch is a one-line PredictorError."""
    path = pathlib.Path(path)
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        doc = json.loads((path / MODEL).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PredictorError(f"{path}: unreadable predictor ({e})") from None
    schema_hash = meta.get("feature_schema", {}).get("hash")
    if schema_hash != SCHEMA_HASH:
        raise PredictorError(
            f"{path}: trained on feature schema {str(schema_hash)[:12]}, this code has {SCHEMA_HASH[:12]}; "
            f"retrain it: lowformer-nas predictors train --device {meta.get('device', 'NAME')} --metric {meta.get('metric', 'M')}"
        )
    missing = [k for k in ("device", "metric", "model_type") if k not in meta]
    if missing:
        raise PredictorError(f"{path}: incomplete predictor sidecar (no {missing[0]!r}); retrain it")
    texts = {p.name: p.read_text(encoding="utf-8") for p in path.glob("*.txt")}
    try:
        return estimator_from_json(doc, texts), meta
    except (KeyError, TypeError, ValueError) as e:
        raise PredictorError(f"{path}: unreadable predictor model ({type(e).__name__}: {e})") from None
