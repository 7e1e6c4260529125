"""``lowformer-nas onboard``: a predictor for a device that has no data, in minutes.

1. Measure the anchors (a few named variants) on the device.
2. Rank every known device's predictor by how well it predicts the anchors after a common scale factor
   (:func:`predictors.rank_sources`); the best is the transfer source.
3. Choose what to measure by an informative design over configs sampled from the whole space
   (:func:`predictors.informative_order`, weighted by the source's expected times), not at random.
4. Measure those configs, most informative first, until ``--configs`` or ``--minutes`` is reached.
5. Train from scratch, by transfer from every known device and by the cross-device model; of those whose
   cross-validated MAPE on all the round's configs is within one standard error of the lowest, keep a transfer
   (best-ranked on the anchors) before the cross-device model before scratch (:func:`train_best`); save it.
6. Score it on a few random configs measured afterwards and never trained on (the hold-out), and print
   the next command.

On this machine every result is stored as it comes and the round's plan (anchors, design, hold-out, time
spent) is a file under ``$LOWFORMER_NAS_HOME/onboard/<device>/``, so an interrupted onboarding resumes where
it stopped. An edge device goes through a bundle: ``--bundle DIR`` writes the anchors, the design and the
hold-out as one bundle (no source is known yet: the design weights by MACs), ``--results FILE`` imports the
runner's CSV and trains.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lowformer_common import UserError, utc_now
from search_spaces import LowFormerConfig, sample_configs

from ._common import (
    ANCHORS,
    anchor_jobs,
    campaign_name,
    known_source_ids,
    known_sources,
    latest_plan,
    next_round,
    save_plan,
)

DESIGNS = ("i", "d", "random")
DEFAULT_MINUTES = 5.0
DEFAULT_CONFIGS = 30
DEFAULT_HOLDOUT = 10
DEFAULT_POOL = 2000
MAX_POOL = 20000  # candidate configs drawn for the design (and so configs measured) at most
# Seeds of the hold-out draws are offset from the design's, so the two never share a sample stream.
_HOLDOUT_SEED_OFFSET = 104_729


@dataclasses.dataclass
class OnboardSettings:
    """What ``lowformer-nas onboard`` does. ``configs`` counts the anchors; the hold-out is extra."""

    device: str | None = "local"
    minutes: float = DEFAULT_MINUTES
    configs: int = DEFAULT_CONFIGS
    holdout: int = DEFAULT_HOLDOUT
    source: str = "auto"  # auto | none | a device id with a predictor
    design: str = "i"  # i | d | random
    pool: int = DEFAULT_POOL
    seed: int = 0
    restart: bool = False
    protocol: Any = None  # measured.Protocol; default: the paper's CPU latency protocol
    export_workers: int | None = None
    timeout_s: float | None = None
    measurer: Any = None  # a measured.Measurer-like factory (tests); default measured.Measurer
    progress: bool = True
    out: str | None = None  # predictors root (default $LOWFORMER_NAS_HOME/predictors)

    def validate(self) -> "OnboardSettings":
        if not (isinstance(self.minutes, (int, float)) and math.isfinite(self.minutes) and self.minutes > 0):
            raise UserError(f"minutes: must be > 0 (got {self.minutes!r})")
        if type(self.configs) is not int or not len(ANCHORS) + 2 <= self.configs <= MAX_POOL:
            raise UserError(f"configs: must be an integer in [{len(ANCHORS) + 2}, {MAX_POOL}] (the {len(ANCHORS)} "
                            f"anchors and at least 2 more) (got {str(self.configs)[:40]})")
        if not isinstance(self.holdout, int) or not 0 <= self.holdout <= 1000:
            raise UserError(f"holdout: must be an integer in [0, 1000] (got {self.holdout!r})")
        if self.design not in DESIGNS:
            raise UserError(f"design: must be one of {'|'.join(DESIGNS)} (got {self.design!r})")
        if type(self.pool) is not int or not self.configs <= self.pool <= MAX_POOL:
            raise UserError(f"pool: must be an integer in [{self.configs} (--configs), {MAX_POOL}] (got "
                            f"{str(self.pool)[:40]})")
        if type(self.seed) is not int or not 0 <= self.seed < 2**32:
            raise UserError(f"seed: must be an integer in [0, 2**32 - 1] (got {str(self.seed)[:40]})")
        self._check_source()
        if self.protocol is None:
            from measured import Protocol

            self.protocol = Protocol()
        return self

    def _check_source(self) -> None:
        """``source``: auto, none or a device with a time predictor; checked before anything is measured."""
        if self.source in ("auto", "none"):
            return
        from measured import check_device_id

        check_device_id(self.source, "source")  # a folder name under predictors/, never a path
        if self.source == self.device:
            raise UserError(f"source: {self.source!r} is the device being onboarded; give another device or auto")
        known = sorted(known_source_ids())
        if self.source not in known:
            raise UserError(f"source: no time predictor of {self.source!r}; give auto, none or one of "
                            f"{', '.join(known)}")


@dataclasses.dataclass
class OnboardResult:
    device: str
    round: int
    metric: str
    n_train: int
    seconds: float  # measuring time of the round's training configs (anchors included)
    ranking: list[dict]
    source: str | None  # the transfer's source device (None unless chosen is "transfer")
    chosen: str  # "scratch" | "transfer" | "shared"
    model_type: str
    cv: dict  # cross-validated figures of the saved model
    holdout: dict | None  # figures on the hold-out, None without one
    predictor_path: str
    next_command: str
    notes: list[str] = dataclasses.field(default_factory=list)
    candidates: list[dict] = dataclasses.field(default_factory=list)  # every candidate's cross-validated MAPE


# ---------------------------------------------------------------------------------------------- design


def _features(configs: Sequence[LowFormerConfig]) -> np.ndarray:
    from predictors import featurize

    return featurize(list(configs))


def _expected_cost(source, X: np.ndarray) -> np.ndarray | None:
    """The source's predicted cost of each row (None without a usable source: MACs then weigh the design)."""
    if source is None:
        return None
    cost = np.asarray(source.estimator.predict(X), dtype=float)
    return cost if np.all(np.isfinite(cost)) and np.all(cost > 0) else None


