"""Sweep throughput: the README's 45-pair matrix as a plain loop of `run_experiment` and
as blocks of the batched trial engine, side by side in one process.

    python benchmarks/sweep.py              # 45 pairs, then 135 trials (3 seeds); 2 rounds (about 8 min)
    python benchmarks/sweep.py --quick      # 10 pairs, 3 epochs, 2 rounds (about a minute)
    python benchmarks/sweep.py --threads 1 --workers 2 --no-135 --no-write

The matrix: width 256, seed 0, 10 epochs, batch 50, the bundled sample (800 training digits per
pair). Five ways, each round in this order, so that all meet the same noise: (a) a plain loop of
`run_experiment` in this process, (b) the batched engine in this process, in the blocks a sweep
makes (batched.group_blocks), both with the data already loaded and the same torch threads, (c) as
(b) without the kernel machines, which a sweep's summaries do not use; (d) the sweep command itself,
`python -m kalign_core sweep` with the matrix's options into a fresh folder (its defaults: lean
trials, two threads per block, one worker per two cores), with its MB per trial on disk, and (e) the
same command on one worker process of 1 thread per core (spawned: their start-up counts), and (f)
the ceiling: the engine's SGD steps of every block and nothing else (no evaluation, measures,
records or saving; blocks built beforehand, untimed), at the threads of (a) and (b), and (g) the
same with each epoch's records (the test evaluation and the probe's measures, epoch 0 included),
the least a sweep that keeps its per-epoch curves can take. The
commands are timed as their wall clock minus that of `python -m kalign_core sweep --help` (the
interpreter's own start-up, importing torch). Each figure is given as best and worst over the
rounds (a shared machine's other work only adds time). The table goes into BENCHMARKS.md's "sweep"
section (benchmarks/run.py's write_section) unless --no-write.

The sweep command's goal is a share of the ceiling: (d) ≥ 0.75 of (f), best against best.

Then the whole-run figure: `run_experiment` at the defaults on the sample (width 2000, 10 epochs,
batch 200, 8 vs 9, every measure on), best of the rounds, against its training matmuls at
benchmarks/run.py's bare-matmul bound (each product by torch.mm in its fastest layout, nothing
else) and against the run's own SGD steps alone (the engine, a block of one trial). The goal (≤
1.5× the bound) is on the time until the result shows: the last epoch's `on_epoch`, every epoch's
records and measures done; the kernel machines follow it (the whole call's time is given too).

Training GFLOP are counted from the shapes (issue 4's count): per digit seen and per model,
2·784·w for the hidden forward, 2·784·w for its weight gradient and 3 × 2·w·k for the readout's
forward, weight gradient and the hidden layer's gradient; two models per trial, every epoch. Peak
is the best of a few 4096² float32 matrix products. Neither counts the per-trial extras (data
loading aside, all are in the wall clock): per-epoch test evaluation, probe kernels and measures,
null bands and the kernel machines' float64 solves.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalign_core import ExperimentConfig, run_experiment  # noqa: E402
from kalign_core.engine.batched import TrialBlock, group_blocks, load_trial_data, run_trials  # noqa: E402
from kalign_core.sweep.spec import ALL_PAIRS, alignment_gain, pairs_among  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from run import BENCHMARKS_MD, MatmulBound, timed, verdict, write_section  # noqa: E402

# The matrix's options on the sweep command line (the axes are added per case).
SWEEP_COMMAND = [sys.executable, "-m", "kalign_core", "sweep", "--widths", "256", "--batch-size", "50"]
SWEEP_COMMAND += ["--source", "sample"]


def peak_gflops(size: int = 4096, repeats: int = 3) -> float:
    """The machine's float32 matmul rate: all its cores, whatever threads the trials use."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count())
    a = torch.randn(size, size)
    best = min(_seconds(lambda: a @ a) for _ in range(repeats))
    torch.set_num_threads(threads)
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_gflop(config: ExperimentConfig, n_train: int, n_inputs: int) -> float:
    """The training matmuls of one trial (both models, every epoch), in GFLOP."""
    w, k = config.width, len(config.digits)
    per_digit = 2 * n_inputs * w + 2 * n_inputs * w + 3 * 2 * w * k
    return 2 * config.epochs * n_train * per_digit / 1e9


def matrix(seeds: tuple[int, ...], pairs, epochs: int) -> list[ExperimentConfig]:
    return [
        ExperimentConfig(digits=pair, width=256, seed=seed, epochs=epochs, batch_size=50, source="sample")
        for pair in pairs
        for seed in seeds
    ]


def built_blocks(configs: list[ExperimentConfig], data) -> list[TrialBlock]:
    """The blocks a sweep of `configs` trains, built (untimed)."""
    return [TrialBlock([configs[i] for i in block], data) for block in group_blocks(configs, data)]


