"""Arguments several sub-command groups share, and the argparse ``type=`` checks of untrusted flag values.

A ``type=`` check turns a bad value into argparse's own one-line error (exit 2) before any work starts; each
names what is allowed and quotes the value cut short.
"""

from __future__ import annotations

import argparse
import math
import os
import re

from lowformer_common import UserError, short, strict_dumps
from measured import RecordError, check_device_id

MAX_TRIALS = 10_000_000
# Timing with more threads than usable cores measures the scheduler, not the model.
FORCE_THREADS_ENV = "LOWFORMER_NAS_FORCE_THREADS"


def print_json(obj, indent: int | None = 2, **kwargs) -> None:
    """Print ``obj`` as strict JSON, the one way every ``--json`` output is written: a NaN or an infinity (which
    no JSON reader takes) is a one-line error naming where it is, never printed."""
    try:
        text = strict_dumps(obj, indent=indent, **kwargs)
    except ValueError as e:
        raise UserError(f"--json: {e}") from None
    print(text)


def records(df) -> list[dict]:
    """A table's rows for JSON: a missing cell (NaN in pandas) is null."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def add_store_arg(p, what: str = "") -> None:
    """``--store URL``: the measurement store (SQLite file or database URL)."""
    p.add_argument(
        "--store",
        metavar="URL",
        help=f"{what}measurement store: a database URL or SQLite file (default: $LOWFORMER_NAS_STORE, else "
             "$LOWFORMER_NAS_HOME/store.sqlite)",
    )


def _shown(value: str) -> str:
    return short(repr(value), 60)


def device_id(value: str) -> str:
    """``--device``/``--source``: a safe device id (it names folders: predictors/<device>/, runs/...)."""
    try:
        return check_device_id(value, "device")
    except RecordError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("device: ")) from None


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} (got {_shown(value)})") from None


def positive_int(value: str) -> int:
    """An integer >= 1 (``--batch``: 0 is refused, not silently replaced)."""
    n = _int(value, "must be an integer >= 1")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {n})")
    return n


# Caps on flags that size work or memory: a typo (10^9 repeats, a 10^12 sample) is refused, not started.
MAX_RUNS = 100_000  # timed runs per config (the paper: 100)
MAX_WARMUP = 10_000  # warm-up runs per config (the paper: 5)
MAX_REPEATS = 1_000
MAX_SAMPLE = 100_000  # configs drawn from the space in one command
MAX_WORKERS = 256  # processes (export workers, bundle jobs)
MAX_SEED = 2**32 - 1  # numpy and Optuna take seeds in [0, 2**32)
MAX_NAME_CHARS = 200  # a name stored with rows (--campaign)


def int_in(low: int, high: int):
    """An argparse ``type=``: an integer in [low, high], else argparse's one line naming the range."""

    def check(value: str) -> int:
        n = _int(value, f"must be an integer in [{low:,}, {high:,}]")
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low:,}, {high:,}] (got {short(str(n), 40)})")
        return n

    check.__name__ = "integer"  # argparse names the type in its own messages
    return check


def seed(value: str) -> int:
    """``--seed``: an integer in [0, 2**32 - 1] (numpy and Optuna refuse others with a traceback)."""
    return int_in(0, MAX_SEED)(value)


def name_text(value: str) -> str:
    """A short printable name stored with rows (``--campaign``)."""
    if not 0 < len(value) <= MAX_NAME_CHARS or not value.isprintable():
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_NAME_CHARS} printable characters (got {_shown(value)})")
    return value


def trials(value: str) -> int:
    """``--trials``: 1 to MAX_TRIALS."""
    n = _int(value, f"must be an integer in [1, {MAX_TRIALS:,}]")
    if not 1 <= n <= MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, {MAX_TRIALS:,}] (got {short(str(n), 40)})")
    return n


_UNIT = re.compile(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*")
_TO_MS = {"": 1.0, "ms": 1.0, "s": 1e3}
_TO_S = {"": 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0}


def _with_unit(value: str, scale: dict[str, float], unit: str) -> float:
    """A finite number, bare (in ``unit``) or with one of the ``scale`` units: '12', '12ms', '0.5 s' (the range is
    checked where the value is used, with its own message)."""
    m = _UNIT.fullmatch(value)
    factor = scale.get(m.group(2).lower()) if m else None
    v = float(m.group(1)) * factor if m and factor is not None else math.nan
    if not math.isfinite(v):
        forms = ", ".join(f"'12{u}'" for u in scale if u)
        raise argparse.ArgumentTypeError(f"must be a number of {unit}: '12' ({unit}) or with a unit, {forms} "
                                         f"(got {_shown(value)})")
    return v


def milliseconds(value: str) -> float:
    """``--budget-ms``: '12', '12ms', '0.012s' (in ms)."""
    return _with_unit(value, _TO_MS, "ms")


def seconds(value: str) -> float:
    """A duration in seconds: '900', '900s', '15min', '500ms'."""
    return _with_unit(value, _TO_S, "s")


def timeout_seconds(value: str) -> float:
    """``--timeout``: a finite number of seconds > 0 (``nan`` and ``inf`` are refused); '900', '900s', '15min'."""
    try:
        t = seconds(value)
    except argparse.ArgumentTypeError:
        t = math.nan
    if not t > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, e.g. 900, 900s or 15min (got "
                                         f"{_shown(value)})")
    return t


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads(value: str) -> int:
    """``--threads``: 1 to the usable cores (more only with $LOWFORMER_NAS_FORCE_THREADS=1)."""
    n = positive_int(value)
    cores = usable_cores()
    if n > cores and os.environ.get(FORCE_THREADS_ENV) != "1":
        raise argparse.ArgumentTypeError(
            f"{n} threads on {cores} usable cores would time the scheduler, not the model; use at most {cores} "
            f"(or set {FORCE_THREADS_ENV}=1 to force it)")
    return n
