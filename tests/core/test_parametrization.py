"""Parametrizations against a plain autograd network written out from the formulas: f(x) =
m_A·A·relu(m_W·W·x + m_b·b) + m_c·c with the trained W, b, A, c drawn N(0, 1), SGD on W, b, A, c
with μP's width factors on the learning rates. kalign trains the same network in effective weights;
after full-batch steps both must hold the same function, and the closed-form tangent kernel must
equal the kernel of the Jacobians over the trained parameters."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from kalign_core import ExperimentConfig, run_experiment, tangent_kernel
from kalign_core.config import ConfigError
from kalign_core.data import DigitData
from kalign_core.engine.trial import initial_model
from kalign_core.parametrization import MUP_BASE_WIDTH, SIGMA_A, SIGMA_B, SIGMA_C, SIGMA_W, scaling

INPUTS = 20


def written_out(parametrization: str, width: int) -> tuple[float, float, float, float]:
    """The multipliers m_W, m_b, m_A, m_c and learning-rate factors as the module docstring states them."""
    readout = SIGMA_A / math.sqrt(width) if parametrization == "ntk" else SIGMA_A * math.sqrt(MUP_BASE_WIDTH) / width
    factor = 1.0 if parametrization == "ntk" else width / MUP_BASE_WIDTH
    return (SIGMA_W / math.sqrt(INPUTS), SIGMA_B, readout, SIGMA_C), (factor, factor, factor, 1.0)


class Raw(torch.nn.Module):
    """The parametrization as papers write it: N(0, 1) parameters behind fixed multipliers."""

    def __init__(self, trained: torch.nn.Module, multipliers):
        super().__init__()
        self.m = multipliers
        effective = (trained.features[0].weight, trained.features[0].bias, trained.readout.weight, trained.readout.bias)
        self.w, self.b, self.a, self.c = (
            torch.nn.Parameter(t.detach().to(torch.float64) / m) for t, m in zip(effective, multipliers)
        )

    def forward(self, x):
        h = torch.relu(self.m[0] * x @ self.w.T + self.m[1] * self.b)
        return self.m[2] * h @ self.a.T + self.m[3] * self.c


def tiny_data(seed: int = 0) -> DigitData:
    rng = np.random.default_rng(seed)
    x = rng.random((48, INPUTS)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 1.5).astype(np.int64)
    return DigitData(x[:36], y[:36], x[36:], y[36:], digits=(3, 5), source="custom")


@pytest.mark.parametrize("parametrization", ["ntk", "mup"])
@pytest.mark.parametrize("width", [64, 512])
def test_the_engine_trains_the_written_out_network(parametrization, width):
    data = tiny_data()
    config = ExperimentConfig(
        digits=(3, 5), width=width, slow_lr=0.5, regular_lr=2.0, epochs=3, batch_size=36, probe_size=8,
        parametrization=parametrization, device="cpu",
    )  # fmt: skip
    multipliers, factors = written_out(parametrization, width)
    start = initial_model(config, 2, INPUTS)
    drawn = [p.detach() / m for p, m in zip(start.parameters(), multipliers)]
    # The trained parameters start as N(0, 1) draws: mean ≈ 0, variance ≈ 1 over the hidden weights.
    assert abs(float(drawn[0].mean())) < 0.05 and abs(float(drawn[0].var()) - 1) < 0.1
    result = run_experiment(config, data=data)
    x = torch.from_numpy(data.train_x).to(torch.float64)
    y = torch.from_numpy(data.train_y)
    for name, hidden_lr in (("slow", config.slow_lr), ("regular", config.regular_lr)):
        raw = Raw(start, multipliers)
        rates = [hidden_lr * factors[0], hidden_lr * factors[1], config.regular_lr * factors[2], config.regular_lr]
        optimizer = torch.optim.SGD([{"params": [p], "lr": r} for p, r in zip(raw.parameters(), rates)])
        for _ in range(config.epochs):  # full batches: every epoch is one step on all 36 points
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(raw(x), y).backward()
            optimizer.step()
        trained = result.models[name].to(torch.float64)
        with torch.no_grad():
            expected, got = raw(x), trained(x)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (name, (got - expected).abs().max())


@pytest.mark.parametrize("parametrization", ["standard", "ntk", "mup"])
def test_the_tangent_kernel_is_over_the_trained_parameters(parametrization):
    width = 48
    config = ExperimentConfig(digits=(3, 5), width=width, parametrization=parametrization, seed=2)
    model = initial_model(config, 2, INPUTS).to(torch.float64)
    multipliers = scaling(parametrization, width, INPUTS).multipliers
    raw = Raw(model, multipliers)
    x = torch.from_numpy(tiny_data().test_x).to(torch.float64)
    params = {name: p.detach() for name, p in raw.named_parameters()}
    jac = jacrev(lambda p: functional_call(raw, p, (x,)))(params)
    flat = torch.cat([j.reshape(*j.shape[:2], -1) for j in jac.values()], dim=2)
    reference = torch.einsum("iop,jop->ij", flat, flat)
    kernel = tangent_kernel(model, x)
    assert (kernel - reference).norm() / reference.norm() <= 1e-9


def test_mup_is_the_ntk_network_at_its_base_width():
    ntk, mup = scaling("ntk", MUP_BASE_WIDTH, 784), scaling("mup", MUP_BASE_WIDTH, 784)
    assert ntk.rates == mup.rates and ntk.kernel_weights == mup.kernel_weights
    same = [ExperimentConfig(width=MUP_BASE_WIDTH, parametrization=p) for p in ("ntk", "mup")]
    first, second = (initial_model(c, 2) for c in same)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))


def test_under_mup_the_readout_shrinks_like_one_over_width_and_ntk_like_its_root():
    for width in (128, 1024, 8192):
        assert scaling("mup", width, 784).multipliers[2] * width == pytest.approx(SIGMA_A * math.sqrt(MUP_BASE_WIDTH))
        assert scaling("ntk", width, 784).multipliers[2] * math.sqrt(width) == pytest.approx(SIGMA_A)
        assert scaling("mup", width, 784).rate_factors == (width / MUP_BASE_WIDTH,) * 3 + (1.0,)


def test_a_parametrization_kalign_does_not_know_is_refused_by_name():
    with pytest.raises(ConfigError, match="parametrization must be one of standard, ntk, mup"):
        ExperimentConfig(parametrization="sp")
