"""Running a sweep: `run_sweep` runs the trials of a `SweepSpec` not yet in its folder on a backend
(`backends`), saving each and rewriting the summary as it goes; the cost model estimates how
long that takes here and paces the time left.

The sweep folder is the state: a trial whose subfolder exists has finished, so rerunning a sweep
skips it. Its sweep.json records the spec, what each trial's folder keeps ("lean" or "all", see
backends.py) and the torch threads per block of trials (CPU products round differently with
another count), so that a resumed sweep keeps the same (asking for another is refused).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..config import check_int
from ..data import load_digits
from ..devices import torch_threads
from ..engine.batched import iter_trials
from ..files import write_atomically
from ..runs import RUN_JSON, result_from_json, write_run_folder
from .backends import KEEP, MAX_THREADS, MAX_WORKERS, default_threads, trial_files, trial_results
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
    spec: SweepSpec, workers: int = 1, threads_per_trial: int | None = None, folder=None, cost: CostModel | None = None
) -> tuple[int, float]:
    """(trials still to run, about how many seconds they take on `workers` workers here), at the
    threads per block `run_sweep` would train at. Raises ValueError, as run_sweep would, for a
    folder whose record is damaged or says otherwise."""
    record = None
    if folder is not None:
        folder = pathlib.Path(folder)
        record = _recorded(folder)
        _kept_by(folder, None, record)
    threads_per_trial = sweep_threads(spec, folder, workers, threads_per_trial, record)
    cost = cost or calibrate(spec, threads_per_trial)
    done = finished_trials(spec, folder) if folder is not None else {}
    pending = [t for t in spec.trials() if t.id not in done]
    total = sum(cost.trial_seconds(t) for t in pending)
    return len(pending), total / max(1, min(workers, len(pending)))


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
    backend: str = "local",
    workers: int = 1,
    threads_per_trial: int | None = None,
    address: str | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cost: CostModel | None = None,
    in_process: bool | None = None,
    gpus_per_trial: float = 0.0,
    keep: str | None = None,
) -> SweepOutcome:
    """Run the trials not yet in `folder`, saving each as `folder/<trial id>` and rewriting
    `folder/summary.csv` after each block of trials.

    backend "local": in this process when `in_process` (default: when workers=1; should_stop can then
    end a trial midway, which is not saved), else in a pool of `workers` processes (a server passes
    in_process=False to keep its own torch thread setting untouched). backend "ray": tasks on the
    cluster at `address`, or on a local Ray instance with workers × threads_per_trial CPUs (an already
    initialised Ray is used as is). Ray hides GPUs from tasks that do not ask for them:
    `gpus_per_trial` (asked per block of trials, one task: e.g. 0.25 lets four blocks share a GPU)
    asks, and device "auto" then finds one. `cost` (default: calibrated now) paces the time left.
    With a pool or Ray, should_stop and a raising on_progress cancel the queued blocks of trials and
    end the running ones (a pool's between batches; Ray cancels its tasks), whose trials are not
    saved; the trials of a block that has come back are all saved first.
    `keep`: what each trial's folder holds, "lean" (run.json and the first and last epoch's
    kernels, under 1 MB) or "all" (what `save_run` writes); default: what the folder's sweep
    recorded, else "lean". `threads_per_trial`: see `sweep_threads`.
    """
    should_stop = should_stop or (lambda: False)
    started = time.perf_counter()
    folder = pathlib.Path(folder)
    trials = spec.trials()
    check_int("workers", workers, 1, MAX_WORKERS)  # before the default threads divide by it
    record = _recorded(folder)
    keep = _kept_by(folder, keep, record)
    threads_per_trial = sweep_threads(spec, folder, workers, threads_per_trial, record)
    done = finished_trials(spec, folder)
    skipped = len(done)
    # Heaviest first, so that a pool does not end waiting on one wide trial.
    pending = sorted((t for t in trials if t.id not in done), key=lambda t: -t.width * t.config.epochs)
    # Checks the options now; no trial starts before the loop below asks for results.
    results = trial_results(
        pending, backend, workers, threads_per_trial, address, in_process, gpus_per_trial, should_stop, keep
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(
        folder / SWEEP_JSON,
        json.dumps({**spec.to_dict(), "keep": keep, "threads_per_trial": threads_per_trial}, indent=1),
    )
    _write_summary(folder, trials, done)
    if pending and cost is None:
        cost = calibrate(spec, threads_per_trial, keep)
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


def _kept_by(folder: pathlib.Path, keep: str | None, record: dict | None) -> str:
    """`keep`, checked against what the sweep in `folder` recorded (`record`, its sweep.json); None:
    that record. Sweeps written before kalign kept lean trials kept everything."""
    recorded = None if record is None else record.get("keep", "all")
    if recorded is not None and recorded not in KEEP:
        raise ValueError(f"{folder / SWEEP_JSON} records keep={recorded!r}; kalign knows {', '.join(KEEP)}")
    if keep is None:
        return recorded or "lean"
    if recorded not in (None, keep):
        raise ValueError(f"the sweep in {folder} keeps {recorded!r}; resume it with the same (got {keep!r})")
    return keep


def sweep_threads(
    spec: SweepSpec, folder, workers: int | None = 1, threads_per_trial: int | None = None, record: dict | None = None
) -> int:
    """The torch threads per block a sweep of `spec` into `folder` trains at: `threads_per_trial`,
    else what the sweep in `folder` trained at, else `default_threads`. Refuses a count other than
    the one the folder's trials trained at: another rounds differently. `record`: the folder's
    sweep.json where already read."""
    recorded = recorded_threads(folder, record) if folder is not None else None
    if threads_per_trial is None:
        return recorded or default_threads(spec, workers)
    if recorded not in (None, threads_per_trial):
        raise ValueError(
            f"the sweep in {folder} trains at {recorded} torch thread(s) per block; resume it with the same "
            f"(got {threads_per_trial}), or start a new sweep"
        )
    return threads_per_trial


def recorded_threads(folder, record: dict | None = None) -> int | None:
    """The torch threads per block the sweep in `folder` trains at: its sweep.json's record (`record`
    where already read), else (a sweep recorded before kalign kept the count) what its first
    finished trial's run.json says it trained at; None for a new sweep."""
    folder = pathlib.Path(folder)
    record = _recorded(folder) if record is None else record
    if record is None:  # not a sweep's folder (yet): nothing recorded
        return None
    threads, where = record.get("threads_per_trial"), folder / SWEEP_JSON
    if threads is None:
        threads, where = _trial_threads(folder)
    if threads is None:
        return None
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{where} records {threads!r} torch threads: not a whole number from 1 to {MAX_THREADS}")
    return threads


def _trial_threads(folder: pathlib.Path) -> tuple[object, pathlib.Path | None]:
    """The torch threads the first finished trial in `folder` trained at, and its run.json."""
    for run_json in sorted(folder.glob(f"*/{RUN_JSON}")):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a damaged trial is resume's to report
            threads = json.loads(run_json.read_text()).get("provenance", {}).get("torch_threads")
            if threads is not None:
                return threads, run_json
    return None, None


def _recorded(folder: pathlib.Path) -> dict | None:
    """What the sweep in `folder` recorded in its sweep.json; None when there is none."""
    if not (folder / SWEEP_JSON).is_file():
        return None
    try:
        recorded = json.loads((folder / SWEEP_JSON).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / SWEEP_JSON} is unreadable ({error}): not a kalign sweep folder?") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{folder / SWEEP_JSON} is unreadable (not an object): not a kalign sweep folder?")
    return recorded


def _write_summary(folder: pathlib.Path, trials: list[Trial], done: dict) -> None:
    write_atomically(folder / SUMMARY_CSV, summary_csv([done[t.id] for t in trials if t.id in done]))
