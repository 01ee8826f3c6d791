"""The hyperparameter search space: the one source of truth of the Katib Experiment and of its Optuna twin.

Each :class:`Parameter` is a Katib ``ParameterSpec`` (kubeflow.org/v1beta1): a ``parameterType`` of ``double``,
``int``, ``discrete`` or ``categorical`` and a ``feasibleSpace`` (``min``/``max``/``step`` or a ``list``, with a
``uniform`` or ``logUniform`` distribution). :meth:`Parameter.katib` renders it for the Experiment,
:meth:`Parameter.optuna_distribution` maps it to an Optuna distribution:

============================  ==========================================================
Katib                         Optuna
============================  ==========================================================
double, uniform [, step]      ``FloatDistribution(min, max[, step=step])``
double, logUniform            ``FloatDistribution(min, max, log=True)``
int, uniform [, step]         ``IntDistribution(min, max, step=step or 1)``
int, logUniform               ``IntDistribution(min, max, log=True)``
discrete (numbers)            ``CategoricalDistribution(list)`` (numbers)
categorical (strings)         ``CategoricalDistribution(list)`` (strings)
============================  ==========================================================

Parameter names are fields of :class:`alpr.model.training.Hyperparameters`; the trial entry point
(:mod:`alpr.tuning.trial`) takes each as ``--<name with dashes>``. Katib hands values to the trial as strings,
possibly as ``"320.0"`` for a discrete integer: the entry point accepts every value this space can produce, which
``tests/unit/tuning/test_space.py`` checks by walking the space (:meth:`Parameter.walk`) against the entry point's parser.

Why these parameters (see the measurements in the README and ``docs/``): the input size dominates both cost and the
readability of small characters; AdamW's learning rate and weight decay decide whether RTMDet-tiny converges
within a short CPU budget; the batch size trades gradient noise against iteration time. Input sizes are a
``discrete`` list, not an ``int`` with a step, because some Katib algorithms (skopt's bayesianoptimization) ignore
the step of an ``int`` and would propose sizes that are not multiples of 32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from alpr.model.training import Hyperparameters

#: Katib parameter types.
PARAMETER_TYPES = ("double", "int", "discrete", "categorical")
#: Katib distributions the local twin can reproduce (Optuna has no normal / logNormal distributions).
DISTRIBUTIONS = ("uniform", "logUniform")


def katib_number(value: float | int) -> str:
    """A number as Katib writes it in a ``feasibleSpace`` (a string; ints without a decimal point)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Parameter:
    """One tunable hyperparameter, in Katib's terms.

    Attributes:
        name: a field of :class:`alpr.model.training.Hyperparameters` (also the Katib parameter name).
        type: ``"double"``, ``"int"``, ``"discrete"`` (a list of numbers) or ``"categorical"`` (a list of strings).
        min: lower bound (``double``/``int``), inclusive.
        max: upper bound (``double``/``int``), inclusive.
        step: quantisation step (``double``/``int`` with a ``uniform`` distribution), or None.
        values: the choices (``discrete``/``categorical``).
        distribution: ``"uniform"`` or ``"logUniform"`` (``double``/``int``).
        description: what it is, with units (shown in the Experiment's trial parameters).

    Raises:
        ValueError: an inconsistent definition (bounds, step with a log distribution, empty list, ...).
    """

    name: str
    type: str
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    values: tuple[Any, ...] = ()
    distribution: str = "uniform"
    description: str = ""

    def __post_init__(self) -> None:
        where = f"search space parameter {self.name!r}"
        if not self.name.isidentifier():
            raise ValueError(f"{where}: the name must be a Python identifier (a Hyperparameters field)")
        if self.type not in PARAMETER_TYPES:
            raise ValueError(f"{where}: type must be one of {', '.join(PARAMETER_TYPES)}, got {self.type!r}")
        if self.type in ("double", "int"):
            if self.min is None or self.max is None or not self.min <= self.max:
                raise ValueError(f"{where}: needs min <= max, got min={self.min!r} max={self.max!r}")
            if self.values:
                raise ValueError(f"{where}: a {self.type} parameter takes min/max, not values")
            if self.distribution not in DISTRIBUTIONS:
                raise ValueError(
                    f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}"
                )
            if self.distribution == "logUniform" and (self.min <= 0 or self.step is not None):
                raise ValueError(f"{where}: a logUniform distribution needs min > 0 and no step")
            if self.type == "int" and not all(float(v).is_integer() for v in (self.min, self.max, self.step or 1)):
                raise ValueError(f"{where}: an int parameter needs integer min, max and step")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"{where}: step must be > 0, got {self.step!r}")
        else:
            if not self.values or len(set(self.values)) != len(self.values):
                raise ValueError(f"{where}: a {self.type} parameter needs a non-empty list of distinct values")
            if self.min is not None or self.max is not None or self.step is not None:
                raise ValueError(f"{where}: a {self.type} parameter takes values, not min/max/step")
            if self.type == "discrete" and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values
            ):
                raise ValueError(f"{where}: discrete values must be numbers, got {self.values!r}")
            if self.type == "categorical" and not all(isinstance(v, str) and v for v in self.values):
                raise ValueError(f"{where}: categorical values must be non-empty strings, got {self.values!r}")

    # -- Katib
    def katib(self) -> dict:
        """The Katib ``ParameterSpec`` (``name``, ``parameterType``, ``feasibleSpace`` with string values)."""
        space: dict[str, Any]
        if self.type in ("double", "int"):
            space = {"min": katib_number(self.min), "max": katib_number(self.max)}
            if self.step is not None:
                space["step"] = katib_number(self.step)
            space["distribution"] = self.distribution
        elif self.type == "discrete":
            space = {"list": [katib_number(v) for v in self.values]}
        else:
            space = {"list": list(self.values)}
        return {"name": self.name, "parameterType": self.type, "feasibleSpace": space}

    @classmethod
    def from_katib(cls, spec: dict, description: str = "") -> Parameter:
        """The inverse of :meth:`katib` (numbers parsed from Katib's strings).

        Raises:
            ValueError: the spec is not one this module can represent (e.g. a ``normal`` distribution).
            KeyError: a required key is missing.
        """
        kind, space = spec["parameterType"], spec["feasibleSpace"]
        if kind in ("double", "int"):
            num = float if kind == "double" else _int_string
            return cls(
                spec["name"],
                kind,
                num(space["min"]),
                num(space["max"]),
                num(space["step"]) if space.get("step") else None,
                distribution=space.get("distribution", "uniform"),
                description=description,
            )
        values = tuple(_number_string(v) for v in space["list"]) if kind == "discrete" else tuple(space["list"])
        return cls(spec["name"], kind, values=values, description=description)

    # -- Optuna
    def optuna_distribution(self):
        """The Optuna distribution sampling the same values (see the module's table)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        log = self.distribution == "logUniform"
        if self.type == "double":
            return FloatDistribution(
                float(self.min), float(self.max), log=log, step=None if self.step is None else float(self.step)
            )
        if self.type == "int":
            return IntDistribution(int(self.min), int(self.max), log=log, step=1 if log else int(self.step or 1))
        return CategoricalDistribution(list(self.values))

    # -- the values the search space can produce, for the entry point check
    def walk(self) -> Iterator[str]:
        """Values this parameter can be assigned, as the strings a trial receives on its command line.

        ``double``: the bounds, points in between (linear or geometric) and every step for a stepped range, each
        in several spellings (``repr``, scientific, fixed-point); ``int``: every value of the range (at most
        2,000; else the bounds and the first/last 1,000 steps), also spelled as ``"320.0"``; ``discrete``: every
        value, also as a float spelling; ``categorical``: every value.
        """
        if self.type == "categorical":
            yield from self.values
            return
        if self.type == "discrete":
            for v in self.values:
                yield from _spellings(v)
            return
        if self.type == "int":
            step = 1 if self.distribution == "logUniform" else int(self.step or 1)
            values = range(int(self.min), int(self.max) + 1, step)
            for v in values if len(values) <= 2000 else [*values[:1000], *values[-1000:]]:
                yield str(v)
                yield f"{v}.0"
            return
        lo, hi = float(self.min), float(self.max)
        if self.step is not None:
            n = int(math.floor((hi - lo) / float(self.step) + 1e-9))
            points = [lo + i * float(self.step) for i in range(min(n, 2000) + 1)]
        elif self.distribution == "logUniform":
            points = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / 20) for i in range(21)]
        else:
            points = [lo + (hi - lo) * i / 20 for i in range(21)]
        for v in [lo, hi, *points]:
            yield from _spellings(min(max(v, lo), hi))


def _spellings(value: float | int) -> Iterator[str]:
    """Ways a suggestion service may write a number: Python's repr/str, scientific, fixed-point, integer."""
    f = float(value)
    yield repr(f)
    yield f"{f:e}"
    yield f"{f:.17g}"
    if f.is_integer():
        yield str(int(f))
    else:
        yield f"{f:.17f}".rstrip("0")


