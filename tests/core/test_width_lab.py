"""The width lab's core: the parametrization axis of a sweep (ids, CLI, summaries old and new), the
coordinate check against its formula, and the lines against width against naive means and slopes."""

import csv
import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from kalign_core import ExperimentConfig, load_digits
from kalign_core.cli import main
from kalign_core.engine.coordinate_check import coordinate_sizes
from kalign_core.engine.trial import PairTrial
from kalign_core.runs import load_run
from kalign_core.sweep.options import SweepOptions
from kalign_core.sweep.runner import run_sweep
from kalign_core.sweep.spec import SUMMARY_CSV, SUMMARY_FIELDS, SweepSpec, read_summary_csv, summary_csv
from kalign_core.sweep.width_lab import (
    COORDINATE_MEASURES,
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
        for when in ("init", "slow", "regular"):
            assert getattr(s, f"mean_abs_hidden_{when}") == run.coordinate_sizes[when]["mean_abs_hidden"] > 0
            assert getattr(s, f"mean_abs_output_{when}") == run.coordinate_sizes[when]["mean_abs_output"] > 0
    # Both parametrizations start from the same N(0, 1) draws, with the same hidden multiplier.
    ntk, mup = summaries[:4], summaries[4:]
    assert [s.mean_abs_hidden_init for s in ntk] == [s.mean_abs_hidden_init for s in mup]


def test_coordinate_sizes_follow_their_formula_on_the_trials_probe():
    config = dataclasses.replace(BASE, digits=(3, 5), width=16, parametrization="mup")
    data = load_digits((3, 5), "sample")
    trial = PairTrial(config, data, torch.device("cpu"))
    trained = trial.initial.__class__(16, 2, 784, "mup")
    torch.manual_seed(1)
    sizes = coordinate_sizes(config, data, {"slow": trial.initial, "regular": trained})
    assert sizes["init"] == sizes["slow"]  # rebuilt from the config: the trial's own start
    probe = trial.test_x[: config.probe_size].numpy()  # a trial holds its probe first
    w, b = (p.detach().numpy().astype(np.float64) for p in trained.features[0].parameters())
    a, c = (p.detach().numpy().astype(np.float64) for p in trained.readout.parameters())
    h = probe @ w.T + b
    f = np.maximum(h, 0) @ a.T + c
    assert sizes["regular"]["mean_abs_hidden"] == pytest.approx(np.abs(h).mean(), rel=1e-5)
    assert sizes["regular"]["mean_abs_output"] == pytest.approx(np.abs(f).mean(), rel=1e-5)


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
    assert [line.model for line in coordinates] == ["init", "slow", "regular"] * 2


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