def steps_seconds(configs: list[ExperimentConfig], data) -> float:
    """Seconds of the SGD steps alone of every block of `configs`, every epoch."""
    blocks = built_blocks(configs, data)
    start = time.perf_counter()
    with torch.no_grad():
        for block in blocks:
            for _ in range(block.epochs):
                block.train_epoch()
    return time.perf_counter() - start


def steps_and_records_seconds(configs: list[ExperimentConfig], data) -> float:
    """Seconds of every block's SGD steps and each epoch's records (test evaluation and probe
    measures, epoch 0 included) and nothing else: the least a sweep that keeps its per-epoch curves
    can take."""
    blocks = built_blocks(configs, data)
    start = time.perf_counter()
    with torch.no_grad():
        for block in blocks:
            block._record(0, {}, start)
            for epoch in range(1, block.epochs + 1):
                block.train_epoch()
                block._record(epoch, {}, start)
    return time.perf_counter() - start


def whole_run(rounds: int) -> dict:
    """Seconds of a default run on the sample (until its result shows, and the whole call), of its
    SGD steps alone and of its training matmuls at the bare bound (best of `rounds` each, side by
    side)."""
    config = ExperimentConfig(source="sample")
    data = load_trial_data([config])
    digits = data[config.digits]
    n, inputs = len(digits.train_y), digits.train_x.shape[1]
    cpu = torch.device("cpu")
    bound = MatmulBound(n, config.batch_size, config.width, len(config.digits), inputs, cpu, 10)
    times = {"run": [], "result": [], "steps": [], "bound": []}
    for _ in range(rounds):
        epochs_ended = []
        start = time.perf_counter()
        run_experiment(config, digits, on_epoch=lambda _, ended=epochs_ended: ended.append(time.perf_counter()))
        times["run"].append(time.perf_counter() - start)
        times["result"].append(epochs_ended[-1] - start)
        times["steps"].append(steps_seconds([config], data))
        times["bound"].append(config.epochs * min(timed(bound.epoch, cpu) for _ in range(3)))
    return {way: min(seconds) for way, seconds in times.items()}


