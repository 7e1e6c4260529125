"""What ``lowformer-nas search`` is asked, declared once: each :class:`SearchSettings` field carries its command-line
flag, help, parser, choices, whether a resumed study must keep it and the value a study stored before the field
existed resumes with. The argparse of ``search``, the settings a study stores and the checks on resume are all
generated from these fields, so a new search option is one field here (plus the code that uses it).

It lives outside ``nas.search`` so that the command line builds its parser without importing the search
(Optuna, pandas, plotly: seconds); ``nas.search`` exports :class:`SearchSettings`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Mapping, Sequence

from measured import PHASE_CHOICES

_UNSET: Any = object()


def option(default: Any = None, *, flag: str | None = None, help: str | None = None, parse: str | Callable | None = None,
           metavar: str | None = None, choices: Sequence[str] | None = None, repeat: bool = False, switch: bool = False,
           fixed: bool = False, stored: bool = True, legacy: Any = _UNSET, empty_is_unset: bool = False) -> Any:
    """A settings field. ``flag``: its option of ``search`` (None: Python API only); ``parse``: the argparse type, a
    callable or the name of one the command line supplies (units such as ``12ms`` or ``5M`` are parsed there);
    ``repeat``: the flag may be given several times (a list); ``switch``: a flag without value (true when given, else
    unset); ``fixed``: a resumed study keeps the stored value (another one is an error); ``stored``: written to the
    study's settings; ``legacy``: the value a study stored before this field existed resumes with (its behaviour
    then); ``empty_is_unset``: an empty sequence counts as not given."""
    meta = {"flag": flag, "help": help, "parse": parse, "metavar": metavar, "choices": choices, "repeat": repeat,
            "switch": switch, "fixed": fixed, "stored": stored, "empty_is_unset": empty_is_unset}
    if legacy is not _UNSET:
        meta["legacy"] = legacy
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class SearchSettings:
    """What ``lowformer-nas search`` was asked. ``None`` means: the stored study's value, else the default."""

    devices: Sequence[str] = option(
        (), flag="--device", parse="device_id", metavar="NAME", repeat=True, fixed=True, empty_is_unset=True,
        help="target device (repeatable); a resumed study keeps its devices")
    budgets_ms: Sequence[float] | None = option(  # one for all devices, or one per device
        flag="--budget-ms", parse="milliseconds", metavar="MS", repeat=True, fixed=True,
        help="latency budget (12, 12ms or 0.012s): one value for every device, or one per --device in order "
             "(throughput devices: time per image, 1000/throughput)")
    # The total the study (its current round) should reach; a resumed one runs the rest.
    trials: int | None = option(flag="--trials", parse="trials", metavar="N", help="total trials of the study (default 3000)")
    study: str | None = option(flag="--study", metavar="NAME", help="study name: $LOWFORMER_NAS_HOME/runs/NAME/ (an "
                                                                     "existing study, there or in ./runs, is resumed)")
    storage: str | None = option(flag="--storage", metavar="URL", stored=False,  # stored masked (settings_dict)
                                 help="shared Optuna database, e.g. postgresql://user@host/db (default: a journal file in "
                                      "the study's folder)")
    sampler: str | None = option(flag="--sampler", metavar="NAME", fixed=True,
                                 help="nsga2 (default), tpe, random or gp (gp: small budgets only)")
    objective: str | None = option(flag="--objective", metavar="NAME", fixed=True,
                                   help="accuracy side: surrogate (default: the top-1 predictor), params or macs "
                                        "(capacity proxies, maximised)")
    max_params: float | None = option(flag="--max-params", parse="amount", metavar="N", fixed=True,
                                      help="parameter limit, e.g. 5M")
    max_macs: float | None = option(flag="--max-macs", parse="amount", metavar="N", fixed=True, help="MAC limit, e.g. 1.5G")
    # "bound" (default): optimise and constrain the pessimistic interval ends; "mean": point values. Studies made
    # before intervals scored point values: they resume that way.
    risk: str | None = option(flag="--risk", metavar="MODE", fixed=True, legacy="mean",
                              help="bound (default): budgets and objectives use the pessimistic end of each prediction "
                                   "interval; mean: the central predictions (no safety margin)")
    # Coverage of the intervals (default 0.9); studies made before intervals reported them at 0.9.
    confidence: float | None = option(
        flag="--confidence", parse=float, metavar="C", fixed=True, legacy=0.9,
        help="coverage of the prediction intervals, in (0.5, 0.999) (default 0.9: a returned config is over budget "
             "with probability <= 5 %%)")
    # False (default): every predicted objective must stay inside its predictor's training domain (a constraint);
    # True: extrapolated configs compete, on their (wider) intervals. Older studies let them compete.
    extrapolate: bool | None = option(
        flag="--extrapolate", switch=True, fixed=True, legacy=True,
        help="let configs outside a predictor's training domain (the accuracy surrogate's included) compete on their "
             "wider intervals (default: every prediction stays inside its domain)")
    # The device phase the time objectives are predicted in (see _phase.py). Studies made before phases were
    # scored with the predictors' own (canonical) values: they resume that way.
    phase: str | None = option(
        flag="--phase", choices=PHASE_CHOICES, metavar="PHASE", fixed=True, legacy="canonical",
        help="the device phase the latency budgets are held against (phase-normalised predictors): now (default; on "
             "this machine a quick anchor timing, else the device's latest anchor session), typical, slow (its "
             "90th-percentile session) or canonical; without a phase series the default is canonical")
    seed: int | None = option(  # None for a new study: one is drawn, recorded and reported
        flag="--seed", parse="seed", help="sampler seed, 0 to 2**32 - 1 (default: one is drawn and reported)")
    # None: ./runs or $LOWFORMER_NAS_HOME/runs for an existing study, the latter for a new one.
    runs_dir: str | None = option(flag="--runs-dir", metavar="DIR", stored=False,
                                  help="where studies live (default: $LOWFORMER_NAS_HOME/runs; existing studies are "
                                       "also found in ./runs)")
    population_size: int = option(50, flag="--population-size", parse=int, help=argparse.SUPPRESS)
    # Refinement round (search --refine): a later round may use retrained predictors (stored by settings_dict).
    round: int | None = option(stored=False)


