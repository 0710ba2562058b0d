"""How far a model has moved from its initialisation, measured on the probe each epoch: the feature
kernel's and the tangent kernel's alignment with the task, both kernels' distance from their initial
selves, the relative change of each layer's weights and the share of ReLU on/off states kept.

A Tracker measures a stack of models at once, trials × models (a run is one trial of two models; the
batched engine stacks a block of trials), so that a block's epoch costs a few batched products and
not a few hundred small ones. The models of a trial start from the same weights, so each trial's
first model at epoch 0 is the initial model of all of them. Everything is O(m²d) on the probe (m
points, d hidden units) plus one pass over the weights; G = XXᵀ + 11ᵀ is computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .alignment import alignment_ratios, center_kernel, frobenius_inner, zero_if_negligible
from .tangent import hidden_block, input_gram

# How a measure is named in a model's measure_note.
_NOTE_NAMES = {
    "tangent_alignment": "tangent alignment",
    "feature_distance": "feature distance",
    "tangent_distance": "tangent distance",
    "hidden_change": "weight change",
    "readout_change": "weight change",
}


@dataclass
class Measured:
    """One model's epoch on the probe: its feature alignment ρ(ΦΦᵀ, YYᵀ) (None and why, where
    undefined), the MEASURES and why any is None, and its centered kernels (float32, for keeping)."""

    alignment: float | None
    alignment_note: str | None
    measures: dict[str, float | None]
    measure_note: str | None
    feature_kernel: np.ndarray
    tangent_kernel: np.ndarray


@dataclass
class _Kernels:
    """A stack of centered kernels (…, m, m, float64) and their Frobenius norms."""

    kernels: torch.Tensor
    norms: torch.Tensor

    @classmethod
    def of(cls, kernels: torch.Tensor) -> _Kernels:
        return cls(kernels, torch.linalg.matrix_norm(kernels))

    def first(self) -> _Kernels:
        """Each trial's first model's kernels (trials × 1)."""
        return _Kernels(self.kernels[:, :1], self.norms[:, :1])

    def alignments(self, other: _Kernels, names: tuple[str, str]) -> list[tuple[float | None, str | None]]:
        return alignment_ratios(frobenius_inner(self.kernels, other.kernels), self.norms, other.norms, names)

    def distances(self, initial: _Kernels, name: str) -> list[tuple[float | None, str | None]]:
        """1 − ρ(K, K₀); exactly 0 for an unchanged kernel (ρ(K, K) may round to 1 − 1e-16)."""
        unchanged = (self.kernels == initial.kernels).flatten(-2).all(dim=-1).flatten().tolist()
        alignments = self.alignments(initial, (name, f"initial {name}"))
        return [
            (None, why) if why else (0.0 if same else 1.0 - rho, None)
            for same, (rho, why) in zip(unchanged, alignments)
        ]


@dataclass
class _Weights:
    """A stack of weight matrices, as the models hold them, and their Frobenius norms."""

    weights: torch.Tensor
    norms: torch.Tensor

    @classmethod
    def copy_of(cls, weights: torch.Tensor) -> _Weights:
        return cls(weights.clone(), _frobenius(weights))

    def relative_changes(self, now: torch.Tensor) -> list[tuple[float | None, str | None]]:
        """‖W − W₀‖_F / ‖W₀‖_F of the stack `now`; exactly 0 for unchanged weights."""
        ratios = _frobenius_of_difference(now, self.weights) / self.norms
        why = "the weights are no longer finite numbers"
        return [(ratio, None) if math.isfinite(ratio) else (None, why) for ratio in ratios.flatten().tolist()]


def _frobenius_of_difference(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """`_frobenius(now - before)`, squaring the difference in place (one pass fewer over a block's
    hidden weights)."""
    return (now - before).square_().sum(dim=(-2, -1)).sqrt()


def _frobenius(weights: torch.Tensor) -> torch.Tensor:
    """Frobenius norms of a stack of matrices, any strides, in their dtype: a sum of squares, which
    torch takes in a cascade in memory order, good to about 1e-7 relative (matrix_norm of a
    transposed stack was 5e-4 off in float32; a float64 copy of the hidden layer costs more)."""
    return weights.square().sum(dim=(-2, -1)).sqrt()


@dataclass
class _Initial:
    """The initial models, trials × 1 (centered kernels, ReLU pattern), and every model's initial
    weights."""

    feature: _Kernels
    tangent: _Kernels
    pattern: torch.Tensor
    hidden: _Weights
    readout: _Weights


class Tracker:
    """The probes' fixed parts, trials × m × inputs points and their m × k one-hot targets: G and the
    centered target kernel; then the initial models, kept at the first `measure`. `kernel_weights`:
    the tangent kernel's weight of each tensor (the parametrization's, see tangent.py)."""

    def __init__(self, probe_x: torch.Tensor, target: torch.Tensor, kernel_weights: tuple[float, ...] = (1.0,) * 4):
        self.gram = input_gram(probe_x.to(torch.float64), weights=kernel_weights[:2])[:, None]  # trials × 1 × m × m
        self.kernel_weights = kernel_weights
        target = target.to(probe_x.device)
        target_c = target - target.mean(dim=-2, keepdim=True)
        self.target = _Kernels.of((target_c @ target_c.mT)[:, None])  # centered YYᵀ, trials × 1 × m × m
        self.initial: _Initial | None = None

    def initial_kernels(self) -> torch.Tensor:
        """Each trial's initial centered feature and tangent kernels, trials × 2 × m × m (float64)."""
        return torch.cat([self.initial.feature.kernels, self.initial.tangent.kernels], dim=1)

    @torch.no_grad()
    def measure(
        self, phi: torch.Tensor, hidden_weight: torch.Tensor, readout_weight: torch.Tensor
    ) -> list[list[Measured]]:
        """Measured per trial and model, for models stacked trials × models: features on the probe
        (…, m, d, after the ReLU), hidden weights (…, d, inputs) and readouts (…, k, d), any strides.
        The first measure is of the initial models."""
        phi = phi.contiguous()  # the batched products below would copy it each
        phi64 = phi.to(torch.float64)
        phi_c = zero_if_negligible(phi64 - phi64.mean(dim=-2, keepdim=True), phi64).to(phi.dtype)
        # Centered in float64 first (so no large means cancel in the product), then multiplied in the
        # features' dtype at twice float64's speed: ρ moves by about 1e-8 (tests/core/test_tracking.py).
        feature = _Kernels.of((phi_c @ phi_c.mT).to(torch.float64))  # centered, as Φ_c is
        # Centering removes the readout block's constant: Θ_c = k·w_A·Φ_cΦ_cᵀ + (hidden block)_c. The
        # hidden block's product runs in float32 (its rounding moves ρ by about 1e-7).
        pattern = phi > 0
        hidden = hidden_block(pattern, readout_weight, self.gram)
        tangent = zero_if_negligible(center_kernel(hidden), hidden).add_(
            feature.kernels, alpha=readout_weight.shape[-2] * self.kernel_weights[2]
        )
        tangent = _Kernels.of(tangent)
        if self.initial is None:
            self.initial = _Initial(
                feature.first(),
                tangent.first(),
                pattern[:, :1],
                _Weights.copy_of(hidden_weight),
                _Weights.copy_of(readout_weight),
            )
        start = self.initial
        alignments = feature.alignments(self.target, ("feature kernel", "target kernel"))
        # Each measure per model as (value, why it is None), in the order their notes are joined.
        columns = {
            "tangent_alignment": tangent.alignments(self.target, ("tangent kernel", "target kernel")),
            "feature_distance": feature.distances(start.feature, "feature kernel"),
            "tangent_distance": tangent.distances(start.tangent, "tangent kernel"),
            "hidden_change": start.hidden.relative_changes(hidden_weight),
            "readout_change": start.readout.relative_changes(readout_weight),
        }
        kept = (pattern == start.pattern).flatten(-2).sum(dim=-1).to(torch.float64) / pattern[0, 0].numel()
        feature_kernels = feature.kernels.to(torch.float32).cpu().numpy()
        tangent_kernels = tangent.kernels.to(torch.float32).cpu().numpy()
        trials, per_trial = phi.shape[:2]
        measured = [[] for _ in range(trials)]
        for index, stability in enumerate(kept.flatten().tolist()):
            trial, model = divmod(index, per_trial)
            reasons = [
                f"{_NOTE_NAMES[name]}: {column[index][1]}" for name, column in columns.items() if column[index][1]
            ]
            alignment, alignment_note = alignments[index]
            measured[trial].append(
                Measured(
                    alignment,
                    alignment_note,
                    {name: column[index][0] for name, column in columns.items()} | {"pattern_stability": stability},
                    "; ".join(dict.fromkeys(reasons)) or None,  # both weight changes share one note
                    feature_kernels[trial, model].copy(),
                    tangent_kernels[trial, model].copy(),
                )
            )
        return measured
