"""Sweeps: one base config and axes (digit pairs, widths, slow/regular lr ratios, seeds) expanded into
trials, each a `run_experiment` saved as a run in its own subfolder, with a one-row summary per trial.

The sweep folder is the state: a trial whose subfolder exists has finished (save_run renames it into
place only when complete), so rerunning a sweep skips it. `summary.csv` is rewritten after every
trial with the summaries of all finished ones.

Every backend runs each trial with the same number of torch threads (`threads_per_trial`, default 1):
torch's CPU matrix products give slightly different floats with different thread counts, and fixing
the count makes the results identical trial by trial whichever backend ran them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import logging
import numbers
import os
import pathlib
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from typing import Callable, Iterator

import numpy as np
import torch

from .config import ExperimentConfig, _check_digits, _check_int
from .data import load_digits
from .devices import resolve_device
from .jobs import BackgroundJob, cpu_count
from .runs import RUN_JSON, result_from_json, save_run
from .results import ExperimentResult
from .training import run_experiment
from .workers import bare_main_module, shippable

BACKENDS = ("local", "ray")
SUMMARY_CSV, SWEEP_JSON = "summary.csv", "sweep.json"
MAX_WORKERS = 1024
MAX_THREADS = 256
MAX_GPUS_PER_TRIAL = 8
# Widths the cost model times a one-epoch trial at; costs in between and beyond are linear in width.
CALIBRATION_WIDTHS = (64, 512)


def round_lr(value: float) -> float:
    """ratio × lr to 12 significant digits, so that 0.1 × 0.01 is 0.001 and not 0.0010000000000000002."""
    return float(f"{value:.12g}")


def pairs_among(digits) -> tuple[tuple[int, int], ...]:
    """Every pair of the given digits, smaller digit first: all 45 for the ten digits."""
    return tuple(itertools.combinations(sorted(_check_digits(digits)), 2))


ALL_PAIRS = pairs_among(range(10))


@dataclass(frozen=True)
class SweepSpec:
    """`base` gives every setting the axes do not: the axes replace its digits (by each of `pairs`),
    width, slow_lr (= ratio × base.regular_lr) and seed. Empty axes take the base's value."""

    base: ExperimentConfig = ExperimentConfig()
    pairs: tuple[tuple[int, int], ...] = ALL_PAIRS
    widths: tuple[int, ...] = ()
    ratios: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        base = self.base
        axes = {
            "pairs": tuple(_check_pair(p) for p in self.pairs),
            "widths": tuple(self.widths) or (base.width,),
            "ratios": tuple(self.ratios) or (round_lr(base.slow_lr / base.regular_lr),),
            "seeds": tuple(self.seeds) or (base.seed,),
        }
        if not axes["pairs"]:
            raise ValueError("pairs must hold at least one pair of digits")
        for name, values in axes.items():
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{name} repeats {', '.join(map(str, repeated))}")
        for ratio in axes["ratios"]:
            if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
                raise ValueError(f"ratios must be numbers from 0 to 1, slow_lr / regular_lr (got {ratio!r})")
        axes["ratios"] = tuple(float(r) for r in axes["ratios"])
        for name, values in axes.items():
            object.__setattr__(self, name, values)
        self.trials()  # every trial's config is validated now, not halfway through the sweep

    def trials(self) -> list["Trial"]:
        return [
            Trial(pair, width, ratio, seed, replace(self.base, digits=pair, width=width, seed=seed,
                                                     slow_lr=round_lr(ratio * self.base.regular_lr)))
            for pair, width, ratio, seed in itertools.product(self.pairs, self.widths, self.ratios, self.seeds)
        ]

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "pairs": [list(p) for p in self.pairs], "widths": list(self.widths),
                "ratios": list(self.ratios), "seeds": list(self.seeds)}


def _check_pair(pair) -> tuple[int, int]:
    """A pair as (smaller digit, larger digit)."""
    allowed = f"pairs must each be two different digits from 0 to 9 (got {pair!r})"
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise ValueError(allowed) from None
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and 0 <= d <= 9 for d in (a, b)) or a == b:
        raise ValueError(allowed)
    return (int(min(a, b)), int(max(a, b)))


