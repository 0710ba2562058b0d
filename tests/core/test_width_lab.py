"""The width lab's core: the parametrization axis of a sweep (ids, CLI, summaries old and new), the
coordinate check after each of the first SGD steps against naive float64 SGD, bad widths and
parametrization names refused in words (library and CLI), and the lines against width against naive
means and slopes."""

import csv
import dataclasses
import io
import math
import re

import numpy as np
import pytest
import torch

from kalign_core import ExperimentConfig, load_digits
from kalign_core.cli import main
from kalign_core.config import ConfigError
from kalign_core.engine.batched import run_trials
from kalign_core.engine.trial import PairTrial
from kalign_core.results import COORDINATE_KEYS, COORDINATE_STEPS, COORDINATES, coordinate_step
from kalign_core.runs import load_run
from kalign_core.sweep.options import SweepOptions
from kalign_core.sweep.runner import run_sweep
from kalign_core.sweep.spec import (
    STEP_COORDINATES,
    SUMMARY_CSV,
    SUMMARY_FIELDS,
    SweepSpec,
    read_summary_csv,
    summary_csv,
)
from kalign_core.sweep.width_lab import (
    COORDINATE_MEASURES,
    COORDINATE_TIMES,
    LAB_MEASURES,
    THEORY_SLOPES,
    fitted_slope,
    slope_text,
    width_lines,
)

