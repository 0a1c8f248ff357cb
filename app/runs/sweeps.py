"""What a sweep is and which runs it makes: the spec people send, and its expansion into run settings.

Pure: no database, no server. A grid takes every combination of the axes' values; random search draws `trials`
settings; both repeat each setting once per seed. Optuna (app/runs/study.py) asks its sampler for each trial's setting as
runs finish, from the same axes as distributions. Every run's config is validated here, before any run is stored, so
a bad value is a 422 naming its axis and nothing half-made is left behind.
"""

from __future__ import annotations

import itertools
import math
import random
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainer.config import TrainConfig

MAX_RUNS = 500  # one sweep's runs: the sweep page draws them all
MAX_VALUES = 100  # values of one axis


class SweepError(ValueError):
    """A spec that makes no sense or a run config that does not validate; `loc` names the part (the API's 422)."""

    def __init__(self, loc: tuple, msg: str):
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg = loc, msg


class Axis(BaseModel):
    """One setting to vary: a list of values, or a range `min..max` (with `count` points for a grid; log-spaced when
    `log`, as learning rates usually are)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    values: list[Any] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    min: float | None = None
    max: float | None = None
    count: int | None = Field(None, ge=1, le=MAX_VALUES, description="points of the range in a grid")
    log: bool = Field(False, description="spaced evenly in log scale (min must be above 0)")

    @model_validator(mode="after")
    def _one_kind(self) -> Axis:
        if (self.values is None) == (self.min is None and self.max is None):
            raise ValueError("give either values or a range (min and max)")
        if self.values is None:
            if self.min is None or self.max is None:
                raise ValueError("a range needs both min and max")
            if self.min > self.max:
                raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
            if self.log and self.min <= 0:
                raise ValueError("a log-scale range needs min above 0")
        return self


class Pruning(BaseModel):
    """Optuna's median pruner: stop a trial whose score at an epoch is worse than the median of the finished trials'
    at that epoch."""

    model_config = ConfigDict(extra="forbid")

    startup_trials: int = Field(2, ge=0, le=1000, description="finished trials before any is pruned")
    warmup_epochs: int = Field(0, ge=0, le=100_000, description="epochs of a trial before it can be pruned")


class SweepSpec(BaseModel):
    """A sweep as sent to POST /api/sweeps and stored on the sweep."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=80, description="defaults to sweep-<id>")
    method: Literal["grid", "random", "optuna"] = "grid"
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields every run shares")
    axes: dict[str, Axis] = Field(default_factory=dict, max_length=20, description="TrainConfig field -> its values")
    seeds: int = Field(1, ge=1, le=100, description="runs of each setting, with seeds base.seed, base.seed + 1, ...")
    trials: int | None = Field(None, ge=1, le=MAX_RUNS, description="random and optuna: how many settings to try")
    sampler_seed: int = Field(0, ge=0, le=2**32 - 1, description="random and optuna: the draws' seed")
    parallel: int | None = Field(None, ge=1, le=100, description="optuna: trials queued at once (default: the server's slots)")
    first: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RUNS, description="optuna: settings to try first")
    pruning: Pruning | None = Field(None, description="optuna: the median pruner; null: no pruning")


def fields_of(axis: str) -> list[str]:
    """The config fields an axis sets: `lr_g+lr_d` sets both to the same value (one learning rate for G and D)."""
    return axis.split("+")


def config_values(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as config fields."""
    return {field: value for axis, value in settings.items() for field in fields_of(axis)}


def is_int(field: str) -> bool:
    field = fields_of(field)[0]
    annotation = TrainConfig.model_fields[field].annotation
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return int in args and float not in args and bool not in args


def _is_number(field: str) -> bool:
    field = fields_of(field)[0]
    annotation = TrainConfig.model_fields[field].annotation
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return bool({int, float} & set(args)) and bool not in args


def _tidy(value: float, integer: bool) -> float | int:
    """A range's point as people would type it: 1e-4, not 0.00010000000000000002. Not finite (a range too wide for
    floats): left as it is, for the config to refuse."""
    if not math.isfinite(value):
        return value
    return round(value) if integer else float(f"{value:.6g}")


def range_points(axis: Axis, integer: bool) -> list[float | int]:
    """A grid's values of a range axis: `count` points from min to max, evenly spaced (in log scale when `log`)."""
    n = axis.count
    lo, hi = (math.log(axis.min), math.log(axis.max)) if axis.log else (axis.min, axis.max)
    points = [lo + (hi - lo) * i / (n - 1) for i in range(n)] if n > 1 else [lo]
    return list(dict.fromkeys(_tidy(math.exp(p) if axis.log else p, integer) for p in points))


def draw(axis: Axis, integer: bool, rng: random.Random) -> Any:
    """One random draw from an axis: a value of the list, or a point of the range (log-uniform when `log`)."""
    if axis.values is not None:
        return rng.choice(axis.values)
    if axis.log:
        return _tidy(math.exp(rng.uniform(math.log(axis.min), math.log(axis.max))), integer)
    return _tidy(rng.uniform(axis.min, axis.max), integer)


