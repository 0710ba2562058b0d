"""The infinite-width kernels of the one-hidden-layer ReLU network, in closed form: what the tangent
kernel at initialisation (kind "ntk", Θ∞) and the outputs' covariance at initialisation (kind
"nngp") tend to as the width grows, from the arc-cosine kernel of degree 1 and 0 (Cho & Saul 2009).

With K₁(x, x′) = v_W·x·x′ + v_b, the covariance of a hidden unit's pre-activations at x and x′, q = K₁(x, x),
q′ = K₁(x′, x′) and θ = arccos(K₁ / √(qq′)):
    E[φφ′] = √(qq′)/(2π)·(sin θ + (π − θ) cos θ),   E[ṡṡ′] = (π − θ)/(2π)  (s = 1[unit on]),
and per output NNGP = v_A·E[φφ′] + v_c and Θ∞ = v_A·(E[φφ′] + K₁·E[ṡṡ′]) + v_c, summed over the outputs
(× k) as `tangent_kernel` sums them. v_W, v_b, v_A, v_c: the variances, per input and per hidden unit, of
the parametrization's effective weights.

- "ntk": (σ_w², σ_b², σ_a², σ_c²) with v_W = σ_w²/d. A width-n network's Θ and output covariance are
  unbiased estimates of these at every width, off by fluctuations that shrink like n^−½.
- "mup": the readout multiplier σ_a·√n₀/n makes the W, b and A terms of the tangent kernel (weighted by
  multiplier², as `tangent_kernel` weights them) and of the output covariance shrink like n₀/n: taken
  as they are, both tend to the constant k·σ_c²·11ᵀ. kalign scales them by μP's own learning-rate
  factor n/n₀ (the kernel that drives μP's gradient descent in function space), which gives the NTK
  parametrization's limits. Centered alignment ignores scale and constants, so ρ(Θ, YYᵀ) and the
  distance to Θ∞ of a μP network are the same with and without that factor; at initialisation they
  equal those of the NTK network with the same seed.
- "standard" (nn.Linear's U(±1/√fan-in), variance 1/(3·fan-in)): the readout block of the tangent kernel
  is a sum over the n units with nothing dividing it, so Θ grows in proportion to the width and has no
  finite limit (a ConfigError). Its output covariance does: v_W = v_b = 1/(3d), v_A = 1/3, v_c = 0.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ConfigError, ExperimentConfig, got
from ..parametrization import PARAMETRIZATIONS, SIGMA_A, SIGMA_B, SIGMA_C, SIGMA_W
from .alignment import AlignmentUndefined, centered_alignment

KINDS = ("ntk", "nngp")
# Each m×m′ float64 array takes 8·m·m′ bytes and the formula holds about six at once: at this many
# points on either side, about 1.2 GB.
MAX_POINTS = 5_000
# The outputs a run's network has by default: one per digit of the default config.
DEFAULT_OUTPUTS = len(ExperimentConfig().digits)
# nn.Linear's U(±1/√fan-in) has variance 1/(3·fan-in).
UNIFORM_VARIANCE = 1.0 / 3.0
# Why the standard parametrization has no Θ∞, for a run's note and the ConfigError alike.
NO_LIMIT = (
    "under PyTorch's init the tangent kernel's readout block sums the hidden units' features with nothing "
    "dividing them, so it grows in proportion to the width"
)


def infinite_width_kernel(
    x, kind: str = "ntk", parametrization: str = "ntk", n_outputs: int = DEFAULT_OUTPUTS, x_other=None
) -> np.ndarray:
    """The width → ∞ limit on the points `x` (m × inputs, numpy or torch) of the tangent kernel at
    initialisation (`kind` "ntk", Θ∞) or of the outputs' covariance at initialisation ("nngp"), summed
    over `n_outputs` outputs, as an m×m float64 array (m×m′ against the points `x_other`). See the
    module's docstring for μP's normalisation; "standard" with "ntk" has no finite limit: ConfigError."""
    if kind not in KINDS:
        raise ConfigError("kind", "{kind} must be one of " + ", ".join(KINDS) + got(kind))
    if parametrization not in PARAMETRIZATIONS:
        raise ConfigError(
            "parametrization", "{parametrization} must be one of " + ", ".join(PARAMETRIZATIONS) + got(parametrization)
        )
    if not has_limit(parametrization, kind):
        raise ConfigError(
            "parametrization",
            "{parametrization} 'standard' has no infinite-width tangent kernel: "
            + NO_LIMIT
            + "; choose 'ntk' or 'mup' (kind 'nngp', the output covariance, has a limit)",
        )
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise ConfigError("n_outputs", "{n_outputs} must be a whole number of at least 1" + got(n_outputs))
    points = _points(x, "x")
    other = points if x_other is None else _points(x_other, "x_other")
    if other.shape[1] != points.shape[1]:
        raise ConfigError(
            "x_other", f"{{x_other}} must have as many inputs as x ({points.shape[1]}; got {other.shape[1]})"
        )
    v_w, v_b, v_a, v_c = _variances(parametrization, points.shape[1])
    k1 = (points @ other.T) * v_w + v_b
    q, q_other = _row_norms(points) * v_w + v_b, _row_norms(other) * v_w + v_b
    scale = np.sqrt(np.outer(q, q_other))
    cosine = np.clip(k1 / scale, -1.0, 1.0)
    theta = np.arccos(cosine)
    features = scale / (2 * math.pi) * (np.sin(theta) + (math.pi - theta) * cosine)  # E[φφ′]
    per_output = features if kind == "nngp" else features + k1 * (math.pi - theta) / (2 * math.pi)
    return n_outputs * (v_a * per_output + v_c)


def has_limit(parametrization: str, kind: str = "ntk") -> bool:
    """Whether `kind` has a finite infinite-width limit under `parametrization` (see NO_LIMIT)."""
    return not (parametrization == "standard" and kind == "ntk")


def distance_to_limit(kernel, limit) -> float | None:
    """How far a kernel is from its infinite-width limit, both on the same points: the Frobenius
    distance between the two centered kernels scaled to unit size, √(2·(1 − ρ(K, K∞))), from 0 (the
    same up to scale) to 2. 1 − ρ itself is quadratic in a small difference (it falls like 1/width,
    measured); this falls like the kernel's fluctuations, width^−½. None where ρ is undefined."""
    try:
        rho = float(centered_alignment(kernel, limit))
    except AlignmentUndefined:
        return None
    return math.sqrt(max(0.0, 2.0 * (1.0 - rho)))


def _variances(parametrization: str, inputs: int) -> tuple[float, float, float, float]:
    """(v_W per input, v_b, v_A per hidden unit, v_c): see the module's docstring."""
    if parametrization == "standard":
        return UNIFORM_VARIANCE / inputs, UNIFORM_VARIANCE / inputs, UNIFORM_VARIANCE, 0.0
    return SIGMA_W**2 / inputs, SIGMA_B**2, SIGMA_A**2, SIGMA_C**2


def _points(x, name: str) -> np.ndarray:
    values = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ConfigError(name, f"{{{name}}} must be a points × inputs array (got shape {values.shape})")
    if len(values) > MAX_POINTS:
        raise ConfigError(
            name,
            f"{{{name}}} holds {len(values):,} points; the infinite-width kernel takes at most {MAX_POINTS:,} "
            "(its float64 arrays grow with the points squared)",
        )
    if not np.isfinite(values).all():
        raise ConfigError(name, f"{{{name}}} must hold finite numbers")
    return values


def _row_norms(points: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", points, points)
