"""Saving and loading estimators and predictor versions without pickle.

An estimator becomes a JSON document (its type, its constructor parameters, its learned attributes) plus
text artefacts (LightGBM models, ``booster.model_to_string()``). Nested estimators (the additive base of
a LightGBM residual model, the source of a transfer) nest in the JSON, their artefacts get a file-name
prefix. A predictor version is a directory written atomically (a temporary directory, then one
``os.replace``): ``meta.json`` (the sidecar), ``model.json`` and any ``*.txt`` artefacts.

A predictor directory is untrusted input (it may be copied from anywhere, truncated or edited): the sidecar
records the sha256 of every model file (format 2) and the loader refuses a file that differs, is missing
or was added; every file is read bounded in size, JSON without NaN/Infinity; each model checks its
learned parameters (finite, non-negative where it promises it; LightGBM text structurally, before the
library sees it); and a sidecar must name the device and metric of the folders it lives in.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import uuid
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator

from lowformer_common import read_at_most, short, strict_loads, write_json
from measured import RecordError, check_device_id, legacy_hash_map
from search_spaces import CONFIG_IDENTITY

from ._base import ESTIMATORS, CostModel, PredictorError
from ._features import SCHEMA_HASH

# 1: no digests (refused: `python -m predictors._persist ROOT` adds them); 2: the sidecar lists the sha256 of every
# model file ("digests"), always verified.
FORMAT = 2
META = "meta.json"
MODEL = "model.json"
# Reading a predictor never takes more than this per file (the shipped LightGBM model is 0.6 MB).
MAX_BYTES = {META: 16 << 20, MODEL: 16 << 20, ".txt": 64 << 20}


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


def _check_save_place(root: pathlib.Path, meta: dict[str, Any]) -> None:
    device, metric = meta.get("device"), meta.get("metric")
    if device is None and metric is None:
        return
    try:
        check_device_id(device, "device")
    except RecordError as e:
        raise PredictorError(str(e)) from None
    if root.name != metric or root.parent.name != device:
        raise PredictorError(f"{root}: a {device}/{metric} predictor is saved under <predictors>/{device}/{metric}")
    if root.exists() and not root.resolve().is_relative_to(root.parent.parent.resolve()):
        raise PredictorError(f"{root}: resolves outside {root.parent.parent} (a link?); refusing to write there")


def save_version(root: pathlib.Path, estimator, meta: dict[str, Any]) -> pathlib.Path:
    """Write ``estimator`` and its sidecar as the next version under ``root`` (``<predictors>/<device>/<metric>``);
    earlier versions stay. The sidecar lists the sha256 of every model file it goes with."""
    root = pathlib.Path(root)
    _check_save_place(root, meta)
    root.mkdir(parents=True, exist_ok=True)
    doc, texts = estimator_to_json(estimator)
    for attempt in range(5):
        existing = version_dirs(root)
        version = (existing[-1][0] + 1) if existing else 1
        final = root / f"v{version:04d}"
        tmp = root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            m = dict(meta, version=version, format=FORMAT, config_identity=CONFIG_IDENTITY)
            digests = {}
            for name, text in texts.items():
                data = text.encode("utf-8")
                (tmp / name).write_bytes(data)
                digests[name] = _digest(data)
            write_json(tmp / MODEL, doc, fsync=True)
            digests[MODEL] = _digest((tmp / MODEL).read_bytes())
            m["digests"] = dict(sorted(digests.items()))
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


def add_digests(path: pathlib.Path) -> dict[str, Any]:
    """Record the sha256 of a version directory's model files in its sidecar (format 2), as saving does now;
    for versions written before digests existed. Returns the new sidecar."""
    path = pathlib.Path(path)
    meta = read_sidecar(path)
    files = sorted(path.glob("*.txt")) + [path / MODEL]
    meta = dict(meta, format=FORMAT, digests={p.name: _digest(_read(p)) for p in sorted(files, key=lambda p: p.name)})
    write_json(path / META, meta)
    return meta


def _read(path: pathlib.Path) -> bytes:
    cap = MAX_BYTES.get(path.name, MAX_BYTES[".txt"])
    try:
        data = read_at_most(path, cap)
    except OSError as e:
        raise PredictorError(f"{path}: unreadable predictor file ({e.strerror or e})") from None
    if len(data) > cap:
        raise PredictorError(f"{path}: larger than {cap >> 20} MiB; not a predictor file")
    return data


def parse_json(data: bytes, path: pathlib.Path) -> Any:
    """Strict JSON of a predictor file: UTF-8, no NaN/Infinity, no key twice; a one-line PredictorError naming
    ``path``."""
    try:
        return strict_loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PredictorError(f"{path}: unreadable predictor file ({short(str(e), 120)}); restore or retrain it") from None


def read_sidecar(path: pathlib.Path) -> dict[str, Any]:
    """The sidecar (``meta.json``) of a version directory, bounded and strictly parsed."""
    meta = parse_json(_read(pathlib.Path(path) / META), pathlib.Path(path) / META)
    if not isinstance(meta, dict):
        raise PredictorError(f"{pathlib.Path(path) / META}: not a predictor sidecar (a JSON object)")
    return meta


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_place(path: pathlib.Path, meta: dict[str, Any]) -> None:
    # A version lives in <device>/<metric>/v<NNNN>: a sidecar naming another device or metric was moved or
    # relabelled, and would answer for a device it was never trained on.
    device, metric = meta.get("device"), meta.get("metric")
    if device != path.parent.parent.name or metric != path.parent.name:
        raise PredictorError(
            f"{path}: meta.json is a {short(str(device), 60)}/{short(str(metric), 40)} predictor but lives under "
            f"{path.parent.parent.name}/{path.parent.name}; refusing a predictor moved or relabelled from elsewhere")
    if not path.resolve().is_relative_to(path.parent.parent.parent.resolve()):
        raise PredictorError(f"{path}: resolves outside its predictors folder (a link?); refusing it")


def _check_digests(path: pathlib.Path, meta: dict[str, Any], files: dict[str, bytes]) -> None:
    digests = meta.get("digests")
    if not isinstance(digests, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
        raise PredictorError(f"{path}: meta.json (format {meta.get('format')}) has no digests of its model files; "
                             "restore or retrain it")
    missing = sorted(set(digests) - set(files))
    if missing:
        raise PredictorError(f"{path / short(missing[0], 60)}: listed in meta.json's digests but missing; restore or retrain it")
    for name in sorted(files):
        if name not in digests:
            raise PredictorError(f"{path / name}: not listed in meta.json's digests (added after saving); remove it")
        if _digest(files[name]) != digests[name]:
            raise PredictorError(f"{path / name}: sha256 differs from the one meta.json records: the file was changed "
                                 "after saving (corrupt or edited); restore or retrain it")


def upgrade_sidecar(meta: dict[str, Any], known: dict[str, str] | None = None) -> dict[str, Any]:
    """A sidecar written before config identity version 2, with ``training_data.config_hashes`` moved to the
    hashes of identity 2 where the config is known (``known``: {old hash: new hash}; by default the configs of
    the shipped datasets, see :func:`measured.legacy_hash_map`). Unknown hashes stay; the sidecar says how
    many were mapped. A sidecar of identity 2 comes back unchanged."""
    if meta.get("config_identity") == CONFIG_IDENTITY:
        return meta
    out = dict(meta, config_identity=CONFIG_IDENTITY)
    td = meta.get("training_data")
    hashes = td.get("config_hashes") if isinstance(td, dict) else None
    if isinstance(hashes, list) and all(isinstance(h, str) for h in hashes):
        known = legacy_hash_map() if known is None else known
        mapped = [known.get(h, h) for h in hashes]
        unique = sorted(set(mapped)) if hashes == sorted(hashes) else list(dict.fromkeys(mapped))
        out["training_data"] = dict(td, config_hashes=unique)
        out["config_identity_upgrade"] = {
            "from": meta.get("config_identity", 1), "mapped": sum(a != b for a, b in zip(hashes, mapped)),
            "merged": len(mapped) - len(unique),
            "note": "config_hashes moved to identity 2 (one hash per network) where the config is known; "
                    "n_configs still counts the configs as they were trained"}
    return out


def load_version(path: pathlib.Path) -> tuple[Any, dict[str, Any]]:
    """(estimator, sidecar) of a version directory ``<device>/<metric>/v<NNNN>``.

    Refused with a one-line PredictorError: a model file whose sha256 differs from the sidecar's (or missing,
    or not listed), an oversized or non-JSON file, a sidecar naming another device or metric than its
    folders, another feature schema, non-finite or impossible parameters (each model checks its own).
    """
    path = pathlib.Path(path)
    meta = read_sidecar(path)
    fmt = meta.get("format", 1)
    if type(fmt) is not int or fmt > FORMAT or fmt < 1:  # `true` is no format (and would skip the digests)
        raise PredictorError(f"{path}: meta.json: format must be the integer {FORMAT} (got {short(repr(fmt), 20)}); "
                             "restore or retrain it")
    if fmt < FORMAT:  # the digests are never skipped: a version without them is upgraded first
        raise PredictorError(f"{path}: meta.json: format {fmt} records no digests of its model files; add them "
                             f"(python -m predictors._persist {path.parent.parent.parent}) or retrain it")
    schema_hash = meta.get("feature_schema", {}).get("hash") if isinstance(meta.get("feature_schema"), dict) else None
    if schema_hash != SCHEMA_HASH:
        raise PredictorError(
            f"{path}: trained on feature schema {str(schema_hash)[:12]}, this code has {SCHEMA_HASH[:12]}; "
            f"retrain it: lowformer-nas predictors train --device {short(str(meta.get('device', 'NAME')), 60)} "
            f"--metric {short(str(meta.get('metric', 'M')), 40)}"
        )
    missing = [k for k in ("device", "metric", "model_type") if k not in meta]
    if missing:
        raise PredictorError(f"{path}: incomplete predictor sidecar (no {missing[0]!r}); retrain it")
    _check_place(path, meta)
    files = {p.name: _read(p) for p in sorted(path.glob("*.txt"))}
    files[MODEL] = _read(path / MODEL)
    _check_digests(path, meta, files)
    doc = parse_json(files.pop(MODEL), path / MODEL)
    try:
        texts = {name: data.decode("utf-8") for name, data in files.items()}
    except UnicodeDecodeError:
        raise PredictorError(f"{path}: a model text file is not UTF-8; restore or retrain it") from None
    try:
        est = estimator_from_json(doc, texts)
    except PredictorError as e:
        raise PredictorError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise PredictorError(f"{path}: unreadable predictor model ({type(e).__name__}: {short(str(e), 120)})") from None
    return est, upgrade_sidecar(meta)


def main(argv: list[str] | None = None) -> int:
    """``python -m predictors._persist ROOT...``: bring every version under the predictor roots to the current
    sidecar: config hashes of identity 2 and the sha256 digests of the model files (format 2)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m predictors._persist", description=main.__doc__)
    p.add_argument("roots", nargs="+", type=pathlib.Path, help="predictor folders (<root>/<device>/<metric>/v<NNNN>)")
    args = p.parse_args(argv)
    for root in args.roots:
        for meta_path in sorted(root.glob(f"*/*/v*/{META}")):
            path = meta_path.parent
            meta = read_sidecar(path)
            upgraded = upgrade_sidecar(meta)
            if upgraded is not meta:
                write_json(path / META, upgraded)
            meta = add_digests(path)
            load_version(path)  # what was written loads
            print(f"{path}: format {meta['format']}, identity {meta.get('config_identity')}, "
                  f"{upgraded.get('config_identity_upgrade', {}).get('mapped', 0)} hashes mapped, "
                  f"digests of {', '.join(meta['digests'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
