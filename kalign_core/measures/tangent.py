"""The empirical tangent kernel of the one-hidden-layer MLP, in closed form.

f(x) = Aᵀ relu(Wx + b) + c with d hidden units and k outputs. Summed over outputs and over every
parameter (biases included), Σ_o ∇_θ f_o(x) · ∇_θ f_o(x′) splits into
- the readout block k(φ(x)·φ(x′) + 1), from A and c, and
- the hidden block (x·x′ + 1) Σ_j a_j² s_j(x) s_j(x′), from W and b, where s_j = 1[unit j is on]
  and a_j² = Σ_o A_jo².
So Θ = k(ΦΦᵀ + 11ᵀ) + G ⊙ (S diag(a²) Sᵀ) with G = XXᵀ + 11ᵀ: no per-example Jacobians (those would
take m·k·(n + 2)·d numbers). G depends on the points only, so a fixed probe computes it once.

Under the NTK and μP parametrizations W, b, A, c are the effective weights m·θ of trained θ, and the
kernel is over θ: each tensor's term is weighted by its m² (`Scaling.kernel_weights`), so
G = m_W²·XXᵀ + m_b²·11ᵀ and the readout block is k(m_A²·ΦΦᵀ + m_c²·11ᵀ).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import MLP


def input_gram(
    x: torch.Tensor, x_other: torch.Tensor | None = None, weights: tuple[float, ...] = (1.0, 1.0)
) -> torch.Tensor:
    """G = w_W·XX′ᵀ + w_b·11ᵀ (X′ = X by default; `weights` the hidden weight's and bias's kernel
    weights) in X's dtype: the hidden block's factor that depends on the points alone. Stacks of
    point sets (..., m, inputs) give stacks of G."""
    x = x.detach()
    return (x @ (x if x_other is None else x_other.detach()).mT).mul_(weights[0]).add_(weights[1])


def hidden_block(
    pattern: torch.Tensor, readout_weight: torch.Tensor, gram: torch.Tensor, pattern_other: torch.Tensor | None = None
) -> torch.Tensor:
    """G ⊙ (S diag(a²) S′ᵀ) as float64, from the ReLU on/off patterns S = 1[h > 0] (m×d, bool; relu(h)
    > 0 exactly when h > 0, so `features > 0`) of the points x, those of the points x′
    (`pattern_other`, default the same points), the readout weights A (k×d, as nn.Linear holds
    them) and G = XX′ᵀ + 11ᵀ. The product runs in the readout's dtype. Stacks of models (..., m, d
    patterns and ..., k, d readouts, G broadcasting against them) give stacks of blocks."""
    pattern_other = pattern if pattern_other is None else pattern_other
    a_squared = readout_weight.detach().square().sum(dim=-2)
    dtype = a_squared.dtype
    product = (pattern.to(dtype) * a_squared[..., None, :]) @ pattern_other.to(dtype).mT
    return gram.to(torch.float64) * product.to(torch.float64)


def readout_block(
    phi: torch.Tensor, n_outputs: int, phi_other: torch.Tensor | None = None, weights: tuple[float, ...] = (1.0, 1.0)
) -> torch.Tensor:
    """k(w_A·ΦΦ′ᵀ + w_c·11ᵀ) as float64, the product in Φ's dtype; `weights` the readout weight's and
    bias's kernel weights."""
    phi = phi.detach()
    phi_other = phi if phi_other is None else phi_other.detach()
    return n_outputs * ((phi @ phi_other.T).to(torch.float64).mul_(weights[0]).add_(weights[1]))


def tangent_kernel(model: MLP, x, by_layer: bool = False):
    """The empirical tangent kernel of `model` on the points `x` (m×inputs, numpy or torch) as an
    m×m float64 tensor, Σ_outputs Σ_parameters ∂f_o(x_i)/∂θ · ∂f_o(x_j)/∂θ; with `by_layer`, its
    {"hidden": G ⊙ (S diag(a²) Sᵀ), "readout": k(ΦΦᵀ + 11ᵀ)} blocks, which sum to it."""
    hidden, readout = model.features[0], model.readout
    x = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    x64 = x.detach().to(device=hidden.weight.device, dtype=torch.float64)
    with torch.no_grad():
        phi = torch.relu(x64 @ hidden.weight.to(torch.float64).T + hidden.bias.to(torch.float64))
    weights = model.scaling.kernel_weights
    blocks = {
        "hidden": hidden_block(phi > 0, readout.weight.to(torch.float64), input_gram(x64, weights=weights[:2])),
        "readout": readout_block(phi, readout.weight.shape[0], weights=weights[2:]),
    }
    return blocks if by_layer else blocks["hidden"] + blocks["readout"]
