"""The training engine: a run is a block of one trial, so a trial's results do not depend on its
block: a sweep trial and run_experiment of the same settings agree to the last bit. Blocks,
callbacks, stopping and divergence. All on the CPU, on the bundled sample, with small widths."""

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from kalign_app import figures
from kalign_core import ExperimentConfig, run_experiment
from kalign_core.engine.batched import (
    CPU_BLOCK_WEIGHTS,
    TrialBlock,
    group_blocks,
    iter_trials,
    load_trial_data,
    run_trials,
)
from kalign_core.results import MODEL_NAMES
from kalign_core.runs import (
    KERNELS_NPZ,
    RUN_JSON,
    RunFileError,
    attach_kernels,
    compact_kernels_npz,
    kernels_to_npz,
    load_run,
    result_from_json,
    result_to_json,
    write_run_folder,
)
from kalign_core.runs.lean import lean_kernels_npz, lean_result, lean_trial_files
from kalign_core.sweep.spec import ALL_PAIRS


def configs(**overrides):
    settings = dict(width=24, epochs=2, batch_size=50, probe_size=40, device="cpu", source="sample")
    pairs_seeds = [((0, 1), 0), ((3, 8), 1), ((8, 9), 2), ((3, 8), 0)]
    return [ExperimentConfig(digits=pair, seed=seed, **{**settings, **overrides}) for pair, seed in pairs_seeds]


def without_seconds(records):
    return [replace(r, seconds=0.0) for r in records]


def assert_same_run(batched, single, machines=True):
    """Every number of the two results equal, bit for bit, but the clocks'."""
    assert batched.config == single.config and batched.stopped == single.stopped
    assert batched.diverged_at == single.diverged_at
    assert np.array_equal(batched.probe_labels, single.probe_labels)
    assert np.array_equal(batched.target_kernel, single.target_kernel)
    assert batched.alignment_null == single.alignment_null
    if machines:
        assert batched.kernel_machine_errors == single.kernel_machine_errors
    for name in MODEL_NAMES:
        assert without_seconds(batched.history[name]) == without_seconds(single.history[name])  # floats by ==
        for kept in ("kernels", "tangent_kernels"):
            for a, b in zip(getattr(batched, kept)[name], getattr(single, kept)[name], strict=True):
                assert np.array_equal(a, b, equal_nan=True)
        for key, value in batched.models[name].state_dict().items():
            assert torch.equal(value, single.models[name].state_dict()[key]), (name, key)


def test_a_block_of_pairs_and_seeds_matches_run_experiment_trial_by_trial():
    trials = configs()
    for config, batched in zip(trials, run_trials(trials)):
        assert_same_run(batched, run_experiment(config))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_and_a_sweep_trial_of_the_same_settings_agree_to_the_last_bit(threads, keep_torch_threads):
    """The Train page's run and a sweep's trial (kernel machines left out, as a sweep trains) of
    4 vs 7, width 256, seed 3, in a block of several trials, at the same thread count."""
    torch.set_num_threads(threads)
    settings = dict(width=256, epochs=3, batch_size=50, device="cpu", source="sample")
    run = ExperimentConfig(digits=(4, 7), seed=3, **settings)
    block = [
        ExperimentConfig(digits=pair, seed=seed, **settings) for pair, seed in [((0, 1), 0), ((4, 7), 3), ((4, 7), 1)]
    ]
    assert group_blocks(block, load_trial_data(block)) == [[0, 1, 2]]
    trial = run_trials(block, kernel_machines=False)[1]
    assert_same_run(trial, run_experiment(run), machines=False)


def test_a_single_trial_block_and_the_lazy_scale():
    config = configs(lazy_scale=10.0, epochs=1)[1]
    [batched] = run_trials([config])
    assert_same_run(batched, run_experiment(config))


def test_a_block_with_the_lazy_scale_starts_from_exactly_zero_outputs():
    """α(f − f₀) is exactly 0 before training, in a block of several trials as in a single run: f₀
    comes from the same products as the evaluation (else epoch 0's test errors are argmaxes of
    rounding noise, 40 to 60 % at random). (During training the first steps' predictions are such
    ties too, broken differently by each engine's products: those are not compared here.)"""
    trials = configs(lazy_scale=10.0, epochs=1)
    for config, batched in zip(trials, run_trials(trials)):
        single = run_experiment(config)
        for name in MODEL_NAMES:
            ours, theirs = batched.history[name][0], single.history[name][0]
            assert ours.test_error == theirs.test_error and ours.loss == theirs.loss == pytest.approx(math.log(2))


def test_kernel_machines_can_be_left_out_and_nothing_else_changes():
    trials = configs()[:2]
    without = run_trials(trials, kernel_machines=False)
    for batched, full in zip(without, run_trials(trials)):
        assert batched.kernel_machine_errors == {} and full.kernel_machine_errors != {}
        for name in MODEL_NAMES:  # the same computation, bit for bit, but for the clock
            assert [replace(r, seconds=0.0) for r in batched.history[name]] == [
                replace(r, seconds=0.0) for r in full.history[name]
            ]


def test_cpu_blocks_are_cache_sized_and_even():
    """A CPU block's stacked hidden weights stay within CPU_BLOCK_WEIGHTS; the trials are split into
    blocks of near-equal size, in order."""
    wide = configs(width=2000)
    assert group_blocks(wide, load_trial_data(wide)) == [[0], [1], [2], [3]]
    matrix = [ExperimentConfig(digits=pair, width=256, device="cpu", source="sample") for pair in ALL_PAIRS]
    blocks = group_blocks(matrix, load_trial_data(matrix))
    assert [i for block in blocks for i in block] == list(range(len(ALL_PAIRS)))
    assert max(len(b) for b in blocks) * 2 * 256 * 784 <= CPU_BLOCK_WEIGHTS
    assert max(len(b) for b in blocks) - min(len(b) for b in blocks) <= 1


