"""A permutation null for the alignment ρ(K, YYᵀ): what ρ looks like when the labels carry no
information about K. Shuffling the probe's labels keeps the class sizes and K; the band is the
central 95 % of ρ(K, P·YYᵀ·Pᵀ) over the shuffles. A ρ above it is structure, not chance (random ReLU
features of pixels already carry class structure at initialisation), and a difference between two
ρ smaller than the band's width is within noise.
"""

from __future__ import annotations

import torch

from .alignment import center_kernel

SHUFFLES = 200
COVERAGE = 0.95


def shuffled_alignments(
    kernel, labels, n_classes: int, generator: torch.Generator, shuffles: int = SHUFFLES
) -> torch.Tensor:
    """ρ(K, P·YYᵀ·Pᵀ) for `shuffles` random permutations P drawn from `generator`, in float64.

    With Kc centered, ⟨Kc, (PY)(PY)ᵀ⟩_F = tr((PY_c)ᵀ Kc (PY_c)), and ‖(PYYᵀPᵀ)_c‖_F = ‖YYᵀ_c‖_F
    for any P, so all shuffles cost one m×m by m×(k·shuffles) product.
    """
    kc = center_kernel(kernel)
    y = torch.nn.functional.one_hot(torch.as_tensor(labels).long().cpu(), n_classes).to(kc)
    y_c = y - y.mean(dim=0)
    m = len(y_c)
    permutations = torch.stack([torch.randperm(m, generator=generator) for _ in range(shuffles)])
    shuffled = y_c[permutations.to(kc.device)].permute(1, 0, 2).reshape(m, -1)  # m × (shuffles·k)
    inner = ((kc @ shuffled) * shuffled).reshape(m, shuffles, n_classes).sum(dim=(0, 2))
    return inner / (kc.norm() * (y_c.T @ y_c).norm())


def null_band(kernel, labels, n_classes: int, generator: torch.Generator) -> tuple[float, float]:
    """The central COVERAGE of the shuffled alignments: (low, high)."""
    values = shuffled_alignments(kernel, labels, n_classes, generator)
    tail = (1 - COVERAGE) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype, device=values.device))
    return float(low), float(high)