@dataclass(frozen=True)
class Trial:
    pair: tuple[int, int]
    width: int
    ratio: float
    seed: int
    config: ExperimentConfig

    @property
    def id(self) -> str:
        """Stable folder name, e.g. 8v9-w256-r0.1-s0 (repr keeps every digit of the ratio)."""
        return f"{self.pair[0]}v{self.pair[1]}-w{self.width}-r{self.ratio!r}-s{self.seed}"


@dataclass(frozen=True)
class TrialSummary:
    """One trial in one row. alignment_gain = (final − initial alignment of the regular model)
    − (final − initial of the slow one): how much more feature learning moved the kernel towards
    the target. Both models start from the same weights, so the initial values agree.
    tangent_alignment_gain is the same for the tangent kernel's alignment; hidden_change_* is
    ‖W − W₀‖_F / ‖W₀‖_F of each model's hidden weights at the end (summaries written before kalign
    measured these lack them: None).
    None = undefined (alignment 0/0, or a diverged model); diverged_* = epoch of divergence."""

    trial_id: str
    digit_a: int
    digit_b: int
    width: int
    lr_ratio: float
    seed: int
    slow_lr: float
    regular_lr: float
    epochs: int
    source: str
    initial_alignment_slow: float | None
    final_alignment_slow: float | None
    initial_alignment_regular: float | None
    final_alignment_regular: float | None
    alignment_gain: float | None
    test_error_slow: float
    test_error_regular: float
    diverged_slow: int | None
    diverged_regular: int | None
    seconds: float
    tangent_alignment_gain: float | None = None
    hidden_change_slow: float | None = None
    hidden_change_regular: float | None = None

    @property
    def pair(self) -> tuple[int, int]:
        return self.digit_a, self.digit_b


SUMMARY_FIELDS = [f.name for f in dataclasses.fields(TrialSummary)]
# Columns that summaries written by earlier versions lack.
_LATER_FIELDS = {"tangent_alignment_gain", "hidden_change_slow", "hidden_change_regular"}


def summarize(trial: Trial, result: ExperimentResult) -> TrialSummary:
    slow, regular = result.history["slow"], result.history["regular"]
    return TrialSummary(
        trial.id, *trial.pair, trial.width, trial.ratio, trial.seed,
        result.config.slow_lr, result.config.regular_lr, result.config.epochs, result.source,
        *alignment_ends(result, "alignment"), alignment_gain(result, "alignment"), slow[-1].test_error, regular[-1].test_error,
        result.diverged_at["slow"], result.diverged_at["regular"], result.seconds,
        alignment_gain(result, "tangent_alignment"), slow[-1].hidden_change, regular[-1].hidden_change,
    )


def alignment_ends(result: ExperimentResult, metric: str) -> list:
    """Initial and final `metric` of the slow model, then of the regular one."""
    return [getattr(result.history[name][i], metric) for name in ("slow", "regular") for i in (0, -1)]


def alignment_gain(result: ExperimentResult, metric: str) -> float | None:
    """(final − initial `metric` of the regular model) − (the same of the slow one); None if undefined."""
    ends = alignment_ends(result, metric)
    if None in ends:
        return None
    slow_start, slow_end, regular_start, regular_end = ends
    return (regular_end - regular_start) - (slow_end - slow_start)


