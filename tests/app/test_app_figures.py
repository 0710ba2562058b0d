"""Plotly figures: points match epochs, undefined alignment is a gap, divergence is marked, kernels
are block-averaged with class boundaries and a colour scale centred at 0."""

import dataclasses

import numpy as np
import pytest

from kalign_app import figures
from kalign_core import ExperimentConfig
from kalign_core.results import EpochRecord, ExperimentResult

DEAD = "the centered feature kernel is zero (all points look the same to it), so alignment is 0/0"


def make_result(regular_alignment, diverged_at=None, m=6, classes=(8, 9)) -> ExperimentResult:
    """A hand-made run: the slow model aligns at 0.4 throughout; the regular one as given."""
    epochs = len(regular_alignment)
    labels = np.repeat(np.arange(len(classes)), m // len(classes))
    records = {
        "slow": [EpochRecord(e, 20.0 - e, 21.0 - e, 0.5, 0.4) for e in range(epochs)],
        "regular": [
            EpochRecord(e, 20.0 - 2 * e, 21.0 - 2 * e, 0.5, a, None if a is not None else DEAD)
            for e, a in enumerate(regular_alignment)
        ],
    }
    kernel = np.eye(m, dtype=np.float32)
    return ExperimentResult(
        config=ExperimentConfig(digits=classes, epochs=max(1, epochs - 1), probe_size=m),
        source="sample",
        device="cpu",
        history=records,
        kernels={name: [kernel] * len(records[name]) for name in records},
        target_kernel=kernel,
        probe_labels=labels,
        diverged_at={"slow": None, "regular": diverged_at},
    )


def traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_error_figure_has_test_solid_and_train_dashed_for_both_models():
    fig = figures.error_figure(make_result([0.4, 0.5, 0.6]))
    by_name = traces(fig)
    assert set(by_name) == {"slow test", "slow train", "regular test", "regular train"}
    assert by_name["regular test"].line.dash == "solid" and by_name["regular train"].line.dash == "dash"
    assert list(by_name["regular test"].x) == [0, 1, 2] and list(by_name["regular test"].y) == [21.0, 19.0, 17.0]
    assert by_name["slow test"].line.color != by_name["regular test"].line.color


def test_undefined_alignment_is_a_gap_with_its_reason():
    result = make_result([0.4, None, None, 0.5])
    fig = figures.alignment_figure(result)
    regular = traces(fig)["regular features"]
    assert list(regular.y) == [0.4, None, None, 0.5] and regular.connectgaps is False
    assert figures.undefined_alignment(result, "regular") == ("at epochs 1–2", DEAD)
    assert figures.undefined_alignment(result, "slow") is None
    assert any("regular: ρ undefined at epochs 1–2" in a.text for a in fig.layout.annotations)


def test_non_finite_values_become_gaps_not_spikes():
    result = make_result([0.4, float("nan"), float("inf")])
    assert list(traces(figures.alignment_figure(result))["regular features"].y) == [0.4, None, None]


def test_divergence_is_marked_at_its_epoch():
    result = make_result([0.4, 0.3, 0.05], diverged_at=2)
    for fig in (figures.error_figure(result), figures.alignment_figure(result)):
        markers = [t for t in fig.data if t.name.endswith("diverged")]
        assert markers and all(list(t.x) == [2] and t.marker.symbol == "x" for t in markers)
        assert any(a.text == "regular diverged" for a in fig.layout.annotations)
        assert [s.x0 for s in fig.layout.shapes] == [2]


def test_overlay_gives_each_run_a_colour_and_each_model_a_dash():
    fig = figures.overlay_figure({"a": make_result([0.4, 0.5]), "b": make_result([0.4, 0.45])}, "alignment", "t", "ρ")
    by_name = traces(fig)
    assert set(by_name) == {"a · slow", "a · regular", "b · slow", "b · regular"}
    assert by_name["a · slow"].line.color == by_name["a · regular"].line.color != by_name["b · slow"].line.color
    assert by_name["a · slow"].line.dash == "dot" and by_name["a · regular"].line.dash == "solid"


@pytest.mark.parametrize("m, shown", [(200, 200), (300, 300), (301, 151), (1000, 250)])
def test_block_average_keeps_at_most_display_points(m, shown):
    matrix = np.random.default_rng(0).normal(size=(m, m)).astype(np.float32)
    small, centres = figures.block_average(matrix)
    assert small.shape == (shown, shown) and len(centres) == shown
    block = -(-m // shown)
    assert np.isclose(small[0, 0], matrix[:block, :block].mean(), atol=1e-6)
    assert np.isclose(small[-1, -1], matrix[(shown - 1) * block :, (shown - 1) * block :].mean(), atol=1e-6)
    assert centres[0] == (block - 1) / 2 and centres[-1] == ((shown - 1) * block + m - 1) / 2


def test_kernel_heatmap_is_centred_at_zero_with_class_boundaries():
    labels = np.repeat([0, 1, 2], 4)
    kernel = np.where(labels[:, None] == labels[None, :], 1.0, -0.5).astype(np.float32)
    fig = figures.kernel_figure(kernel, labels, (1, 4, 7), "title")
    heatmap = fig.data[0]
    assert heatmap.type == "heatmap" and heatmap.zmid == 0 and heatmap.zmin == -heatmap.zmax
    assert sorted({s.x0 for s in fig.layout.shapes if s.x0 == s.x1}) == [3.5, 7.5]
    assert list(fig.layout.xaxis.ticktext) == ["1", "4", "7"]
    assert fig.layout.yaxis.autorange == "reversed"


def test_kernel_figures_title_each_with_its_alignment_and_hold_a_diverged_model_at_its_last_epoch():
    result = make_result([0.4, 0.3], diverged_at=1)
    result.history["slow"].append(EpochRecord(2, 10.0, 11.0, 0.4, 0.45))
    result.kernels["slow"].append(result.kernels["slow"][0])
    titles = {name: fig.layout.title.text for name, fig in figures.kernel_figures(result, 2).items()}
    assert titles == {
        "target": "target YYᵀ, ρ = 1",
        "slow": "slow ΦΦᵀ, ρ = 0.450",
        "regular": "regular ΦΦᵀ, ρ = 0.300 (diverged; epoch 1)",
    }


def test_standalone_html_embeds_plotly_and_every_figure():
    page = figures.figures_html(make_result([0.4, 0.5]), "run <one>")
    assert page.startswith("<!DOCTYPE html>") and "run &lt;one&gt;" in page
    assert page.count("Plotly.newPlot") == 6  # errors, alignment, movement, three kernels
    assert 'src="https://cdn.plot.ly' not in page and len(page) > 1_000_000  # plotly.js is inside: works offline


def measured(result, **per_epoch) -> None:
    """Give the regular model's records the lazy-vs-rich measures `per_epoch` (lists over epochs)."""
    result.history["regular"] = [
        dataclasses.replace(r, **{k: v[r.epoch] for k, v in per_epoch.items()}) for r in result.history["regular"]
    ]


def test_alignment_figure_draws_tangent_curves_dashed_over_the_chance_bands():
    result = make_result([0.4, 0.5, 0.6])
    measured(result, tangent_alignment=[0.41, 0.52, 0.63])
    result.alignment_null = {"feature": (0.01, 0.04), "tangent": (0.02, 0.05)}
    by_name = traces(figures.alignment_figure(result))
    assert list(by_name["regular tangent"].y) == [0.41, 0.52, 0.63] and by_name["regular tangent"].line.dash == "dash"
    assert by_name["regular features"].line.dash == "solid"
    band = by_name["chance, feature ρ (95 % of label shuffles)"]
    assert band.fill == "toself" and sorted(set(band.y)) == [0.01, 0.04] and list(band.x) == [0, 2, 2, 0]
    assert "chance, tangent ρ (95 % of label shuffles)" in by_name


def test_alignment_figure_draws_the_infinite_width_kernel_as_a_reference_line():
    result = make_result([0.4, 0.5, 0.6])
    assert not any("Θ∞" in name for name in traces(figures.alignment_figure(result)))  # a run saved before
    result.infinite_width = {"alignment": 0.37, "distance": 0.08, "note": None}
    line = traces(figures.alignment_figure(result))["Θ∞ (width → ∞, both models' start)"]
    assert list(line.x) == [0, 2] and list(line.y) == [0.37, 0.37] and line.line.dash == "dashdot"
    result.infinite_width = {"alignment": None, "distance": None, "note": "no limit"}
    assert not any("Θ∞" in name for name in traces(figures.alignment_figure(result)))


def test_movement_figure_is_on_a_log_axis_and_leaves_out_zeros():
    result = make_result([0.4, 0.5, 0.6])
    measured(
        result, hidden_change=[0.0, 0.01, 0.02], feature_distance=[0.0, 1e-3, 4e-3], tangent_distance=[0.0, 2e-3, 5e-3]
    )
    fig = figures.movement_figure(result)
    by_name = traces(fig)
    assert fig.layout.yaxis.type == "log"
    assert list(by_name["regular hidden weights ‖ΔW‖/‖W₀‖"].y) == [None, 0.01, 0.02]
    assert list(by_name["regular tangent kernel 1 − ρ(Θ, Θ₀)"].y) == [None, 2e-3, 5e-3]
    assert by_name["regular feature kernel 1 − ρ(K, K₀)"].line.dash == "dash"
    assert not any("never moved" in a.text for a in fig.layout.annotations)  # slow: not measured, not 0
    measured(result, hidden_change=[0.0, 0.0, 0.0])
    assert any(
        a.text == "regular: hidden weights never moved (exactly 0)"
        for a in figures.movement_figure(result).layout.annotations
    )


def test_a_run_saved_before_the_measures_says_so_on_the_movement_chart():
    fig = figures.movement_figure(make_result([0.4, 0.5]))
    assert [a.text for a in fig.layout.annotations] == [
        "not measured: this run was saved before kalign measured how far models move"
    ]


def test_change_since_initialisation_puts_both_models_on_one_colour_scale():
    result = make_result([0.4, 0.5])
    labels = result.probe_labels
    base = np.eye(len(labels), dtype=np.float32)
    result.kernels = {
        "slow": [base, base + 0.01],
        "regular": [base, base + np.float32(0.5) * (labels[:, None] == labels)],
    }
    figs = figures.kernel_figures(result, 1, change=True)
    slow, regular = figs["slow"].data[0], figs["regular"].data[0]
    assert slow.zmax == regular.zmax == pytest.approx(0.5) and slow.zmin == -slow.zmax
    assert np.allclose(np.asarray(slow.z), 0.01)
    assert figs["slow"].layout.title.text == "slow K − K₀, distance not measured"
    alone = figures.kernel_figures(result, 1)
    assert alone["slow"].data[0].zmax != alone["regular"].data[0].zmax  # each its own scale otherwise


def test_tangent_kernels_are_titled_with_their_alignment():
    result = make_result([0.4, 0.5])
    measured(result, tangent_alignment=[0.3, 0.35])
    result.history["slow"] = [dataclasses.replace(r, tangent_alignment=0.3) for r in result.history["slow"]]
    result.tangent_kernels = {name: list(stack) for name, stack in result.kernels.items()}
    titles = {n: f.layout.title.text for n, f in figures.kernel_figures(result, 1, kind="tangent").items()}
    assert titles["regular"] == "regular Θ, ρ = 0.350" and titles["slow"] == "slow Θ, ρ = 0.300"


def test_class_block_means_match_a_naive_loop_and_are_printed():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], [3, 4, 5])
    kernel = rng.normal(size=(12, 12)).astype(np.float32)
    means = figures.class_block_means(kernel, labels)
    for a in range(3):
        for b in range(3):
            assert means[a, b] == pytest.approx(kernel[labels == a][:, labels == b].astype(np.float64).mean())
    fig = figures.block_means_figure(means, ["2", "5", "7"], "means")
    assert fig.data[0].texttemplate == "%{z:.3g}" and list(fig.data[0].x) == ["2", "5", "7"]
    assert fig.data[0].zmax == pytest.approx(np.abs(means).max())  # its own scale, by default