def design_configs(anchors: Sequence[LowFormerConfig], n: int, *, pool: int, seed: int, design: str,
                   source=None, exclude: set[str] = frozenset()) -> list[LowFormerConfig]:
    """``n`` configs to measure after the anchors, most informative first (see the module doc)."""
    from predictors import informative_order, random_order

    taken = {c.hash for c in anchors} | set(exclude)
    candidates = [c for c in sample_configs(pool, seed=seed) if c.hash not in taken]
    if design == "random":
        order = random_order(len(candidates), n, seed=seed)
    else:
        Xc, Xa = _features(candidates), _features(anchors)
        order = informative_order(Xc, n, X_known=Xa, expected_cost=_expected_cost(source, Xc),
                                  expected_cost_known=_expected_cost(source, Xa), criterion=design)
    return [candidates[i] for i in order]


def holdout_configs(n: int, seed: int, exclude: set[str]) -> list[LowFormerConfig]:
    """``n`` random configs of the whole space (a seed of their own), none of ``exclude``."""
    out = []
    for c in sample_configs(n + len(exclude), seed=seed + _HOLDOUT_SEED_OFFSET):
        if c.hash not in exclude:
            out.append(c)
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------------------------------------- training


def _canonical(df):
    """``df`` with values in the device's canonical phase where rows carry a phase (measured._phase)."""
    if not len(df) or "phase" not in df or not df["phase"].notna().any():
        return df
    from measured import canonical_frame

    return canonical_frame(df)


def _rank(device_id: str, metric: str, anchor_hashes: Sequence[str], df) -> list[dict]:
    from predictors import featurize, rank_sources, to_cost

    df = _canonical(df)  # sources are ranked on canonical costs: one phase for every anchor
    d = df[df["config_hash"].isin(set(anchor_hashes)) & (df["status"] == "ok")]
    d = d.groupby("config_hash", sort=True).agg(value=("value", "median"), config_json=("config_json", "first"))
    if len(d) < 2:
        return []
    X = featurize([LowFormerConfig.from_json(j) for j in d["config_json"]])
    return rank_sources(X, to_cost(metric, d["value"].to_numpy(float)), known_sources(exclude={device_id}))


