"""The search loop: every knob of the space on every trial, named variants enqueued, trials persisted one by one.

Speed: Optuna writes one storage record per suggested parameter, which on a journal file or a database costs far
more than the search itself (29 knobs per trial). So the sampler works on an in-memory copy of the study, and
each finished trial is written to the persistent study as one record (``Study.add_trial``). What is persisted is
complete; a killed search loses at most the trials it had not written yet, and a resumed one copies the stored
trials back into memory and runs only the missing ones. Workers sharing a database study pick up each other's
trials the same way, every few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sys
import time
import uuid
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from lowformer_common import __version__, atomic_write, utc_now
from search_spaces import SPACE, config_to_knobs, knobs_to_config, named_series

from . import _constraints
from ._attrs import HASH, HI, LO, MACS, MEASURED, NAMED, OOD, PARAMS, PRED, ROUND, SETTINGS_ATTR, WORKER
from ._constraints import SIZE_LIMITS, make_constraints
from ._objectives import (
    ACCURACY_OBJECTIVES,
    DEFAULT_CONFIDENCE,
    DEFAULT_RISK,
    Evaluation,
    Evaluator,
    Objective,
    PredictorLoader,
    build_objectives,
    check_confidence,
    check_risk,
    check_unique_keys,
)
from ._pareto import LiveFront
from ._phase import resolve_phases
from ._report import write_outputs
from ._results import evaluation_of, load_results
from ._runs import find_study_dir, searched_line, study_folder
from ._samplers import SAMPLERS, FastNSGAIISampler, make_sampler
from .._search_settings import FIXED, LEGACY, SearchSettings, option_name, stored_settings, unset
from ._errors import SearchError
from ._storage import SETTINGS_FILE, check_study_name, mask_url, open_storage, storage_notes, sync_storage
from ._workers import STREAM_ATTR, claim_slot

DEFAULT_TRIALS = 3000
_PULL_EVERY_S = 5.0
_RANDOM_BATCH = 200

# Every knob, unconditional (see search_spaces._space): ints with an arithmetic run are ordinal for the samplers.
DISTRIBUTIONS: dict[str, optuna.distributions.BaseDistribution] = {
    k.name: IntDistribution(*k.int_range[:2], step=k.int_range[2]) if k.int_range else CategoricalDistribution(k.choices)
    for k in SPACE
}


@dataclasses.dataclass
class SearchResult:
    study: str
    folder: Any
    n_trials: int  # complete trials in the study (its current round)
    ran: int  # trials this call ran
    scored: int  # architectures this call scored (the rest came from the per-hash cache)
    seconds: float
    results: Any = None  # StudyResults
    outputs: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    seed: int | None = None
    seed_drawn: bool = False  # the seed was drawn for this study (none was given)
    round: int = 0


def _budgets_by_device(devices: Sequence[str], budgets: Sequence[float] | None) -> dict[str, float | None]:
    if not budgets:
        return {d: None for d in devices}
    budgets = list(budgets)
    for b in budgets:
        if not isinstance(b, (int, float)) or isinstance(b, bool) or not 0 < b < float("inf"):
            raise SearchError("budget-ms", f"must be a positive number of milliseconds (got {b!r})")
    if len(budgets) == 1:
        return {d: float(budgets[0]) for d in devices}
    if len(budgets) != len(devices):
        raise SearchError("budget-ms", f"give one value for all devices or one per --device "
                                       f"({len(devices)} devices, {len(budgets)} budgets)")
    return {d: float(b) for d, b in zip(devices, budgets)}


def _batch_size(sampler, name: str, study: optuna.Study, population_size: int) -> int:
    # NSGA-II counts a trial into the generation of the trials COMPLETE when it is asked: asking exactly the
    # open slots of the current generation, then telling them all, keeps generations whole while scoring in
    # batches (enqueued named variants belong to no generation).
    if isinstance(sampler, FastNSGAIISampler):
        return sampler.open_slots(study)
    if name == "nsga2":
        return population_size
    if name == "random":
        return _RANDOM_BATCH
    return 1  # TPE and GP learn from every trial before the next


def _sub_seed(seed: int | None, n_done: int, round_: int = 0, stream: int = 0) -> int | None:
    # A resumed study (or a new round) must not replay the first run's random stream (same seed, same configs);
    # a second worker on the study (stream > 0, see _workers) must not replay the first's.
    if seed is None or (n_done == 0 and round_ == 0 and stream == 0):
        return seed
    key = [seed, n_done, round_] + ([stream] if stream else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _existing_study(storage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def _default_name(devices: Sequence[str], runs_dir: str | None) -> str:
    stem = "+".join(devices) if devices else "study"
    stem = stem if len(stem) <= 60 else stem[:60]
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while find_study_dir(name, runs_dir) is not None or study_folder(name, runs_dir).exists():
        n += 1
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    return name


def trial_round(t: optuna.trial.FrozenTrial) -> int:
    return int(t.user_attrs.get(ROUND, 0))


def _record(trial, e: Evaluation, worker: str, round_: int) -> None:
    """Store on a running trial what the reports need besides its values (the scored ones)."""
    trial.set_user_attr(HASH, e.hash)
    trial.set_user_attr(MACS, e.macs)
    trial.set_user_attr(PARAMS, e.params)
    trial.set_user_attr(WORKER, worker)
    trial.set_user_attr(PRED, list(e.values))
    if e.lo != e.values or e.hi != e.values:
        trial.set_user_attr(LO, list(e.lo))
        trial.set_user_attr(HI, list(e.hi))
    if e.measured:
        trial.set_user_attr(MEASURED, list(e.measured))
    if e.ood:
        trial.set_user_attr(OOD, list(e.ood))
    if round_:
        trial.set_user_attr(ROUND, round_)


class _Run:
    """One call of :func:`run_search`: the resolved settings, both studies and the loop."""

    def __init__(self, settings: SearchSettings, objectives: Sequence[Objective] | None,
                 loader: PredictorLoader | None, store: str | None = None):
        s = dataclasses.replace(settings)
        _validate(s)
        stored = self._open_stored(s)
        self.resumed = stored is not None
        self.seed_drawn = False
        self._resolve(s, stored, objectives)

        self.objectives = list(objectives) if objectives is not None else build_objectives(s.devices, s.objective, loader)
        check_unique_keys(self.objectives)  # every check before the study's journal or database row is created
        s.phase, self.phases = resolve_phases(self.objectives, s.phase, stored.get("phases", {}) if stored else None,
                                              lambda: _open_store(store))
        if not s.devices:
            s.devices = [o.device for o in self.objectives if o.is_time]
        self.budgets = _budgets_by_device(s.devices, s.budgets_ms)
        # Every size limit is the settings field named by its SIZE_LIMITS key.
        self.constraints = make_constraints(self.objectives, self.budgets, risk=s.risk, confidence=s.confidence,
                                            extrapolate=s.extrapolate, **{k: getattr(s, k) for k in SIZE_LIMITS})
        self.described = [o.describe() for o in self.objectives]
        self.notes = [o.note for o in self.objectives if o.note]
        if self.storage is not None:  # a repaired journal is said in the result and report.md, not just on stderr
            self.notes += storage_notes(self.storage)
        self.rounds = list(stored.get("rounds", [])) if stored else []
        if stored is not None:
            self._check_round(s, stored)
        self.round = s.round if s.round is not None else 0
        if s.study is None:
            s.study = _default_name(s.devices, s.runs_dir)
        self.settings = s
        self.folder = study_folder(s.study, s.runs_dir)
        self.directions = [o.direction for o in self.objectives]

    def _open_stored(self, s: SearchSettings) -> dict | None:
        """The stored settings of the study ``s.study`` names, None for a new study. An RDB storage is opened first
        (a wrong URL fails before anything is written); a journal study is looked up in the runs folders."""
        self.rdb = s.storage is not None
        self.storage = open_storage(s.storage, create=True) if self.rdb else None
        if s.study is None:
            return None
        if self.rdb:
            exists = _existing_study(self.storage, s.study)
        else:
            found = find_study_dir(s.study, s.runs_dir)
            exists = found is not None
            if exists:
                self.storage = open_storage(None, found, create=False)
        if not exists:
            return None
        stored = optuna.load_study(study_name=s.study, storage=self.storage).user_attrs.get(SETTINGS_ATTR)
        if stored is None:
            raise SearchError("study", f"{s.study!r} exists but was not made by lowformer-nas search")
        return stored

    def _resolve(self, s: SearchSettings, stored: dict | None, objectives) -> None:
        if stored is not None:
            # A setting a study stored before it existed resumes as that study was scored (_search_settings.LEGACY).
            stored = {**LEGACY, **stored}
            for f in FIXED:
                given, kept = getattr(s, f), stored.get(f)
                if not unset(f, given) and _norm(given) != _norm(kept):
                    opt = option_name(f)
                    raise SearchError(opt, f"study {s.study!r} was made with --{opt} {_show(kept)}, not {_show(given)}; "
                                           "keep it or start a new --study")
                if unset(f, given):
                    setattr(s, f, kept if not isinstance(kept, list) else list(kept))
            if s.seed is None:
                s.seed = stored.get("seed")
            if s.trials is None:
                s.trials = stored.get("trials", DEFAULT_TRIALS)
            s.population_size = stored.get("population_size", s.population_size)
        elif s.seed is None:
            s.seed, self.seed_drawn = secrets.randbelow(2**31), True  # always reproducible: the seed is reported
        s.trials = s.trials or DEFAULT_TRIALS
        s.sampler = s.sampler or "nsga2"
        if s.sampler not in SAMPLERS:
            raise SearchError("sampler", f"must be one of {'|'.join(SAMPLERS)} (got {s.sampler!r})")
        s.objective = s.objective or ("surrogate" if objectives is None else "custom")
        if objectives is None and s.objective not in ACCURACY_OBJECTIVES:
            raise SearchError("objective", f"must be one of {'|'.join(ACCURACY_OBJECTIVES)} (got {s.objective!r})")
        s.risk = check_risk(s.risk or DEFAULT_RISK)
        # Intervals are computed and reported under either risk; "bound" also optimises their pessimistic ends.
        s.confidence = check_confidence(DEFAULT_CONFIDENCE if s.confidence is None else s.confidence)
        s.devices = list(s.devices or [])
        s.extrapolate = bool(s.extrapolate)

    def _check_round(self, s: SearchSettings, stored: dict) -> None:
        """A resumed study keeps its objectives and their predictors; a new refinement round may bring retrained
        predictors of the same devices."""
        kept = stored.get("round", 0)
        if s.round is None:
            s.round = kept
        if s.round < kept:
            raise SearchError("round", f"study {s.study!r} is at refinement round {kept}, not {s.round}")
        old = {d["key"]: d for d in stored.get("objectives", [])}
        new = {d["key"]: d for d in self.described}
        if [d["key"] for d in stored.get("objectives", [])] != [d["key"] for d in self.described]:
            raise SearchError("objective", f"the study optimises {list(old)}, not {list(new)}; start a new --study")
        if s.round > kept:
            return
        for k, d in new.items():
            same = all(d.get(f) == old[k].get(f) for f in ("version", "identity", "direction"))
            if not same:
                raise SearchError("predictor", f"{k} is now version {d.get('version')!r}, the study was scored with "
                                               f"{old[k].get('version')!r}; start a new --study to use it (or refine it: "
                                               "search --refine)")

    def settings_dict(self) -> dict[str, Any]:
        s = self.settings
        rounds = [r for r in self.rounds if r.get("round") != self.round]
        rounds.append({"round": self.round, "objectives": self.described})
        return {
            **stored_settings(s), "phases": self.phases, "round": self.round, "rounds": rounds, "notes": self.notes,
            "objectives": self.described, "constraints": [c.to_dict() for c in self.constraints],
            "storage": mask_url(s.storage) if s.storage else f"journal file {self.folder.as_posix()}/study.journal",
            "lowformer_nas": __version__, "optuna": optuna.__version__,
        }

    # -- the loop ------------------------------------------------------------------------------------------------

    def run(self, progress: bool) -> SearchResult:
        t_start = time.perf_counter()
        self._open_persistent()
        with claim_slot(self.storage, self.settings.study, self.folder) as slot:
            loop = _Loop(self, self._round_trials(), slot.index)
            loop.run(progress)
        return SearchResult(self.settings.study, self.folder, loop.n_stored(), loop.ran, loop.evaluator.scored,
                            time.perf_counter() - t_start, seed=self.settings.seed, seed_drawn=self.seed_drawn,
                            round=self.round)

    def _open_persistent(self) -> None:
        s = self.settings
        if self.storage is None:
            self.storage = open_storage(None, self.folder, create=True)
        meta = self.settings_dict()
        if self.resumed:
            persistent = optuna.load_study(study_name=s.study, storage=self.storage)
            meta["created"] = persistent.user_attrs[SETTINGS_ATTR].get("created")
        else:
            persistent = optuna.create_study(study_name=s.study, storage=self.storage, directions=self.directions,
                                             load_if_exists=True)
            meta["created"] = utc_now()
        persistent.set_user_attr(SETTINGS_ATTR, meta)
        self.meta, self.persistent = meta, persistent

    def _round_trials(self) -> list[optuna.trial.FrozenTrial]:
        """The complete trials of this round (through the study: Optuna caches a database's finished trials)."""
        return [t for t in self.persistent.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if trial_round(t) == self.round]

    def carried(self) -> list[Any]:
        """Configs a new refinement round starts from: the previous round's front, re-scored by the new predictors."""
        if self.round == 0:
            return []
        prev = load_results(self.persistent, self.settings.study, round_=self.round - 1)
        return [knobs_to_config(p) for p in prev.front["params_knobs"]] if len(prev.front) else []


class _Loop:
    """The ask-score-tell loop of one run: an in-memory study for the sampler, the persistent one written per trial."""

    def __init__(self, run: _Run, done: list, stream: int = 0):
        s = run.settings
        self.stream = stream  # this worker's seed stream (its slot, see _workers)
        self.run_, self.s, self.persistent = run, s, run.persistent
        self.evaluator = Evaluator(run.objectives, s.risk, s.confidence or DEFAULT_CONFIDENCE)
        self.evaluator.seed(evaluation_of(t) for t in done)
        self.worker = uuid.uuid4().hex[:12]
        self.sampler = make_sampler(s.sampler, _sub_seed(s.seed, len(done), run.round, stream), run.constraints,
                                    s.population_size, search_space=DISTRIBUTIONS)
        self.mem = optuna.create_study(directions=run.directions, sampler=self.sampler)
        self.mem.add_trials(done)
        self.known = {t.number for t in done}  # persisted trials already in memory (ours are marked by WORKER)
        self._enqueue(done)
        self.live = LiveFront(run.directions)
        self.feasible_seen: set[str] = set()
        self.track((evaluation_of(t), _feasible(_constraints.read(t, run.constraints))) for t in done)
        self.ran = 0

    def _enqueue(self, done) -> None:
        if self.stream:  # the named variants and carried configs are the first worker's (slot 0) to write, once
            return
        named_done = {t.user_attrs.get(NAMED) for t in done}
        for v in named_series():
            if v.name not in named_done:
                self.mem.enqueue_trial(config_to_knobs(v.config), user_attrs={NAMED: v.name})
        if not done:  # a new refinement round starts where the last one ended
            for cfg in self.run_.carried():
                self.mem.enqueue_trial(config_to_knobs(cfg))

    def n_stored(self) -> int:
        if not self.run_.round:
            return len(self.persistent.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return len(self.run_._round_trials())

    def track(self, evals_and_feasible) -> None:
        """Feed the live front (the progress bar's count) with newly seen feasible architectures."""
        fresh = []
        for e, ok in evals_and_feasible:
            if ok and e.hash not in self.feasible_seen:
                self.feasible_seen.add(e.hash)
                fresh.append(e.scored)
        self.live.add(np.array(fresh).reshape(-1, len(self.run_.directions)))

    def run(self, progress: bool) -> None:
        s = self.s
        total = self.n_stored()
        bar = _progress(progress, s.trials, min(total, s.trials), s.study)
        last_pull = time.monotonic()
        try:
            while total < s.trials:
                self.step(min(_batch_size(self.sampler, s.sampler, self.mem, s.population_size), s.trials - total), total)
                total = self.n_stored()
                if total > len(self.mem.get_trials(deepcopy=False)) and time.monotonic() - last_pull > _PULL_EVERY_S:
                    self.track(self.pull())
                    last_pull = time.monotonic()
                bar.update(min(total, s.trials) - bar.n)
                bar.set_postfix(front=len(self.live), feasible=len(self.feasible_seen), refresh=False)
        except KeyboardInterrupt:
            bar.close()
            print(f"lowformer-nas: search interrupted after {self.n_stored()} trials; resume with "
                  f"`lowformer-nas search --study {s.study}`", file=sys.stderr)
            raise
        bar.close()
        sync_storage(self.run_.storage)

    def step(self, n: int, total: int) -> None:
        """Ask ``n`` trials, score them as one batch, tell them and write each to the persistent study."""
        run = self.run_
        trials = [self.mem.ask(DISTRIBUTIONS) for _ in range(n)]
        evals = self.evaluator.evaluate([knobs_to_config(t.params) for t in trials])
        named = [t.user_attrs.get(NAMED) for t in trials]
        # A worker that joined a shared study before its first trials were written has enqueued the named variants
        # too: whoever writes one first keeps it.
        stored_named = self._stored_named() if any(named) else set()
        flags, written = [], 0
        for trial, e, name in zip(trials, evals, named):
            cons = _constraints.violations(e, run.constraints, run.objectives)
            _record(trial, e, self.worker, run.round)
            self.mem._storage.set_trial_system_attr(trial._trial_id, STREAM_ATTR, self.stream)
            _constraints.attach(trial, run.constraints, cons)
            frozen = self.mem.tell(trial, list(e.scored))
            # A database study may have other writers: it is counted again before each write, so that workers stop
            # at its total together. A journal file counts on (one writer, the usual case).
            room = (self.n_stored() if run.rdb else total + written) < self.s.trials
            if room and (name is None or name not in stored_named):
                self.persistent.add_trial(frozen)
                written += 1
            flags.append((e, _feasible(cons)))
        self.ran += written
        sync_storage(run.storage)
        self.track(flags)

    def _stored_named(self) -> set[str]:
        return {t.user_attrs.get(NAMED) for t in self.run_._round_trials()} - {None}

    def pull(self):
        """Copy trials other workers wrote into the in-memory study (sampler knowledge, cache, live front)."""
        got = []
        for t in self.run_._round_trials():
            if t.number in self.known or t.user_attrs.get(WORKER) == self.worker:
                continue
            self.known.add(t.number)
            self.mem.add_trial(t)
            e = evaluation_of(t)
            self.evaluator.seed([e])
            got.append((e, _feasible(_constraints.read(t, self.run_.constraints))))
        return got


def _validate(s: SearchSettings) -> None:
    if s.study is not None:
        check_study_name(s.study)
    if s.trials is not None and (not isinstance(s.trials, int) or isinstance(s.trials, bool) or s.trials < 1):
        raise SearchError("trials", f"must be a positive integer (got {s.trials!r})")
    if s.seed is not None and (type(s.seed) is not int or not 0 <= s.seed < 2**32):
        raise SearchError("seed", f"must be an integer in [0, 2**32 - 1] (got {str(s.seed)[:40]})")
    if s.population_size < 2:
        raise SearchError("population-size", f"must be at least 2 (got {s.population_size})")
    if s.risk is not None:
        check_risk(s.risk)
    if s.confidence is not None:
        check_confidence(s.confidence)
    if s.round is not None and (isinstance(s.round, bool) or not isinstance(s.round, int) or s.round < 0):
        raise SearchError("round", f"must be a non-negative integer (got {s.round!r})")


def _open_store(url: str | None):
    from measured import Store

    return Store(url)


def _feasible(cons: Sequence[float] | None) -> bool:
    # A trial without stored constraint values (written by something else) is never taken as feasible.
    return cons is not None and all(c <= 0 for c in cons)


def _show(v: Any) -> str:
    v = _norm(v)
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class _NoBar:
    n = 0

    def update(self, k):
        self.n += k

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        bar = _NoBar()
        bar.n = initial
        return bar
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="trial", desc=name, dynamic_ncols=True, smoothing=0.1)


def run_search(settings: SearchSettings, *, objectives: Sequence[Objective] | None = None,
               loader: PredictorLoader | None = None, progress: bool = True, outputs: bool = True,
               png: bool = True, store: str | None = None) -> SearchResult:
    """Run (or resume) a study to ``settings.trials`` complete trials and write its outputs.

    ``objectives`` replaces the default ones (accuracy surrogate or proxy + one predictor per device);
    ``loader(device, metric=None)`` replaces ``predictors.load_predictor``; ``store``: the measurement store the
    devices' anchor sessions (their phases, ``settings.phase``) are read from (default: the user's).
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 17 finished" line per trial
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            run = _Run(settings, objectives, loader, store)
            result = run.run(progress)
    finally:
        optuna.logging.set_verbosity(verbosity)
    result.results = load_results(run.persistent, study_name=run.settings.study)
    result.notes = list(run.notes)
    if outputs:
        atomic_write(run.folder / SETTINGS_FILE, json.dumps(run.meta, indent=2) + "\n")
        paths, notes = write_outputs(result.results, run.folder, png=png)
        result.outputs, result.notes = paths, result.notes + [n for n in notes if n not in result.notes]
    return result


def open_study(name: str, runs_dir: str | None = None, storage: str | None = None) -> optuna.Study:
    """A stored search study, read-only use (``plot``, ``export``): in ``runs_dir``, else ./runs or
    ``$LOWFORMER_NAS_HOME/runs``."""
    check_study_name(name)
    if storage is None:
        folder = find_study_dir(name, runs_dir)
        if folder is None:
            raise SearchError("study", f"no study {name!r} in {searched_line(runs_dir)}; run `lowformer-nas search --study "
                                       f"{name}` first")
        st = open_storage(None, folder, create=False)
    else:
        st = open_storage(storage, create=False)
        if not _existing_study(st, name):
            raise SearchError("study", f"no study {name!r} in {mask_url(storage)}")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=st)
    finally:
        optuna.logging.set_verbosity(verbosity)
    if SETTINGS_ATTR not in study.user_attrs:
        raise SearchError("study", f"{name!r} was not made by lowformer-nas search")
    return study
