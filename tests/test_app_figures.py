"""Plotly figures: points match epochs, undefined alignment is a gap, divergence is marked, kernels
are block-averaged with class boundaries and a colour scale centred at 0."""

import numpy as np
import pytest

from kalign_core import ExperimentConfig, figures
from kalign_core.training import EpochRecord, ExperimentResult

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
    regular = traces(fig)["regular"]
    assert list(regular.y) == [0.4, None, None, 0.5] and regular.connectgaps is False
    assert figures.undefined_alignment(result, "regular") == ("at epochs 1–2", DEAD)
    assert figures.undefined_alignment(result, "slow") is None
    assert any("regular: ρ undefined at epochs 1–2" in a.text for a in fig.layout.annotations)


def test_non_finite_values_become_gaps_not_spikes():
    result = make_result([0.4, float("nan"), float("inf")])
    assert list(traces(figures.alignment_figure(result))["regular"].y) == [0.4, None, None]


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
        "target": "target YYᵀ · ρ = 1",
        "slow": "slow φφᵀ · ρ = 0.450",
        "regular": "regular φφᵀ · ρ = 0.300 (diverged; epoch 1)",
    }


def test_standalone_html_embeds_plotly_and_every_figure():
    page = figures.figures_html(make_result([0.4, 0.5]), "run <one>")
    assert page.startswith("<!DOCTYPE html>") and "run &lt;one&gt;" in page
    assert page.count("Plotly.newPlot") == 5  # errors, alignment, three kernels
    assert 'src="https://cdn.plot.ly' not in page and len(page) > 1_000_000  # plotly.js is inside: works offline