def _pick_source(setting: str, ranking: list[dict], device_id: str):
    """(source device or None, its TrainedPredictor or None)."""
    from predictors import load_predictor

    if setting == "none":
        return None, None
    if setting == "auto":
        if not ranking:
            return None, None
        name = ranking[0]["source"]
    else:
        if setting == device_id:
            raise UserError(f"source: {setting!r} is the device being onboarded; give another device or auto")
        name = setting
    return name, load_predictor(name)


def train_best(data, sources: Mapping[str, Any] | None = None, progress=None, *, shared=None,
               log: Callable[[str], None] | None = None) -> tuple[Any, dict, str]:
    """(TrainedPredictor, its validation figures, "scratch"|"transfer"|"shared"): the candidates trained on ``data``
    and one kept by :func:`_one_se_choice` (within one standard error of the lowest cross-validated MAPE, a
    transfer in the anchors' order first).

    The candidates: the model types trained from scratch (``train(data, "auto")``), the transfer from each of
    ``sources`` ({device: TrainedPredictor}, best-ranked first) and the cross-device model (``shared``: the common
    cost profile of the other devices, :func:`predictors.shared_model`). Every source is tried on all of the
    round's configs rather than only the best-ranked on the anchors: four anchors rank sources by one scale factor
    and can prefer a device whose costs merely match them (on a new x86 host the iPhone ranked first, 8 % against
    11.6 % spread, while the transfer from the x86 dataset cross-validated at 4.6 % MAPE against the iPhone's 18 %
    and predicted the 60-config hold-out 30 minutes later at 88 % within ±10 % against 73 % from scratch:
    predictors/README.md, Onboarding's choice)."""
    from predictors import PredictorError, train

    pred, results = train(data, "auto", progress=progress)
    found = [(pred, results, "scratch", None)]
    for name, source in (sources or {}).items():
        try:
            found.append((*train(data, "transfer", source=source, progress=progress), "transfer", name))
        except (PredictorError, ValueError):
            continue  # a source that cannot predict these configs is not a candidate
    if shared is not None:
        try:
            found.append((*train(data, "shared", source=shared, progress=progress), "shared", None))
        except (PredictorError, ValueError):
            pass
    mape = [r[p.meta["model_name"]]["mape"] for p, r, _, _ in found]
    best = _one_se_choice([c for _, _, c, _ in found], mape, data.n_configs)
    pred, results, chosen, name = found[best]
    if chosen == "transfer":
        source = sources[name]
        pred.meta["transfer_source"] = {"device": name, "metric": source.metric, "version": source.version,
                                        "model_type": source.model_type}
    pred.meta["onboarding_candidates"] = [
        {"candidate": _candidate_label(c, n), "model_name": p.meta["model_name"], "cv_mape": float(m)}
        for (p, _, c, n), m in zip(found, mape)]
    if log is not None:
        from predictors import cv_method

        log(f"cross-validated on the {data.n_configs} configs ({cv_method(data.n_configs)}), MAPE: " + ", ".join(
            f"{_candidate_label(c, n)} {m:.2f}%" for (_, _, c, n), m in zip(found, mape))
            + f" -> {_candidate_label(chosen, name)}")
    return pred, results, chosen


# The standard error of a MAPE over n configs, per unit of MAPE and sqrt(n): sd / mean of the absolute errors, 0.756
# when the errors are normal (|e| half-normal: sqrt(pi / 2 - 1)).
MAPE_SE_FACTOR = 0.756
# Among candidates that cross-validate alike, the prior order: a transfer (sources in the anchors' order), then the
# cross-device model, then from scratch.
_PRIOR = {"transfer": 0, "shared": 1, "scratch": 2}


