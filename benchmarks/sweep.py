"""Sweep throughput (issue 13): the README's 45-pair matrix as a plain loop of `run_experiment` and
as blocks of the batched trial engine, side by side in one process.

    python benchmarks/sweep.py              # 45 pairs, then 135 trials (3 seeds); 3 rounds each
    python benchmarks/sweep.py --quick      # 9 pairs, 3 epochs, 2 rounds (about a minute)
    python benchmarks/sweep.py --threads 1

The matrix: width 256, seed 0, 10 epochs, batch 50, the bundled sample (800 training digits per
pair). Both ways get the data already loaded and run with the same torch threads; the rounds
alternate loop and engine, so both meet the same noise. Each figure is given as best and worst
over the rounds (a shared machine's other work only adds time).

Training GFLOP are counted from the shapes (issue 4's count): per digit seen and per model,
2·784·w for the hidden forward, 2·784·w for its weight gradient and 3 × 2·w·k for the readout's
forward, weight gradient and the hidden layer's gradient; two models per trial, every epoch. Peak
is the best of a few 4096² float32 matrix products. Neither counts the per-trial extras (data
loading aside, all are in the wall clock): per-epoch test evaluation, probe kernels and measures,
null bands and the kernel machines' float64 solves.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalign_core import ExperimentConfig, run_experiment  # noqa: E402
from kalign_core.batched import group_blocks, load_trial_data, run_trials  # noqa: E402
from kalign_core.lean_runs import lean_trial_files  # noqa: E402
from kalign_core.sweep import ALL_PAIRS, alignment_gain  # noqa: E402


def peak_gflops(size: int = 4096, repeats: int = 3) -> float:
    a = torch.randn(size, size)
    best = min(_seconds(lambda: a @ a) for _ in range(repeats))
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
    return [ExperimentConfig(digits=pair, width=256, seed=seed, epochs=epochs, batch_size=50, source="sample")
            for pair in pairs for seed in seeds]


def compare(configs: list[ExperimentConfig], rounds: int, peak: float) -> dict:
    data = load_trial_data(configs)
    gflop = sum(training_gflop(c, len(data[c.digits].train_y), data[c.digits].train_x.shape[1]) for c in configs)
    times = {"loop": [], "engine": []}
    for _ in range(rounds):
        start = time.perf_counter()
        looped = [run_experiment(c, data[c.digits]) for c in configs]
        times["loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = run_trials(configs, data)
        times["engine"].append(time.perf_counter() - start)
    gain_gap = max(abs(alignment_gain(a, "alignment") - alignment_gain(b, "alignment")) for a, b in zip(looped, batched))
    error_gap = max(abs(a.history[n][-1].test_error - b.history[n][-1].test_error)
                    for a, b in zip(looped, batched) for n in ("slow", "regular"))
    lean = [sum(map(len, lean_trial_files(r).values())) for r in batched]
    return {"trials": len(configs), "blocks": len(group_blocks(configs, data)), "gflop": gflop, "times": times,
            "peak": peak, "gain_gap": gain_gap, "error_gap": error_gap, "lean_mb": max(lean) / 2**20}


def rows(name: str, figures: dict) -> list[str]:
    gflop, peak = figures["gflop"], figures["peak"]
    out = []
    for way, label in (("loop", "plain loop of `run_experiment`"), ("engine", "batched engine (`run_trials`)")):
        best, worst = min(figures["times"][way]), max(figures["times"][way])
        out.append(f"| {name}: {label} | {best:.1f}–{worst:.1f} s | {gflop:.0f} | "
                   f"{gflop / worst:.0f}–{gflop / best:.0f} | {gflop / worst / peak:.2f}–{gflop / best / peak:.2f} |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="9 pairs, 3 epochs, 2 rounds, no 135-trial matrix")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 3)
    peaks = [peak_gflops(2048 if args.quick else 4096)]
    cases = [("9 pairs, 3 epochs", matrix((0,), ALL_PAIRS[:9], 3))] if args.quick else \
        [("45 pairs", matrix((0,), ALL_PAIRS, 10)), ("135 trials (3 seeds)", matrix((0, 1, 2), ALL_PAIRS, 10))]
    results = []
    for name, configs in cases:
        figures = compare(configs, rounds, peaks[0])
        peaks.append(peak_gflops(2048 if args.quick else 4096))
        results.append((name, figures))
    peak = max(peaks)  # the rows use the best peak seen in the run
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; peak float32 matmul {peak:.0f} GFLOP/s "
          f"(best of {len(peaks)} measurements, {min(peaks):.0f}–{max(peaks):.0f}); {rounds} rounds\n")
    print("| sweep | wall clock (best–worst) | training GFLOP | GFLOP/s | fraction of peak |")
    print("|---|---|---|---|---|")
    for name, figures in results:
        figures["peak"] = peak
        print("\n".join(rows(name, figures)))
    print()
    for name, figures in results:
        print(f"- {name}: {figures['trials']} trials in {figures['blocks']} block(s); max |alignment gain difference| "
              f"loop vs engine {figures['gain_gap']:.1e}, max final test error difference {figures['error_gap']:.2f} "
              f"points; lean trial on disk {figures['lean_mb']:.2f} MB at most")
    return 0


if __name__ == "__main__":
    sys.exit(main())