def check_axes(spec: SweepSpec) -> None:
    """Each axis names a TrainConfig field that can vary; ranges only over numbers, grid ranges with a count."""
    for name, axis in spec.axes.items():
        loc = ("axes", name)
        if unknown := [f for f in fields_of(name) if f not in TrainConfig.model_fields]:
            raise SweepError(loc, f"{', '.join(unknown)}: not a TrainConfig field")
        if len({(is_int(f), _is_number(f)) for f in fields_of(name)}) > 1:
            raise SweepError(loc, "fields set together must be of one kind (numbers, or not)")
        if "seed" in fields_of(name):
            raise SweepError(loc, "seeds are their own setting: give `seeds`, the runs of each setting")
        if axis.values is None and not _is_number(name):
            raise SweepError(loc, "a range needs a numeric field; give values")
        if axis.values is None and spec.method == "grid" and axis.count is None:
            raise SweepError((*loc, "count"), "a grid over a range needs count, the points from min to max")
    if spec.method in ("random", "optuna") and spec.trials is None:
        raise SweepError(("trials",), f"{spec.method} search needs trials, how many settings to try")
    if spec.method == "optuna" and spec.seeds > 1:
        raise SweepError(("seeds",), "an Optuna trial is one run; give seeds 1 (or use grid or random search)")
    for key in ("first", "pruning", "parallel"):
        if spec.method != "optuna" and getattr(spec, key):
            raise SweepError((key,), "only an Optuna sweep takes it")


def settings_list(spec: SweepSpec) -> list[dict[str, Any]]:
    """The settings of a grid or random sweep's runs, in the order they are queued: each setting once per seed, every
    setting's first seed before any second one, so the first runs to finish already cover the space."""
    check_axes(spec)
    names = list(spec.axes)
    if spec.method == "grid":
        values = [a.values if a.values is not None else range_points(a, is_int(n)) for n, a in spec.axes.items()]
        combos = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    elif spec.method == "random":
        rng = random.Random(spec.sampler_seed)
        combos = [{n: draw(a, is_int(n), rng) for n, a in spec.axes.items()} for _ in range(spec.trials)]
    else:
        raise SweepError(("method",), "an Optuna sweep's settings come from its study as runs finish")
    count = len(combos) * spec.seeds
    if count > MAX_RUNS:
        raise SweepError(("axes",), f"{count} runs ({len(combos)} settings x {spec.seeds} seeds); at most {MAX_RUNS}")
    seed = base_seed(spec)
    return [{**combo, "seed": seed + i} for i in range(spec.seeds) for combo in combos]


def base_seed(spec: SweepSpec) -> int:
    """The first seed of every setting: the base config's (validated alone: the rest of the base may need the axes)."""
    try:
        return TrainConfig(seed=spec.base.get("seed", 0)).seed
    except ValidationError as e:
        raise SweepError(("base", "seed"), e.errors(include_url=False)[0]["msg"]) from None


def run_count(spec: SweepSpec) -> int:
    return spec.trials if spec.method == "optuna" else len(settings_list(spec))


def run_config(spec: SweepSpec, settings: dict[str, Any], loc: tuple = ()) -> TrainConfig:
    """The base config with one run's settings, validated; an error names the axis (or the base field) it comes from."""
    try:
        return TrainConfig(**{**spec.base, **config_values(settings)})
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = err["loc"][0] if err["loc"] else None
        where = loc or loc_of(spec, field)
        value = config_values(settings).get(field, spec.base.get(field))
        raise SweepError(where, f"{err['msg']} (value {value!r})") from None


def loc_of(spec: SweepSpec, field: str | None) -> tuple:
    """Where a config field's value comes from: the axis that sets it, else the base."""
    axis = next((a for a in spec.axes if field in fields_of(a)), None)
    return ("axes", axis) if axis else ("base", field)


def check_optuna(spec: SweepSpec) -> TrainConfig:
    """Every value an Optuna axis can take (a list's values, a range's ends), with the other axes at their first, and
    every `first` setting, makes a valid config. Returns the config of every axis at its first value."""
    check_axes(spec)
    anchor = {name: axis.values[0] if axis.values is not None else _tidy(axis.min, is_int(name))
              for name, axis in spec.axes.items()}  # fmt: skip
    for name, axis in spec.axes.items():
        for value in axis.values if axis.values is not None else [_tidy(axis.min, is_int(name)), _tidy(axis.max, is_int(name))]:
            run_config(spec, {**anchor, name: value})
    for i, setting in enumerate(spec.first):
        unknown = set(setting) - set(spec.axes)
        if unknown:
            raise SweepError(("first", i), f"{', '.join(sorted(unknown))}: not an axis of this sweep")
        missing = set(spec.axes) - set(setting)
        if missing:
            raise SweepError(("first", i), f"{', '.join(sorted(missing))}: every axis needs a value")
        for name, value in setting.items():
            axis = spec.axes[name]
            inside = value in axis.values if axis.values is not None else (
                isinstance(value, (int, float)) and axis.min <= value <= axis.max)  # fmt: skip
            if not inside:
                raise SweepError(("first", i, name), f"{value!r} is not among the axis's values or inside its range")
        run_config(spec, setting, ("first", i))
    return run_config(spec, anchor)


def settings_of(spec: SweepSpec, config: dict[str, Any]) -> dict[str, Any]:
    """A sweep run's settings, read back from its config: the axes' values and the seed."""
    return {**{name: config.get(fields_of(name)[0]) for name in spec.axes}, "seed": config.get("seed")}