def _one_se_choice(kinds: Sequence[str], mape: Sequence[float], n: int) -> int:
    """The index of the candidate to keep: of those whose cross-validated MAPE is within one standard error of the
    lowest (:data:`MAPE_SE_FACTOR`; ±0.8 % at 5.7 % on 30 configs), the first in the prior order (:data:`_PRIOR`,
    then the candidates' own order: transfers come best-ranked on the anchors first).

    Why not simply the lowest: on 30 configs the candidates' MAPEs differ by less than their noise, and the lowest
    can be a source that fits the 30 configs and not the space a search explores. On 2026-12-03 (18:46 UTC, a
    2-core Xeon) the lowest was the transfer from the TITAN RTX GPU (5.69 %; the x86 dataset 6.11 %, scratch
    5.81 %): it predicted a 60-config hold-out 30 minutes later at 71.7 % within ±10 % (the x86 transfer, trained
    on the same rows: 76.7 %), and `search --verify 20` on it measured its front 29.6 % slower than predicted, 7 of
    20 over budget. A transfer whose anchors match the device from small to large models carries the source's
    1,000+ measurements into the search's territory; the 30 configs alone cannot tell them apart."""
    lo = min(mape)
    window = lo + MAPE_SE_FACTOR * lo / math.sqrt(max(n, 1))
    alike = [i for i, m in enumerate(mape) if m <= window]
    return min(alike, key=lambda i: (_PRIOR.get(kinds[i], len(_PRIOR)), i))


def _candidate_label(chosen: str, source: str | None) -> str:
    return {"scratch": "from scratch", "shared": "cross-device (shared)"}.get(chosen, f"transfer from {source}")


def _training_sources(setting: str, ranking: list[dict], device_id: str) -> dict[str, Any]:
    """{device: TrainedPredictor} to transfer from when training: none, the named one, or (auto) every known
    device's, best-ranked on the anchors first."""
    from predictors import load_predictor

    if setting == "none":
        return {}
    if setting != "auto":
        if setting == device_id:
            raise UserError(f"source: {setting!r} is the device being onboarded; give another device or auto")
        return {setting: load_predictor(setting)}
    known = known_sources(exclude={device_id})
    order = [r["source"] for r in ranking if r["source"] in known]
    return {name: known[name] for name in order + sorted(set(known) - set(order))}


def _shared_source(store, device_id: str, data):
    """The common cost profile of every other device in the store (for the cross-device candidate), or None when
    the store cannot support one for these configs."""
    from predictors import PredictorError, check_shared_fit, profile_rows, shared_profile

    rows = profile_rows(store.measurements(), device_id)
    try:
        check_shared_fit(device_id, data.metric, data.X[: data.n_configs], data.n_configs, rows)
        return shared_profile(rows)
    except PredictorError:
        return None


def _holdout_figures(pred, df, hold_hashes: Sequence[str]) -> dict | None:
    from predictors import regression_report

    d = _canonical(df[df["config_hash"].isin(set(hold_hashes)) & (df["status"] == "ok")])
    if not len(d):
        return None
    d = d.groupby("config_hash", sort=True).agg(value=("value", "median"), config_json=("config_json", "first"))
    configs = [LowFormerConfig.from_json(j) for j in d["config_json"]]
    return regression_report(d["value"].to_numpy(float), pred.predict(configs))


def _full_ok(df):
    from measured import full_results

    df = full_results(df)
    return df[(df["status"] == "ok") & df["flag"].isna()] if len(df) else df


def _round_ids(device_id: str, protocol, plan: dict) -> set[str]:
    """The ids this round's ok results have (deterministic): a later round's rows never mix with an earlier
    round's measurements of the same configs (the machine may have changed in between)."""
    from measured import measurement_id

    hashes = plan["anchors"] + plan["design"] + plan["holdout"]
    return {measurement_id(device_id, protocol.key, h, plan["round"], "ok", protocol.runs) for h in hashes}