def test_machines_figure_sets_each_network_beside_its_kernel_machines():
    result = make_result([0.4, 0.5])
    result.kernel_machine_errors = {
        "slow": {"init": {"feature": 5.0, "tangent": 4.0}, "final": {"feature": 5.0, "tangent": None}},
        "regular": {"init": {"feature": 5.0, "tangent": 4.0}},
    }
    by_name = traces(figures.machines_figure(result))
    assert list(by_name["slow"].y) == ["network", "feature K₀", "feature K (end)", "tangent Θ₀"]
    assert list(by_name["slow"].x) == [20.0, 5.0, 5.0, 4.0]
    assert list(by_name["regular"].y) == ["network", "feature K₀", "tangent Θ₀"]  # still training
    # Horizontal bars, each value at its own bar's end: upright grouped bars printed "7.07.0".
    assert {t.orientation for t in by_name.values()} == {"h"} and by_name["slow"].textposition == "outside"
    assert by_name["slow"].marker.color != by_name["regular"].marker.color  # colour = model by default
    result.infinite_width = {"alignment": 0.3, "distance": 0.1, "note": None, "machine": 3.0}
    by_name = traces(figures.machines_figure(result))
    assert list(by_name["slow"].y)[-1] == "tangent Θ∞ (width → ∞)" and list(by_name["slow"].x)[-1] == 3.0
    by_run = traces(figures.machines_figure(result, color="#123456"))
    assert by_run["slow"].marker.color == by_run["regular"].marker.color == "#123456"
    assert by_run["slow"].marker.pattern.shape == "." and by_run["regular"].marker.pattern.shape == ""


