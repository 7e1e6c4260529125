"""What onboarding and the drift check share: the anchors, the known devices' predictors, the plan files."""

from __future__ import annotations

import pathlib
import re
from typing import Any

from lowformer_common import UserError, home_dir, read_at_most, short, strict_loads, write_json
from search_spaces import get_variant

# Named variants measured first on a new device (and by the drift check): small to medium models with
# different op mixes (fused and unfused blocks, with and without MLPs), cheap to export and time.
ANCHORS = ("B0", "B1", "B1-unfused", "E2")
TIME_METRICS = ("latency_ms", "throughput_img_s", "fps")
# A plan file is ours, but still a file on disk: bounded and validated before use.
_MAX_PLAN_BYTES = 1 << 20


def anchor_jobs(repeat: int = 0):
    from measured import Job

    return [Job(get_variant(n).config, n, repeat) for n in ANCHORS]


def known_sources(exclude: set[str] = frozenset()) -> dict[str, Any]:
    """{device: its newest time predictor (TrainedPredictor)} for every device with one (user-trained or
    shipped), except ``exclude`` and the accuracy pseudo-device; the device's own protocol metric first."""
    from measured import ACCURACY_DEVICE
    from predictors import PredictorError, available_predictors, default_metric, load_predictor

    out = {}
    devices = sorted({d for d, m in available_predictors() if m in TIME_METRICS} - set(exclude) - {ACCURACY_DEVICE})
    for d in devices:
        metric = default_metric(d)
        if metric not in TIME_METRICS:
            metric = next(m for dd, m in available_predictors() if dd == d and m in TIME_METRICS)
        try:
            out[d] = load_predictor(d, metric)
        except (PredictorError, UserError):
            continue  # unreadable or trained on another feature schema: not a candidate
    return out


def known_source_ids() -> set[str]:
    """The devices with a time predictor (user-trained or shipped), without loading any: what --source may name."""
    from measured import ACCURACY_DEVICE
    from predictors import available_predictors

    return {d for d, m in available_predictors() if m in TIME_METRICS} - {ACCURACY_DEVICE}


def onboard_dir(device_id: str) -> pathlib.Path:
    return home_dir() / "onboard" / device_id


def _round_files(device_id: str) -> list[tuple[int, pathlib.Path]]:
    folder = onboard_dir(device_id)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(r"round-(\d{1,6})\.json", p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


_PLAN_KEYS = {"device": str, "round": int, "kind": str, "anchors": list, "design": list, "holdout": list,
              "spent_s": (int, float), "done": bool, "settings": dict}


def read_plan(path: pathlib.Path) -> dict[str, Any]:
    """An onboarding plan (JSON) checked field by field; a UserError names the file and field otherwise."""
    try:
        data = read_at_most(path, _MAX_PLAN_BYTES)
        if len(data) > _MAX_PLAN_BYTES:
            raise UserError(f"{path}: larger than {_MAX_PLAN_BYTES} bytes; not an onboarding plan")
        plan = strict_loads(data)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable onboarding plan ({type(e).__name__}); delete it to start over") from None
    if not isinstance(plan, dict):
        raise UserError(f"{path}: not an onboarding plan (a JSON object); delete it to start over")
    for key, typ in _PLAN_KEYS.items():
        if not isinstance(plan.get(key), typ) or isinstance(plan.get(key), bool) and typ is not bool:
            raise UserError(f"{path}: field {key!r} missing or of the wrong type; delete the file to start over")
    for key in ("anchors", "design", "holdout"):
        if not all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in plan[key]):
            raise UserError(f"{path}: field {key!r} must list config hashes; delete the file to start over")
    # The plan names the device and round of the file it lives in ($H/onboard/<device>/round-<n>.json): a plan
    # copied or edited to name another device (or a path) would write outside its folder.
    m = re.fullmatch(r"round-(\d{1,6})\.json", pathlib.Path(path).name)
    if plan["device"] != pathlib.Path(path).parent.name or (m is not None and plan["round"] != int(m.group(1))):
        raise UserError(f"{path}: field 'device'/'round' ({short(repr(plan['device']), 60)}, {plan['round']}) is not "
                        f"the folder and file it lives in ({pathlib.Path(path).parent.name}, "
                        f"{m.group(1) if m else '?'}); delete the file to start over")
    return plan


def latest_plan(device_id: str) -> dict[str, Any] | None:
    rounds = _round_files(device_id)
    return read_plan(rounds[-1][1]) if rounds else None


def next_round(device_id: str) -> int:
    rounds = _round_files(device_id)
    return rounds[-1][0] + 1 if rounds else 0


def save_plan(plan: dict[str, Any]) -> pathlib.Path:
    from measured import check_device_id

    check_device_id(plan["device"], "device")  # a folder name under $H/onboard, never a path
    return write_json(onboard_dir(plan["device"]) / f"round-{plan['round']}.json", plan, indent=1)


def campaign_name(round_: int, part: str = "") -> str:
    """The campaign stored with an onboarding round's measurements (the hold-out has its own)."""
    return f"onboard-r{round_}{'-' + part if part else ''}"

def is_this_machine(device_id: str, store=None) -> bool:
    """Whether ``device_id`` names this machine: its own id, or a stored device with its CPU identity."""
    from measured import local_device_id, same_machine

    if device_id in (local_device_id(), local_device_id(gpu=True)):
        return True
    if store is None:
        return False
    existing = store.device(device_id)
    return existing is not None and existing.source == "harness" and same_machine(existing)


def protocol_of(pred):
    """The protocol the predictor was trained on, to measure the anchors the same way (None: not here)."""
    from measured import BACKENDS, Protocol

    p = pred.meta.get("protocol", {}) or {}
    backend = p.get("backend") or "onnxruntime"
    if backend not in BACKENDS:
        return None
    kw = dict(backend=backend, batch=int(p.get("batch") or 1), threads=int(p.get("threads") or 1),
              precision=p.get("precision") or "fp32")
    if pred.metric == "throughput_img_s":
        return Protocol.throughput(**kw)
    if pred.metric != "latency_ms":
        return None
    return Protocol(**kw)