def summary_csv(summaries: list[TrialSummary]) -> str:
    """One row per trial; undefined values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(SUMMARY_FIELDS)
    for s in summaries:
        writer.writerow(["" if v is None else v for v in dataclasses.astuple(s)])
    return out.getvalue()


def read_summary_csv(text: str) -> list[TrialSummary]:
    """Back from `summary_csv` (floats round-trip exactly: csv writes their repr)."""
    kinds = {f.name: f.type for f in dataclasses.fields(TrialSummary)}
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not set(SUMMARY_FIELDS) - _LATER_FIELDS <= set(rows[0]) <= set(SUMMARY_FIELDS):
        raise ValueError(f"a sweep summary needs exactly the columns {', '.join(SUMMARY_FIELDS)} "
                         f"(summaries written by earlier versions lack {', '.join(sorted(_LATER_FIELDS))})")

    def parse(name, cell):
        kind = kinds[name]
        if cell == "" and "None" in kind:
            return None
        if kind.startswith("int"):
            return int(cell)
        return float(cell) if kind.startswith("float") else cell

    return [TrialSummary(**{k: parse(k, v) for k, v in row.items()}) for row in rows]


# -- aggregation for the figures -------------------------------------------------------------------

def mean_spread(summaries: list[TrialSummary], key: str, metric: str = "alignment_gain") -> dict:
    """`metric` grouped by `key` (e.g. "width"): {value: (mean, spread, seeds)}. Within a group each
    seed's trials (other pairs, ratios, ...) are averaged first; mean and spread (standard deviation)
    are then taken over those per-seed means, so the spread is the seed-to-seed noise. Undefined
    values are left out."""
    groups: dict = {}
    for s in summaries:
        value = getattr(s, metric)
        if value is not None:
            groups.setdefault(getattr(s, key), {}).setdefault(s.seed, []).append(value)
    spread = {}
    for group, by_seed in sorted(groups.items()):
        seed_means = [np.mean(values) for values in by_seed.values()]
        spread[group] = (float(np.mean(seed_means)), float(np.std(seed_means)), len(seed_means))
    return spread


def pair_matrix(summaries: list[TrialSummary], metric: str = "alignment_gain") -> np.ndarray:
    """10×10 symmetric matrix of `metric` averaged per digit pair over the other axes; NaN where absent
    or undefined."""
    matrix = np.full((10, 10), np.nan)
    for (a, b), (mean, _, _) in mean_spread(summaries, "pair", metric).items():
        matrix[a, b] = matrix[b, a] = mean
    return matrix


# -- the sweep folder ------------------------------------------------------------------------------

def finished_trials(spec: SweepSpec, folder) -> dict[str, TrialSummary]:
    """Summaries of the spec's trials already saved in `folder`; a saved trial with other settings
    is an error (the folder belongs to another sweep)."""
    folder = pathlib.Path(folder)
    done = {}
    for trial in spec.trials():
        path = folder / trial.id / RUN_JSON
        if not path.is_file():
            continue
        result = result_from_json(path.read_bytes())
        if result.config != trial.config:
            theirs, ours = result.config.to_dict(), trial.config.to_dict()
            differ = ", ".join(f"{k}={theirs[k]!r} there, {ours[k]!r} here" for k in ours if theirs[k] != ours[k])
            raise ValueError(f"{folder / trial.id} holds a run with other settings ({differ}); "
                             "choose another sweep folder")
        if not result.stopped:
            done[trial.id] = summarize(trial, result)
    return done


def _write_atomically(path: pathlib.Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


# -- cost model ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostModel:
    """Seconds of one trial on this machine: setup (data, initial evaluation, saving) plus epochs,
    each linear in width, timed at CALIBRATION_WIDTHS with the sweep's threads per trial."""

    setup: tuple[float, float]  # seconds = setup[0] + setup[1] × width
    epoch: tuple[float, float]

    def trial_seconds(self, trial: Trial) -> float:
        (s0, s1), (e0, e1) = self.setup, self.epoch
        return max(0.0, s0 + s1 * trial.width) + trial.config.epochs * max(1e-4, e0 + e1 * trial.width)


def calibrate(spec: SweepSpec, threads_per_trial: int | None = 1) -> CostModel:
    """Time a one-epoch trial of the first pair at two widths (a fraction of a second on the sample),
    with `threads_per_trial` torch threads (None: as this process is set, e.g. in a server)."""
    pair = spec.pairs[0]
    data = load_digits(pair, spec.base.source)
    points = []
    threads = torch_threads(threads_per_trial) if threads_per_trial else contextlib.nullcontext()
    with threads, tempfile.TemporaryDirectory() as scratch:
        for width in CALIBRATION_WIDTHS:
            config = replace(spec.base, digits=pair, width=width, epochs=1)
            started = time.perf_counter()
            result = run_experiment(config, data)
            save_run(result, pathlib.Path(scratch) / str(width))
            first, second = (h.seconds for h in result.history["slow"][:2])
            epoch = second - first
            points.append((time.perf_counter() - started - epoch, epoch))
    (s_small, e_small), (s_large, e_large) = points
    span = CALIBRATION_WIDTHS[1] - CALIBRATION_WIDTHS[0]
    slopes = ((s_large - s_small) / span, (e_large - e_small) / span)
    w = CALIBRATION_WIDTHS[0]
    return CostModel((s_small - slopes[0] * w, slopes[0]), (e_small - slopes[1] * w, slopes[1]))