def _int_string(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not an integer")
    return int(value)


def _number_string(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of :class:`Parameter` (names unique).

    Raises:
        ValueError: a duplicate name, or a name that is not a field of ``hyperparameters_cls`` (when given to
            :meth:`check_fields`).
    """

    parameters: tuple[Parameter, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"search space: parameter(s) defined twice: {', '.join(dupes)}")

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return [p.name for p in self.parameters]

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"search space has no parameter {name!r} (has: {', '.join(self.names)})")

    def check_fields(self, hyperparameters_cls: type) -> None:
        """Raise ValueError unless every parameter is a field of the dataclass ``hyperparameters_cls``."""
        fields = {f.name for f in dataclasses.fields(hyperparameters_cls)}
        unknown = [n for n in self.names if n not in fields]
        if unknown:
            raise ValueError(
                f"search space parameter(s) {', '.join(unknown)} are not fields of "
                f"{hyperparameters_cls.__name__} ({', '.join(sorted(fields))})"
            )

    def katib(self) -> list[dict]:
        """The Experiment's ``spec.parameters``."""
        return [p.katib() for p in self.parameters]

    @classmethod
    def from_katib(cls, specs: Sequence[dict]) -> SearchSpace:
        """The inverse of :meth:`katib`."""
        return cls(tuple(Parameter.from_katib(s) for s in specs))

    def optuna_distributions(self) -> dict:
        """``{name: optuna distribution}`` for ``optuna.Study.ask(fixed_distributions=...)``."""
        return {p.name: p.optuna_distribution() for p in self.parameters}

    def to_json(self) -> list[dict]:
        """A JSON-able description (the Katib specs plus descriptions), stored with every study."""
        return [{**p.katib(), "description": p.description} for p in self.parameters]

    def convert(self, assignments: dict[str, str | float | int]) -> dict[str, Any]:
        """Typed values of Katib's string assignments (``{"lr": "0.001", "input_size": "320"}``).

        Raises:
            ValueError: an unknown name or a value that is not of the parameter's type (naming both).
        """
        out: dict[str, Any] = {}
        for name, raw in assignments.items():
            p = self[name] if name in self.names else None
            if p is None:
                raise ValueError(f"assignment of unknown parameter {name!r} (search space: {', '.join(self.names)})")
            try:
                if p.type == "double":
                    out[name] = float(raw)
                elif p.type == "int":
                    out[name] = _int_string(str(raw))
                elif p.type == "discrete":
                    value = float(raw)
                    matches = [v for v in p.values if float(v) == value]
                    if not matches:
                        raise ValueError(f"not one of {list(p.values)}")
                    out[name] = matches[0]
                else:
                    if raw not in p.values:
                        raise ValueError(f"not one of {list(p.values)}")
                    out[name] = raw
            except (TypeError, ValueError) as exc:
                raise ValueError(f"parameter {name!r}: bad value {raw!r}: {exc}") from None
        return out


def default_space() -> SearchSpace:
    """The project's search space over :class:`alpr.model.training.Hyperparameters`.

    Raises:
        ValueError: a parameter is not a field of Hyperparameters (kept in step by a test).
    """

    params = [
        Parameter("lr", "double", 5e-4, 1e-2, distribution="logUniform", description="AdamW base learning rate"),
        Parameter("weight_decay", "double", 1e-3, 0.2, distribution="logUniform", description="AdamW weight decay"),
        Parameter(
            "input_size",
            "discrete",
            values=(256, 320, 384, 448),
            description="square network input, pixels (multiples of 32)",
        ),
        Parameter("batch_size", "discrete", values=(4, 8, 16), description="images per iteration"),
    ]
    space = SearchSpace(tuple(params))
    space.check_fields(Hyperparameters)
    return space