def test_trials_that_differ_in_shape_go_to_separate_blocks_in_order():
    mixed = configs()[:2] + configs(width=16)[:1] + configs(epochs=1)[2:3] + configs()[2:]
    data = load_trial_data(mixed)
    assert group_blocks(mixed, data) == [[0, 1, 4, 5], [2], [3]]
    assert group_blocks(mixed, data, max_trials=3) == [[0, 1], [4, 5], [2], [3]]  # split evenly
    by_index = dict(iter_trials(mixed, data))
    assert sorted(by_index) == list(range(len(mixed)))
    for index, config in enumerate(mixed):
        assert by_index[index].config == config and by_index[index].epochs_done == config.epochs


def test_trials_of_one_pair_share_its_training_digits_in_a_block():
    trials = configs()  # (3, 8) twice
    block = TrialBlock(trials, load_trial_data(trials))
    assert len(block.all_x) == 3 * 800
    assert block.first_row.tolist() == [0, 800, 1600, 800]


def test_each_trial_gets_a_callback_after_every_epoch():
    trials = configs()[:3]
    seen = []
    results = run_trials(trials, on_epoch=lambda index, partial: seen.append((index, partial.epochs_done)))
    assert sorted(seen) == [(i, e) for i in range(3) for e in range(3)]
    assert [e for i, e in seen if i == 1] == [0, 1, 2]  # each trial's epochs in order
    assert all(r.epochs_done == 2 for r in results)


def stop_after(batches: int):
    """A should_stop that says stop when asked the (batches + 1)th time: before that batch."""
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > batches

    return should_stop


def test_should_stop_ends_the_block_between_batches_and_starts_no_other():
    trials = configs()[:2] + configs(width=16)[:1]
    midway = 800 // 50 + 2  # the second epoch's third batch
    results = run_trials(trials, should_stop=stop_after(midway))
    assert results[2] is None  # its block never started
    for config, result in zip(trials, results[:2]):
        assert result.stopped and result.epochs_done == 1
        assert_same_run(result, run_experiment(config, should_stop=stop_after(midway)))


def test_diverged_models_stop_while_the_rest_of_the_block_trains():
    # The first trial's regular model blows up, the third trial's both do, the second trains on.
    trials = [configs(regular_lr=5.0)[0], configs()[1], configs(regular_lr=1000.0, slow_lr=0.01)[2]]
    results = run_trials(trials)
    for config, batched in zip(trials, results):
        assert_same_run(batched, run_experiment(config))
    assert results[0].diverged_at["slow"] is None and results[0].diverged_at["regular"] is not None
    assert results[1].diverged_at == {"slow": None, "regular": None} and results[1].epochs_done == 2
    assert None not in results[2].diverged_at.values()


def test_a_lean_trial_keeps_its_histories_and_first_and_last_kernels():
    [result] = run_trials(configs(epochs=3)[:1])
    files = lean_trial_files(result)
    assert set(files) == {RUN_JSON, KERNELS_NPZ}
    assert result_from_json(files[RUN_JSON]).history == result.history
    with np.load(io.BytesIO(lean_kernels_npz(result))) as kept:
        for name in MODEL_NAMES:
            assert kept[f"{name}_epochs"].tolist() == [0, 3]
            assert np.array_equal(kept[name], np.stack([result.kernels[name][0], result.kernels[name][3]]))
        assert np.array_equal(kept["probe_labels"], result.probe_labels)
    kept_bytes = 4 * result.kernels["slow"][0].nbytes + result.target_kernel.nbytes + result.probe_labels.nbytes
    assert len(files[KERNELS_NPZ]) < kept_bytes + 4096  # the arrays, and the .npz's headers


def test_a_lean_trial_folder_loads_back_with_the_epochs_it_kept(tmp_path):
    [result] = run_trials(configs(epochs=3)[:1])
    write_run_folder(lean_trial_files(result), tmp_path / "trial")
    loaded = load_run(tmp_path / "trial")
    assert loaded.history == result.history and loaded.models == {}
    assert loaded.kernel_epochs == {name: [0, 3] for name in MODEL_NAMES}
    for name in MODEL_NAMES:
        assert loaded.kept_epochs(name) == [0, 3]
        assert all(np.array_equal(a, b) for a, b in zip(loaded.kernels[name], lean_result(result).kernels[name]))
    # Epoch 2 was not kept: the Kernels page's figures show the latest kept up to it, epoch 0.
    shown = figures.shown_kernels(loaded, 2)
    assert all(at == 0 for _, at in shown.values())
    assert {at for _, at in figures.shown_kernels(loaded, 3).values()} == {3}
    # The Kernels page's download says which epochs it holds, so it uploads back beside run.json.
    again = result_from_json(result_to_json(loaded))
    attach_kernels(again, kernels_to_npz(loaded))
    assert again.kernel_epochs == loaded.kernel_epochs
    attach_kernels(again, compact_kernels_npz(loaded))
    assert again.kernel_epochs == loaded.kernel_epochs


def test_a_lean_kernel_file_naming_epochs_the_run_never_recorded_is_refused(tmp_path):
    [result] = run_trials(configs(epochs=2)[:1])
    lean = lean_result(result)
    lean.kernel_epochs = {name: [0, 5] for name in MODEL_NAMES}
    with pytest.raises(RunFileError, match="slow_epochs must rise from 0 and name epochs the run recorded"):
        attach_kernels(result_from_json(result_to_json(result)), kernels_to_npz(lean))
