"""How a network's weights scale with its width: PyTorch's standard parametrization, the NTK
parametrization (Jacot et al. 2018; neural-tangents' `stax.Dense(parameterization="ntk")`) and μP, the
maximal-update parametrization for SGD (Yang & Hu 2021; Microsoft's mup), which for one hidden layer
is the mean-field scaling.

With d inputs, n hidden units and W, b, A, c the trained parameters:
- "ntk":  f(x) = (σ_a/√n)·A·relu((σ_w/√d)·W·x + σ_b·b) + σ_c·c, W, b, A, c ~ N(0, 1), every learning
  rate as configured, whatever the width;
- "mup":  the readout multiplier is σ_a·√n₀/n instead of σ_a/√n, and the learning rates of the
  width-sized tensors (W, b, A) are multiplied by n/n₀; at the base width n = n₀ it is the NTK network,
  so a learning rate tuned there carries over to every width;
- "standard": nn.Linear's own init, U(±1/√fan_in), no multipliers.

kalign trains every network in its *effective* weights (W_eff = (σ_w/√d)·W, and so on), which give
the same function. Gradient descent on W moves W_eff by multiplier² times the step it would take on
W_eff itself, so each tensor's learning rate is multiplied by its multiplier² (and μP's width factor):
the same training, in exact arithmetic, as the parametrization written out. The tangent kernel
Σ ∂f/∂θ·∂f/∂θ′ is over the trained θ: each tensor's block is weighted by its multiplier².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PARAMETRIZATIONS = ("standard", "ntk", "mup")
# The standard deviations of the NTK and μP networks: the hidden layer's (σ_w, σ_b) and the
# readout's (σ_a, σ_c).
SIGMA_W, SIGMA_B, SIGMA_A, SIGMA_C = 1.0, 0.1, 1.0, 0.1
# μP's base width n₀, where it is the NTK network.
MUP_BASE_WIDTH = 256
# Every tuple here follows the order hidden weight, hidden bias, readout weight, readout bias (the
# order initialisation draws them in).


# What each parametrization is, for people: what it scales, and what theory expects of it.
DESCRIPTIONS = {
    "standard": "PyTorch's default: nn.Linear's init U(±1/√fan-in) and the learning rates as set, at every width.",
    "ntk": "NTK parametrization: N(0, 1) weights behind multipliers σ_w/√784 (hidden) and σ_a/√width (readout), "
    "the learning rates as set at every width. Theory: the hidden weights move like width^−½, so wide networks "
    "train lazily.",
    "mup": f"μP (mean-field): the NTK network at width {MUP_BASE_WIDTH}; at other widths the readout's multiplier "
    f"is σ_a·√{MUP_BASE_WIDTH}/width and the learning rates of the hidden weights, hidden biases and readout "
    f"weights are × width/{MUP_BASE_WIDTH}. Theory: features keep moving at every width, and a learning rate "
    f"that trains at width {MUP_BASE_WIDTH} trains at all.",
}


@dataclass(frozen=True)
class Scaling:
    """One network's parametrization at its width: each tensor's multiplier (effective = multiplier ×
    trained) and learning-rate factor, in that order; `normal` says whether the trained
    parameters start as N(0, 1) (else nn.Linear's init, for the standard parametrization)."""

    multipliers: tuple[float, float, float, float]
    rate_factors: tuple[float, float, float, float]
    normal: bool

    @property
    def rates(self) -> tuple[float, float, float, float]:
        """What each tensor's configured learning rate is multiplied by, in effective weights."""
        return tuple(factor * m * m for factor, m in zip(self.rate_factors, self.multipliers))

    @property
    def kernel_weights(self) -> tuple[float, float, float, float]:
        """Each tensor's weight in the tangent kernel over the trained parameters: multiplier²."""
        return tuple(m * m for m in self.multipliers)


def scaling(parametrization: str, width: int, inputs: int) -> Scaling:
    """The Scaling of a `parametrization` network with `width` hidden units and `inputs` inputs."""
    if parametrization == "standard":
        return Scaling((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0), normal=False)
    hidden = (SIGMA_W / math.sqrt(inputs), SIGMA_B)
    if parametrization == "ntk":
        return Scaling((*hidden, SIGMA_A / math.sqrt(width), SIGMA_C), (1.0, 1.0, 1.0, 1.0), normal=True)
    if parametrization == "mup":
        wider = width / MUP_BASE_WIDTH
        readout = SIGMA_A * math.sqrt(MUP_BASE_WIDTH) / width
        return Scaling((*hidden, readout, SIGMA_C), (wider, wider, wider, 1.0), normal=True)
    raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)} (got {parametrization!r})")
