"""Where a sweep's trials run: in this process, in a pool of worker processes, as Ray tasks, or handed
to a caller's block runner (a server's job slots); in each, in blocks trained as one batched
computation (engine/batched.py).

Pending trials are grouped into blocks (`trial_blocks`), about one per worker so that each has work.
Each backend trains a block with `iter_trials` and hands back, per trial, the files its folder is to
hold (`trial_files`): lean by default (runs/lean.py, under 1 MB), or everything `runs.save_run`
writes with keep "all". Files, not results, travel back from workers: they are what the sweep
saves, and the lean ones a fraction of a result with every epoch's kernels.

Every backend trains with the same number of torch threads per block (`threads_per_trial`; run_sweep
records it, see options.py): torch's CPU matrix products give slightly different floats with
different thread counts. A batched product computes each trial's slice on its own, so a trial gives
the same bits in whichever block it trains at a fixed thread count (tests/core/test_sweep.py checks
backends that block it differently against each other exactly).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import pathlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from multiprocessing import get_context

from ..config import ExperimentConfig
from ..devices import torch_threads
from ..engine.batched import group_blocks, iter_trials, load_trial_data
from ..processes import bare_main_module, shippable
from ..results import ExperimentResult
from ..runs import run_files
from ..runs.lean import lean_trial_files
from .options import SweepOptions
from .spec import Trial

# A trial that came back and the files its folder is to hold.
FinishedTrial = tuple[Trial, dict[str, bytes]]
# Trains a block somewhere else (e.g. in a server's job slots): (configs as `ExperimentConfig.to_dict()`,
# torch threads, keep, should_stop) → (position in the block, files) per trial trained, as `train_block`.
BlockRunner = Callable[[list[dict], int, str, Callable[[], bool]], list[tuple[int, dict[str, bytes]]]]
# How often a pool's sweep checks should_stop while its blocks train.
STOP_POLL_S = 0.2


def trial_blocks(pending: list[Trial], workers: int, data=None) -> list[list[Trial]]:
    """`pending` in blocks that train together (batched.group_blocks), at most
    ceil(len(pending) / workers) trials each, so that every worker gets a block. `data`: the
    trials' digits where already loaded (batched.load_trial_data)."""
    data = load_trial_data([t.config for t in pending], data)
    limit = math.ceil(len(pending) / workers)
    return [[pending[i] for i in block] for block in group_blocks([t.config for t in pending], data, limit)]


def trial_results(
    pending: list[Trial],
    options: SweepOptions,
    should_stop: Callable[[], bool] = lambda: False,
    run_block: BlockRunner | None = None,
) -> Iterator[list[FinishedTrial]]:
    """The trials of each block as it finishes, with the files each trial's folder is to hold, run
    as `options` (settled: threads and keep decided) say, or by `run_block`, up to `options.workers`
    blocks at once. Close the iterator to cancel what is left."""
    threads, keep, workers = options.threads_per_trial, options.keep, options.workers
    if run_block is not None:
        return _runner_results(pending, workers, threads, should_stop, keep, run_block)
    if options.backend == "ray":
        return _ray_results(pending, workers, threads, options.address, options.gpus_per_trial, keep)
    if not (workers == 1 if options.in_process is None else options.in_process):
        return _pool_results(pending, workers, threads, should_stop, keep)
    return _sequential_results(pending, workers, threads, should_stop, keep)


def trial_files(result: ExperimentResult, keep: str) -> dict[str, bytes]:
    return run_files(result) if keep == "all" else lean_trial_files(result)


def _train_block(configs: list[ExperimentConfig], should_stop=None, keep: str = "lean", data=None):
    """(position in the block, files) per trial, with its coordinate check. Without the kernel ridge
    machines: a sweep's summaries do not use them, and their float64 solves take about a third of a
    small trial."""
    data = load_trial_data(configs, data)
    trained = iter_trials(configs, data, should_stop=should_stop, kernel_machines=False, coordinate_check=True)
    for position, result in trained:
        yield position, trial_files(result, keep)


def run_block(
    configs: list[dict], threads: int, keep: str, stop_file: str | None = None
) -> list[tuple[int, dict[str, bytes]]]:
    """`train_block` for worker processes and Ray tasks: once `stop_file` exists, the block ends
    between batches."""
    return train_block(configs, threads, keep, None if stop_file is None else lambda: os.path.exists(stop_file))