def test_the_class_block_means_of_both_models_changes_share_one_scale():
    result = make_result([0.4, 0.5])
    labels = result.probe_labels
    base = np.eye(len(labels), dtype=np.float32)
    result.kernels = {"slow": [base, base + 0.01], "regular": [base, base + 0.5]}
    shown = figures.shown_kernels(result, 1, change=True)
    changed = {name: fig.data[0] for name, fig in figures.block_means_figures(result, shown, change=True).items()}
    assert changed["slow"].zmax == changed["regular"].zmax == pytest.approx(0.5)
    assert changed["target"].zmax == pytest.approx(
        np.abs(figures.class_block_means(result.target_kernel, labels)).max()
    )
    kernels = figures.shown_kernels(result, 1)
    alone = figures.block_means_figures(result, kernels)
    for name, (matrix, _) in kernels.items():  # each its own scale otherwise
        assert alone[name].data[0].zmax == pytest.approx(np.abs(figures.class_block_means(matrix, labels)).max())
    assert alone["slow"].data[0].zmax != alone["regular"].data[0].zmax


def test_a_lesson_of_several_runs_colours_their_bars_by_run_as_its_curves():
    runs = [make_result([0.4, 0.5]), make_result([0.4, 0.6])]
    for result in runs:
        result.kernel_machine_errors = {
            name: {"init": {"feature": 5.0, "tangent": 4.0}} for name in ("slow", "regular")
        }
    curves, bars = figures.lesson_figures(runs, ["a", "b"], charts=("machines",))
    curve_colors = {t.name: t.line.color for t in curves[0].data}
    for label, chart in zip(["a", "b"], bars):
        assert {t.marker.color for t in chart.data} == {
            curve_colors[f"{label} · slow"],
            curve_colors[f"{label} · regular"],
        }


