"""Budgets and limits as Optuna constraints, through one helper that works with either constraint API.

Optuna >= 5 reads ``trial.constraints`` (set with ``Trial.set_constraint``) in every sampler and deprecates the
samplers' ``constraints_func``; older Optuna only knows ``constraints_func``, called after each trial. The helper
detects which one is there (by feature, not by version string) and the rest of the search never needs to know.

Constraint values are relative violations, ``(value - limit) / limit``: <= 0 is feasible, and a millisecond
over a 12 ms budget weighs like 8 % over a parameter limit when samplers and reports add violations up.

A budget applies to what the search scores (:attr:`Evaluation.scored`): under risk "bound" the pessimistic end of
the predicted interval (the upper end of a latency, the lower end of a throughput), so a returned config is over
its budget with probability <= (1 - c) / 2 at confidence c; ``bound`` in the constraint says which end.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import optuna

from ._objectives import Evaluation, Objective
from ._errors import SearchError

# Feature detection, once: the per-trial API of Optuna >= 5.
HAS_TRIAL_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")
_USER_ATTR = "constraints"  # old API: where the values wait for the sampler's constraints_func
_TIME_PER_IMAGE_METRICS = ("throughput_img_s", "fps")
DOMAIN = "domain"  # the key of the training-domain constraint


@dataclasses.dataclass(frozen=True)
class SizeLimit:
    """A limit on an analytic count of the architecture: which Evaluation field it reads, how it is written."""

    key: str  # the SearchSettings field and constraint key
    attr: str  # the Evaluation field it constrains
    word: str  # the quantity in labels ("params <= 5 M") and its unit for format_quantity

    @property
    def flag(self) -> str:
        """The command-line flag (and the field named in its errors), as the settings field declares it."""
        from nas._search_settings import option_name

        return option_name(self.key)


# Every size limit by constraint key: the one table Constraint.quantity and make_constraints read.
SIZE_LIMITS = {
    "max_params": SizeLimit("max_params", "params", "params"),
    "max_macs": SizeLimit("max_macs", "macs", "MACs"),
}

_UNITS = {"latency_ms": "ms", "ms": "ms", "throughput_img_s": "img/s", "fps": "fps", "top1_pct": "%"}


def format_quantity(value: float, metric: str | None, signed: bool = False) -> str:
    """A value with its unit, the same unit for a quantity in every message and report: params and MACs in M,
    latency in ms, throughput in img/s, top-1 in % ('2,574 M', '16.98 ms', '+2.5 M' with ``signed``)."""
    sign = "+" if signed else ""
    if metric in ("params", "macs", "MACs"):
        value, unit = value / 1e6, "M"
    else:
        unit = _UNITS.get(metric or "", "")
    num = f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.4g}"
    return f"{num} {unit}".rstrip()


@dataclasses.dataclass(frozen=True)
class Constraint:
    key: str  # budget:<device>, or a key of SIZE_LIMITS
    limit: float
    label: str
    unit: str
    objective: str | None = None  # the objective a budget applies to
    bound: str | None = None  # which value of the objective: "upper"/"lower" end of its interval, or None (central)

    def quantity(self, e: Evaluation, objectives: Sequence[Objective]) -> float:
        """The constrained quantity of one architecture, in the limit's unit (a budget: of the scored value)."""
        if self.key == DOMAIN:  # graded, so that the sampler can move towards the domain; 0 exactly inside
            return float(len(e.ood)) + float(getattr(e, "domain_excess", 0.0) or 0.0)
        if self.key in SIZE_LIMITS:
            return float(getattr(e, SIZE_LIMITS[self.key].attr))
        i = [o.key for o in objectives].index(self.objective)
        return ms_per_image(objectives[i].metric, e.scored[i])

    def shown(self, quantity: float) -> str:
        """A quantity in the unit of this constraint's label."""
        return format_quantity(quantity, self.unit)

    def violation(self, quantity: float) -> float:
        return (quantity - self.limit) / self.limit

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ms_per_image(metric: str | None, value: float) -> float:
    """Throughput protocols time a batch and report images/s; a budget applies to the time per image."""
    from predictors import to_cost  # the one metric <-> milliseconds-per-image conversion

    return float(to_cost(metric, value)) if metric in _TIME_PER_IMAGE_METRICS else float(value)


