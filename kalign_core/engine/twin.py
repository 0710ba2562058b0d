"""The linearized twin: each model's first-order Taylor expansion at its start, trained beside it.

g_lin(θ) = g(θ₀) + J₀(θ − θ₀), g what the model trains (f, or α(f − f₀) under a lazy scale). For one
hidden layer, in effective weights (the parametrization's multipliers inside them, see
parametrization.py), the change J₀Δθ has a closed form that stores no Jacobian:

    J₀Δθ(x) = ΔA·φ₀(x) + A₀·(S₀(x) ⊙ (ΔW·x + Δb)) + Δc,

with φ₀ the initial hidden features and S₀ their ReLU on/off pattern (0 at a pre-activation of 0,
as autograd takes it). g_lin is linear in Δθ, so its SGD gradient is J₀ᵀ·∂L/∂g, again in closed
form. The twin keeps φ₀ of every training and test digit (its S₀ is φ₀ > 0), so that a step costs
what the network's step costs: one product with the inputs forward and one for the update.

Tensors follow TrialBlock's layout: a trial axis first, both models side by side (Δθ starts at
exactly 0, so the twin's change is exactly 0 before training).
"""

from __future__ import annotations

import math

import torch


def linear_change(phi0, x, a0, dw_t, db, da, dc) -> torch.Tensor:
    """J₀Δθ on x (T × rows × inputs) for both models: T × 2 × rows × k. phi0 the initial features
    of x (T × rows × w), a0 the initial readout (T × k × w), dw_t the hidden change stored inputs ×
    units (T × inputs × 2w), db (T × 2w), da (T × 2 × k × w), dc (T × 2 × k)."""
    w = phi0.shape[2]
    masked = on_pattern(torch.baddbmm(db[:, None], x, dw_t), phi0)  # S₀ ⊙ (ΔW·x + Δb), T × rows × 2w
    return torch.stack(
        [
            torch.baddbmm(dc[:, m, None], phi0, da[:, m].transpose(1, 2)).baddbmm_(
                masked[:, :, m * w : (m + 1) * w], a0.transpose(1, 2)
            )
            for m in (0, 1)
        ],
        dim=1,
    )


def on_pattern(values: torch.Tensor, phi0: torch.Tensor) -> torch.Tensor:
    """`values` (T × rows × 2w, both models' units) zeroed, in place, where the initial unit was off
    (φ₀, T × rows × w, broadcast over the two models)."""
    t, rows, w = phi0.shape
    both = values.view(t, rows, 2, w)
    torch.ops.aten.threshold_backward.grad_input(both, phi0[:, :, None], 0.0, grad_input=both)
    return values


class LinearTwin:
    """Both models' twins of every trial in a block: their changes Δθ from the start, the initial
    readout A₀ and the initial features φ₀ of each trial's training and test digits."""

    def __init__(self, readout: torch.Tensor, n_inputs: int, train_features: torch.Tensor, test_features: torch.Tensor):
        """`readout` A₀ (T × k × w); `train_features` and `test_features` φ₀ (T × n × w) in the
        order the block holds each trial's digits."""
        t, k, w = readout.shape
        self.a0 = readout
        self.train_features, self.test_features = train_features, test_features
        self.dw_t = readout.new_zeros(t, n_inputs, 2 * w)
        self.db = readout.new_zeros(t, 2 * w)
        self.da = readout.new_zeros(t, 2, k, w)
        self.dc = readout.new_zeros(t, 2, k)

    def change(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """J₀Δθ on x (T × rows × inputs) whose initial features are `features`: T × 2 × rows × k."""
        return linear_change(features, x, self.a0, self.dw_t, self.db, self.da, self.dc)

    def batch_features(self, order: torch.Tensor) -> torch.Tensor:
        """φ₀ of each trial's batch, `order` its rows in the trial's own training set (T × batch)."""
        t, n, w = self.train_features.shape
        rows = (order + torch.arange(t, device=order.device)[:, None] * n).flatten()
        # Whole rows by index_select: ten times faster than gather with an index per element.
        return self.train_features.view(t * n, w).index_select(0, rows).view(t, -1, w)

    def step(self, x, features, d_outputs, hidden_lr, readout_lr, hidden_bias_ratio, readout_bias_ratio) -> None:
        """One SGD step of every twin on its batch x (T × batch × inputs, initial features
        `features`), from ∂L/∂f_lin (T × 2 × batch × k) and the block's rates, as the network steps:
        the gradient J₀ᵀ·∂L/∂f_lin in closed form."""
        t, _, batch, k = d_outputs.shape
        # Both models' twins share A₀, so one product gives their hidden gradients side by side: rows
        # (digit, model) of ∂L/∂f times A₀ are T × batch × 2w as the weights hold them.
        scaled = (d_outputs * hidden_lr).transpose(1, 2).reshape(t, batch * 2, k)
        grad = on_pattern(torch.bmm(scaled, self.a0).view(t, batch, -1), features)
        step_out = d_outputs * readout_lr
        for m in (0, 1):
            self.da[:, m].baddbmm_(step_out[:, m].transpose(1, 2), features, alpha=-1.0)
        self.dc.sub_(step_out.sum(dim=2), alpha=readout_bias_ratio)
        self.dw_t.baddbmm_(x.transpose(1, 2), grad, alpha=-1.0)
        self.db.sub_(grad.sum(dim=1), alpha=hidden_bias_ratio)


class TwinScores:
    """The twins' test errors and each network's gap from its twin, ‖g − g_lin‖_F / ‖g_lin − g₀‖_F
    over a test set, summed chunk by chunk in float64. The scale α cancels: the gap is
    ‖(f − f₀) − J₀Δθ‖_F / ‖J₀Δθ‖_F."""

    def __init__(self, trials: int, device: torch.device):
        self.errors, self.misfit, self.moved = (
            torch.zeros(trials, 2, dtype=torch.float64, device=device) for _ in range(3)
        )
        self.rows = 0

    def add(self, change: torch.Tensor, network_change: torch.Tensor, twin_outputs: torch.Tensor, y) -> None:
        """One chunk: the twins' J₀Δθ, the networks' f − f₀ and the twins' outputs g_lin (each T ×
        2 × rows × k), and the labels (T × rows)."""
        self.errors += (twin_outputs.argmax(dim=3) != y[:, None]).sum(dim=2)
        self.misfit += (network_change - change).double().square().sum(dim=(2, 3))
        self.moved += change.double().square().sum(dim=(2, 3))
        self.rows += y.shape[1]

    def results(self) -> list[dict[int, tuple[float | None, float | None, str | None]]]:
        """Per trial, {model: (twin's test error %, gap, why either is None)}."""
        errors, misfit, moved = (100.0 * self.errors / self.rows).tolist(), self.misfit.tolist(), self.moved.tolist()
        return [{m: _scored(errors[p][m], misfit[p][m], moved[p][m]) for m in (0, 1)} for p in range(len(errors))]


def _scored(error: float, misfit: float, moved: float) -> tuple[float | None, float | None, str | None]:
    if not (math.isfinite(misfit) and math.isfinite(moved)):
        return None, None, "the network's or its linearized twin's outputs are no longer finite"
    if moved == 0.0:
        return error, None, "the linearized twin has not moved from the start, so the gap is 0/0"
    return error, math.sqrt(misfit / moved), None