def train_block(
    configs: list[dict], threads: int, keep: str, should_stop: Callable[[], bool] | None = None, data=None
) -> list[tuple[int, dict[str, bytes]]]:
    """A block of trials (configs as `ExperimentConfig.to_dict()`) with a fixed thread count, ending
    between batches once `should_stop()`; `data` as `_train_block` takes it."""
    with torch_threads(threads):
        return list(_train_block([ExperimentConfig.from_dict(c) for c in configs], should_stop, keep, data))


def _sequential_results(pending, workers, threads, should_stop, keep) -> Iterator[list[FinishedTrial]]:
    """Blocks one after another; should_stop ends the block in training between its batches (its
    trials come back marked stopped)."""
    data = load_trial_data([t.config for t in pending])
    with torch_threads(threads):
        for block in trial_blocks(pending, workers, data):
            yield _paired(block, _train_block([t.config for t in block], should_stop, keep, data))


def _pool_results(pending, workers, threads, should_stop, keep) -> Iterator[list[FinishedTrial]]:
    """Blocks handed out one per free worker (not all queued at once), so that each is pickled just
    as it is submitted, and stopping has no queue to cancel. A block takes a worker's share of the
    sweep, so should_stop reaches the running ones too: it creates the stop file they poll between
    batches, and they come back with their trials marked stopped."""
    blocks = trial_blocks(pending, workers)
    # spawn, not fork: forking a process that runs threads (Streamlit, torch) can deadlock.
    pool = ProcessPoolExecutor(max_workers=min(workers, len(blocks)) or 1, mp_context=get_context("spawn"))
    queue, futures = iter(blocks), {}
    flags = tempfile.TemporaryDirectory(prefix="kalign-sweep-")
    stop_file = os.path.join(flags.name, "stop")
    try:
        while True:
            with bare_main_module():  # the pool starts a process when a block finds none free
                for block in itertools.islice(queue, workers - len(futures)):
                    futures[pool.submit(shippable(run_block), _shipped(block), threads, keep, stop_file)] = block
            if not futures:
                return
            finished, _ = wait(futures, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
            if not finished and should_stop():
                pathlib.Path(stop_file).touch()
            for future in finished:
                yield _paired(futures.pop(future), future.result())
    finally:
        pathlib.Path(stop_file).touch()  # a closed iterator (a raising on_progress) stops them too
        pool.shutdown(wait=True, cancel_futures=True)
        flags.cleanup()


def _runner_results(pending, workers, threads, should_stop, keep, run_block) -> Iterator[list[FinishedTrial]]:
    """Blocks handed to `run_block`, up to `workers` at once from threads of this process, each
    with a should_stop that also turns true once the iterator is closed (a raising on_progress)."""
    blocks = trial_blocks(pending, workers)
    closed = threading.Event()

    def ending() -> bool:
        return closed.is_set() or should_stop()

    pool = ThreadPoolExecutor(max_workers=min(workers, len(blocks)) or 1, thread_name_prefix="kalign-sweep-block")
    try:
        futures = {pool.submit(run_block, _shipped(block), threads, keep, ending): block for block in blocks}
        for future in as_completed(futures):
            yield _paired(futures[future], future.result())
    finally:
        closed.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _paired(block: list[Trial], trained) -> list[FinishedTrial]:
    """Each trial of `block` with its files, from (position in the block, files) pairs."""
    return [(block[position], files) for position, files in trained]


def _shipped(block: list[Trial]) -> list[dict]:
    return [t.config.to_dict() for t in block]


def _ray_results(pending, workers, threads, address, gpus, keep) -> Iterator[list[FinishedTrial]]:
    try:
        import ray
    except ImportError:
        raise ValueError("backend 'ray' needs Ray: pip install ray") from None
    blocks = trial_blocks(pending, workers)
    started_here = not ray.is_initialized()
    if started_here:
        # The package travels with the job, so cluster nodes need torch and numpy but not kalign.
        ray.init(
            address=address or "local",  # "local": a Ray of our own, even beside another on this machine
            num_cpus=None if address else workers * threads,
            runtime_env={"py_modules": [str(pathlib.Path(__file__).resolve().parent.parent)]},  # kalign_core
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(shippable(run_block))
    refs = {}
    try:
        refs = {task.remote(_shipped(block), threads, keep): block for block in blocks}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            yield _paired(refs.pop(ready[0]), ray.get(ready[0]))
    finally:
        for ref in refs:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()