def train_round(store, device_id: str, metric: str, plan: dict, *, protocol_key: str | None, source_setting: str,
                out: str | None, log: Callable[[str], None], progress=None, ids: set[str] | None = None) -> OnboardResult:
    """Rank sources on the anchors, train scratch vs transfer on the plan's anchors + design, score the
    hold-out, save the predictor. Shared by the local and the bundle route. ``ids``: only these rows."""
    import pathlib

    from predictors import PredictorError, figures_only, save_version, training_data, user_dir

    df = _full_ok(store.measurements(device=device_id, metric=metric))
    if ids is not None and len(df):
        df = df[df["id"].isin(ids)]
    train_hashes = set(plan["anchors"]) | set(plan["design"])
    ranking = _rank(device_id, metric, plan["anchors"], df)
    if ranking:
        log("anchors vs known devices (after one scale factor; best first):")
        for r in ranking[:5]:
            tau = "-" if r["kendall_tau"] is None else f"{r['kendall_tau']:.2f}"
            log(f"  {r['source']:24s} {r['scale']:8.3g}x   spread ±{r['spread_pct']:.1f}%   τ {tau}")
    train_df = df[df["config_hash"].isin(train_hashes)]
    if protocol_key is not None:
        train_df = train_df[train_df["protocol"] == protocol_key]
    try:
        data = training_data(train_df, device_id, metric)
    except PredictorError as e:
        raise UserError(f"onboard: nothing to train on yet ({e}); rerun to measure") from None
    sources = _training_sources(source_setting, ranking, device_id)
    shared = _shared_source(store, device_id, data) if source_setting == "auto" else None
    pred, results, chosen = train_best(data, sources, progress, shared=shared, log=log)
    meta_round = {"round": plan["round"], "anchors": list(ANCHORS), "design": plan["settings"].get("design"),
                  "configs": data.n_configs, "seconds": round(plan["spent_s"], 1), "ranking": ranking,
                  "chosen": chosen, "candidates": pred.meta.pop("onboarding_candidates", []), "created": utc_now()}
    pred.meta["onboarding"] = meta_round
    hold = _holdout_figures(pred, df, plan["holdout"])
    root = pathlib.Path(out) if out else user_dir()
    path = save_version(root / device_id / metric, pred.estimator, pred.meta)
    name = pred.meta["model_name"]
    return OnboardResult(
        device=device_id, round=plan["round"], metric=metric, n_train=data.n_configs, seconds=plan["spent_s"],
        ranking=ranking, source=(pred.meta.get("transfer_source") or {}).get("device"), chosen=chosen,
        model_type=pred.meta["model_type"], cv=figures_only(results[name]), holdout=hold,
        predictor_path=str(path), next_command="", candidates=meta_round["candidates"],
    )


# ---------------------------------------------------------------------------------------------- this machine


def _new_plan(device_id: str, kind: str, round_: int, settings: OnboardSettings) -> dict:
    return {"device": device_id, "round": round_, "kind": kind, "created": utc_now(), "anchors": [], "design": [],
            "holdout": [], "source": None, "spent_s": 0.0, "done": False,
            "settings": {k: getattr(settings, k) for k in ("minutes", "configs", "holdout", "source", "design", "pool",
                                                           "seed")}}


def _resume_or_start(device_id: str, kind: str, settings: OnboardSettings, log) -> dict:
    plan = latest_plan(device_id)
    if plan is not None and not plan["done"] and plan["kind"] == kind and not settings.restart:
        log(f"resuming onboarding round {plan['round']} of {device_id} ({plan['spent_s']:.0f} s measured so far; "
            "--restart starts a new round)")
        return plan
    return _new_plan(device_id, kind, next_round(device_id), settings)


def _planned_design(plan: dict, anchors: list, store, device, protocol, settings: OnboardSettings,
                    log: Callable[[str], None]) -> list[LowFormerConfig]:
    """The round's designed configs. The design needs the source, the source needs the anchors: chosen once per
    round, after the anchors were measured, and kept in the plan (a resumed round measures the same configs)."""
    r = plan["round"]
    if not plan["design"]:
        df = _full_ok(store.measurements(device=device.device_id, metric=protocol.metric))
        df = df[df["id"].isin(_round_ids(device.device_id, protocol, plan))] if len(df) else df
        ok_anchors = len(set(df["config_hash"]) & set(plan["anchors"])) if len(df) else 0
        if ok_anchors < 2:
            log(f"note: {ok_anchors} of {len(ANCHORS)} anchors measured ok (the others failed or the machine was busy: "
                "`lowformer-nas data summary`); no source can be ranked, the design weighs configs by MACs")
        ranking = _rank(device.device_id, protocol.metric, plan["anchors"], df)
        source_name, source = _pick_source(settings.source, ranking, device.device_id)
        plan["source"] = source_name
        _keep(plan, "design", design_configs(anchors, settings.configs - len(ANCHORS), pool=settings.pool,
                                             seed=settings.seed + r, design=settings.design, source=source))
    return _kept(plan, "design", "configs")


