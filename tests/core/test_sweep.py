"""The sweep engine: expansion into trials, summaries, resumption, and identical results from every
backend (sequential, process pool, Ray)."""

import csv
import dataclasses
import io
import itertools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from kalign_core import ExperimentConfig
from kalign_core.cli import main
from kalign_core.runs import load_run
from kalign_core.sweep.options import SweepOptions, recorded_threads
from kalign_core.sweep.runner import estimate_seconds, run_sweep
from kalign_core.sweep.spec import (
    SUMMARY_CSV,
    SUMMARY_FIELDS,
    SWEEP_JSON,
    SweepSpec,
    mean_spread,
    pair_matrix,
    pairs_among,
    read_summary_csv,
    summary_csv,
)

ROOT = pathlib.Path(__file__).parents[2]
BASE = ExperimentConfig(epochs=1, batch_size=100, probe_size=40, source="sample", device="cpu")
# 3 pairs × 2 widths × 2 seeds = 12 trials of a fraction of a second each.
SPEC = SweepSpec(BASE, pairs_among((3, 5, 8)), widths=(16, 32), seeds=(0, 1))


class Interrupted(Exception):
    """Raised from a sweep's progress callback: the sweep ends there, as if killed."""


def without_seconds(summaries):
    """Everything but the wall time, which no two runs share."""
    return [dataclasses.replace(s, seconds=0.0) for s in summaries]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run sequentially in this process: what every other way of running it must match,
    all at one torch thread per block (products round differently with another count)."""
    return run_sweep(SPEC, tmp_path_factory.mktemp("reference"), SweepOptions(threads_per_trial=1)).summaries


def test_axes_expand_into_every_combination_with_stable_ids():
    spec = SweepSpec(BASE, pairs_among((9, 1, 7)), widths=(16, 32), ratios=(0.1, 0.0), seeds=(0, 1))
    trials = spec.trials()
    assert spec.pairs == ((1, 7), (1, 9), (7, 9))
    assert len(trials) == 3 * 2 * 2 * 2
    assert len({t.id for t in trials}) == len(trials)
    first = trials[0]
    assert first.id == "1v7-w16-r0.1-s0"
    assert first.config == dataclasses.replace(BASE, digits=(1, 7), width=16, slow_lr=0.001, seed=0)
    assert {t.config.slow_lr for t in trials} == {0.001, 0.0}
    assert {(t.pair, t.width, t.ratio, t.seed) for t in trials} == {
        (p, w, r, s) for p in spec.pairs for w in (16, 32) for r in (0.1, 0.0) for s in (0, 1)
    }


def test_defaults_are_all_45_pairs_at_the_base_settings():
    spec = SweepSpec(ExperimentConfig(width=64, slow_lr=0.002, regular_lr=0.02, seed=3))
    assert len(spec.pairs) == 45 and len(spec.trials()) == 45
    assert (spec.widths, spec.ratios, spec.seeds) == ((64,), (0.1,), (3,))
    assert all(t.config.slow_lr == 0.002 for t in spec.trials())


@pytest.mark.parametrize(
    "axes, field",
    [
        ({"ratios": (1.5,)}, "ratios"),
        ({"ratios": (-0.1,)}, "ratios"),
        ({"widths": (16, 16)}, "widths repeats 16"),
        ({"widths": (0,)}, "width"),
        ({"seeds": (-1,)}, "seed"),
        ({"pairs": ((3,),)}, r"pairs must each be two different digits from 0 to 9 \(got \(3,\)\)"),
        ({"pairs": ((3, 3),)}, "pairs must each be two different digits"),
        ({"pairs": ((3, 10),)}, "pairs must each be two different digits"),
        ({"pairs": ((3, 4), (4, 3))}, "pairs repeats"),
        ({"pairs": ()}, "at least one pair"),
    ],
)
def test_bad_axes_are_refused_naming_the_field(axes, field):
    with pytest.raises(ValueError, match=field):
        SweepSpec(BASE, **axes)


def test_summary_of_a_trial(reference):
    trial = SPEC.trials()[0]
    summary = reference[0]
    assert summary.trial_id == trial.id and (summary.digit_a, summary.digit_b) == trial.pair
    assert summary.initial_alignment_slow == summary.initial_alignment_regular  # same initial weights
    expected = (summary.final_alignment_regular - summary.initial_alignment_regular) - (
        summary.final_alignment_slow - summary.initial_alignment_slow
    )
    assert summary.alignment_gain == expected
    assert summary.diverged_slow is None and summary.diverged_regular is None


def test_summary_matches_the_saved_run_and_random_features_keep_their_alignment(tmp_path):
    spec = SweepSpec(BASE, ((6, 0),), widths=(16,), ratios=(0.0,))
    outcome = run_sweep(spec, tmp_path)
    (summary,) = outcome.summaries
    run = load_run(tmp_path / summary.trial_id)
    assert summary.final_alignment_slow == summary.initial_alignment_slow  # slow hidden lr is exactly 0
    assert summary.final_alignment_regular == run.history["regular"][-1].alignment
    assert summary.test_error_regular == run.history["regular"][-1].test_error
    assert summary.alignment_gain == summary.final_alignment_regular - summary.initial_alignment_regular
    assert summary.hidden_change_slow == 0.0 < summary.hidden_change_regular == run.history["regular"][-1].hidden_change
    regular = run.history["regular"]
    slow = run.history["slow"]
    assert summary.tangent_alignment_gain == pytest.approx(
        (regular[-1].tangent_alignment - regular[0].tangent_alignment)
        - (slow[-1].tangent_alignment - slow[0].tangent_alignment),
        abs=1e-15,
    )
    assert read_summary_csv((tmp_path / SUMMARY_CSV).read_text()) == outcome.summaries


def test_a_summary_written_before_the_tangent_columns_still_reads(reference):
    old_fields = [
        f for f in SUMMARY_FIELDS if f not in ("tangent_alignment_gain", "hidden_change_slow", "hidden_change_regular")
    ]
    rows = list(csv.DictReader(io.StringIO(summary_csv(reference))))
    out = io.StringIO()
    writer = csv.DictWriter(out, old_fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    old = read_summary_csv(out.getvalue())
    assert [s.alignment_gain for s in old] == [s.alignment_gain for s in reference]
    assert all(s.tangent_alignment_gain is None and s.hidden_change_regular is None for s in old)


def test_summary_csv_round_trips_undefined_values(reference):
    undefined = dataclasses.replace(reference[0], alignment_gain=None, final_alignment_slow=None, diverged_slow=3)
    rows = [undefined, *reference[1:]]
    assert read_summary_csv(summary_csv(rows)) == rows


@pytest.mark.slow
def test_interrupted_sweep_resumes_with_only_the_missing_trials(tmp_path, reference):
    finished_first = []

    def crash_after_five(progress):
        finished_first.append(progress.last.trial_id)
        if progress.done == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_sweep(SPEC, tmp_path, SweepOptions(threads_per_trial=1), on_progress=crash_after_five)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(finished_first)
    # The runs below resume at the thread count it recorded, whatever this machine's default.
    assert json.loads((tmp_path / SWEEP_JSON).read_text())["threads_per_trial"] == 1
    assert len(read_summary_csv((tmp_path / SUMMARY_CSV).read_text())) == 5

    n_left, seconds = estimate_seconds(SPEC, folder=tmp_path)
    assert n_left == len(SPEC.trials()) - 5 and seconds > 0

    # A stop requested in the middle of a trial leaves that trial unsaved.
    checks = itertools.count()
    stopped = run_sweep(SPEC, tmp_path, should_stop=lambda: next(checks) >= 2)
    assert stopped.stopped and stopped.ran == []

    seen = []
    outcome = run_sweep(SPEC, tmp_path, on_progress=lambda p: seen.append((p.done, p.total, p.skipped)))
    all_ids = [t.id for t in SPEC.trials()]
    assert sorted(outcome.ran) == sorted(set(all_ids) - set(finished_first))
    assert outcome.skipped == 5 and not outcome.stopped
    assert seen == [(5 + i, 12, 5) for i in range(1, 8)]
    assert without_seconds(outcome.summaries) == without_seconds(reference)
    assert [s.trial_id for s in outcome.summaries] == all_ids
    assert read_summary_csv((tmp_path / SUMMARY_CSV).read_text()) == outcome.summaries
    assert {load_run(tmp_path / trial).provenance["torch_threads"] for trial in outcome.ran} == {1}
    assert run_sweep(SPEC, tmp_path).ran == []


def test_blocks_of_other_sizes_give_the_same_bits(tmp_path, reference):
    """Five workers' worth of blocks (at most 3 trials each, against the reference's 6) in this
    process. A batched product computes each trial's slice on its own, so at one thread a trial's
    bits do not depend on which trials share its block: exact, as the pool and Ray tests are (and
    the resumed sweep above, whose blocks hold the 7 trials left)."""
    outcome = run_sweep(SPEC, tmp_path, SweepOptions(workers=5, threads_per_trial=1, in_process=True))
    assert without_seconds(outcome.summaries) == without_seconds(reference)


def interrupted_after_one_trial(spec: SweepSpec, folder: pathlib.Path, **options) -> None:
    """`spec` into `folder`, ended by an error once its first trial is saved."""

    def crash(progress):
        raise Interrupted

    with pytest.raises(Interrupted):
        run_sweep(spec, folder, SweepOptions(**options), on_progress=crash)


@pytest.mark.slow
def test_trials_are_lean_by_default_and_a_resumed_sweep_keeps_what_it_kept(tmp_path):
    spec = SweepSpec(dataclasses.replace(BASE, epochs=3), ((6, 0),), widths=(16,), seeds=(0, 1))
    first, second = (t.id for t in spec.trials())

    interrupted_after_one_trial(spec, tmp_path / "lean")
    with pytest.raises(ValueError, match="keeps 'lean'; resume it with the same"):
        run_sweep(spec, tmp_path / "lean", SweepOptions(keep="all"))
    assert run_sweep(spec, tmp_path / "lean").ran == [second]
    for trial in (first, second):
        folder = tmp_path / "lean" / trial
        assert sorted(p.name for p in folder.iterdir()) == ["kernels.npz", "run.json"]
        assert sum(p.stat().st_size for p in folder.iterdir()) < 2**20
        run = load_run(folder)
        assert run.kernel_epochs == {"slow": [0, 3], "regular": [0, 3]} and run.epochs_done == 3

    run_sweep(spec, tmp_path / "all", SweepOptions(keep="all"))
    run = load_run(tmp_path / "all" / first)
    assert set(run.models) == {"slow", "regular"} and run.kernel_epochs == {}
    assert [len(run.kernels[name]) for name in ("slow", "regular")] == [4, 4]
    lean = load_run(tmp_path / "lean" / first)
    for name in ("slow", "regular"):
        assert np.array_equal(run.kernels[name][-1], lean.kernels[name][-1])
    assert json.loads((tmp_path / "all" / SWEEP_JSON).read_text())["keep"] == "all"


@pytest.mark.parametrize(
    "record",
    ["{not json", '{"keep": "some"}', "[]", '{"keep": "lean", "threads_per_trial": "two"}'],
    ids=["broken", "unknown keep", "a list", "threads not a count"],
)
def test_a_damaged_sweep_record_is_named_not_a_traceback(tmp_path, record):
    (tmp_path / SWEEP_JSON).write_text(record)
    with pytest.raises(ValueError, match=f"{SWEEP_JSON}"):
        run_sweep(SweepSpec(BASE, ((6, 0),), widths=(16,)), tmp_path)


def test_a_resumed_sweep_keeps_its_thread_count_and_refuses_another(tmp_path):
    spec = SweepSpec(BASE, ((6, 0),), widths=(16,), seeds=(0, 1))
    first, second = (t.id for t in spec.trials())

    interrupted_after_one_trial(spec, tmp_path, threads_per_trial=1)
    with pytest.raises(ValueError, match="trains at 1 torch thread.*resume it with the same \\(got 2\\)"):
        run_sweep(spec, tmp_path, SweepOptions(threads_per_trial=2))
    with pytest.raises(ValueError, match="resume it with the same"):
        estimate_seconds(spec, SweepOptions(threads_per_trial=2), tmp_path)
    # A sweep recorded before kalign kept the count: its trials' run.json say what they trained at.
    record = json.loads((tmp_path / SWEEP_JSON).read_text())
    del record["threads_per_trial"]
    (tmp_path / SWEEP_JSON).write_text(json.dumps(record))
    assert recorded_threads(tmp_path) == 1 == SweepOptions().settled(spec, tmp_path).threads_per_trial
    assert run_sweep(spec, tmp_path).ran == [second]
    assert load_run(tmp_path / second).provenance["torch_threads"] == 1
    assert json.loads((tmp_path / SWEEP_JSON).read_text())["threads_per_trial"] == 1
    assert recorded_threads(tmp_path / "new") is None


def test_cli_sweep_resumes_at_the_thread_count_it_recorded(tmp_path, capsys):
    args = ["sweep", "--digits", "3", "5", "8", "--widths", "16", "--epochs", "1", "--probe-size", "40"]
    args += ["--source", "sample", "--workers", "1", "--out", str(tmp_path)]
    assert main([*args, "--threads-per-trial", "1"]) == 0
    (tmp_path / "3v8-w16-r0.1-s0" / "run.json").unlink()  # as if interrupted before its last trial
    (tmp_path / "3v8-w16-r0.1-s0" / "kernels.npz").unlink()
    (tmp_path / "3v8-w16-r0.1-s0").rmdir()
    assert main(args) == 0
    assert load_run(tmp_path / "3v8-w16-r0.1-s0").provenance["torch_threads"] == 1
    with pytest.raises(SystemExit) as exited:
        main([*args, "--threads-per-trial", "2"])
    assert exited.value.code == 2
    assert "trains at 1 torch thread(s) per block; resume it with the same (got 2)" in capsys.readouterr().err


def test_a_folder_of_another_sweep_is_refused(tmp_path):
    spec = SweepSpec(BASE, ((6, 0),), widths=(16,))
    run_sweep(spec, tmp_path)
    longer = SweepSpec(dataclasses.replace(BASE, epochs=2), ((0, 6),), widths=(16,))
    with pytest.raises(ValueError, match="epochs=1 there, 2 here"):
        run_sweep(longer, tmp_path)


@pytest.mark.slow
def test_process_pool_gives_the_sequential_results_and_never_reruns_the_main_file(tmp_path, reference):
    """Run from a script without a __main__ guard: spawned workers must not run it again (under
    Streamlit the main file is the app)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        'print("main file ran")\n'
        "from kalign_core import ExperimentConfig\n"
        "from kalign_core.sweep.runner import run_sweep\nfrom kalign_core.sweep.spec import SweepSpec\n"
        "from kalign_core.sweep.options import SweepOptions\n"
        f"run_sweep({SPEC!r}, {str(tmp_path / 'sweep')!r}, SweepOptions(workers=2, threads_per_trial=1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("main file ran") == 1
    summaries = read_summary_csv((tmp_path / "sweep" / SUMMARY_CSV).read_text())
    assert without_seconds(summaries) == without_seconds(reference)


