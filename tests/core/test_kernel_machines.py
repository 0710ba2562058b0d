"""Kernel ridge machines with a model's feature and tangent kernels, against a naive float64 solve
on kernels from `tangent_kernel`; what a run records at initialisation and at its end."""

import numpy as np
import pytest
import torch

from kalign_core import MLP, run_experiment, tangent_kernel
from kalign_core.measures.kernel_machines import RIDGE, MachinePoints, machine_errors, ridge_error
from kalign_core.results import MODEL_NAMES


def naive_ridge_error(k_fit, k_test, fit_y, test_y, n_classes) -> float:
    k_fit, k_test = np.asarray(k_fit, np.float64), np.asarray(k_test, np.float64)
    targets = np.eye(n_classes)[fit_y]
    ridge = RIDGE * np.trace(k_fit) / len(k_fit)
    predicted = (k_test @ np.linalg.solve(k_fit + ridge * np.eye(len(k_fit)), targets)).argmax(axis=1)
    return 100.0 * float(np.mean(predicted != test_y))


def test_ridge_error_matches_a_naive_solve():
    r = np.random.default_rng(0)
    x = r.standard_normal((70, 5))
    y = (x[:, 0] + 0.5 * r.standard_normal(70) > 0).astype(int)
    kernel = x @ x.T + 0.1
    got = ridge_error(
        torch.from_numpy(kernel[:50, :50]),
        torch.from_numpy(kernel[50:, :50]),
        torch.from_numpy(y[:50]),
        torch.from_numpy(y[50:]),
        2,
    )
    assert got == naive_ridge_error(kernel[:50, :50], kernel[50:, :50], y[:50], y[50:], 2)
    assert 0 <= got < 50  # better than chance on a noisy linear task


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0])
def test_a_non_finite_or_zero_kernel_has_no_error_rate(value):
    kernel = torch.full((4, 4), value, dtype=torch.float64)
    assert ridge_error(kernel, kernel, torch.zeros(4), torch.zeros(4), 2) is None


@torch.no_grad()
def test_machines_use_the_models_feature_and_tangent_kernels(sample_89):
    torch.manual_seed(1)
    model = MLP(64, 2)
    fit_x, test_x = torch.from_numpy(sample_89.train_x[::8]), torch.from_numpy(sample_89.test_x[::4])
    fit_y, test_y = torch.from_numpy(sample_89.train_y[::8]), torch.from_numpy(sample_89.test_y[::4])
    points = MachinePoints(fit_x, fit_y, test_x, test_y, 2)
    hidden = model.features[0]
    got = machine_errors(points, hidden.weight, hidden.bias, model.readout.weight)
    both = torch.cat([fit_x, test_x])
    n = len(fit_x)
    theta = tangent_kernel(model, both).numpy()
    phi = torch.relu(hidden(both.double().float())).double().numpy()
    features = phi @ phi.T
    expected = {
        "tangent": naive_ridge_error(theta[:n, :n], theta[n:, :n], fit_y.numpy(), test_y.numpy(), 2),
        "feature": naive_ridge_error(features[:n, :n], features[n:, :n], fit_y.numpy(), test_y.numpy(), 2),
    }
    assert got == pytest.approx(expected, abs=100 / len(test_x) + 1e-9)  # one digit may fall either way
    assert got["tangent"] < 15  # 64 random features alone fit 100 digits less well


def test_a_run_records_each_models_machines_at_initialisation_and_at_its_end(small_config, sample_89):
    result = run_experiment(small_config(slow_lr=0.0, regular_lr=0.1, epochs=2), sample_89)
    errors = result.kernel_machine_errors
    assert set(errors) == set(MODEL_NAMES)
    assert errors["slow"]["init"] == errors["regular"]["init"]
    for name in MODEL_NAMES:
        for when in ("init", "final"):
            assert set(errors[name][when]) == {"feature", "tangent"}
            assert all(0 <= e < 25 for e in errors[name][when].values())
    # A frozen hidden layer keeps its feature kernel, so its feature machine cannot change.
    assert errors["slow"]["final"]["feature"] == errors["slow"]["init"]["feature"]
