"""run_experiment: the hand-written SGD step against autograd, identical starts, every batch used,
reproducibility, the slow_lr = 0 limit, learning on the bundled sample, divergence, stopping and
callbacks. All on the CPU, with small widths."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kalign_core import DigitData, ExperimentConfig, centered_alignment, run_experiment
from kalign_core.engine.batched import TrialBlock
from kalign_core.results import MODEL_NAMES


def blobs(n_train=60, n_test=20, n_features=12, n_classes=2, seed=0) -> DigitData:
    """Separable Gaussian blobs in [0, 1]-ish features, labelled like digits 0..k-1."""
    r = np.random.default_rng(seed)
    centers = r.random((n_classes, n_features))

    def split(n):
        y = np.arange(n) % n_classes
        return (centers[y] + 0.1 * r.standard_normal((n, n_features))).astype(np.float32), y

    return DigitData(*split(n_train), *split(n_test), digits=tuple(range(n_classes)))


def without_seconds(history):
    return {name: [dataclasses.replace(r, seconds=0.0) for r in records] for name, records in history.items()}


def initial_models(config, data):
    """The models as initialised: a run stopped before its first batch."""
    result = run_experiment(config, data, should_stop=lambda: True)
    assert result.stopped and result.epochs_done == 0
    return result.models


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_history_shape_and_recorded_alignment_match_the_kernels(small_config, sample_89):
    config = small_config(epochs=3)
    result = run_experiment(config, sample_89)
    assert result.source == "sample" and result.device == "cpu" and not result.stopped
    assert result.epochs_done == 3 and result.diverged_at == {"slow": None, "regular": None}
    m = config.probe_size
    assert result.target_kernel.shape == (m, m) and result.probe_labels.shape == (m,)
    assert list(result.probe_labels) == sorted(result.probe_labels)  # sorted by class
    assert np.bincount(result.probe_labels).tolist() == [m // 2, m // 2]  # stratified
    for name in MODEL_NAMES:
        records = result.history[name]
        assert [r.epoch for r in records] == [0, 1, 2, 3]
        assert len(result.kernels[name]) == 4
        assert result.curve(name, "alignment") == [r.alignment for r in records]
        for record, kernel in zip(records, result.kernels[name]):
            assert kernel.shape == (m, m) and kernel.dtype == np.float32
            assert 0.0 <= record.train_error <= 100 and 0.0 <= record.test_error <= 100
            assert record.alignment == pytest.approx(centered_alignment(kernel, result.target_kernel), rel=1e-4)


def test_final_test_error_is_that_of_the_returned_model(small_config, sample_89):
    result = run_experiment(small_config(), sample_89)
    x, y = torch.from_numpy(sample_89.test_x), torch.from_numpy(sample_89.test_y)
    for name in MODEL_NAMES:
        with torch.no_grad():
            wrong = (result.models[name](x).argmax(dim=1) != y).double().mean().item()
        assert result.history[name][-1].test_error == pytest.approx(100 * wrong, abs=1e-9)


# ---------------------------------------------------------------- the hand-written gradient step


@pytest.mark.parametrize(
    "slow_lr, regular_lr, lazy_scale",
    [(0.02, 0.3, None), (0.0, 0.1, None), (0.5, 0.5, None), (0.02, 0.3, 1.0), (0.5, 0.5, 10.0)],
)
def test_fused_step_matches_autograd_and_torch_sgd(slow_lr, regular_lr, lazy_scale):
    """With a lazy scale α the reference trains α·(f − f₀) on cross-entropy / α² by autograd."""
    data = blobs(n_train=17, n_features=20, n_classes=3)
    config = ExperimentConfig(
        digits=(0, 1, 2),
        width=8,
        slow_lr=slow_lr,
        regular_lr=regular_lr,
        batch_size=7,
        probe_size=6,
        device="cpu",
        lazy_scale=lazy_scale,
    )
    block = TrialBlock([config], {config.digits: data})
    [trial] = block.trials

    def export(m):
        return trial.export(block.weights(0, m))

    with torch.no_grad():
        reference = [export(m) for m in range(2)]
        initial = export(0)
    before = [state(model) for model in reference]
    alpha = lazy_scale or 1.0
    optimizers = [
        torch.optim.SGD(
            [
                {"params": model.features.parameters(), "lr": hidden_lr},
                {"params": model.readout.parameters(), "lr": regular_lr},  # the readout of both
            ]
        )
        for model, hidden_lr in zip(reference, (slow_lr, regular_lr))
    ]
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    sums = torch.zeros(3, 1, 2)
    expected_sum, expected_errors = [0.0, 0.0], [0, 0]
    for batch in (slice(0, 7), slice(7, 14), slice(14, 17)):  # the last one partial
        rows = torch.arange(17)[None, batch]
        with torch.no_grad():
            block._step(rows, rows, sums)
        for m, (model, optimizer) in enumerate(zip(reference, optimizers)):
            logits = model(x[batch])
            if lazy_scale is not None:
                logits = lazy_scale * (logits - initial(x[batch]).detach())
            loss = F.cross_entropy(logits, y[batch])
            expected_sum[m] += loss.item() * len(y[batch])
            expected_errors[m] += int((logits.argmax(dim=1) != y[batch]).sum())
            optimizer.zero_grad()
            (loss / alpha**2).backward()
            optimizer.step()
    for m in range(2):
        with torch.no_grad():
            got = state(export(m))
        for key, value in state(reference[m]).items():
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{MODEL_NAMES[m]} {key}")
        assert sums[0, 0, m].item() == pytest.approx(expected_sum[m], rel=1e-5)
        # With a lazy scale the first batch's outputs α(f − f₀) are 0 up to rounding (f₀ comes from
        # the evaluation's products, f from the step's): its predictions are ties, broken by noise.
        tied = 0 if lazy_scale is None else 7
        assert abs(sums[2, 0, m].item() - expected_errors[m]) <= tied
    # The steps really moved what they should (so the comparison above is not vacuous).
    for m, hidden_lr in enumerate((slow_lr, regular_lr)):
        moved = (reference[m].features[0].weight - before[m]["features.0.weight"]).abs().max().item()
        assert (moved > 1e-4 / alpha) == (hidden_lr > 0)
        assert (reference[m].readout.weight - before[m]["readout.weight"]).abs().max().item() > 1e-4 / alpha


# ---------------------------------------------------------------- identical starts, batches, reproducibility


def test_both_models_start_from_identical_weights(small_config, sample_89):
    config = small_config(slow_lr=0.001, regular_lr=0.1)
    models = initial_models(config, sample_89)
    for key, value in state(models["slow"]).items():
        assert torch.equal(value, state(models["regular"])[key]), key
    result = run_experiment(config, sample_89)
    slow0, regular0 = result.history["slow"][0], result.history["regular"][0]
    assert dataclasses.replace(slow0, seconds=0.0) == dataclasses.replace(regular0, seconds=0.0)
    np.testing.assert_array_equal(result.kernels["slow"][0], result.kernels["regular"][0])


def test_every_sample_is_used_once_per_epoch_in_a_fresh_order(monkeypatch):
    n, batch, epochs = 23, 5, 3  # 23 = 4 full batches and one of 3
    data = blobs(n_train=n)
    ids = np.arange(n, dtype=np.float32)
    data = dataclasses.replace(data, train_x=np.column_stack([ids, data.train_x[:, 1:]]))
    seen = []
    original_step = TrialBlock._step

    def spy(self, order, rows, sums):
        seen.append(self.all_x[rows[0], 0].round().long().tolist())
        return original_step(self, order, rows, sums)

    monkeypatch.setattr(TrialBlock, "_step", spy)
    stop_checks = []
    config = ExperimentConfig(digits=(0, 1), width=8, batch_size=batch, epochs=epochs, probe_size=10, device="cpu")
    run_experiment(config, data, should_stop=lambda: stop_checks.append(1) and False)
    batches_per_epoch = math.ceil(n / batch)
    assert len(seen) == len(stop_checks) == epochs * batches_per_epoch
    orders = []
    for e in range(epochs):
        epoch_batches = seen[e * batches_per_epoch : (e + 1) * batches_per_epoch]
        assert [len(b) for b in epoch_batches] == [5, 5, 5, 5, 3]
        order = sum(epoch_batches, [])
        assert sorted(order) == list(range(n))
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]


def test_same_config_gives_bit_identical_results(small_config, sample_89):
    config = small_config(seed=3, regular_lr=0.1)
    first, second = run_experiment(config, sample_89), run_experiment(config, sample_89)
    assert without_seconds(first.history) == without_seconds(second.history)
    for name in MODEL_NAMES:
        for a, b in zip(first.kernels[name], second.kernels[name]):
            np.testing.assert_array_equal(a, b)
        for key, value in state(first.models[name]).items():
            assert torch.equal(value, state(second.models[name])[key])
    np.testing.assert_array_equal(first.probe_labels, second.probe_labels)
    other_seed = run_experiment(dataclasses.replace(config, seed=4), sample_89)
    assert without_seconds(other_seed.history) != without_seconds(first.history)


# ---------------------------------------------------------------- the science


def test_slow_lr_zero_keeps_features_and_alignment_exactly_constant(small_config, sample_89):
    config = small_config(slow_lr=0.0, regular_lr=0.1, epochs=3)
    initial = initial_models(config, sample_89)
    result = run_experiment(config, sample_89)
    slow = result.curve("slow", "alignment")
    assert all(a == slow[0] for a in slow), slow
    for kernel in result.kernels["slow"][1:]:
        np.testing.assert_array_equal(kernel, result.kernels["slow"][0])
    hidden = result.models["slow"].features[0]
    assert torch.equal(hidden.weight, initial["slow"].features[0].weight)
    assert torch.equal(hidden.bias, initial["slow"].features[0].bias)
    # Its readout still learns at regular_lr, and the regular model's features move.
    assert not torch.equal(result.models["slow"].readout.weight, initial["slow"].readout.weight)
    assert result.curve("regular", "alignment")[-1] != result.curve("regular", "alignment")[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_the_sample_regular_features_align_far_more_than_slow_ones(seed, sample_89):
    """Measured: regular ρ gains ≈ 0.44, slow ≈ 0.06; test error ≈ 45% → 2–3% (both models)."""
    config = ExperimentConfig(
        width=256,
        slow_lr=0.001,
        regular_lr=0.1,
        batch_size=50,
        epochs=3,
        seed=seed,
        probe_size=200,
        device="cpu",
        source="sample",
    )
    result = run_experiment(config, sample_89)
    gain = {name: result.curve(name, "alignment")[-1] - result.curve(name, "alignment")[0] for name in MODEL_NAMES}
    assert gain["regular"] > 0.2
    assert gain["regular"] > 3 * gain["slow"]
    for name in MODEL_NAMES:
        errors = result.curve(name, "test_error")
        assert errors[-1] < 0.5 * errors[0] and errors[-1] < 15.0, (name, errors)


def test_multi_class_run_learns_and_keeps_a_stratified_sorted_probe():
    config = ExperimentConfig(
        digits=(1, 4, 7),
        width=64,
        regular_lr=0.1,
        batch_size=100,
        epochs=2,
        probe_size=40,
        device="cpu",
        source="sample",
    )
    result = run_experiment(config)
    assert result.source == "sample"
    assert np.bincount(result.probe_labels).tolist() == [14, 13, 13]
    assert list(result.probe_labels) == sorted(result.probe_labels)
    y = np.eye(3)[result.probe_labels]
    h = np.eye(40) - 1 / 40
    np.testing.assert_allclose(result.target_kernel, h @ y @ y.T @ h, atol=1e-6)
    errors = result.curve("regular", "test_error")
    assert errors[-1] < 0.5 * errors[0]
    assert all(a is not None for name in MODEL_NAMES for a in result.curve(name, "alignment"))


def test_custom_digit_data_is_used_as_given():
    data = blobs(n_features=10)
    config = ExperimentConfig(
        digits=(0, 1), width=16, regular_lr=0.5, batch_size=10, epochs=3, probe_size=10, device="cpu"
    )
    result = run_experiment(config, data)
    assert result.source == "custom"
    assert result.models["regular"].features[0].in_features == 10
    assert result.curve("regular", "test_error")[-1] < result.curve("regular", "test_error")[0]


# ---------------------------------------------------------------- divergence, stopping, callbacks


def test_an_exploding_slow_model_is_marked_diverged_and_the_regular_one_goes_on(small_config, sample_89):
    config = small_config(slow_lr=50.0, regular_lr=0.05, epochs=3)
    result = run_experiment(config, sample_89)
    diverged = result.diverged_at["slow"]
    assert isinstance(diverged, int) and 1 <= diverged <= config.epochs
    assert result.diverged_at["regular"] is None and not result.stopped
    assert len(result.history["slow"]) == len(result.kernels["slow"]) == diverged + 1
    assert len(result.history["regular"]) == config.epochs + 1 and result.epochs_done == config.epochs
    # The regular model is unaffected by its partner's fate.
    calm = run_experiment(dataclasses.replace(config, slow_lr=0.001), sample_89)
    for a, b in zip(result.history["regular"], calm.history["regular"]):
        assert a.test_error == b.test_error and a.loss == pytest.approx(b.loss, rel=1e-4)
        assert a.alignment == pytest.approx(b.alignment, rel=1e-4)


def test_non_finite_losses_stop_both_models_without_raising():
    data = blobs()
    data.train_x[5, 3] = np.nan
    config = ExperimentConfig(digits=(0, 1), width=8, batch_size=10, epochs=3, probe_size=10, device="cpu")
    result = run_experiment(config, data)
    assert result.diverged_at == {"slow": 1, "regular": 1} and result.epochs_done == 1
    last = result.history["slow"][1]
    assert last.alignment is None and "non-finite" in last.alignment_note
    assert set(result.models) == set(MODEL_NAMES)


def test_should_stop_mid_epoch_returns_the_completed_epochs_marked_stopped(small_config, sample_89):
    config = small_config(epochs=4)  # 800 digits in batches of 100: 8 checks per epoch
    checks, reported = [], []

    def stop_after_12_batches():
        checks.append(1)
        return len(checks) > 12

    result = run_experiment(
        config, sample_89, on_epoch=lambda r: reported.append(r.epochs_done), should_stop=stop_after_12_batches
    )
    assert result.stopped and result.epochs_done == 1 and reported == [0, 1]
    for name in MODEL_NAMES:
        assert len(result.history[name]) == len(result.kernels[name]) == 2
    assert set(result.models) == set(MODEL_NAMES)


def test_on_epoch_is_called_after_init_and_each_epoch_with_the_live_result(small_config, sample_89):
    calls, snapshots = [], []

    def on_epoch(partial):
        calls.append(partial)
        snapshots.append(partial.copy())

    result = run_experiment(small_config(epochs=3), sample_89, on_epoch=on_epoch)
    assert len(calls) == 4 and all(c is result for c in calls)
    assert [s.epochs_done for s in snapshots] == [0, 1, 2, 3]
    assert [len(s.kernels["regular"]) for s in snapshots] == [1, 2, 3, 4]


# ---------------------------------------------------------------- config does not fit the data


@pytest.mark.parametrize(
    "overrides, field",
    [({"batch_size": 61}, "batch_size"), ({"probe_size": 21}, "probe_size"), ({"digits": (0, 2)}, "digits")],
)
def test_config_that_does_not_fit_the_data_names_the_field(overrides, field):
    config = ExperimentConfig(
        **{"digits": (0, 1), "width": 8, "batch_size": 10, "probe_size": 10, "device": "cpu", **overrides}
    )
    with pytest.raises(ValueError, match=field):
        run_experiment(config, blobs(n_train=60, n_test=20))