FIELDS = tuple(dataclasses.fields(SearchSettings))
# Settings a resumed study must keep (changing them would mix incomparable trials).
FIXED = tuple(f.name for f in FIELDS if f.metadata["fixed"])
# What a study stored before a setting existed resumes with.
LEGACY = {f.name: f.metadata["legacy"] for f in FIELDS if "legacy" in f.metadata}


def option_name(name: str) -> str:
    """The command-line spelling of a setting, for messages: ``budgets_ms`` -> ``budget-ms``."""
    flag = SearchSettings.__dataclass_fields__[name].metadata.get("flag")
    return flag[2:] if flag else name.replace("_", "-")


def unset(name: str, value: Any) -> bool:
    """Whether ``value`` leaves setting ``name`` to the stored study (or the default)."""
    f = SearchSettings.__dataclass_fields__[name]
    return value is None or (f.metadata["empty_is_unset"] and not value)


def add_arguments(parser: argparse.ArgumentParser, parsers: Mapping[str, Callable[[str], Any]]) -> None:
    """Every settings field with a flag as an option of ``parser``; ``parsers`` resolves the parser names."""
    for f in FIELDS:
        m = f.metadata
        if not m["flag"]:
            continue
        kw: dict[str, Any] = {"dest": f.name, "help": m["help"]}
        if m["switch"]:
            kw["action"] = "store_true"
        else:
            parse = m["parse"]
            if parse is not None:
                kw["type"] = parsers[parse] if isinstance(parse, str) else parse
            if m["repeat"]:
                kw["action"] = "append"
            for k in ("metavar", "choices"):
                if m[k] is not None:
                    kw[k] = m[k]
            if f.default is not None and not m["repeat"]:
                kw["default"] = f.default
        parser.add_argument(m["flag"], **kw)


def settings_from_args(args: argparse.Namespace, **extra: Any) -> SearchSettings:
    """The settings of a parsed command line: an option not given (or a switch off) keeps the field's default."""
    given = {}
    for f in FIELDS:
        if f.metadata["flag"]:
            v = getattr(args, f.name, None)
            if v is not None and v is not False:
                given[f.name] = v
    return SearchSettings(**given, **extra)


def stored_settings(s: SearchSettings) -> dict[str, Any]:
    """The settings a study records (sequences as lists); the run adds what it resolved besides."""
    out = {}
    for f in FIELDS:
        if f.metadata["stored"]:
            v = getattr(s, f.name)
            out[f.name] = list(v) if isinstance(v, (list, tuple)) else v
    return out