@pytest.mark.slow
def test_a_stop_reaches_the_blocks_training_in_a_pool(tmp_path):
    """Each worker's block is its share of the whole sweep, so a stop must end the running blocks
    (between batches), not wait for them: nothing is saved, none comes back finished."""
    spec = SweepSpec(dataclasses.replace(BASE, epochs=20), ((3, 5), (5, 8)), widths=(64,))
    outcome = run_sweep(spec, tmp_path, SweepOptions(workers=2, in_process=False), should_stop=lambda: True)
    assert outcome.stopped and outcome.ran == []
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


@pytest.mark.slow
def test_ray_gives_the_sequential_results(tmp_path, reference):
    if os.environ.get("CI") == "true":
        import ray  # CI installs ray: this test must run there
    else:
        ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # ours, not another on this machine
    try:
        outcome = run_sweep(SPEC, tmp_path, SweepOptions(backend="ray", workers=2, threads_per_trial=1))
    finally:
        ray.shutdown()
    assert without_seconds(outcome.summaries) == without_seconds(reference)


def test_pair_matrix_and_mean_spread(reference):
    gains = {}
    for s in reference:
        gains.setdefault(s.pair, []).append(s.alignment_gain)
    matrix = pair_matrix(reference)
    np.testing.assert_array_equal(matrix, matrix.T)
    for (a, b), values in gains.items():
        assert matrix[a, b] == pytest.approx(np.mean(values))
    assert np.isnan(matrix[0, 1]) and np.isnan(matrix[3, 3])
    by_width = mean_spread(reference, "width", "test_error_regular")
    assert list(by_width) == [16, 32]
    seed_means = [
        np.mean([s.test_error_regular for s in reference if s.width == 16 and s.seed == seed]) for seed in (0, 1)
    ]
    assert by_width[16] == pytest.approx((np.mean(seed_means), np.std(seed_means), 2))