def _planned_holdout(plan: dict, settings: OnboardSettings) -> list[LowFormerConfig]:
    """The round's random hold-out (none of the anchors or designed configs), drawn once and kept in the plan."""
    if settings.holdout and not plan["holdout"]:
        _keep(plan, "holdout", holdout_configs(settings.holdout, settings.seed + plan["round"],
                                               set(plan["anchors"]) | set(plan["design"])))
    return _kept(plan, "holdout", "hold-out")


def _keep(plan: dict, key: str, configs: list[LowFormerConfig]) -> None:
    """Record configs in the round's plan (hashes and canonical JSON) and save it."""
    plan[key] = [c.hash for c in configs]
    plan[f"{key}_configs"] = [c.canonical_json() for c in configs]
    save_plan(plan)


def _kept(plan: dict, key: str, what: str) -> list[LowFormerConfig]:
    """The configs a plan recorded under ``key``, refused when they no longer match their hashes (an edited plan)."""
    configs = [LowFormerConfig.from_json(j) for j in plan.get(f"{key}_configs", [])]
    if [c.hash for c in configs] != plan[key]:
        raise UserError(f"onboard: the plan of round {plan['round']} does not match its {what}; start over with --restart")
    return configs


def onboard_local(settings: OnboardSettings, store, *, log: Callable[[str], None] = print,
                  clock: Callable[[], float] = time.perf_counter) -> OnboardResult:
    """Onboard this machine (see the module doc); every measurement is stored as it comes."""
    from measured import Job, resolve_local_device, run_campaign

    settings.validate()
    protocol = settings.protocol
    device = resolve_local_device(store, settings.device, gpu=_is_gpu(protocol))  # another machine: refused here
    plan = _resume_or_start(device.device_id, "local", settings, log)
    r = plan["round"]
    budget_s = settings.minutes * 60
    anchors = [j.config for j in anchor_jobs()]
    plan["anchors"] = [c.hash for c in anchors]
    save_plan(plan)
    options = dict(export_workers=settings.export_workers, progress=settings.progress)
    if settings.timeout_s is not None:
        options["timeout_s"] = settings.timeout_s
    if settings.measurer is not None:
        options["measurer"] = settings.measurer
    options["clock"] = clock

    def measure(jobs: list, campaign: str, counted: bool) -> None:
        base, t0 = plan["spent_s"], clock()

        def on_result(job, m):
            if counted:
                plan["spent_s"] = base + clock() - t0
                save_plan(plan)

        left = budget_s - plan["spent_s"] if counted else None
        if counted and left <= 0:
            return
        run_campaign(jobs, protocol, device, store, campaign=campaign, max_seconds=left, on_result=on_result, **options)

    log(f"onboarding {device.device_id} ({device.name}), round {r}: {len(ANCHORS)} anchors, then up to "
        f"{settings.configs - len(ANCHORS)} configs by {_design_words(settings.design)}, within {settings.minutes:g} min; "
        f"then {settings.holdout} random hold-out configs")
    measure(anchor_jobs(repeat=r), campaign_name(r), counted=True)

    configs = _planned_design(plan, anchors, store, device, protocol, settings, log)
    measure([Job(c, None, r) for c in configs], campaign_name(r), counted=True)

    hold = _planned_holdout(plan, settings)
    if hold:
        log(f"hold-out: {len(hold)} random configs, measured to score the predictor, never trained on")
        measure([Job(c, None, r) for c in hold], campaign_name(r, "holdout"), counted=False)

    measured_n, planned = _count_measured(store, device.device_id, protocol, plan), len(plan["anchors"]) + len(plan["design"])
    if measured_n < planned:
        why = (f"the {settings.minutes:g}-minute budget was spent" if plan["spent_s"] >= budget_s
               else "the others failed or the machine was busy (`lowformer-nas data summary`)")
        log(f"{measured_n} of {planned} planned configs measured ok: {why}; training on those (rerun to measure the "
            "rest: busy ones are measured again; --minutes M raises the budget)")
    result = train_round(store, device.device_id, protocol.metric, plan, protocol_key=protocol.key,
                         source_setting=settings.source,
                         out=settings.out, log=log, ids=_round_ids(device.device_id, protocol, plan))
    plan["done"] = True
    plan["predictor"] = result.predictor_path
    save_plan(plan)
    result.next_command = _next_command(settings.device, store, device.device_id, protocol)
    return result


