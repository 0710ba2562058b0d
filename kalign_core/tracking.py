"""How far a model has moved from its initialisation, measured on the probe each epoch: the tangent
kernel's alignment with the task, the feature and tangent kernels' distance from their initial
selves, the relative change of each layer's weights and the share of ReLU on/off states kept.

Both models start from the same weights, so one `Initial` serves both. Everything is O(m²d) on the
probe (m points, d hidden units) plus one pass over the weights; G = XXᵀ + 11ᵀ is computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .alignment import AlignmentUndefined, center_kernel, centered_alignment
from .tangent import hidden_block, input_gram


@dataclass
class Snapshot:
    """One model on the probe: its centered feature kernel Φ_cΦ_cᵀ and centered tangent kernel Θ_c
    (float64), its ReLU on/off pattern, and its hidden and readout weight matrices (not copied)."""

    feature_kernel: torch.Tensor
    tangent_kernel: torch.Tensor
    pattern: torch.Tensor
    hidden_weight: torch.Tensor
    readout_weight: torch.Tensor


class Tracker:
    """The probe's fixed parts (G and the target kernel YYᵀ) and the initial model; snapshots and
    measures of the models as they train."""

    def __init__(self, probe_x: torch.Tensor, target: torch.Tensor):
        self.gram = input_gram(probe_x.to(torch.float64))
        target = target.to(probe_x.device)
        self.target = target @ target.T
        self.initial: Snapshot | None = None

    def snapshot(self, phi: torch.Tensor, hidden_weight: torch.Tensor, readout_weight: torch.Tensor) -> Snapshot:
        phi64 = phi.to(torch.float64)
        phi_c = phi64 - phi64.mean(dim=0)
        feature_kernel = phi_c @ phi_c.T
        # Centering removes the readout block's constant: Θ_c = k·Φ_cΦ_cᵀ + (hidden block)_c. The
        # hidden block's product runs in float32 (its rounding moves ρ by about 1e-7).
        hidden = hidden_block(phi, readout_weight, self.gram)
        tangent = center_kernel(hidden).add_(feature_kernel, alpha=readout_weight.shape[0])
        return Snapshot(feature_kernel, tangent, phi > 0, hidden_weight, readout_weight)

    def start(self, initial: Snapshot) -> None:
        """Keep the initial model (its weights copied, since training updates them in place)."""
        self.initial = Snapshot(
            initial.feature_kernel,
            initial.tangent_kernel,
            initial.pattern,
            initial.hidden_weight.clone(),
            initial.readout_weight.clone(),
        )

    def measure(self, now: Snapshot) -> tuple[dict[str, float | None], str | None]:
        """Each of MEASURES for `now` against the initial model, and why any is None (else None)."""
        start, notes = self.initial, []

        def defined(compute, what, kernel):
            try:
                return compute()
            except AlignmentUndefined as undefined:  # its reason calls the kernel "the first kernel"
                notes.append(f"{what}: {undefined.reason.replace('first kernel', kernel)}")
                return None

        values = {
            "tangent_alignment": defined(
                lambda: centered_alignment(now.tangent_kernel, self.target), "tangent alignment", "tangent kernel"
            ),
            "feature_distance": defined(
                lambda: kernel_distance(now.feature_kernel, start.feature_kernel), "feature distance", "feature kernel"
            ),
            "tangent_distance": defined(
                lambda: kernel_distance(now.tangent_kernel, start.tangent_kernel), "tangent distance", "tangent kernel"
            ),
            "hidden_change": relative_change(now.hidden_weight, start.hidden_weight),
            "readout_change": relative_change(now.readout_weight, start.readout_weight),
            "pattern_stability": (now.pattern == start.pattern).to(torch.float64).mean().item(),
        }
        if values["hidden_change"] is None or values["readout_change"] is None:
            notes.append("weight change: the weights are no longer finite numbers")
        return values, "; ".join(notes) or None


def kernel_distance(kernel: torch.Tensor, initial: torch.Tensor) -> float:
    """1 − ρ(K, K₀); exactly 0 for an unchanged kernel (ρ(K, K) may round to 1 − 1e-16)."""
    if torch.equal(kernel, initial):
        if not torch.isfinite(kernel).all():
            raise AlignmentUndefined("the kernel has non-finite entries")
        if not kernel.any():
            raise AlignmentUndefined("the centered kernel is zero (all points look the same to it)")
        return 0.0
    return 1.0 - centered_alignment(kernel, initial)


def relative_change(weight: torch.Tensor, initial: torch.Tensor) -> float | None:
    """‖W − W₀‖_F / ‖W₀‖_F; exactly 0 for unchanged weights. Norms in the weights' dtype (torch sums
    in a cascade, good to about 1e-7 relative; a float64 copy of the hidden layer would triple the
    cost)."""
    ratio = (torch.linalg.vector_norm(weight - initial) / torch.linalg.vector_norm(initial)).item()
    return ratio if math.isfinite(ratio) else None
