"""What ``lowformer-nas`` does before every command, in one place: ``--device local`` resolved to this machine's
id, the onboarding hint for a device without a predictor, and the drift check (``before_command``)."""

from __future__ import annotations

import importlib.util
import sys

from lowformer_common import UserError

# Commands whose --device names a device to look up (a predictor, measurements): "local" becomes this
# machine's id before they run. measure, study and onboard resolve "local" themselves (with the backend).
_DRIFT_COMMANDS = ("measure", "search", "study")
_HINT_COMMANDS = ("search", "predict")



def _wants_gpu(args) -> bool:
    from measured import BACKENDS

    b = getattr(args, "backend", None)
    return b in BACKENDS and BACKENDS[b].is_gpu()


def resolve_local(args) -> None:
    """``--device local`` (and ``local`` among several --device) becomes this machine's device id."""
    if getattr(args, "command", None) == "onboard":
        return  # onboarding tells this machine from an edge device by the word itself
    from measured import LOCAL

    if getattr(args, "device", None) == LOCAL:
        from measured import local_device_id

        args.device = local_device_id(gpu=_wants_gpu(args))
    for attr in ("devices", "device"):  # --device repeatable (search, data dump)
        devices = getattr(args, attr, None)
        if isinstance(devices, list) and LOCAL in devices:
            from measured import local_device_id

            here = local_device_id(gpu=_wants_gpu(args))
            setattr(args, attr, [here if d == LOCAL else d for d in devices])
    _known_case(args)


def known_devices() -> list[str]:
    """Devices with a predictor, not counting the accuracy surrogate's dataset (imagenet1k is not a device)."""
    from measured import ACCURACY_DEVICE
    from predictors import available_predictors

    return sorted({d for d, _ in available_predictors()} - {ACCURACY_DEVICE})


def did_you_mean(word: str, choices) -> str:
    """` (did you mean X?)` for the closest of ``choices`` (case-insensitive), or ''."""
    import difflib

    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean {lower[hits[0]]}?)" if hits else ""


def _known_case(args) -> None:
    """Device ids are matched case-insensitively against the devices with a predictor (``Jetson_TX2``)."""
    names = [getattr(args, a, None) for a in ("device", "devices", "source")]
    if not any(isinstance(n, str) and n != n.lower() or isinstance(n, list) and any(x != x.lower() for x in n)
               for n in names):
        return
    known = {d.lower(): d for d in known_devices()}

    def fix(d):
        return known.get(d.lower(), d) if isinstance(d, str) and d not in known.values() else d

    for attr in ("device", "devices", "source"):
        v = getattr(args, attr, None)
        if isinstance(v, str):
            setattr(args, attr, fix(v))
        elif isinstance(v, list):
            setattr(args, attr, [fix(d) for d in v])


def _command_devices(args) -> list[str]:
    if isinstance(getattr(args, "devices", None), list):
        return list(args.devices)
    device = getattr(args, "device", None)
    if isinstance(device, str):
        return [device]
    if args.command in ("measure", "study") and device is None:
        from measured import local_device_id

        return [local_device_id(gpu=_wants_gpu(args))]
    return []


def _has_predictor(device: str) -> bool:
    from predictors import available_predictors

    return any(d == device for d, _ in available_predictors())


def onboarding_hint(args) -> None:
    """search/predict on a device without a predictor: one line saying how to get one (onboarding)."""
    from measured import check_device_id, local_device_id

    here = {local_device_id(), local_device_id(gpu=True)}
    for device in _command_devices(args):
        if _has_predictor(device):
            continue
        check_device_id(device, "device")
        if device in here:
            raise UserError(f"device: no predictor for {device!r} (this machine) yet; onboard it first (about 5 "
                            "minutes of measuring): lowformer-nas onboard --device local")
        # Devices only: the accuracy surrogate's dataset has a predictor but is nothing to onboard or measure on.
        known = ", ".join(known_devices()) or "none"
        raise UserError(f"device: no predictor for {device!r}{did_you_mean(device, known_devices())}; onboard it: "
                        f"lowformer-nas onboard --device {device} "
                        f"--bundle DIR (a device this tool cannot run on; then --results FILE), or --device local for "
                        f"this machine; or train one from stored measurements: lowformer-nas predictors train --device "
                        f"{device}; devices with a predictor: {known}")


def check_drift(args, log=None) -> None:
    """The drift check for every device of a measuring or searching command that is this machine and has a
    predictor (see nas.onboard._drift); lines to stderr, never fatal."""
    from nas.onboard import drift_check, drift_disabled, is_this_machine

    if drift_disabled():
        return
    if any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxruntime")):
        return  # cannot measure here: the search still runs on its predictors
    log = log or (lambda s: print(f"lowformer-nas: {s}", file=sys.stderr))
    store = None
    try:
        for device in _command_devices(args):
            if not _has_predictor(device):
                continue
            if store is None:  # the phase check stores its anchor session there
                from measured import Store

                store = Store(getattr(args, "store", None))
            if not is_this_machine(device, store):
                continue
            report = drift_check(device, store=store, progress=not getattr(args, "quiet", False),
                                 onboard_command=_onboard_command(args, device), log=log)
            if report is not None and (report.drifted or not report.cached):
                for line in report.lines():
                    log(line)
    finally:
        if store is not None:
            store.close()


def _onboard_command(args, device: str) -> str:
    from measured import local_device_id

    if device == local_device_id():
        return "lowformer-nas onboard --device local --restart"
    return f"lowformer-nas onboard --device {device} --restart"


def before_command(args) -> None:
    """What ``lowformer-nas`` does before any sub-command: resolve ``local``, refuse a search on this machine
    without a predictor with the onboarding hint, check drift before measuring or searching here."""
    resolve_local(args)
    if args.command in _HINT_COMMANDS:
        onboarding_hint(args)
    if args.command in _DRIFT_COMMANDS:
        check_drift(args)