def estimate_seconds(spec: SweepSpec, workers: int = 1, threads_per_trial: int = 1, folder=None,
                     cost: CostModel | None = None) -> tuple[int, float]:
    """(trials still to run, about how many seconds they take on `workers` workers here)."""
    cost = cost or calibrate(spec, threads_per_trial)
    done = finished_trials(spec, folder) if folder is not None else {}
    pending = [t for t in spec.trials() if t.id not in done]
    total = sum(cost.trial_seconds(t) for t in pending)
    return len(pending), total / max(1, min(workers, len(pending)))


def duration_text(seconds: float) -> str:
    """e.g. "4.2 s", "38 s", "3 min 05 s"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


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


@contextlib.contextmanager
def torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_workers(spec: SweepSpec, threads_per_trial: int = 1) -> int:
    """One worker per `threads_per_trial` cores on CPU; one on an accelerator (they share it)."""
    if resolve_device(spec.base.device).type != "cpu":
        return 1
    return max(1, cpu_count() // threads_per_trial)


def run_sweep(
    spec: SweepSpec,
    folder,
    backend: str = "local",
    workers: int = 1,
    threads_per_trial: int = 1,
    address: str | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cost: CostModel | None = None,
    in_process: bool | None = None,
    gpus_per_trial: float = 0.0,
) -> SweepOutcome:
    """Run the trials not yet in `folder`, saving each as `folder/<trial id>` and rewriting
    `folder/summary.csv` after each one.

    backend "local": in this process when `in_process` (default: when workers=1; should_stop can then
    end a trial midway, which is not saved), else in a pool of `workers` processes (a server passes
    in_process=False to keep its own torch thread setting untouched). backend "ray": tasks on the cluster at `address`, or on
    a local Ray instance with workers × threads_per_trial CPUs (an already initialised Ray is used as
    is). Ray hides GPUs from tasks that do not ask for them: `gpus_per_trial` (e.g. 0.25 to share one
    GPU among four trials) asks, and device "auto" then finds one. `cost` (default: calibrated now) paces the time left. With a pool or Ray, should_stop and a raising on_progress cancel the queued trials and wait
    for the running ones, whose results are dropped unsaved.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    _check_int("workers", workers, 1, MAX_WORKERS)
    _check_int("threads_per_trial", threads_per_trial, 1, MAX_THREADS)
    if not (isinstance(gpus_per_trial, (int, float)) and 0 <= gpus_per_trial <= MAX_GPUS_PER_TRIAL):
        raise ValueError(f"gpus_per_trial must be a number from 0 to {MAX_GPUS_PER_TRIAL} (got {gpus_per_trial!r})")
    should_stop = should_stop or (lambda: False)
    started = time.perf_counter()
    folder = pathlib.Path(folder)
    trials = spec.trials()
    done = finished_trials(spec, folder)
    skipped = len(done)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / SWEEP_JSON, json.dumps(spec.to_dict(), indent=1))
    _write_summary(folder, trials, done)
    # Heaviest first, so that a pool does not end waiting on one wide trial.
    pending = sorted((t for t in trials if t.id not in done), key=lambda t: -t.width * t.config.epochs)
    if pending and cost is None:
        cost = calibrate(spec, threads_per_trial)
    left = {t.id: cost.trial_seconds(t) for t in pending}
    finished_cost, ran, stopped = 0.0, [], False

    if backend == "ray":
        results = _ray_results(pending, workers, threads_per_trial, address, gpus_per_trial)
    elif not (workers == 1 if in_process is None else in_process):
        results = _pool_results(pending, workers, threads_per_trial)
    else:
        results = _sequential_results(pending, threads_per_trial, should_stop)
    with contextlib.closing(results):
        for trial, result in results:
            if result.stopped:
                stopped = True
                break
            save_run(result, folder / trial.id)
            done[trial.id] = summarize(trial, result)
            ran.append(trial.id)
            _write_summary(folder, trials, done)
            finished_cost += left.pop(trial.id)
            elapsed = time.perf_counter() - started
            # Time left scales the cost model by how fast the trials really went.
            seconds_left = sum(left.values()) * elapsed / finished_cost if left else 0.0
            if on_progress:
                on_progress(SweepProgress(len(done), len(trials), skipped, elapsed, seconds_left, done[trial.id]))
            if left and should_stop():
                stopped = True
                break
    summaries = [done[t.id] for t in trials if t.id in done]
    return SweepOutcome(summaries, ran, skipped, stopped, time.perf_counter() - started)


