"""Running a sweep: `run_sweep` runs the trials of a `SweepSpec` not yet in its folder on a backend
(`backends`), saving each and rewriting the summary as it goes; the cost model estimates how
long that takes here and paces the time left.

The sweep folder is the state: a trial whose subfolder exists has finished, so rerunning a sweep
skips it. Its sweep.json records the spec, what each trial's folder keeps ("lean" or "all") and the torch
threads per block of trials, so that a resumed sweep keeps the same (options.py).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..data import load_digits
from ..devices import torch_threads
from ..engine.batched import iter_trials
from ..files import write_atomically
from ..runs import RUN_JSON, result_from_json, write_run_folder
from .backends import BlockRunner, trial_files, trial_results
from .options import SweepOptions
from .spec import SUMMARY_CSV, SWEEP_JSON, SweepSpec, Trial, TrialSummary, finished_trials, summarize, summary_csv

# Widths the cost model times a one-epoch trial at; costs in between and beyond are linear in width.
CALIBRATION_WIDTHS = (64, 512)


# -- cost model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostModel:
    """Seconds of one trial on this machine: setup (data, initial evaluation, saving) plus epochs,
    each linear in width, timed at CALIBRATION_WIDTHS with the sweep's threads per trial. Timed as a
    block of one trial (a block of many costs less per trial, so estimates err long)."""

    setup: tuple[float, float]  # seconds = setup[0] + setup[1] × width
    epoch: tuple[float, float]

    def trial_seconds(self, trial: Trial) -> float:
        (s0, s1), (e0, e1) = self.setup, self.epoch
        return max(0.0, s0 + s1 * trial.width) + trial.config.epochs * max(1e-4, e0 + e1 * trial.width)


def calibrate(spec: SweepSpec, threads_per_trial: int | None = 1, keep: str = "lean") -> CostModel:
    """Time a one-epoch trial of the first pair at two widths as a sweep trains and saves it (a
    fraction of a second on the sample), with `threads_per_trial` torch threads (None: as this
    process is set, e.g. in a server)."""
    pair = spec.pairs[0]
    data = {pair: load_digits(pair, spec.base.source)}
    points = []
    threads = torch_threads(threads_per_trial) if threads_per_trial else contextlib.nullcontext()
    with threads, tempfile.TemporaryDirectory() as scratch:
        for width in CALIBRATION_WIDTHS:
            config = replace(spec.base, digits=pair, width=width, epochs=1)
            started = time.perf_counter()
            [(_, result)] = iter_trials([config], data, kernel_machines=False)
            write_run_folder(trial_files(result, keep), pathlib.Path(scratch) / str(width))
            first, second = (h.seconds for h in result.history["slow"][:2])
            epoch = second - first
            points.append((time.perf_counter() - started - epoch, epoch))
    (s_small, e_small), (s_large, e_large) = points
    span = CALIBRATION_WIDTHS[1] - CALIBRATION_WIDTHS[0]
    slopes = ((s_large - s_small) / span, (e_large - e_small) / span)
    w = CALIBRATION_WIDTHS[0]
    return CostModel((s_small - slopes[0] * w, slopes[0]), (e_small - slopes[1] * w, slopes[1]))


def estimate_seconds(
    spec: SweepSpec, options: SweepOptions | None = None, folder=None, cost: CostModel | None = None
) -> tuple[int, float]:
    """(trials still to run, about how many seconds they take here) with `options`, as `run_sweep`
    would run them. Raises ValueError, as run_sweep would, for a folder whose record is damaged or
    says otherwise."""
    options = (options or SweepOptions()).settled(spec, folder)
    cost = cost or calibrate(spec, options.threads_per_trial)
    done = finished_trials(spec, folder) if folder is not None else {}
    pending = [t for t in spec.trials() if t.id not in done]
    total = sum(cost.trial_seconds(t) for t in pending)
    return len(pending), total / max(1, min(options.workers, len(pending)))


# -- running ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepProgress:
    done: int  # trials finished, including those found on disk
    total: int
    skipped: int  # found finished on disk when the sweep started
    elapsed: float
    seconds_left: float | None
    last: TrialSummary | None  # the trial that just finished


@dataclass(frozen=True)
class SweepOutcome:
    summaries: list[TrialSummary]  # finished trials in the spec's order
    ran: list[str]  # ids of the trials run this time
    skipped: int
    stopped: bool
    seconds: float


def run_sweep(
    spec: SweepSpec,
    folder,
    options: SweepOptions | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cost: CostModel | None = None,
    run_block: BlockRunner | None = None,
) -> SweepOutcome:
    """Run the trials not yet in `folder`, saving each as `folder/<trial id>` and rewriting
    `folder/summary.csv` after each block of trials, where and how `options` say (SweepOptions), or
    by `run_block` (backends.BlockRunner: e.g. a server's job slots) with the options' threads, keep
    and number of blocks at once.

    In this process, should_stop can end a trial midway, which is not saved. With a pool or Ray,
    should_stop and a raising on_progress cancel the queued blocks of trials and end the running
    ones (a pool's between batches; Ray cancels its tasks), whose trials are not saved; the trials
    of a block that has come back are all saved first. A server passes in_process=False to keep its
    own torch thread setting untouched. Ray hides GPUs from tasks that do not ask for them:
    gpus_per_trial asks, and device "auto" then finds one. `cost` (default: calibrated now) paces
    the time left.
    """
    should_stop = should_stop or (lambda: False)
    started = time.perf_counter()
    folder = pathlib.Path(folder)
    trials = spec.trials()
    options = (options or SweepOptions()).settled(spec, folder)
    done = finished_trials(spec, folder)
    skipped = len(done)
    # Heaviest first, so that a pool does not end waiting on one wide trial.
    pending = sorted((t for t in trials if t.id not in done), key=lambda t: -t.width * t.config.epochs)
    # Checks the options now; no trial starts before the loop below asks for results.
    results = trial_results(pending, options, should_stop, run_block)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(
        folder / SWEEP_JSON,
        json.dumps({**spec.to_dict(), "keep": options.keep, "threads_per_trial": options.threads_per_trial}, indent=1),
    )
    _write_summary(folder, trials, done)
    if pending and cost is None:
        cost = calibrate(spec, options.threads_per_trial, options.keep)
    left = {t.id: cost.trial_seconds(t) for t in pending}
    finished_cost, ran, stopped = 0.0, [], False
    summarized = 0  # trials of `ran` in summary.csv
    try:
        with contextlib.closing(results):
            for block in results:
                for trial, files in block:
                    # The summary is read from the run.json saved, as a resumed sweep reads it.
                    result = result_from_json(files[RUN_JSON])
                    if result.stopped:
                        stopped = True
                        break
                    write_run_folder(files, folder / trial.id)
                    done[trial.id] = summarize(trial, result)
                    ran.append(trial.id)
                    finished_cost += left.pop(trial.id)
                    elapsed = time.perf_counter() - started
                    # Time left scales the cost model by how fast the trials really went.
                    seconds_left = sum(left.values()) * elapsed / finished_cost if left else 0.0
                    if on_progress:
                        progress = SweepProgress(len(done), len(trials), skipped, elapsed, seconds_left, done[trial.id])
                        on_progress(progress)
                if stopped or (left and should_stop()):
                    stopped = True
                    break
                _write_summary(folder, trials, done)
                summarized = len(ran)
    finally:  # also the trials saved before a block ended early: a stop, or a raising on_progress
        if len(ran) > summarized:
            _write_summary(folder, trials, done)
    summaries = [done[t.id] for t in trials if t.id in done]
    return SweepOutcome(summaries, ran, skipped, stopped, time.perf_counter() - started)


def _write_summary(folder: pathlib.Path, trials: list[Trial], done: dict) -> None:
    write_atomically(folder / SUMMARY_CSV, summary_csv([done[t.id] for t in trials if t.id in done]))