BASE = ExperimentConfig(
    epochs=1, batch_size=100, probe_size=40, source="sample", device="cpu", regular_lr=0.5, slow_lr=0.05
)
# 2 parametrizations × 2 widths × 2 seeds, one pair: 8 trials of a fraction of a second each.
SPEC = SweepSpec(BASE, ((3, 5),), widths=(16, 64), seeds=(0, 1), parametrizations=("ntk", "mup"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    return folder, run_sweep(SPEC, folder, SweepOptions(threads_per_trial=1)).summaries


def test_the_parametrization_axis_names_only_what_is_not_standard():
    spec = SweepSpec(BASE, ((3, 5),), widths=(16,), parametrizations=("standard", "mup"))
    assert [t.id for t in spec.trials()] == ["3v5-w16-r0.1-s0", "3v5-w16-r0.1-s0-mup"]
    assert [t.config.parametrization for t in spec.trials()] == ["standard", "mup"]
    assert SweepSpec(BASE, ((3, 5),)).parametrizations == ("standard",)  # the base's
    assert spec.to_dict()["parametrizations"] == ["standard", "mup"]
    assert spec.axes_text() == "1 pair × 1 width × 1 ratio × 1 seed × 2 parametrizations"


@pytest.mark.parametrize("names, message", [(("ntk", "ntk"), "parametrizations repeats ntk"), (("nkt",), "must be")])
def test_bad_parametrizations_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        SweepSpec(BASE, ((3, 5),), parametrizations=names)


def test_summaries_hold_the_last_epoch_and_the_coordinate_check(lab):
    folder, summaries = lab
    assert [s.parametrization for s in summaries] == ["ntk"] * 4 + ["mup"] * 4
    for s in summaries:
        run = load_run(folder / s.trial_id)
        for model in ("slow", "regular"):
            last = run.history[model][-1]
            for measure in ("hidden_change", "readout_change", "feature_distance", "tangent_distance"):
                assert getattr(s, f"{measure}_{model}") == getattr(last, measure)
            assert getattr(s, f"pattern_stability_{model}") == last.pattern_stability
        assert set(run.coordinate_sizes) == set(COORDINATE_KEYS)  # 8 steps an epoch: every step recorded
        for when in ("init", "slow", "regular"):
            assert getattr(s, f"mean_abs_hidden_{when}") == run.coordinate_sizes[when]["mean_abs_hidden"] > 0
            assert getattr(s, f"mean_abs_output_{when}") == run.coordinate_sizes[when]["mean_abs_output"] > 0
        for size, when in STEP_COORDINATES:
            assert getattr(s, f"{size}_{when}") == run.coordinate_sizes[when][size] > 0
    # Both parametrizations start from the same N(0, 1) draws, with the same hidden multiplier.
    ntk, mup = summaries[:4], summaries[4:]
    assert [s.mean_abs_hidden_init for s in ntk] == [s.mean_abs_hidden_init for s in mup]


def naive_coordinate_check(config: ExperimentConfig, data, model: int) -> dict[str, dict[str, float]]:
    """The coordinate check of one model of a trial by plain float64 SGD written out: its sizes at the
    start, after each of the first COORDINATE_STEPS steps and after the run (keys as the engine's)."""
    trial = PairTrial(config, data, torch.device("cpu"))  # its initial model, probe and generator
    hidden, readout = trial.initial.features[0], trial.initial.readout
    w, b, a, c = (p.detach().double().clone() for p in (hidden.weight, hidden.bias, readout.weight, readout.bias))
    lr = (config.slow_lr, config.regular_lr)[model]
    rates = [r * lr_ for r, lr_ in zip(trial.initial.scaling.rates, (lr, lr, config.regular_lr, config.regular_lr))]
    x_all, y_all = trial.train_x.double(), trial.train_y
    probe = trial.test_x[: config.probe_size].double()

    def sizes():
        h = probe @ w.T + b
        f = h.relu() @ a.T + c
        return {"mean_abs_hidden": h.abs().mean().item(), "mean_abs_output": f.abs().mean().item()}

    name = ("slow", "regular")[model]
    found, step = {"init": sizes()}, 0
    for _ in range(config.epochs):
        order = torch.randperm(len(y_all), generator=trial.generator)
        for start in range(0, len(order), config.batch_size):
            x, y = x_all[order[start : start + config.batch_size]], y_all[order[start : start + config.batch_size]]
            h = x @ w.T + b
            g = (torch.softmax(h.relu() @ a.T + c, dim=1) - torch.nn.functional.one_hot(y, 2).double()) / len(y)
            g_hidden = (g @ a) * (h > 0)
            for tensor, grad, rate in zip(
                (w, b, a, c), (g_hidden.T @ x, g_hidden.sum(0), g.T @ h.relu(), g.sum(0)), rates
            ):
                tensor -= rate * grad
            step += 1
            if step <= COORDINATE_STEPS:
                found[coordinate_step(name, step)] = sizes()
    found[name] = sizes()
    return found


@pytest.mark.parametrize("parametrization", ["ntk", "mup", "standard"])
def test_the_coordinate_check_after_each_step_matches_naive_float64_sgd(parametrization):
    # Batch 300 of 800 digits: 3 steps an epoch (the last of 200), so the steps run across epochs.
    config = dataclasses.replace(
        BASE, digits=(3, 5), width=48, epochs=2, batch_size=300, parametrization=parametrization
    )
    data = load_digits((3, 5), "sample")
    [result] = run_trials([config], {(3, 5): data}, kernel_machines=False, coordinate_check=True)
    assert set(result.coordinate_sizes) == set(COORDINATE_KEYS)
    for model, name in enumerate(("slow", "regular")):
        expected = naive_coordinate_check(config, data, model)
        assert set(expected) == {"init", name, *(coordinate_step(name, t) for t in range(1, 5))}
        for key, sizes in expected.items():
            assert result.coordinate_sizes[key] == pytest.approx(sizes, rel=1e-5), key
    steps = [result.coordinate_sizes[coordinate_step("regular", t)]["mean_abs_hidden"] for t in (1, 2, 3, 4)]
    assert len(set(steps)) == 4  # each step moved the regular model


def test_a_run_of_fewer_steps_records_the_steps_it_has_and_runs_have_no_check():
    config = dataclasses.replace(BASE, digits=(3, 5), width=16, batch_size=400)  # 2 steps in all
    [checked] = run_trials([config], kernel_machines=False, coordinate_check=True)
    [plain] = run_trials([config], kernel_machines=False)
    assert set(checked.coordinate_sizes) == {"init", "slow", "regular"} | {
        coordinate_step(m, t) for m in ("slow", "regular") for t in (1, 2)
    }
    assert plain.coordinate_sizes == {}
    # Measuring changes nothing in the training.
    for name in ("slow", "regular"):
        assert [dataclasses.replace(r, seconds=0) for r in checked.history[name]] == [
            dataclasses.replace(r, seconds=0) for r in plain.history[name]
        ]


def test_the_summary_keeps_a_column_for_each_step_of_the_regular_model():
    names = [f"{size}_{when}" for size, when in STEP_COORDINATES]
    first = SUMMARY_FIELDS.index(names[0])
    assert SUMMARY_FIELDS[first : first + len(names)] == names
    assert len(STEP_COORDINATES) == len(COORDINATES) * COORDINATE_STEPS


def test_summaries_round_trip_with_and_without_the_new_columns(lab):
    _, summaries = lab
    assert read_summary_csv(summary_csv(summaries)) == summaries
    old_fields = SUMMARY_FIELDS[: SUMMARY_FIELDS.index("parametrization")]
    out = io.StringIO()
    writer = csv.DictWriter(out, old_fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv.DictReader(io.StringIO(summary_csv(summaries))))
    old = read_summary_csv(out.getvalue())
    assert {s.parametrization for s in old} == {"standard"}
    assert all(s.readout_change_slow is None and s.mean_abs_output_init is None for s in old)
    assert [s.hidden_change_regular for s in old] == [s.hidden_change_regular for s in summaries]
    with pytest.raises(ValueError, match="parametrization must be one of"):
        read_summary_csv(summary_csv(summaries).replace(",ntk,", ",nkt,", 1))


@pytest.mark.parametrize("slope", [-0.5, 0.0, 1.25])
def test_fitted_slope_of_exact_power_laws(slope):
    widths = [32, 128, 512, 2048]
    assert fitted_slope(widths, [3.0 * w**slope for w in widths]) == pytest.approx(slope, abs=1e-12)


def test_fitted_slope_skips_what_has_no_logarithm():
    assert fitted_slope([16, 64, 256, 1024], [None, 2.0, -1.0, 0.5]) == pytest.approx(math.log(0.25) / math.log(16))
    assert fitted_slope([16, 64], [1.0, 0.0]) is None
    assert fitted_slope([], []) is None


def test_width_lines_are_naive_means_and_spreads_over_seeds(lab):
    _, summaries = lab
    lines = width_lines(summaries, LAB_MEASURES["hidden_change"])
    assert [(line.parametrization, line.model) for line in lines] == [
        ("ntk", "slow"),
        ("ntk", "regular"),
        ("mup", "slow"),
        ("mup", "regular"),
    ]
    for line in lines:
        values = {
            w: [
                getattr(s, f"hidden_change_{line.model}")
                for s in summaries
                if (s.parametrization, s.width) == (line.parametrization, w)
            ]
            for w in (16, 64)
        }
        assert line.widths == [16, 64] and line.seeds == [2, 2]
        assert line.means == pytest.approx([np.mean(values[w]) for w in (16, 64)])
        assert line.spreads == pytest.approx([np.std(values[w]) for w in (16, 64)])
        assert line.slope == pytest.approx(math.log(line.means[1] / line.means[0]) / math.log(4))
        assert line.theory == THEORY_SLOPES[line.parametrization]
        assert slope_text(line).endswith("; theory " + {"ntk": "−½", "mup": "0"}[line.parametrization])
    gain = width_lines(summaries, LAB_MEASURES["alignment_gain"])
    assert [line.model for line in gain] == [None, None] and all(line.theory is None for line in gain)
    coordinates = width_lines(summaries, COORDINATE_MEASURES["mean_abs_output"])
    assert [line.model for line in coordinates] == list(COORDINATE_TIMES) * 2
    measure = COORDINATE_MEASURES["mean_abs_output"]
    assert [measure.model_label(line.model) for line in coordinates[:6]] == [f"t = {t}" for t in range(5)] + ["end"]
    for line in coordinates:
        column = measure.column(line.model)
        assert column in SUMMARY_FIELDS
        for width, mean in zip(line.widths, line.means):
            values = [
                getattr(s, column) for s in summaries if (s.parametrization, s.width) == (line.parametrization, width)
            ]
            assert mean == pytest.approx(np.mean(values))


def test_a_diverged_model_is_left_out_of_its_line(lab):
    _, summaries = lab
    diverged = [dataclasses.replace(summaries[0], diverged_regular=1), *summaries[1:]]
    regular = width_lines(diverged, LAB_MEASURES["test_error"])[1]
    assert regular.model == "regular" and regular.left_out == 1 and regular.seeds == [1, 2]
    assert width_lines(diverged, LAB_MEASURES["test_error"])[0].left_out == 0


def test_cli_sweeps_parametrizations_and_prints_the_fitted_slopes(tmp_path, capsys):
    args = ["sweep", "--digits", "3", "5", "--widths", "16", "64", "--epochs", "1", "--batch-size", "100"]
    args += ["--probe-size", "40", "--source", "sample", "--workers", "1", "--out", str(tmp_path)]
    assert main([*args, "--parametrizations", "ntk,mup"]) == 0
    out = capsys.readouterr().out
    assert "4 trials (1 pair × 2 widths × 1 ratio × 1 seed × 2 parametrizations)" in out
    assert "hidden-weight change vs width, mup regular model: fitted slope " in out
    assert "over widths 16–64; theory 0" in out
    rows = read_summary_csv((tmp_path / SUMMARY_CSV).read_text())
    assert [r.trial_id for r in rows] == [
        "3v5-w16-r0.1-s0-ntk",
        "3v5-w64-r0.1-s0-ntk",
        "3v5-w16-r0.1-s0-mup",
        "3v5-w64-r0.1-s0-mup",
    ]
    with pytest.raises(SystemExit):
        main([*args, "--parametrizations", "ntk", "lazy"])
    assert "--parametrizations must be one of standard, ntk, mup" in capsys.readouterr().err


@pytest.mark.parametrize(
    "axis, values, field, message",
    [
        ("widths", (64, 0), "width", "width must be a whole number from 1 to 32,768 (got 0)"),
        ("widths", (64, 40_000), "width", "width must be a whole number from 1 to 32,768 (got 40000)"),
        ("parametrizations", ("ntk", "lazy"), "parametrization", "must be one of standard, ntk, mup (got 'lazy')"),
    ],
)
def test_a_bad_width_or_parametrization_name_is_refused_by_name_in_the_library(axis, values, field, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        SweepSpec(BASE, ((3, 5),), **{axis: values})
    assert refused.value.fields == (field,)


@pytest.mark.parametrize(
    "option, values, message",
    [
        ("--widths", ["64", "0"], "--widths must be a whole number from 1 to 32,768 (got 0)"),
        ("--parametrizations", ["ntk,lazy"], "--parametrizations must be one of standard, ntk, mup (got 'lazy')"),
    ],
)
def test_a_bad_width_or_parametrization_name_exits_2_naming_the_option(option, values, message, tmp_path, capsys):
    args = ["sweep", "--digits", "3", "5", "--source", "sample", "--out", str(tmp_path), option, *values]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
