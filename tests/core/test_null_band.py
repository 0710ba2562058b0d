"""The permutation null of ρ: each shuffled value against centered_alignment with the permuted
target, and on the sample the initial ρ lies far above the band (random ReLU features already carry
class structure)."""

import pathlib
import subprocess
import sys

import torch

from kalign_core import centered_alignment, run_experiment
from kalign_core.measures.null_band import draw_permutations, null_bands, shuffled_alignments

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_each_shuffle_is_the_alignment_with_the_permuted_target():
    r = torch.Generator().manual_seed(5)
    phi = torch.rand(30, 8, generator=r, dtype=torch.float64)
    labels = torch.arange(30) % 3
    values = shuffled_alignments(phi @ phi.T, labels, 3, draw_permutations(30, torch.Generator().manual_seed(9), 12))
    replay = torch.Generator().manual_seed(9)
    y = torch.nn.functional.one_hot(labels, 3).double()
    for value in values:
        p = torch.randperm(30, generator=replay)
        assert abs(float(value) - centered_alignment(phi @ phi.T, y[p] @ y[p].T)) < 1e-12


def test_the_band_holds_the_central_95_percent_and_is_reproducible():
    phi = torch.rand(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(40) % 2
    permutations = draw_permutations(40, torch.Generator().manual_seed(1))
    low, high = null_bands(phi @ phi.T, labels, 2, permutations).tolist()
    values = shuffled_alignments(phi @ phi.T, labels, 2, permutations)
    inside = ((values >= low) & (values <= high)).double().mean()
    assert low < high and 0.94 <= inside <= 0.96
    again = draw_permutations(40, torch.Generator().manual_seed(1))
    assert [low, high] == null_bands(phi @ phi.T, labels, 2, again).tolist()


def test_a_stack_of_kernels_gets_the_bands_each_would_get_alone():
    r = torch.Generator().manual_seed(2)
    phi = torch.rand(3, 2, 24, 5, generator=r, dtype=torch.float64)
    kernels = phi @ phi.mT  # trials × kinds × m × m
    labels = torch.stack([torch.randperm(24, generator=r) % 3 for _ in range(3)])[:, None]  # trials × 1 × m
    permutations = torch.stack([draw_permutations(24, r, 50) for _ in range(6)]).view(3, 2, 50, 24)
    stacked = null_bands(kernels, labels, 3, permutations)
    for trial in range(3):
        for kind in range(2):
            alone = null_bands(kernels[trial, kind], labels[trial, 0], 3, permutations[trial, kind])
            torch.testing.assert_close(stacked[trial, kind], alone, rtol=1e-12, atol=0)


def test_on_the_sample_the_initial_alignment_is_far_above_chance(small_config, sample_89):
    result = run_experiment(small_config(epochs=1), sample_89)
    first = result.history["slow"][0]
    for kind, rho in (("feature", first.alignment), ("tangent", first.tangent_alignment)):
        low, high = result.alignment_null[kind]
        assert 0 <= low < high < 0.2 < rho, (kind, low, high, rho)


def test_a_first_run_in_a_fresh_process_does_not_load_sympy():
    # torch.broadcast_shapes imports sympy on first use: 0.2–0.3 s before a worker's first chart.
    check = (
        "import sys; from kalign_core import ExperimentConfig, run_experiment; "
        "run_experiment(ExperimentConfig(source='sample', width=16, epochs=1)); "
        "assert 'sympy' not in sys.modules, 'sympy was imported'"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
