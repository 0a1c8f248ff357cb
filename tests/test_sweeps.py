"""The sweep spec and its expansion (app/runs/sweeps.py): pure, no server."""

from __future__ import annotations

import pytest

from app.runs.sweeps import SweepError, SweepSpec, check_optuna, run_config, run_count, settings_list, settings_of


def test_grid_takes_every_combination_once_per_seed_first_seeds_first():
    spec = SweepSpec(axes={"lr_d": {"min": 1e-4, "max": 1e-2, "count": 3, "log": True}, "g_every": {"values": [1, 2]}},
                     seeds=2, base={"seed": 5})  # fmt: skip
    settings = settings_list(spec)
    assert len(settings) == run_count(spec) == 12
    assert [s["lr_d"] for s in settings[:6]] == [1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2]  # log-spaced, tidy numbers
    assert [s["seed"] for s in settings] == [5] * 6 + [6] * 6
    assert len({tuple(s.items()) for s in settings}) == 12


def test_integer_range_rounds_and_drops_repeats():
    spec = SweepSpec(axes={"ngf": {"min": 8, "max": 10, "count": 5}})
    assert [s["ngf"] for s in settings_list(spec)] == [8, 9, 10]


def test_random_search_draws_trials_inside_the_ranges_repeatably():
    spec = SweepSpec(method="random", trials=20, axes={"lr_g": {"min": 1e-5, "max": 1e-2, "log": True},
                                                       "batch_size": {"values": [32, 64]}})  # fmt: skip
    first = settings_list(spec)
    assert first == settings_list(spec) and len(first) == 20
    assert all(1e-5 <= s["lr_g"] <= 1e-2 and s["batch_size"] in (32, 64) for s in first)
    assert min(s["lr_g"] for s in first) < 1e-4  # log-uniform reaches the small decades


def test_a_tied_axis_sets_every_field_it_names():
    spec = SweepSpec(axes={"lr_g+lr_d": {"values": [1e-3]}})
    (settings,) = settings_list(spec)
    cfg = run_config(spec, settings)
    assert cfg.lr_g == cfg.lr_d == 1e-3
    assert settings_of(spec, cfg.model_dump()) == {"lr_g+lr_d": 1e-3, "seed": 0}


@pytest.mark.parametrize(
    ("spec", "loc", "words"),
    [
        ({"axes": {"lr": {"values": [1]}}}, ("axes", "lr"), "not a TrainConfig field"),
        ({"axes": {"seed": {"values": [1, 2]}}}, ("axes", "seed"), "seeds"),
        ({"axes": {"lr_d": {"min": 1e-4, "max": 1e-2}}}, ("axes", "lr_d", "count"), "count"),
        ({"axes": {"dataset": {"min": 1, "max": 2, "count": 2}}}, ("axes", "dataset"), "numeric"),
        ({"method": "random", "axes": {"lr_d": {"values": [1e-3]}}}, ("trials",), "trials"),
        ({"axes": {"ngf": {"values": [8, 4096]}}}, ("axes", "ngf"), "4096"),
        ({"axes": {"ngf": {"min": 4, "max": 512, "count": 100}, "ndf": {"min": 4, "max": 512, "count": 10}}}, ("axes",), "at most"),
    ],
)
def test_bad_specs_name_the_axis(spec, loc, words):
    with pytest.raises(SweepError) as e:
        s = SweepSpec(**spec)
        for settings in settings_list(s):
            run_config(s, settings)
    assert e.value.loc == loc and words in e.value.msg


def test_axis_needs_values_or_a_whole_range():
    for axis in ({}, {"min": 1}, {"values": [1], "min": 1, "max": 2}, {"min": 2, "max": 1}, {"min": 0, "max": 1, "log": True}):
        with pytest.raises(ValueError):
            SweepSpec(axes={"ngf": axis})


def test_optuna_checks_its_ranges_ends_and_first_settings():
    ok = SweepSpec(method="optuna", trials=4, axes={"lr_d": {"min": 1e-4, "max": 0.05, "log": True}}, first=[{"lr_d": 0.05}])
    check_optuna(ok)
    with pytest.raises(SweepError) as e:
        check_optuna(ok.model_copy(update={"first": [{"lr_g": 1e-3}]}))
    assert e.value.loc == ("first", 0)
    with pytest.raises(SweepError) as e:
        check_optuna(ok.model_copy(update={"seeds": 2}))
    assert e.value.loc == ("seeds",)


def test_a_range_too_wide_for_floats_is_refused_not_crashed():
    spec = SweepSpec(axes={"ngf": {"min": -1.7e308, "max": 1.7e308, "count": 3}})
    with pytest.raises(SweepError) as e:
        for settings in settings_list(spec):
            run_config(spec, settings)
    assert e.value.loc == ("axes", "ngf")


def test_optuna_first_settings_must_lie_on_their_axis():
    spec = SweepSpec(method="optuna", trials=2, axes={"lr_d": {"min": 1e-4, "max": 1e-2, "log": True}}, first=[{"lr_d": 0.05}])
    with pytest.raises(SweepError) as e:
        check_optuna(spec)
    assert e.value.loc == ("first", 0, "lr_d")