def _hue_saturation(color: str) -> tuple[float, float]:
    """A "#rrggbb" colour's hue in degrees and its saturation (0 to 1)."""
    import colorsys

    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, saturation, _ = colorsys.rgb_to_hsv(r, g, b)
    return 360 * hue, saturation


def test_runs_are_never_coloured_blue_or_red_the_models_colours_on_the_same_pages():
    """On a page of single-run charts (blue = slow, red = regular) and overlays of several runs, a run's
    colour must not read as a model: runs get colours outside the blue and red families."""
    assert set(figures.MODEL_COLORS.values()) == {"#1f77b4", "#d62728"}
    for color in figures.RUN_COLORS:
        hue, saturation = _hue_saturation(color)
        vivid = saturation > 0.6  # brown (#8c564b) shares red's hue but not its look
        assert not (vivid and (hue >= 330 or hue <= 15)), color  # red
        assert not (vivid and 185 <= hue <= 260), color  # blue
        assert color.lower() not in {"#636efa", "#ef553b", *figures.MODEL_COLORS.values()}
    runs = {str(i): make_result([0.4, 0.5]) for i in range(len(figures.RUN_COLORS) + 1)}
    fig = figures.overlay_figure(runs, "alignment", "t", "ρ")
    assert {t.line.color for t in fig.data} == set(figures.RUN_COLORS)
    assert not {t.line.color for t in fig.data} & set(figures.MODEL_COLORS.values())


def twinned(result: ExperimentResult, gaps) -> ExperimentResult:
    """`result` with the regular model's twin measured: its test error 1 point above the network's
    and the gap as given (None: undefined, with a note)."""
    regular = [
        dataclasses.replace(
            r, linear_test_error=r.test_error + 1, linear_gap=g, linear_note=None if g is not None else "no move"
        )
        for r, g in zip(result.history["regular"], gaps)
    ]
    config = dataclasses.replace(result.config, linearized_twin=True)
    return dataclasses.replace(result, config=config, history={**result.history, "regular": regular})


def test_the_twin_figure_sets_each_network_beside_its_twin_and_the_gap_on_a_log_axis():
    result = twinned(make_result([0.4, 0.5, 0.6, 0.7]), [0.0, 0.2, None, 0.9])
    fig = figures.twin_figure(result)
    drawn = traces(fig)
    assert list(drawn["regular twin"].y) == [22.0, 20.0, 18.0, 16.0]
    assert list(drawn["regular network"].y) == [21.0, 19.0, 17.0, 15.0]
    gap = drawn["regular gap (right)"]
    assert gap.yaxis == "y2" and list(gap.y) == [None, 0.2, None, 0.9]  # 0 and undefined are gaps
    assert gap.customdata[2] == "no move"
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.overlaying == "y"
    assert all(v is None for v in drawn["slow twin"].y)  # no twin measured: nothing drawn
    [row] = figures.lesson_figures([result, result], ["a", "b"], charts=("twin",))[1:]
    assert [f.layout.title.text for f in row] == ["a: networks and their twins", "b: networks and their twins"]
    assert "The network and its linearized twin" in figures.figures_html(result, "t")