@dataclass(frozen=True)
class SweepStatus:
    """A snapshot of a SweepJob. state: "running", then "finished", "stopped" or "failed" (`error`)."""

    state: str
    progress: SweepProgress | None
    summaries: list[TrialSummary]  # finished so far, in the order they finished
    error: str | None


class SweepJob(BackgroundJob):
    """`run_sweep` in a daemon thread, for a user interface that polls `status()` and may `stop()`
    (queue no more trials; the running ones finish unsaved, the saved ones stay); safe from any
    thread. The trials run in worker processes (never in this one)."""

    thread_name = "kalign-sweep"

    def __init__(self, spec: SweepSpec, folder, **options):
        super().__init__()
        self.spec, self.folder, self._options = spec, pathlib.Path(folder), options
        self._status = SweepStatus("running", None, [], None)

    def status(self) -> SweepStatus:
        with self._lock:
            return self._status

    def _on_progress(self, progress: SweepProgress) -> None:
        with self._lock:
            self._status = replace(self._status, progress=progress,
                                   summaries=[*self._status.summaries, progress.last])

    def _work(self) -> None:
        try:
            outcome = run_sweep(self.spec, self.folder, on_progress=self._on_progress,
                                should_stop=self._stop.is_set, **{"in_process": False, **self._options})
            state = "stopped" if outcome.stopped else "finished"
            with self._lock:
                self._status = replace(self._status, state=state, summaries=outcome.summaries)
        except Exception as error:  # shown to the user; the trials saved so far stay on disk
            with self._lock:
                message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                self._status = replace(self._status, state="failed", error=message)


def _write_summary(folder: pathlib.Path, trials: list[Trial], done: dict) -> None:
    _write_atomically(folder / SUMMARY_CSV, summary_csv([done[t.id] for t in trials if t.id in done]))


def run_trial(config: dict, threads: int) -> ExperimentResult:
    """One trial (config as `ExperimentConfig.to_dict()`) with a fixed thread count: what worker
    processes and Ray tasks run."""
    with torch_threads(threads):
        return run_experiment(ExperimentConfig.from_dict(config))


def _sequential_results(pending, threads, should_stop) -> Iterator[tuple[Trial, ExperimentResult]]:
    with torch_threads(threads):
        for trial in pending:
            yield trial, run_experiment(trial.config, should_stop=should_stop)


def _pool_results(pending, workers, threads) -> Iterator[tuple[Trial, ExperimentResult]]:
    """Trials handed out one per free worker (not all queued at once), so that each is pickled just
    as it is submitted, and stopping has no queue to cancel."""
    # spawn, not fork: forking a process that runs threads (Streamlit, torch) can deadlock.
    pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)) or 1, mp_context=get_context("spawn"))
    queue, futures = iter(pending), {}
    try:
        while True:
            with bare_main_module():  # the pool starts a process when a trial finds none free
                for trial in itertools.islice(queue, workers - len(futures)):
                    futures[pool.submit(shippable(run_trial), trial.config.to_dict(), threads)] = trial
            if not futures:
                return
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                yield futures.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_results(pending, workers, threads, address, gpus) -> Iterator[tuple[Trial, ExperimentResult]]:
    try:
        import ray
    except ImportError:
        raise ValueError("backend 'ray' needs Ray: pip install ray") from None
    started_here = not ray.is_initialized()
    if started_here:
        # The package travels with the job, so cluster nodes need torch and numpy but not kalign.
        ray.init(address=address, num_cpus=None if address else workers * threads,
                 runtime_env={"py_modules": [str(pathlib.Path(__file__).parent)]},
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(shippable(run_trial))
    refs = {}
    try:
        refs = {task.remote(t.config.to_dict(), threads): t for t in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            yield refs.pop(ready[0]), ray.get(ready[0])
    finally:
        for ref in refs:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()