def _is_gpu(protocol) -> bool:
    from measured import BACKENDS

    return BACKENDS[protocol.backend].is_gpu()


def _design_words(design: str) -> str:
    return {"i": "an informative design (I-optimal)", "d": "an informative design (D-optimal)",
            "random": "random sampling"}[design]


def _count_measured(store, device_id: str, protocol, plan: dict) -> int:
    df = _full_ok(store.measurements(device=device_id, metric=protocol.metric))
    hashes = set(df.loc[df["id"].isin(_round_ids(device_id, protocol, plan)), "config_hash"]) if len(df) else set()
    return len(hashes & (set(plan["anchors"]) | set(plan["design"])))


def _next_command(device_arg: str | None, store, device_id: str, protocol) -> str:
    from measured import is_local_name

    df = _full_ok(store.measurements(device=device_id, metric=protocol.metric))
    budget = float(np.median(df["value"])) if len(df) and protocol.metric == "latency_ms" else None
    dev = "local" if is_local_name(device_arg) else device_id
    flag = f" --budget-ms {max(1, round(budget))}" if budget else ""
    return f"lowformer-nas search --device {dev}{flag} --trials 3000"


# ---------------------------------------------------------------------------------------------- edge devices


def _edge_device(store, device_id: str | None) -> str:
    from measured import check_device_id, is_local_name, same_machine

    if is_local_name(device_id):
        raise UserError("device: --bundle and --results onboard another device; name it (e.g. --device rpi5_b); "
                        "this machine is onboarded without them")
    check_device_id(device_id, "device")
    existing = store.device(device_id)
    if existing is not None and existing.source == "harness" and same_machine(existing):
        raise UserError(f"device: {device_id!r} is this machine; onboard it without --bundle/--results")
    return device_id


def onboard_bundle(settings: OnboardSettings, store, out_dir: str, *, log: Callable[[str], None] = print) -> dict:
    """Write the anchors, an informative design (weighted by MACs: no source is known before the anchors
    are measured) and the hold-out as one bundle for an edge device; returns the plan."""
    from measured import Job, write_bundle

    settings.validate()
    device_id = _edge_device(store, settings.device)
    plan = _resume_or_start(device_id, "bundle", settings, log)
    r = plan["round"]
    anchors = [j.config for j in anchor_jobs()]
    design = design_configs(anchors, settings.configs - len(ANCHORS), pool=settings.pool, seed=settings.seed + r,
                            design=settings.design)
    taken = {c.hash for c in anchors} | {c.hash for c in design}
    hold = holdout_configs(settings.holdout, settings.seed + r, taken)
    plan.update(anchors=[c.hash for c in anchors], design=[c.hash for c in design], holdout=[c.hash for c in hold],
                bundle=str(out_dir))
    jobs = [Job(c, n) for c, n in zip(anchors, ANCHORS)] + [Job(c) for c in design] + [Job(c) for c in hold]
    write_bundle(jobs, out_dir, progress=settings.progress)
    save_plan(plan)
    log(f"wrote {len(jobs)} models to {out_dir}: {len(anchors)} anchors, {len(design)} configs by "
        f"{_design_words(settings.design)}, {len(hold)} hold-out configs")
    log(f"on the device: python3 run_bundle.py --out results.csv; back here: lowformer-nas onboard --device {device_id} "
        f"--results results.csv")
    return plan


