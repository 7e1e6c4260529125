import optuna
import pytest

from nas.search import DISTRIBUTIONS, SAMPLERS, FastNSGAIISampler, SearchError, make_sampler
from search_spaces import config_to_knobs, count, knobs_to_config, named_series


def _drive(sampler, plan):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for v in named_series()[:3]:  # enqueued trials belong to no generation
        study.enqueue_trial(config_to_knobs(v.config))
    for n in plan:
        trials = [study.ask(DISTRIBUTIONS) for _ in range(n)]  # asked together, told together: running trials
        for t in trials:
            c = count(knobs_to_config(t.params))
            t.set_constraint("macs", (c.macs - 1.5e9) / 1.5e9)
            study.tell(t, [c.params, c.macs])
    return study


def test_fast_nsga2_decides_exactly_like_optuna():
    """Same seed, same (irregular) batches: the same generations, parents and children as Optuna's NSGA-II."""
    plan = [20, 17, 3, 10, 10, 20, 7, 13, 30, 1, 1, 38, 20]
    ref = _drive(optuna.samplers.NSGAIISampler(population_size=20, seed=5), plan)
    fast = _drive(FastNSGAIISampler(search_space=DISTRIBUTIONS, population_size=20, seed=5), plan)
    assert [t.params for t in fast.trials] == [t.params for t in ref.trials]
    gen = lambda s, key: [t.system_attrs.get(key) for t in s.trials]  # noqa: E731
    assert gen(fast, "FastNSGAIISampler:generation") == gen(ref, "NSGAIISampler:generation")
    assert max(t.system_attrs.get("FastNSGAIISampler:generation", 0) for t in fast.trials) >= 5


def test_open_slots_keep_generations_whole():
    s = FastNSGAIISampler(search_space=DISTRIBUTIONS, population_size=10, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=s)
    assert s.open_slots(study) == 10
    for _ in range(4):
        t = study.ask(DISTRIBUTIONS)
        study.tell(t, [1.0, 1.0])
    assert s.open_slots(study) == 6


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs(name):
    if name == "gp":
        pytest.importorskip("torch")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, 0))
    for _ in range(3):
        t = study.ask(DISTRIBUTIONS)
        c = count(knobs_to_config(t.params))
        study.tell(t, [c.params, c.macs])
    assert len(study.trials) == 3


def test_unknown_sampler():
    with pytest.raises(SearchError, match=r"^sampler: must be one of nsga2\|tpe\|random\|gp \(got 'cma'\)"):
        make_sampler("cma", 0)
