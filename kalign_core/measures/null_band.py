"""A permutation null for the alignment ρ(K, YYᵀ): what ρ looks like when the labels carry no
information about K. Shuffling the probe's labels keeps the class sizes and K; the band is the
central 95 % of ρ(K, P·YYᵀ·Pᵀ) over the shuffles. A ρ above it is structure, not chance (random ReLU
features of pixels already carry class structure at initialisation). The band is chance level, not an
error bar: it says nothing of how far apart two values of ρ may lie by noise.

Stacks of kernels (a block's trials × their feature and tangent kernels) take one batched product.
"""

from __future__ import annotations

import numpy as np
import torch

from .alignment import center_kernel

SHUFFLES = 200
COVERAGE = 0.95


def draw_permutations(m: int, generator: torch.Generator, shuffles: int = SHUFFLES) -> torch.Tensor:
    """`shuffles` random permutations of m points from `generator` (shuffles × m)."""
    return torch.stack([torch.randperm(m, generator=generator) for _ in range(shuffles)])


def shuffled_alignments(kernels, labels, n_classes: int, permutations: torch.Tensor) -> torch.Tensor:
    """ρ(K, P·YYᵀ·Pᵀ) in float64 for each kernel K of a stack (..., m, m) and each permutation P of
    its stack (..., shuffles, m), with its labels (..., m; the stacks broadcast): (..., shuffles).

    With Kc centered, ⟨Kc, (PY)(PY)ᵀ⟩_F = tr((PY_c)ᵀ Kc (PY_c)), and ‖(PYYᵀPᵀ)_c‖_F = ‖YYᵀ_c‖_F
    for any P, so all shuffles of a kernel cost one m×m by m×(k·shuffles) product.
    """
    kc = center_kernel(kernels)
    y = torch.nn.functional.one_hot(torch.as_tensor(labels).long().to(kc.device), n_classes).to(kc)
    y_c = y - y.mean(dim=-2, keepdim=True)  # ..., m, k
    permutations = permutations.to(kc.device)
    # numpy's, not torch's: torch.broadcast_shapes imports sympy on first use (0.3 s in a fresh process).
    batch = np.broadcast_shapes(kc.shape[:-2], y_c.shape[:-2], permutations.shape[:-2])
    shuffles, m = permutations.shape[-2:]
    rows = permutations.expand(*batch, shuffles, m).reshape(*batch, shuffles * m, 1)
    shuffled = y_c.expand(*batch, m, n_classes).gather(-2, rows.expand(*batch, shuffles * m, n_classes))
    shuffled = shuffled.view(*batch, shuffles, m, n_classes).transpose(-3, -2).reshape(*batch, m, -1)
    inner = ((kc @ shuffled) * shuffled).view(*batch, m, shuffles, n_classes).sum(dim=(-3, -1))
    norms = torch.linalg.matrix_norm(kc) * torch.linalg.matrix_norm(y_c.mT @ y_c)
    return inner / norms[..., None]


def null_bands(kernels, labels, n_classes: int, permutations: torch.Tensor) -> torch.Tensor:
    """The central COVERAGE of each kernel's shuffled alignments (see `shuffled_alignments`):
    (..., 2), low and high."""
    values = shuffled_alignments(kernels, labels, n_classes, permutations)
    tail = (1 - COVERAGE) / 2
    levels = torch.tensor([tail, 1 - tail], dtype=values.dtype, device=values.device)
    return torch.quantile(values, levels, dim=-1).movedim(0, -1)
