"""Lazy vs rich measures each epoch: against naive float64 formulas on the exported models, exact
values at initialisation and when the hidden layer is frozen, and Chizat's lazy scale on the sample."""

import numpy as np
import pytest
import torch

from kalign_core import ExperimentConfig, run_experiment, tangent_kernel
from kalign_core.engine.trial import PairTrial
from kalign_core.results import MEASURES, MODEL_NAMES


def naive_alignment(k: torch.Tensor, l: torch.Tensor) -> float:
    """ρ with an explicit centering matrix H, all in float64."""
    m = k.shape[0]
    h = torch.eye(m, dtype=torch.float64) - 1.0 / m
    kc, lc = h @ k @ h, h @ l @ h
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def probe(config, data):
    trial = PairTrial(config, data, torch.device("cpu"))
    return trial.test_x[: config.probe_size].double(), torch.from_numpy(trial.probe_y)


@torch.no_grad()
def test_measures_match_naive_formulas_on_the_exported_models(small_config, sample_89):
    config = small_config(epochs=2, regular_lr=0.1, slow_lr=0.01)
    start = run_experiment(config, sample_89, should_stop=lambda: True).models["regular"]
    result = run_experiment(config, sample_89)
    x, labels = probe(config, sample_89)
    y = torch.nn.functional.one_hot(labels).double()
    theta0 = tangent_kernel(start, x)
    phi0 = torch.relu(start.features(x.float())).double()
    for name in MODEL_NAMES:
        model, record = result.models[name], result.history[name][-1]
        theta = tangent_kernel(model, x)
        phi = torch.relu(model.features(x.float())).double()
        assert record.tangent_alignment == pytest.approx(naive_alignment(theta, y @ y.T), rel=1e-6)
        # The feature kernel is multiplied in float32 (after float64 centering): ρ as float64's to 1e-6.
        assert abs(record.alignment - naive_alignment(phi @ phi.T, y @ y.T)) < 1e-6
        assert record.tangent_distance == pytest.approx(1 - naive_alignment(theta, theta0), rel=1e-4, abs=1e-9)
        assert record.feature_distance == pytest.approx(
            1 - naive_alignment(phi @ phi.T, phi0 @ phi0.T), rel=1e-4, abs=1e-9
        )
        for change, layer in (("hidden_change", "features.0"), ("readout_change", "readout")):
            now, before = (dict(m.named_parameters())[f"{layer}.weight"].double() for m in (model, start))
            assert getattr(record, change) == pytest.approx(float((now - before).norm() / before.norm()), rel=1e-6)
        expected = ((phi > 0) == (phi0 > 0)).double().mean().item()
        assert record.pattern_stability == pytest.approx(expected, abs=1 / phi.numel())
        np.testing.assert_allclose(
            result.tangent_kernels[name][-1],
            (theta - theta.mean(0) - theta.mean(1, keepdim=True) + theta.mean()).numpy(),
            rtol=1e-4,
            atol=1e-4,
        )
    assert result.history["regular"][-1].hidden_change > 3 * result.history["slow"][-1].hidden_change


def test_at_initialisation_the_distances_are_zero_and_the_patterns_all_kept(small_config, sample_89):
    result = run_experiment(small_config(), sample_89)
    for name in MODEL_NAMES:
        first = result.history[name][0]
        assert (first.feature_distance, first.tangent_distance, first.hidden_change, first.readout_change) == (
            0,
            0,
            0,
            0,
        )
        assert first.pattern_stability == 1.0 and first.measure_note is None
        assert 0 < first.tangent_alignment < 1
        assert all(getattr(r, m) is not None for r in result.history[name] for m in MEASURES)


def test_a_frozen_hidden_layer_keeps_its_features_exactly(small_config, sample_89):
    result = run_experiment(small_config(slow_lr=0.0, regular_lr=0.1, epochs=3), sample_89)
    for record in result.history["slow"]:
        assert record.hidden_change == 0.0 and record.pattern_stability == 1.0 and record.feature_distance == 0.0
    last = result.history["slow"][-1]
    assert last.readout_change > 0 and last.tangent_distance > 0  # its readout (and so Θ's weights a²) learn
    assert result.history["regular"][-1].hidden_change > 0


def test_the_lazy_scale_shrinks_weight_changes_tenfold_per_tenfold_at_the_same_error(sample_89):
    """Chizat et al.: training α(f − f₀) on loss/α² moves the weights O(1/α) at the same function speed.
    Measured: regular hidden change 1.3e-2, 1.3e-3, 1.3e-4; test error 5.5, 5.0, 5.0 % at α 1, 10, 100."""
    runs = {
        alpha: run_experiment(
            ExperimentConfig(
                width=256, epochs=3, batch_size=100, probe_size=100, device="cpu", source="sample", lazy_scale=alpha
            ),
            sample_89,
        )
        for alpha in (1.0, 10.0, 100.0)
    }
    last = {alpha: run.history["regular"][-1] for alpha, run in runs.items()}
    for lazier in (10.0, 100.0):
        ratio = last[lazier / 10].hidden_change / last[lazier].hidden_change
        assert 7 < ratio < 13, (lazier, ratio)
        assert last[lazier].tangent_distance < last[lazier / 10].tangent_distance
        assert abs(last[lazier].test_error - last[1.0].test_error) <= 3.0
    assert last[100.0].pattern_stability > 0.999
    for run in runs.values():  # at initialisation the centred model outputs 0: a loss of log k
        assert run.history["regular"][0].loss == pytest.approx(np.log(2), rel=1e-6)
