"""The linearized twin: its closed-form J₀Δθ against torch.func.jvp, its hand-written SGD step against
autograd on g(θ₀) + J₀(θ − θ₀), its scores against a naive float64 formula, the networks untouched by
it, and what it shows on the sample (lazy under α = 100, far from it at width 64 and rate 0.1)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

from kalign_core import ExperimentConfig, load_digits, run_experiment
from kalign_core.engine.batched import TrialBlock
from kalign_core.engine.trial import initial_model
from kalign_core.engine.twin import TwinScores, linear_change
from kalign_core.results import LINEAR_MEASURES, MODEL_NAMES

PARAMETERS = ("features.0.weight", "features.0.bias", "readout.weight", "readout.bias")


def function_of(model):
    """f(θ)(x) of the model, θ as a tuple in PARAMETERS' order (its effective weights)."""
    return lambda theta, x: functional_call(model, dict(zip(PARAMETERS, theta)), (x,))


def jvp_change(model, theta0, delta, x):
    """J₀Δθ on x by torch.func.jvp of f at θ₀."""
    f = function_of(model)
    return jvp(lambda *theta: f(theta, x), tuple(theta0), tuple(delta))[1]


@pytest.mark.parametrize("parametrization", ["standard", "ntk", "mup"])
def test_the_closed_form_jvp_matches_torch_func_jvp(parametrization):
    generator = torch.Generator().manual_seed(1)
    config = ExperimentConfig(width=16, parametrization=parametrization)
    model = initial_model(config, 3, 10).double()
    theta0 = [model.get_parameter(name).detach() for name in PARAMETERS]
    x = torch.rand(9, 10, generator=generator, dtype=torch.float64)
    x[0] = 0.0  # a digit whose pre-activations are the biases: some units exactly at their threshold
    deltas = [[torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in theta0] for _ in range(2)]
    w0, b0, a0, _ = theta0
    phi0 = torch.relu(x @ w0.T + b0)
    change = linear_change(
        phi0[None],
        x[None],
        a0[None],
        torch.cat([deltas[0][0].T, deltas[1][0].T], dim=1)[None],
        torch.cat([deltas[0][1], deltas[1][1]])[None],
        torch.stack([deltas[0][2], deltas[1][2]])[None],
        torch.stack([deltas[0][3], deltas[1][3]])[None],
    )
    for m in (0, 1):
        torch.testing.assert_close(change[0, m], jvp_change(model, theta0, deltas[m], x), rtol=1e-12, atol=1e-12)


def twin_block(lazy_scale=None, **overrides):
    settings = dict(digits=(8, 9), width=8, slow_lr=0.05, regular_lr=0.5, batch_size=7, probe_size=6, device="cpu")
    config = ExperimentConfig(source="sample", linearized_twin=True, lazy_scale=lazy_scale, **{**settings, **overrides})
    return TrialBlock([config], {config.digits: load_digits(config.digits, "sample")})


def twin_deltas(block, m):
    """Model m's twin's Δθ as nn.Linear holds the weights."""
    twin, w = block.twin, block.width
    units = slice(m * w, (m + 1) * w)
    return twin.dw_t[0, :, units].T, twin.db[0, units], twin.da[0, m], twin.dc[0, m]


@pytest.mark.parametrize("lazy_scale", [None, 10.0])
def test_the_twins_step_matches_autograd_on_the_linearization(lazy_scale):
    """The reference trains g_lin(θ) = g(θ₀) + J₀(θ − θ₀) (J₀ by torch.func.jvp) by autograd and
    torch's SGD, on cross-entropy (/α² with a lazy scale, g = α(f − f₀)), as the network trains."""
    block = twin_block(lazy_scale)
    [trial] = block.trials
    model = trial.export(block.weights(0, 0))
    theta0 = [model.get_parameter(name).detach().clone() for name in PARAMETERS]
    alpha = lazy_scale or 1.0
    rates = {"slow": (0.05, 0.5), "regular": (0.5, 0.5)}  # hidden, readout
    x, y = trial.train_x, trial.train_y
    for m, name in enumerate(MODEL_NAMES):
        deltas = [torch.zeros_like(p, requires_grad=True) for p in theta0]
        hidden, readout = rates[name]
        optimizer = torch.optim.SGD([{"params": deltas[:2], "lr": hidden}, {"params": deltas[2:], "lr": readout}])
        for rows in (torch.arange(0, 7), torch.arange(7, 14), torch.arange(30, 37)):
            change = jvp_change(model, theta0, deltas, x[rows])
            g_lin = alpha * change if lazy_scale else function_of(model)(theta0, x[rows]).detach() + change
            optimizer.zero_grad()
            (F.cross_entropy(g_lin, y[rows]) / alpha**2).backward()
            optimizer.step()
        block_twin = twin_block(lazy_scale)
        for rows in (torch.arange(0, 7), torch.arange(7, 14), torch.arange(30, 37)):
            with torch.no_grad():
                block_twin._step(rows[None], rows[None], torch.zeros(3, 1, 2))
        for got, expected, part in zip(twin_deltas(block_twin, m), deltas, PARAMETERS):
            assert expected.abs().max() > 1e-4 / alpha, part  # the steps moved it: the comparison is not vacuous
            torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-7, msg=f"{name} {part}")