def onboard_results(settings: OnboardSettings, store, results: str, *, log: Callable[[str], None] = print) -> OnboardResult:
    """Import a bundle's results for the device of the last ``--bundle`` plan, then train and score."""
    import pathlib

    settings.validate()
    device_id = _edge_device(store, settings.device)
    plan = latest_plan(device_id)
    if plan is None or plan["kind"] != "bundle":
        raise UserError(f"device: no onboarding bundle was written for {device_id!r}; first: lowformer-nas onboard "
                        f"--device {device_id} --bundle DIR")
    if not pathlib.Path(results).is_file():
        raise UserError(f"results: {results}: no such file")
    from measured import import_results

    # The bundle's anchor sessions (results.anchors.csv beside it) become the device's phase series.
    report, anchors, note = import_results(store, results, device_id=device_id, create_device_kind="edge")
    log(str(report))
    if anchors is not None or note:
        log(anchors.line() if anchors is not None else f"note: {note}")
    metric = "latency_ms"
    df = _full_ok(store.measurements(device=device_id, metric=metric))
    have = set(df["config_hash"])
    missing = [h for h in plan["anchors"] + plan["design"] if h not in have]
    if missing:
        log(f"note: {len(missing)} of the bundle's training configs have no ok result (failed or not run)")
    result = train_round(store, device_id, metric, plan, protocol_key=None, source_setting=settings.source,
                         out=settings.out, log=log)
    plan["done"] = True
    plan["predictor"] = result.predictor_path
    save_plan(plan)
    result.next_command = f"lowformer-nas search --device {device_id} --trials 3000"
    return result


# ---------------------------------------------------------------------------------------------- scoring


def evaluate_campaign(store, device_id: str, campaign: str, metric: str | None = None, *, predictor=None) -> dict:
    """The device's newest predictor (or ``predictor``, a TrainedPredictor) scored on the ok measurements stored
    under ``campaign`` (a hold-out measured separately), leaving out any config the predictor was trained on."""
    from predictors import load_predictor, regression_report

    pred = predictor if predictor is not None else load_predictor(device_id, metric)
    df = _full_ok(store.measurements(device=device_id, metric=pred.metric))
    df = df[df["campaign"] == campaign]
    if not len(df):
        raise UserError(f"campaign: no ok {pred.metric} measurements of {device_id!r} under campaign {campaign!r}")
    trained = set(pred.meta.get("training_data", {}).get("config_hashes", []))
    d = df[df["config_json"].notna()].groupby("config_hash", sort=True).agg(
        value=("value", "median"), config_json=("config_json", "first"))
    overlap = int(d.index.isin(trained).sum())
    d = d[~d.index.isin(trained)]
    if not len(d):
        raise UserError(f"campaign: every config of {campaign!r} is in the predictor's training data; measure others")
    configs = [LowFormerConfig.from_json(j) for j in d["config_json"]]
    predicted = np.asarray(pred.predict(configs), dtype=float)
    out = {"device": device_id, "metric": pred.metric, "campaign": campaign, "predictor": str(pred.path or "-"),
           "model_type": pred.model_type, "left_out_trained": overlap}
    phases = df[df["config_hash"].isin(d.index)].groupby("config_hash")["phase"].first().reindex(d.index) \
        if "phase" in df else None
    if pred.meta.get("phase") and phases is not None and phases.notna().all():
        # A phase-normalised predictor predicts canonical costs: scored as absolute latencies in the phase each
        # config was measured in (the phase of its row), and in the canonical phase (the predictor's own quality).
        from measured import canonical_value, row_phase

        ph = [row_phase(p) for p in phases]
        def mapped(p, v):  # the phase maps times (ms); throughput through its time per image
            if p is None:
                return v
            return float(p.apply(v)) if pred.metric != "throughput_img_s" else float(1e3 / p.apply(1e3 / v))

        now = np.array([mapped(p, v) for p, v in zip(ph, predicted)])
        canon = np.array([canonical_value(v, pred.metric, p) for v, p in zip(d["value"].to_numpy(float), ph)])
        return out | regression_report(d["value"].to_numpy(float), now) | {
            "phase": "as measured (predictions mapped into each row's phase)",
            "canonical": regression_report(canon, predicted)}
    return out | regression_report(d["value"].to_numpy(float), predicted)
