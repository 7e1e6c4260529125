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


def next_steps(res: "StudyResults", this_machine: str | None = None) -> list[str]:
    """Commands to run next, one line each (empty when the study has nothing to act on)."""
    if not res.any_feasible:
        return []
    name = res.name
    out = [f"export the best pick as JSON and ONNX: `lowformer-nas export --study {name} --pick 1 --onnx {name}-pick1.onnx`"]
    devices = [o["device"] for o in res.objectives if o.get("device") and o["device"] != ACCURACY_DEVICE]
    here = this_machine if this_machine is not None else (_this_machine() if devices else None)
    for dev in devices:
        if dev == here:
            out.append(f"measure the front on this machine ({dev}): `lowformer-nas search --study {name} --verify 10`; "
                       f"`--refine 2` also retrains the predictor on them and searches again")
        else:
            out.append(f"teach the {dev} predictor your own {dev}: `lowformer-nas onboard --device {dev} --bundle "
                       f"onboard-{dev}`, run `python3 run_bundle.py --out results.csv` in that folder on the device, "
                       f"then `lowformer-nas onboard --device {dev} --results results.csv`")
    return out
