"""The infinite-width kernels against a numerical integration over Gaussian pre-activations (no
network, no arc-cosine formula) and against wide networks at initialisation."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from test_kernel_machines import naive_ridge_error

from kalign_core import (
    ConfigError,
    ExperimentConfig,
    infinite_width_kernel,
    initial_model,
    run_experiment,
    tangent_kernel,
)
from kalign_core.engine.trial import stratified_probe
from kalign_core.lessons import find_lesson
from kalign_core.measures.alignment import centered_alignment, one_hot
from kalign_core.measures.infinite_width import MAX_POINTS, distance_to_limit
from kalign_core.measures.kernel_machines import MachinePoints, infinite_width_machine_error
from kalign_core.parametrization import SIGMA_A, SIGMA_B, SIGMA_C, SIGMA_W
from kalign_core.runs import load_run
from kalign_core.runs.record import result_from_json, result_to_json
from kalign_core.sweep.options import SweepOptions
from kalign_core.sweep.runner import run_sweep
from kalign_core.sweep.spec import SweepSpec
from kalign_core.sweep.width_lab import LAB_MEASURES, width_lines


def gaussian_expectations(q: float, q_other: float, covariance: float) -> tuple[float, float]:
    """E[relu(u)·relu(v)] and P(u > 0, v > 0) for (u, v) centred Gaussian with these variances and
    covariance, by integrating over the two standard normals z₁, z₂ with u = √q·z₁ and
    v = √q′·(c·z₁ + √(1 − c²)·z₂), over the region where both are positive."""
    c = covariance / math.sqrt(q * q_other)
    s = math.sqrt(max(0.0, 1 - c * c))
    if s < 1e-6:  # the same direction: v = √q′·z₁
        return math.sqrt(q * q_other) / 2, 0.5
    density = lambda z2, z1: math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)  # noqa: E731
    v = lambda z2, z1: math.sqrt(q_other) * (c * z1 + s * z2)  # noqa: E731
    v_positive_from = lambda z1: -c * z1 / s  # noqa: E731
    tolerance = dict(epsabs=1e-12, epsrel=1e-10)
    product = integrate.dblquad(
        lambda z2, z1: math.sqrt(q) * z1 * v(z2, z1) * density(z2, z1), 0, 12, v_positive_from, 12, **tolerance
    )[0]
    both_on = integrate.dblquad(density, 0, 12, v_positive_from, 12, **tolerance)[0]
    return product, both_on


def reference(x: np.ndarray, kind: str, outputs: int, variances) -> np.ndarray:
    v_w, v_b, v_a, v_c = variances
    m = len(x)
    kernel = np.zeros((m, m))
    for i in range(m):
        for j in range(i, m):
            covariance = v_w * float(x[i] @ x[j]) + v_b
            q, q_other = v_w * float(x[i] @ x[i]) + v_b, v_w * float(x[j] @ x[j]) + v_b
            features, both_on = gaussian_expectations(q, q_other, covariance)
            per_output = features + (covariance * both_on if kind == "ntk" else 0.0)
            kernel[i, j] = kernel[j, i] = outputs * (v_a * per_output + v_c)
    return kernel


@pytest.fixture(scope="module")
def points(sample_89):
    """Held-out digits of both classes (the test split)."""
    return np.concatenate([sample_89.test_x[sample_89.test_y == c][:12] for c in (0, 1)]).astype(np.float64)


@pytest.mark.parametrize(
    "kind, parametrization, variances",
    [
        ("ntk", "ntk", (SIGMA_W**2 / 784, SIGMA_B**2, SIGMA_A**2, SIGMA_C**2)),
        ("nngp", "ntk", (SIGMA_W**2 / 784, SIGMA_B**2, SIGMA_A**2, SIGMA_C**2)),
        ("nngp", "standard", (1 / (3 * 784), 1 / (3 * 784), 1 / 3, 0.0)),
    ],
)
def test_the_closed_form_is_the_integral_over_gaussian_pre_activations(points, kind, parametrization, variances):
    x = points[[0, 1, 12, 13]]
    got = infinite_width_kernel(x, kind, parametrization, n_outputs=3)
    expected = reference(x, kind, 3, variances)
    assert got.dtype == np.float64 and got.shape == (4, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_mup_has_the_ntk_limits(points):
    for kind in ("ntk", "nngp"):
        np.testing.assert_array_equal(infinite_width_kernel(points, kind, "mup"), infinite_width_kernel(points, kind))


def test_against_other_points_it_is_the_cross_kernel(points):
    full = infinite_width_kernel(points, n_outputs=2)
    np.testing.assert_allclose(infinite_width_kernel(points[:5], x_other=points[5:]), full[:5, 5:], rtol=1e-12)


def relative_distance(kernel, limit) -> float:
    return float(np.linalg.norm(kernel - limit) / np.linalg.norm(limit))


@pytest.mark.parametrize("parametrization", ["ntk", "mup"])
def test_a_width_32768_network_is_within_5_percent_of_the_limit(points, parametrization):
    config = ExperimentConfig(digits=(8, 9), width=32_768, parametrization=parametrization)
    model = initial_model(config).to(torch.float64)
    x = points[:20]
    blocks = tangent_kernel(model, x, by_layer=True)
    theta = (blocks["hidden"] + blocks["readout"]).numpy()
    limit = infinite_width_kernel(x, parametrization=parametrization)
    if parametrization == "ntk":
        assert relative_distance(theta, limit) < 0.05
        # The output covariance over the readout's draws, given the hidden layer: k·(σ_a²/n·ΦΦᵀ + σ_c²),
        # the readout block.
        assert relative_distance(blocks["readout"].numpy(), infinite_width_kernel(x, "nngp")) < 0.05
    # μP's kernel shrinks towards a constant; centered alignment, blind to both, sees it approach Θ∞.
    assert distance_to_limit(theta, limit) < 0.05


def test_the_standard_output_covariance_is_within_5_percent_at_width_32768(points):
    model = initial_model(ExperimentConfig(width=32_768, parametrization="standard")).to(torch.float64)
    x = torch.from_numpy(points[:20])
    with torch.no_grad():
        phi = model.features(x)
    # Readout weights and bias U(±1/√n): variance 1/(3n) each, for each of the 2 outputs.
    covariance = 2 * (phi @ phi.T + 1).numpy() / (3 * model.readout.in_features)
    assert relative_distance(covariance, infinite_width_kernel(points[:20], "nngp", "standard")) < 0.05


def test_the_distance_to_the_limit_shrinks_like_the_root_of_width(points):
    widths = (512, 2048, 8192)
    limit = infinite_width_kernel(points)
    relative, centered = [], []
    for width in widths:
        kernels = [
            tangent_kernel(initial_model(ExperimentConfig(width=width, parametrization="ntk", seed=seed)), points)
            for seed in range(4)
        ]
        relative.append(np.mean([relative_distance(k.numpy(), limit) for k in kernels]))
        centered.append(np.mean([distance_to_limit(k, limit) for k in kernels]))
    for distances in (relative, centered):
        slope = np.polyfit(np.log(widths), np.log(distances), 1)[0]
        assert -0.75 <= slope <= -0.3, (distances, slope)


def test_the_distance_is_the_root_of_twice_one_minus_the_alignment(points):
    limit = infinite_width_kernel(points)
    kernel = tangent_kernel(initial_model(ExperimentConfig(width=64, parametrization="ntk")), points)
    rho = centered_alignment(kernel, limit)
    assert distance_to_limit(kernel, limit) == pytest.approx(math.sqrt(2 * (1 - rho)), rel=1e-12)
    assert distance_to_limit(3 * limit + 5, limit) == pytest.approx(0.0, abs=1e-6)
    assert distance_to_limit(np.ones((4, 4)), limit[:4, :4]) is None  # a constant kernel: ρ undefined


@pytest.mark.parametrize(
    "arguments, field, words",
    [
        (dict(kind="ntk", parametrization="standard"), "parametrization", "grows in proportion to the width"),
        (dict(kind="gp"), "kind", "must be one of ntk, nngp (got 'gp')"),
        (dict(parametrization="sp"), "parametrization", "must be one of standard, ntk, mup (got 'sp')"),
        (dict(n_outputs=0), "n_outputs", "at least 1"),
    ],
)
def test_bad_settings_are_config_errors_naming_them(points, arguments, field, words):
    with pytest.raises(ConfigError) as error:
        infinite_width_kernel(points, **arguments)
    assert error.value.fields == (field,) and words in str(error.value)


def test_more_points_than_the_limit_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as error:
        infinite_width_kernel(np.zeros((MAX_POINTS + 1, 3)))
    assert error.value.fields == ("x",) and f"at most {MAX_POINTS:,}" in str(error.value)
    assert "the points" in error.value.describe({"x": "the points"})


def probe_points(config, data) -> np.ndarray:
    """The run's probe digits, drawn as the run draws them: after the initial weights, from one generator."""
    generator = torch.Generator().manual_seed(config.seed)
    initial_model(config, generator=generator)
    return data.test_x[stratified_probe(data.test_y, config.probe_size, 2, generator)].astype(np.float64)