def make_constraints(objectives: Sequence[Objective], budgets_ms: dict[str, float | None],
                     max_params: float | None = None, max_macs: float | None = None, risk: str = "bound",
                     confidence: float | None = 0.9, extrapolate: bool = True,
                     **limits: float | None) -> list[Constraint]:
    """Budgets (per device, on the value the search scores: see the module doc) and size limits (``max_params``,
    ``max_macs`` and any other key of SIZE_LIMITS, as the search settings name them); unless ``extrapolate``, the
    training domain of every predicted objective (:func:`domain_constraint`)."""
    unknown = sorted(set(limits) - set(SIZE_LIMITS))
    if unknown:
        raise TypeError(f"make_constraints: unknown size limit {unknown[0]!r}; known: {', '.join(SIZE_LIMITS)}")
    limits = {"max_params": max_params, "max_macs": max_macs, **limits}
    out = []
    for o in objectives:
        b = budgets_ms.get(o.device) if o.is_time else None
        if b is None:
            continue
        _positive("budget-ms", b)
        what = "time per image (1000/throughput)" if o.metric in _TIME_PER_IMAGE_METRICS else "latency"
        uncertain = getattr(o, "calibrated", False) and risk == "bound"
        bound = ("lower" if o.higher_is_better else "upper") if uncertain else None
        # The time per image of a throughput device is largest at the throughput's lower end: the label names the time.
        end = f" (upper end of its {confidence:.0%} interval)" if uncertain and confidence else ""
        out.append(Constraint(f"budget:{o.device}", float(b), f"{o.device} {what}{end} <= {b:g} ms", "ms", o.key, bound))
    for key in SIZE_LIMITS:
        limit = limits.get(key)
        if limit is not None:
            s = SIZE_LIMITS[key]
            _positive(s.flag, limit)
            out.append(Constraint(key, float(limit), f"{s.word} <= {format_quantity(limit, s.word)}", s.word))
    dom = None if extrapolate else domain_constraint(objectives)
    return out + ([dom] if dom is not None else [])


def domain_constraint(objectives: Sequence[Objective]) -> Constraint | None:
    """Every predicted objective inside its predictor's training domain. The quantity is the number of predictions of
    a config that are extrapolations plus how far outside their domains they lie (predictors.domain_excess), at most 0
    (limit 0.5: the relative violation is -1 inside and grows with the distance outside). None when no objective has
    a domain."""
    keys = [o.key for o in objectives if getattr(o, "predictor", None) is not None]
    if not keys:
        return None
    return Constraint(DOMAIN, 0.5, "every prediction inside its predictor's training domain (--extrapolate to leave "
                                   "it)", "outside the training domains (0 inside)")


def _positive(field: str, v: float) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0 or v == float("inf"):
        raise SearchError(field, f"must be a positive number (got {v!r})")


def violations(e: Evaluation, constraints: Sequence[Constraint], objectives: Sequence[Objective]) -> list[float]:
    return [c.violation(c.quantity(e, objectives)) for c in constraints]


def attach(trial: optuna.trial.Trial, constraints: Sequence[Constraint], values: Sequence[float]) -> None:
    """Record a running trial's constraint values where this Optuna's samplers look for them."""
    if not constraints:
        return
    if HAS_TRIAL_CONSTRAINTS:
        for c, v in zip(constraints, values):
            trial.set_constraint(c.key, float(v))
    else:
        trial.set_user_attr(_USER_ATTR, [float(v) for v in values])


def _constraints_from_user_attr(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs[_USER_ATTR]


def sampler_kwargs(constraints: Sequence[Constraint]) -> dict[str, Any]:
    """Extra sampler arguments: ``constraints_func`` where the trial API is missing, nothing otherwise."""
    if not constraints or HAS_TRIAL_CONSTRAINTS:
        return {}
    return {"constraints_func": _constraints_from_user_attr}


def read(trial: optuna.trial.FrozenTrial, constraints: Sequence[Constraint]) -> list[float] | None:
    """A stored trial's constraint values, in the order of ``constraints`` (None when it has none)."""
    if not constraints:
        return []
    if _USER_ATTR in trial.user_attrs:
        return [float(v) for v in trial.user_attrs[_USER_ATTR]]
    if HAS_TRIAL_CONSTRAINTS:
        got = trial.constraints
        if all(c.key in got for c in constraints):
            return [float(got[c.key]) for c in constraints]
    return None
