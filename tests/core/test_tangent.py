"""tangent_kernel: the closed form against per-example Jacobians from torch.func.jacrev, in float64."""

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from kalign_core import MLP, tangent_kernel


def jacobian_kernel(model: MLP, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Σ_outputs ∂f(x_i)/∂θ · ∂f(x_j)/∂θ per layer, from full per-example Jacobians (float64)."""
    params = {name: p.detach().to(torch.float64) for name, p in model.named_parameters()}

    def outputs(p):
        return functional_call(model, p, (x,))  # m × k

    jac = jacrev(outputs)(params)  # name -> m × k × param shape
    kernels = {}
    for layer, prefix in (("hidden", "features.0."), ("readout", "readout.")):
        flat = torch.cat([j.reshape(*j.shape[:2], -1) for n, j in jac.items() if n.startswith(prefix)], dim=2)
        kernels[layer] = torch.einsum("iop,jop->ij", flat, flat)
    return kernels


@pytest.mark.parametrize("width,k,m", [(7, 2, 5), (16, 3, 9), (40, 10, 12)])
def test_closed_form_matches_jacobians(width, k, m):
    torch.manual_seed(width)
    model = MLP(width, k, in_features=11).to(torch.float64)
    x = torch.randn(m, 11, dtype=torch.float64)
    reference = jacobian_kernel(model, x)
    blocks = tangent_kernel(model, x, by_layer=True)
    for layer in ("hidden", "readout"):
        error = (blocks[layer] - reference[layer]).norm() / reference[layer].norm()
        assert error <= 1e-9, layer
    whole = tangent_kernel(model, x)
    total = reference["hidden"] + reference["readout"]
    assert whole.dtype == torch.float64 and whole.shape == (m, m)
    assert (whole - total).norm() / total.norm() <= 1e-9


def test_a_float32_model_and_numpy_points_give_the_float64_kernel(sample_89):
    torch.manual_seed(0)
    model = MLP(30, 2)
    x = sample_89.test_x[:8]
    kernel = tangent_kernel(model, x)
    reference = jacobian_kernel(model.to(torch.float64), torch.from_numpy(x).to(torch.float64))
    total = reference["hidden"] + reference["readout"]
    assert kernel.dtype == torch.float64
    assert (kernel - total).norm() / total.norm() <= 1e-9
    assert torch.allclose(kernel, kernel.T)
    assert np.all(np.linalg.eigvalsh(kernel.numpy()) > -1e-8 * float(kernel.diagonal().max()))
