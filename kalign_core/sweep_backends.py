"""Where a sweep's trials run: in this process, in a pool of worker processes, or as Ray tasks.

Every backend runs each trial with the same number of torch threads (`threads_per_trial`, default 1):
torch's CPU matrix products give slightly different floats with different thread counts, and fixing
the count makes the results identical trial by trial whichever backend ran them.
"""

from __future__ import annotations

import itertools
import logging
import pathlib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from .config import ExperimentConfig, check_int
from .devices import cpu_count, resolve_device, torch_threads
from .sweep_spec import SweepSpec, Trial
from .training import ExperimentResult, run_experiment
from .workers import bare_main_module, shippable

BACKENDS = ("local", "ray")
MAX_WORKERS = 1024
MAX_THREADS = 256
MAX_GPUS_PER_TRIAL = 8


def default_workers(spec: SweepSpec, threads_per_trial: int = 1) -> int:
    """One worker per `threads_per_trial` cores on CPU; one on an accelerator (they share it)."""
    if resolve_device(spec.base.device).type != "cpu":
        return 1
    return max(1, cpu_count() // threads_per_trial)


def trial_results(
    pending: list[Trial],
    backend: str = "local",
    workers: int = 1,
    threads_per_trial: int = 1,
    address: str | None = None,
    in_process: bool | None = None,
    gpus_per_trial: float = 0.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[Trial, ExperimentResult]]:
    """(trial, result) for each of `pending` as it finishes (see `run_sweep` for the options); the
    options are checked now, before any trial starts. Close the iterator to cancel what is left."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    check_int("workers", workers, 1, MAX_WORKERS)
    check_int("threads_per_trial", threads_per_trial, 1, MAX_THREADS)
    if not (isinstance(gpus_per_trial, (int, float)) and 0 <= gpus_per_trial <= MAX_GPUS_PER_TRIAL):
        raise ValueError(f"gpus_per_trial must be a number from 0 to {MAX_GPUS_PER_TRIAL} (got {gpus_per_trial!r})")
    if backend == "ray":
        return _ray_results(pending, workers, threads_per_trial, address, gpus_per_trial)
    if not (workers == 1 if in_process is None else in_process):
        return _pool_results(pending, workers, threads_per_trial)
    return _sequential_results(pending, threads_per_trial, should_stop)


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
        ray.init(
            address=address,
            num_cpus=None if address else workers * threads,
            runtime_env={"py_modules": [str(pathlib.Path(__file__).parent)]},
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
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