def test_cli_sweep_runs_resumes_and_names_the_extremes(tmp_path, capsys):
    args = [
        "sweep",
        "--digits",
        "3",
        "5",
        "8",
        "--widths",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--probe-size",
        "40",
        "--source",
        "sample",
        "--workers",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 trials (3 pairs × 1 width × 1 ratio × 1 seed), 0 already in" in out
    assert "[3/3] " in out and "largest mean alignment gain" in out
    rows = read_summary_csv((tmp_path / SUMMARY_CSV).read_text())
    assert [r.trial_id for r in rows] == ["3v5-w16-r0.1-s0", "3v8-w16-r0.1-s0", "5v8-w16-r0.1-s0"]
    assert main(args) == 0
    assert "3 already in" in capsys.readouterr().out


def test_cli_sweep_keep_all_keeps_the_weights(tmp_path):
    args = ["sweep", "--digits", "3", "5", "--widths", "16", "--epochs", "1", "--probe-size", "40"]
    args += ["--source", "sample", "--workers", "1", "--keep", "all", "--out", str(tmp_path)]
    assert main(args) == 0
    assert set(load_run(tmp_path / "3v5-w16-r0.1-s0").models) == {"slow", "regular"}


def test_cli_sweep_bad_ratio_names_the_field(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--ratios", "2", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "ratios must be numbers from 0 to 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backend": "dask"}, "backend must be one of local, ray"),
        ({"workers": 0}, "workers must be a whole number from 1"),
        ({"threads_per_trial": 0}, "threads_per_trial must be a whole number from 1"),
        ({"gpus_per_trial": -1}, "gpus_per_trial must be a number from 0"),
    ],
)
def test_bad_run_options_are_refused_before_anything_runs(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(SPEC, tmp_path / "sweep", SweepOptions(**options))
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_with_the_linearized_twin_summarises_each_models_gap_and_twin(tmp_path):
    spec = SweepSpec(dataclasses.replace(BASE, linearized_twin=True), ((3, 5),), widths=(16, 32))
    outcome = run_sweep(spec, tmp_path, SweepOptions(threads_per_trial=1))
    for summary in outcome.summaries:
        trial = load_run(tmp_path / summary.trial_id)
        for name in ("slow", "regular"):
            last = trial.history[name][-1]
            assert getattr(summary, f"linear_gap_{name}") == last.linear_gap > 0
            assert getattr(summary, f"linear_test_error_{name}") == last.linear_test_error
    assert read_summary_csv((tmp_path / SUMMARY_CSV).read_text()) == outcome.summaries
