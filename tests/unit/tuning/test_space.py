"""The search space: Katib types ↔ Optuna distributions, and every value it can produce ↔ the trial entry point."""

import dataclasses
import itertools

import optuna
import pytest

from alpr.model.training import Hyperparameters
from alpr.tuning import trial
from alpr.tuning.options import TuningOptions
from alpr.tuning.space import Parameter, SearchSpace, default_space, katib_number

FIXED = {"epochs": 16, "val_interval": 4, "seed": 0}


def _argv(values: dict[str, str], space: SearchSpace) -> list[str]:
    """The argv a trial of ``space`` gets for ``values`` (strings), built as the Katib template / local twin do."""
    options = TuningOptions(name="walk", data="annotations-v1", fixed=FIXED)
    return trial.trial_argv(space, options, values)


def test_default_space_covers_the_decisive_hyperparameters():
    space = default_space()
    assert {"lr", "weight_decay", "input_size", "batch_size"} <= set(space.names)
    space.check_fields(Hyperparameters)  # every parameter is a training hyperparameter
    assert not set(space.names) & set(FIXED)
    assert all(v % 32 == 0 for v in space["input_size"].values)
    assert space["lr"].distribution == "logUniform"


def test_every_value_of_the_space_is_accepted_by_the_entry_point():
    """Walk the space through the entry point's parser and Hyperparameters: every combination of the list values
    (in the spellings a suggestion service may use, e.g. ``"320.0"``), and for each range parameter its bounds,
    interior points and steps in several spellings, the others at their bounds."""
    space = default_space()
    listed = [p for p in space if p.type in ("discrete", "categorical")]
    ranged = [p for p in space if p.type in ("double", "int")]
    checked = 0
    for bound in ("min", "max"):
        at_bound = {q.name: katib_number(getattr(q, bound)) for q in ranged}
        for combo in itertools.product(*[list(p.walk()) for p in listed]):
            values = {**at_bound, **{p.name: value for p, value in zip(listed, combo)}}
            _, hp = trial.parse_args(_argv(values, space))
            for p, value in zip(listed, combo):
                assert getattr(hp, p.name) == space.convert({p.name: value})[p.name]
            assert (hp.epochs, hp.val_interval, hp.seed) == (16, 4, 0)
            checked += 1
    first = {p.name: next(p.walk()) for p in listed}
    for p in ranged:
        others = {q.name: katib_number(q.min) for q in ranged if q is not p}
        for value in p.walk():
            _, hp = trial.parse_args(_argv({**first, **others, p.name: value}, space))
            assert getattr(hp, p.name) == pytest.approx(float(value), rel=1e-12)
            checked += 1
    assert checked > 300


def test_optuna_samples_are_accepted_by_the_entry_point():
    space = default_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(300):
        t = study.ask(space.optuna_distributions())
        values = {k: repr(v) if isinstance(v, float) else str(v) for k, v in t.params.items()}
        _, hp = trial.parse_args(_argv(values, space))
        assert dataclasses.asdict(hp)["input_size"] == t.params["input_size"]
        study.tell(t, 0.0)


KINDS = SearchSpace(
    (
        Parameter("a", "double", 0.1, 0.9),
        Parameter("b", "double", 1e-5, 1e-1, distribution="logUniform"),
        Parameter("c", "double", 0.0, 1.0, step=0.25),
        Parameter("d", "int", 2, 10, step=2),
        Parameter("e", "int", 1, 1000, distribution="logUniform"),
        Parameter("f", "discrete", values=(256, 320, 0.5)),
        Parameter("g", "categorical", values=("sgd", "adamw")),
    )
)


def test_katib_types_map_to_optuna_distributions():
    d = KINDS.optuna_distributions()
    assert d["a"] == optuna.distributions.FloatDistribution(0.1, 0.9)
    assert d["b"] == optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    assert d["c"] == optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25)
    assert d["d"] == optuna.distributions.IntDistribution(2, 10, step=2)
    assert d["e"] == optuna.distributions.IntDistribution(1, 1000, log=True)
    assert d["f"] == optuna.distributions.CategoricalDistribution([256, 320, 0.5])
    assert d["g"] == optuna.distributions.CategoricalDistribution(["sgd", "adamw"])


def test_katib_specs_round_trip():
    specs = KINDS.katib()
    assert specs[1] == {
        "name": "b",
        "parameterType": "double",
        "feasibleSpace": {"min": "1e-05", "max": "0.1", "distribution": "logUniform"},
    }
    assert specs[3]["feasibleSpace"] == {"min": "2", "max": "10", "step": "2", "distribution": "uniform"}
    assert specs[5]["feasibleSpace"] == {"list": ["256", "320", "0.5"]}
    assert SearchSpace.from_katib(specs) == SearchSpace(tuple(dataclasses.replace(p, description="") for p in KINDS))


def test_walk_stays_in_the_feasible_space():
    for p in KINDS:
        values = list(p.walk())
        assert values
        for v in values:
            if p.type in ("double", "int"):
                assert p.min <= float(v) <= p.max
            if p.type == "int":
                assert float(v).is_integer() and (int(float(v)) - p.min) % (p.step or 1) == 0
            if p.type == "discrete":
                assert float(v) in [float(x) for x in p.values]
            if p.type == "categorical":
                assert v in p.values


def test_convert_types_katib_assignments_and_names_bad_ones():
    assert KINDS.convert({"a": "0.5", "d": "4", "f": "320.0", "g": "sgd"}) == {"a": 0.5, "d": 4, "f": 320, "g": "sgd"}
    with pytest.raises(ValueError, match="'d'.*'4.5'"):
        KINDS.convert({"d": "4.5"})
    with pytest.raises(ValueError, match="'f'.*not one of"):
        KINDS.convert({"f": "300"})
    with pytest.raises(ValueError, match="unknown parameter 'z'"):
        KINDS.convert({"z": "1"})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="x", type="double", min=1.0, max=0.5), "min <= max"),
        (dict(name="x", type="double", min=0.0, max=1.0, distribution="logUniform"), "min > 0"),
        (dict(name="x", type="double", min=0.1, max=1.0, step=0.1, distribution="logUniform"), "no step"),
        (dict(name="x", type="double", min=0.1, max=1.0, distribution="normal"), "distribution"),
        (dict(name="x", type="int", min=1, max=9.5), "integer"),
        (dict(name="x", type="discrete", values=("a",)), "numbers"),
        (dict(name="x", type="categorical", values=()), "non-empty"),
        (dict(name="x", type="float", min=1, max=2), "type must be"),
        (dict(name="bad-name", type="double", min=1, max=2), "identifier"),
    ],
)
def test_inconsistent_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Parameter(**kwargs)


def test_space_refuses_duplicates_and_unknown_fields():
    with pytest.raises(ValueError, match="defined twice: a"):
        SearchSpace((Parameter("a", "double", 0, 1), Parameter("a", "double", 0, 1)))
    with pytest.raises(ValueError, match="momentum are not fields of Hyperparameters"):
        SearchSpace((Parameter("momentum", "double", 0, 1),)).check_fields(Hyperparameters)
