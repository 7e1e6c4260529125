"""What to do after a search: export the pick, check it on the hardware, teach the predictor the device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._objectives import ACCURACY_DEVICE

if TYPE_CHECKING:
    from ._results import StudyResults


def _this_machine() -> str | None:
    try:
        from measured import local_device_id

        return local_device_id()
    except Exception:  # noqa: BLE001 (a hint must never break a report: no /proc, odd hardware)
        return None


def next_steps(res: "StudyResults", this_machine: str | None = None, done: dict | None = None) -> list[str]:
    """Commands to run next, one line each (empty when the study has nothing to act on). ``done``: what this
    run already did ({"verify": N, "refine": R}), never proposed again."""
    if not res.any_feasible:
        return []
    done = done or {}
    name = res.name
    ident = str(res.front.iloc[0]["hash"])[:12]
    out = [f"export the best pick (id {ident}, stable when the study is resumed) as JSON, ONNX and a PyTorch module "
           f"for training: `lowformer-nas export --study {name} --pick {ident} --onnx {name}-{ident}.onnx --torch "
           f"{name}-{ident}` (docs/training.md)"]
    devices = [o["device"] for o in res.objectives if o.get("device") and o["device"] != ACCURACY_DEVICE]
    here = this_machine if this_machine is not None else (_this_machine() if devices else None)
    for dev in devices:
        if dev == here:
            out += _local_steps(name, dev, done)
        else:
            out.append(f"teach the {dev} predictor your own {dev}: `lowformer-nas onboard --device {dev} --bundle "
                       f"onboard-{dev}`, run `python3 run_bundle.py --out results.csv` in that folder on the device, "
                       f"then `lowformer-nas onboard --device {dev} --results results.csv`")
    return out


def _local_steps(name: str, dev: str, done: dict) -> list[str]:
    """Measuring on this machine, minus what was just done (a --verify 20 is not followed by --verify 10)."""
    if done.get("refine"):
        if done.get("verify"):
            return []  # measured, refined and verified: the front's lines above are the news
        return [f"check the refined front on this machine ({dev}): `lowformer-nas search --study {name} --verify 20`"]
    if done.get("verify"):
        return [f"teach the {dev} predictor the configs just measured and search again: `lowformer-nas search --study "
                f"{name} --refine 2` (report.md, section Verification, has the measured table)"]
    return [f"measure the front on this machine ({dev}): `lowformer-nas search --study {name} --verify 10`; "
            f"`--refine 2` also retrains the predictor on them and searches again"]