def command_seconds(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(arguments, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def sweep_command(axes: list[str]) -> tuple[float, float]:
    """(seconds, MB per trial on disk) of the sweep command with `axes` into a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        seconds = command_seconds([*SWEEP_COMMAND, *axes, "--out", folder])
        trials = [p for p in pathlib.Path(folder).iterdir() if p.is_dir()]
        size = sum(f.stat().st_size for trial in trials for f in trial.iterdir())
    return seconds, size / len(trials) / 2**20


def compare(configs: list[ExperimentConfig], axes: list[str], rounds: int, peak: float, workers: int) -> dict:
    data = load_trial_data(configs)
    gflop = sum(training_gflop(c, len(data[c.digits].train_y), data[c.digits].train_x.shape[1]) for c in configs)
    times = {"loop": [], "engine": [], "no_machines": [], "command": [], "processes": [], "steps": [], "records": []}
    startup, command_mb = [], 0.0
    processes = ["--workers", str(workers), "--threads-per-trial", "1"]
    for _ in range(rounds):
        start = time.perf_counter()
        looped = [run_experiment(c, data[c.digits]) for c in configs]
        times["loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = run_trials(configs, data)
        times["engine"].append(time.perf_counter() - start)
        start = time.perf_counter()
        run_trials(configs, data, kernel_machines=False)
        times["no_machines"].append(time.perf_counter() - start)
        startup.append(command_seconds([*SWEEP_COMMAND, "--help"]))
        seconds, command_mb = sweep_command(axes)
        times["command"].append(seconds)
        times["processes"].append(sweep_command([*axes, *processes])[0])
        times["steps"].append(steps_seconds(configs, data))
        times["records"].append(steps_and_records_seconds(configs, data))
    # The commands' times less the interpreter's start-up (the best seen, so none of its noise is
    # taken off the command).
    for way in ("command", "processes"):
        times[way] = [seconds - min(startup) for seconds in times[way]]
    gains = [alignment_gain(a, "alignment") for a in looped]
    gain_gap = max(abs(g - alignment_gain(b, "alignment")) for g, b in zip(gains, batched))
    error_gap = max(
        abs(a.history[n][-1].test_error - b.history[n][-1].test_error)
        for a, b in zip(looped, batched)
        for n in ("slow", "regular")
    )
    return {
        "trials": len(configs),
        "blocks": len(group_blocks(configs, data)),
        "gflop": gflop,
        "times": times,
        "peak": peak,
        "gain_gap": gain_gap,
        "error_gap": error_gap,
        "command_mb": command_mb,
        "startup": min(startup),
        "workers": workers,
    }


def rows(name: str, figures: dict) -> list[str]:
    gflop, peak = figures["gflop"], figures["peak"]
    out = []
    less_startup = f"less its {figures['startup']:.1f} s start-up"
    ways = (
        ("loop", "(a) plain loop of `run_experiment`"),
        ("engine", "(b) batched engine (`run_trials`), blocks as a sweep makes them"),
        ("no_machines", "(c) as (b), kernel machines left out, as a sweep trains"),
        (
            "command",
            f"(d) `python -m kalign_core sweep` (its defaults), {less_startup}; "
            f"{figures['command_mb']:.2f} MB per trial",
        ),
        ("processes", f"(e) as (d) on {figures['workers']} worker processes × 1 thread, {less_startup}"),
        ("steps", "(f) ceiling: (b)'s SGD steps alone, nothing else"),
        ("records", "(g) (f) and each epoch's records (test evaluation, probe measures), nothing else"),
    )
    for way, label in ways:
        best, worst = min(figures["times"][way]), max(figures["times"][way])
        out.append(
            f"| {name}: {label} | {best:.1f}–{worst:.1f} s | {gflop:.0f} | "
            f"{gflop / worst:.0f}–{gflop / best:.0f} | {gflop / worst / peak:.2f}–{gflop / best / peak:.2f} |"
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 pairs, 3 epochs, 2 rounds, no 135-trial matrix")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-135", action="store_true", help="the 45-pair matrix only")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for (e) (default: cores)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {BENCHMARKS_MD.name}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or 2
    peaks = [peak_gflops(2048 if args.quick else 4096)]
    quick_digits = ["--digits", "0", "1", "2", "3", "4"]
    cases = (
        [
            (
                "10 pairs, 3 epochs",
                matrix((0,), pairs_among(range(5)), 3),
                [*quick_digits, "--seeds", "0", "--epochs", "3"],
            )
        ]
        if args.quick
        else [
            ("45 pairs", matrix((0,), ALL_PAIRS, 10), ["--seeds", "0", "--epochs", "10"]),
            ("135 trials (3 seeds)", matrix((0, 1, 2), ALL_PAIRS, 10), ["--seeds", "0", "1", "2", "--epochs", "10"]),
        ][: 1 if args.no_135 else 2]
    )
    started = time.strftime("%Y-%m-%d %H:%M")
    run = whole_run(max(rounds, 3))
    results = []
    for name, configs, axes in cases:
        figures = compare(configs, axes, rounds, peaks[0], args.workers)
        peaks.append(peak_gflops(2048 if args.quick else 4096))
        results.append((name, figures))
    peak = max(peaks)  # the rows use the best peak seen in the run
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads for (a) and (b); peak float32 matmul "
        f"{peak:.0f} GFLOP/s on {os.cpu_count()} threads "
        f"(best of {len(peaks)} measurements, {min(peaks):.0f}–{max(peaks):.0f}); {rounds} rounds",
        "",
        "| sweep | wall clock (best–worst) | training GFLOP | GFLOP/s | fraction of peak |",
        "|---|---|---|---|---|",
    ]
    for name, figures in results:
        figures["peak"] = peak
        lines += rows(name, figures)
    lines.append("")
    for name, figures in results:
        lines.append(
            f"- {name}: {figures['trials']} trials in {figures['blocks']} block(s); max |alignment gain difference| "
            f"loop vs engine {figures['gain_gap']:.1e}, "
            f"max final test error difference {figures['error_gap']:.2f} points"
        )
    for name, figures in results:
        share = min(figures["times"]["steps"]) / min(figures["times"]["command"])
        lines.append(
            f"- {name}: the sweep command (d) runs at **{share:.2f}** of the steps-alone ceiling (f), "
            f"best against best (goal ≥ 0.75: {verdict(share >= 0.75)}); "
            f"with nothing but the steps and each epoch's records (g) it would be at "
            f"{min(figures['times']['steps']) / min(figures['times']['records']):.2f}"
        )
    ratio = run["result"] / run["bound"]
    lines += [
        "",
        f"Whole default run (`run_experiment`, defaults, sample; best of {max(rounds, 3)}): the result shows "
        f"(last epoch's `on_epoch`) after {run['result']:.2f} s = **{ratio:.2f}×** its training matmuls at the "
        f"bare bound ({run['bound']:.2f} s; goal ≤ 1.5×: {verdict(ratio <= 1.5)}); the kernel machines follow, "
        f"the whole call {run['run']:.2f} s = {run['run'] / run['bound']:.2f}×; the engine's SGD steps for the "
        f"same run alone (a block of one trial) {run['steps']:.2f} s = {run['steps'] / run['bound']:.2f}× the bound.",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        mode = " --quick" if args.quick else ""
        write_section("sweep", f"Sweeps: `python benchmarks/sweep.py{mode}` ({started})", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