@pytest.mark.parametrize("parametrization", ["ntk", "mup"])
def test_a_run_measures_its_limit_on_the_probe(small_config, sample_89, parametrization):
    config = small_config(width=256, parametrization=parametrization)
    result = run_experiment(config, sample_89)
    x = probe_points(config, sample_89)
    limit = infinite_width_kernel(x, parametrization=parametrization)
    target = one_hot(result.probe_labels).numpy()
    measured = result.infinite_width
    assert measured["note"] is None
    assert measured["alignment"] == pytest.approx(centered_alignment(limit, target @ target.T), 1e-6)
    initial = tangent_kernel(initial_model(config), x)
    assert measured["distance"] == pytest.approx(distance_to_limit(initial, limit), rel=1e-3)
    assert 0 <= measured["machine"] < 25
    assert result_from_json(result_to_json(result)).infinite_width == measured


def test_a_standard_run_says_why_it_has_no_limit(small_config, sample_89):
    measured = run_experiment(small_config(), sample_89).infinite_width
    assert measured["alignment"] is None and measured["distance"] is None and "machine" not in measured
    assert "grows in proportion to the width" in measured["note"]


def test_the_limits_machine_is_a_ridge_solve_with_the_limit(sample_89):
    fit_x, test_x = torch.from_numpy(sample_89.train_x[::8]), torch.from_numpy(sample_89.test_x[::4])
    fit_y, test_y = torch.from_numpy(sample_89.train_y[::8]), torch.from_numpy(sample_89.test_y[::4])
    got = infinite_width_machine_error(MachinePoints(fit_x, fit_y, test_x, test_y, 2), "ntk")
    limit = infinite_width_kernel(torch.cat([fit_x, test_x]))
    n = len(fit_x)
    expected = naive_ridge_error(limit[:n, :n], limit[n:, :n], fit_y.numpy(), test_y.numpy(), 2)
    assert got == pytest.approx(expected, abs=100 / len(test_x) + 1e-9)  # one digit may fall either way


