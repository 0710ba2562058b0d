"""Kernel machines: what a model's kernels are worth, at the start and the end of its training.

Kernel ridge regression on one-hot targets with a model's feature kernel ΦΦᵀ and with its tangent
kernel Θ, fitted on a fixed stratified subset of training digits and scored on held-out ones. A
machine is solved exactly, while the network has trained only as long as it was run: compare the
machine of a final kernel (the "after kernel", Long 2021) with that of the initial one. Theory says a
lazy network trained to convergence approaches its initial tangent kernel's machine (Atanasov,
Bordelon & Pehlevan 2021); kalign's short runs do not test that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .infinite_width import infinite_width_kernel
from .tangent import hidden_block, input_gram

# At most this many training digits fit a machine, and this many held-out digits score it: the three
# machines' kernels then cost about a quarter of a full-MNIST epoch at width 2000, once per run.
MAX_POINTS = 1000
# The ridge λ, relative to the kernel's scale: (K + λ·mean(diag K)·I) β = Y. Small enough to
# interpolate nearly, large enough for a stable float64 solve of a float32-accumulated kernel.
RIDGE = 1e-3
KERNELS = ("feature", "tangent")


@dataclass(frozen=True)
class MachinePoints:
    """The fixed digits the machines see (float32 on the training device), labels as class indices,
    and the tangent kernel's weight of each tensor (the parametrization's, see tangent.py)."""

    fit_x: torch.Tensor
    fit_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    kernel_weights: tuple[float, ...] = (1.0,) * 4

    def grams(self) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.kernel_weights[:2]
        return input_gram(self.fit_x, weights=hidden), input_gram(self.test_x, self.fit_x, weights=hidden)


def choose_points(train_x, train_y, test_x, test_y, n_classes: int, pick, kernel_weights=(1.0,) * 4) -> MachinePoints:
    """Up to MAX_POINTS of each set, classes as equal as the data allow; `pick(labels, size)` returns
    the chosen indices (the trainer's stratified picker, with its own random generator)."""
    fit = pick(train_y.cpu().numpy(), min(MAX_POINTS, len(train_y)))
    test = pick(test_y.cpu().numpy(), min(MAX_POINTS, len(test_y)))
    fit, test = torch.from_numpy(fit).to(train_x.device), torch.from_numpy(test).to(test_x.device)
    return MachinePoints(train_x[fit], train_y[fit], test_x[test], test_y[test], n_classes, kernel_weights)


def machine_errors(points: MachinePoints, hidden_weight, hidden_bias, readout_weight, grams=None) -> dict:
    """Test error % of the ridge machine of each of KERNELS for one model's weights; None where its
    kernel is not finite (a diverged model) or zero (every ReLU dead). `grams`: `points.grams()`,
    when already computed."""
    gram_fit, gram_test = grams if grams is not None else points.grams()
    readout, bias = points.kernel_weights[2:]

    def features(x):
        return torch.addmm(hidden_bias, x, hidden_weight.T).relu_()

    phi_fit, phi_test = features(points.fit_x), features(points.test_x)
    on_fit = phi_fit > 0
    k = points.n_classes
    feature_fit, feature_test = (phi_fit @ phi_fit.T).to(torch.float64), (phi_test @ phi_fit.T).to(torch.float64)
    kernels = {
        "feature": (feature_fit, feature_test),
        # Θ = k(w_A·ΦΦᵀ + w_c·11ᵀ) + G ⊙ (S diag(a²) Sᵀ)
        "tangent": (
            hidden_block(on_fit, readout_weight, gram_fit).add_(feature_fit * readout + bias, alpha=k),
            hidden_block(phi_test > 0, readout_weight, gram_test, on_fit).add_(feature_test * readout + bias, alpha=k),
        ),
    }
    return {name: ridge_error(*pair, points.fit_y, points.test_y, k) for name, pair in kernels.items()}


def infinite_width_machine_error(points: MachinePoints, parametrization: str) -> float | None:
    """Test error % of the ridge machine of the infinite-width tangent kernel Θ∞ (which has no weights:
    it depends on the points and the parametrization alone)."""
    fit_x = points.fit_x.cpu()
    kernels = (
        infinite_width_kernel(fit_x, "ntk", parametrization, points.n_classes),
        infinite_width_kernel(points.test_x.cpu(), "ntk", parametrization, points.n_classes, x_other=fit_x),
    )
    return ridge_error(*map(torch.from_numpy, kernels), points.fit_y.cpu(), points.test_y.cpu(), points.n_classes)


def ridge_error(k_fit: torch.Tensor, k_test: torch.Tensor, fit_y, test_y, n_classes: int) -> float | None:
    """Test error % of kernel ridge regression on one-hot targets (argmax of the predictions)."""
    if not (torch.isfinite(k_fit).all() and torch.isfinite(k_test).all()):
        return None
    targets = torch.nn.functional.one_hot(fit_y.long(), n_classes).to(k_fit)
    ridge = RIDGE * k_fit.diagonal().mean()
    if not ridge > 0:  # a zero kernel (every ReLU dead) has no machine
        return None
    factor, failed = torch.linalg.cholesky_ex(
        k_fit + ridge * torch.eye(len(k_fit), dtype=k_fit.dtype, device=k_fit.device)
    )
    if failed:
        return None
    coefficients = torch.cholesky_solve(targets, factor)
    predicted = (k_test @ coefficients).argmax(dim=1)
    return 100.0 * float((predicted != test_y).to(torch.float64).mean())