def test_the_gap_and_the_twins_test_error_match_a_float64_formula():
    block = twin_block(width=24, batch_size=50)
    block.train_epoch()
    scores = TwinScores(1, block.device)
    block._evaluate(block.test_x, block.test_y, None, block.probe_size, twin=scores)
    [trial] = block.trials
    initial = trial.initial.double()
    theta0 = [initial.get_parameter(name).detach() for name in PARAMETERS]
    x, y = trial.test_x.double(), trial.test_y
    f0 = function_of(initial)(theta0, x)
    for m, (error, gap, note) in scores.results()[0].items():
        network = function_of(initial)([p.double() for p in block.weights(0, m)], x)
        change = jvp_change(initial, theta0, [d.double() for d in twin_deltas(block, m)], x)
        expected_gap = torch.linalg.norm(network - f0 - change) / torch.linalg.norm(change)
        assert note is None and gap == pytest.approx(expected_gap.item(), rel=1e-4)
        assert error == pytest.approx(100.0 * ((f0 + change).argmax(dim=1) != y).double().mean().item())


def without_twin(records):
    return [replace(r, seconds=0.0, **dict.fromkeys((*LINEAR_MEASURES, "linear_note"))) for r in records]


@pytest.mark.parametrize("lazy_scale", [None, 10.0])
def test_the_twin_leaves_every_number_of_the_networks_as_it_was(small_config, lazy_scale):
    plain = run_experiment(small_config(epochs=2, lazy_scale=lazy_scale))
    twinned = run_experiment(small_config(epochs=2, lazy_scale=lazy_scale, linearized_twin=True))
    for name in MODEL_NAMES:
        assert without_twin(twinned.history[name]) == without_twin(plain.history[name])
        assert all(r.linear_gap is None and r.linear_test_error is None for r in plain.history[name])
        for key, value in plain.models[name].state_dict().items():
            assert torch.equal(value, twinned.models[name].state_dict()[key])


def final_records(result):
    return [result.history[name][-1] for name in MODEL_NAMES]


def test_lazy_networks_stay_with_their_twins_and_a_narrow_fast_one_leaves_it():
    settings = dict(digits=(8, 9), epochs=5, source="sample", device="cpu", linearized_twin=True)
    lazy = run_experiment(ExperimentConfig(width=256, lazy_scale=100.0, **settings))
    rich = run_experiment(ExperimentConfig(width=64, regular_lr=0.1, **settings))
    for result in (lazy, rich):
        for name in MODEL_NAMES:
            first = result.history[name][0]
            assert first.linear_gap == 0.0 and first.linear_test_error == first.test_error
    for record in final_records(lazy):
        assert record.linear_gap < 0.05 and abs(record.linear_test_error - record.test_error) <= 1.0
    regular = rich.history["regular"][-1]
    assert regular.linear_gap >= 5 * 0.05
    assert math.isfinite(regular.linear_test_error)


def test_a_twin_that_never_moved_has_no_gap_and_says_why():
    scores = TwinScores(1, torch.device("cpu"))
    zeros = torch.zeros(1, 2, 3, 2)
    scores.add(zeros, zeros, zeros, torch.zeros(1, 3, dtype=torch.long))
    scores.add(zeros, torch.full_like(zeros, math.nan), zeros, torch.zeros(1, 3, dtype=torch.long))
    [results] = scores.results()
    assert results[0][1] is None and "no longer finite" in results[0][2]
    fresh = TwinScores(1, torch.device("cpu"))
    fresh.add(zeros, zeros, zeros, torch.zeros(1, 3, dtype=torch.long))
    [results] = fresh.results()
    assert results[1] == (0.0, None, "the linearized twin has not moved from the start, so the gap is 0/0")