def test_the_width_lab_draws_the_distance_against_width_with_its_slope(tmp_path):
    base = ExperimentConfig(epochs=1, batch_size=200, probe_size=40, source="sample", device="cpu")
    spec = SweepSpec(base, ((3, 5),), widths=(128, 512, 2048), seeds=(0, 1), parametrizations=("standard", "ntk"))
    summaries = run_sweep(spec, tmp_path, SweepOptions(threads_per_trial=1)).summaries
    for summary in summaries:
        measured = load_run(tmp_path / summary.trial_id).infinite_width["distance"]
        assert summary.infinite_width_distance_init == measured
        assert (measured is None) == (summary.parametrization == "standard")
    (line,) = width_lines(summaries, LAB_MEASURES["infinite_width_distance"])  # standard has no Θ∞: no line
    assert (line.parametrization, line.model, line.widths, line.seeds) == ("ntk", "init", [128, 512, 2048], [2, 2, 2])
    assert -0.75 <= line.slope <= -0.3


def test_the_lessons_claims_hold_on_the_sample_and_follow_the_runs():
    lesson = find_lesson("infinite-width")
    results = [run_experiment(config) for config in lesson.configs_on("sample", "cpu")]
    expectations = lesson.expectations(results)
    assert [e.passed for e in expectations] == [True] * 3, [(e.text, e.value) for e in expectations]
    distances = [r.infinite_width["distance"] for r in results]
    assert f"width 4096 {distances[-1]:.3f}" in expectations[0].value
    # The same runs in reverse order of distance: the narrow run now starts closest, and every claim
    # about approaching Θ∞ fails.
    reversed_ = [
        dataclasses.replace(r, infinite_width=other.infinite_width) for r, other in zip(results, results[::-1])
    ]
    assert [e.passed for e in lesson.expectations(reversed_)][:2] == [False, False]
    shifted = dataclasses.replace(results[-1], infinite_width={**results[-1].infinite_width, "alignment": 0.9})
    assert not lesson.expectations([*results[:-1], shifted])[2].passed
