"""Training for a server shared by many browsers: one job per session, a server-wide limit on jobs
training at once, and a cache of finished results shared by all sessions.

A job waits for a slot in a thread of the server, then trains in a worker process (`workers.py`)
while that thread relays its epochs: the server's Python only queues, relays and draws.

Nothing here knows about Streamlit: a page starts a `TrainingJob`, reads `job.status()` to draw it,
calls `stop()` for its Stop button and `touch()` while it is still being looked at. A job nobody
touches for `abandon_after_s` (the tab was closed) stops itself and frees its slot.
"""

from __future__ import annotations

import logging
import pathlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from kalign_app import environment
from kalign_app.workers import SERVER_ERROR, TrainingFailed, WorkerDied, WorkerInfo, shared_pool
from kalign_core.config import ConfigError, ExperimentConfig
from kalign_core.data import DataUnavailable
from kalign_core.devices import cpu_count
from kalign_core.results import ExperimentResult
from kalign_core.sweep.options import SweepOptions
from kalign_core.sweep.spec import SweepSpec, TrialSummary

if TYPE_CHECKING:
    from kalign_core.sweep.runner import SweepProgress

# Browsers throttle timers in background tabs to about one a minute, so a visible-but-hidden tab
# may go quiet for that long; a job is only given up after a good margin beyond it.
ABANDON_AFTER_S = 90.0
DEFAULT_CACHE_BYTES = 512 * 2**20
ACTIVE_STATES = ("waiting", "running")
WORKER_DIED = (
    "the training process stopped unexpectedly (killed, out of memory, or its machine lost); press Train to try again"
)
SWEEP_WORKER_DIED = (
    "a training process stopped unexpectedly (killed, out of memory, or its machine lost); the trials saved "
    "so far are kept: press Run to go on"
)

log = logging.getLogger(__name__)


def threads_per_job(limit: int) -> int:
    """Torch threads for each of `limit` jobs training at once: together about all cores, no more."""
    return max(1, cpu_count() // limit)


def server_slots() -> JobSlots:
    """The server's job slots, as its environment says: on this machine's worker processes, or on
    the Ray cluster at KALIGN_RAY_ADDRESS, as many at once as its CPUs allow."""
    address = environment.ray_address()
    if address is None:
        return JobSlots(environment.job_limit())
    from kalign_app.ray_pool import RayPool, connect

    cluster = connect(address)
    threads = cluster.threads_per_job()
    limit = environment.job_limit(cores=cluster.cpus, threads=threads)
    return JobSlots(limit, RayPool(limit, threads, cluster.gpus / limit))


class JobSlots:
    """At most `limit` jobs train at once, server-wide; the others wait in arrival order.

    Each slot has a worker process (`workers`, started here and kept for the life of the server)
    that trains on `threads_per_job` torch threads, or a Ray actor (`pool`: ray_pool.RayPool).
    """

    def __init__(self, limit: int, pool=None):
        if limit < 1:
            raise ValueError(f"the job limit must be 1 or more (got {limit})")
        self.limit = limit
        self.workers = pool or shared_pool(limit, threads_per_job(limit))
        self.threads_per_job = self.workers.threads
        self.workers.warm()
        self._changed = threading.Condition()
        self._queue: list[object] = []
        self._holders: list[TrainingJob] = []

    def acquire(self, job: TrainingJob | SweepBlock, cancelled: Callable[[], bool], poll_s: float = 0.2) -> bool:
        """Wait for a slot; False when `cancelled()` turns true first."""
        with self._changed:
            self._queue.append(job)
            try:
                while not cancelled():
                    if len(self._holders) < min(self.limit, self.workers.capacity()) and self._queue[0] is job:
                        self._holders.append(job)
                        return True
                    self._changed.wait(poll_s)
                return False
            finally:
                self._queue.remove(job)
                self._changed.notify_all()

    def release(self, job: TrainingJob) -> None:
        with self._changed:
            self._holders.remove(job)
            self._changed.notify_all()

    def position(self, job: object) -> int | None:
        """How many jobs wait ahead of `job`, or None when it is not waiting."""
        with self._changed:
            return self._queue.index(job) if job in self._queue else None

    def first_free_in(self) -> float | None:
        """Seconds until a slot is free, from the progress of the runs training in them (their
        recent epochs' times and the epochs left): 0 when one is free now; None while one of them
        has not finished an epoch, or only a sweep's blocks (which tell no time) hold slots. With
        a sweep's blocks among the holders, a slot frees at the latest then."""
        with self._changed:
            holders = list(self._holders)
        if len(holders) < self.limit:
            return 0.0
        left = [job.status().seconds_left for job in holders if isinstance(job, TrainingJob)]
        return None if None in left or not left else min(left)

    def sweep_blocks(self) -> int:
        """How many slots a sweep's blocks of trials hold now."""
        with self._changed:
            return sum(isinstance(holder, SweepBlock) for holder in self._holders)

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._holders)

    def block_runner(self):
        """How a sweep's blocks train in these slots (sweep.backends.BlockRunner), where the slots
        are on a Ray cluster; None on this machine's worker processes, beside which a sweep runs
        its own."""
        return self.run_block if hasattr(self.workers, "run_block") else None

    def run_block(self, configs: list[dict], threads: int, keep: str, should_stop) -> list:
        """A sweep's block of trials in a slot, taken in arrival order like a run's; nothing when
        should_stop turns true before a slot is free."""
        holder = SweepBlock()
        if not self.acquire(holder, should_stop):
            return []
        try:
            return self.workers.run_block(configs, threads, keep, should_stop)
        finally:
            self.release(holder)


class SweepBlock:
    """A sweep's block of trials in the slots' queue or holding a slot (it tells no time left)."""


def result_nbytes(result: ExperimentResult) -> int:
    """Memory held by a result's kernels and model weights (the bulk of it)."""
    kernels = sum(k.nbytes for k in _all_kernels(result))
    weights = sum(p.numel() * p.element_size() for m in result.models.values() for p in m.parameters())
    return kernels + result.target_kernel.nbytes + weights


class ResultCache:
    """Finished results keyed by their whole config and shared by all sessions: the same config
    trains to the same result, so a class pressing the same defaults trains once. Entries are made
    read-only; the least recently used go first once `max_bytes` is exceeded."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[ExperimentConfig, ExperimentResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: ExperimentConfig) -> ExperimentResult | None:
        with self._lock:
            result = self._entries.get(config)
            if result is not None:
                self._entries.move_to_end(config)
            return result

    def put(self, result: ExperimentResult) -> None:
        """Keep a finished run (a stopped one is partial and is not kept)."""
        if result.stopped or result_nbytes(result) > self.max_bytes:
            return
        for array in (result.target_kernel, result.probe_labels, *_all_kernels(result)):
            array.flags.writeable = False
        with self._lock:
            self._entries[result.config] = result
            self._entries.move_to_end(result.config)
            while sum(result_nbytes(r) for r in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _all_kernels(result: ExperimentResult) -> list[np.ndarray]:
    """Every probe kernel of the run, feature and tangent, of both models and every epoch."""
    return [k for stacks in (result.kernels, result.tangent_kernels) for stack in stacks.values() for k in stack]


@dataclass(frozen=True)
class JobStatus:
    """A consistent snapshot of a job for drawing.

    state: "waiting" (for a slot), "running", then "finished", "stopped" (by the user; the epochs
    done are kept), "abandoned" (nobody looked for too long) or "failed" (`error` says why).
    """

    state: str
    config: ExperimentConfig
    result: ExperimentResult | None
    queue_position: int | None
    seconds_left: float | None
    error: str | None
    slot_free_in: float | None = None  # while waiting: seconds until a slot frees (JobSlots.first_free_in)
    sweep_slots: int = 0  # while waiting: slots a sweep's blocks hold (JobSlots.sweep_blocks)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def epochs_done(self) -> int:
        return self.result.epochs_done if self.result is not None else 0


class BackgroundJob:
    """Work in a daemon thread that a user interface polls and may stop; subclasses define `_work`."""

    thread_name = "kalign-job"

    def __init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the work to end at its next check; what it finished is kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; False on timeout."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _run(self) -> None:
        try:
            self._work()
        finally:
            self._done.set()

    def _work(self) -> None:
        raise NotImplementedError


class TrainingJob(BackgroundJob):
    """One run of `run_experiment` in a worker process, waiting for a server slot first; safe from
    any thread. `worker` says which process trained it (None until it started)."""

    thread_name = "kalign-training"

    def __init__(
        self,
        config: ExperimentConfig,
        slots: JobSlots,
        cache: ResultCache | None = None,
        abandon_after_s: float = ABANDON_AFTER_S,
    ):
        super().__init__()
        self.config = config
        self._slots, self._cache = slots, cache
        self._abandon_after_s = abandon_after_s
        self._heartbeat = time.monotonic()
        self._abandoned = False
        self._state = "waiting"
        self._result: ExperimentResult | None = None
        self._error: str | None = None
        self._worker: WorkerInfo | None = None

    @property
    def worker(self) -> WorkerInfo | None:
        with self._lock:
            return self._worker

    def touch(self) -> None:
        """Someone is still looking: postpone abandonment."""
        self._heartbeat = time.monotonic()

    def status(self) -> JobStatus:
        with self._lock:
            state, result, error = self._state, self._result, self._error
        waiting = state == "waiting"
        return JobStatus(
            state=state,
            config=self.config,
            result=result,
            queue_position=self._slots.position(self) if waiting else None,
            seconds_left=_seconds_left(result) if state == "running" else None,
            error=error,
            slot_free_in=self._slots.first_free_in() if waiting else None,
            sweep_slots=self._slots.sweep_blocks() if waiting else 0,
        )

    def first_look(self, timeout: float, grace: float = 0.0, poll_s: float = 0.05) -> JobStatus:
        """The status the page that starts a run draws first: at the latest after `timeout` seconds,
        earlier when the job has ended or must queue for a slot, or when its epochs so far say it
        will not end by then. So a short run shows its final charts at once, without partial ones
        drawn (by the server and the browser) while it trains, and a longer one shows its first
        epochs as soon as that is clear, not at the page's next poll (up to a second later). A run
        with no epoch yet at `timeout` is waited for up to `grace` more seconds for its first (e.g.
        while its worker starts: the page's next poll would show its charts no sooner)."""
        deadline = time.monotonic() + timeout
        while True:
            self.touch()  # the session is here, waiting
            status = self.status()
            queued = (
                status.state == "waiting" and (status.queue_position or 0) + self._slots.running >= self._slots.limit
            )
            now = time.monotonic()
            too_long = status.seconds_left is not None and now + status.seconds_left > deadline
            late = now >= deadline + (grace if status.result is None else 0.0)
            if self.done or queued or too_long or late:
                return self.status() if self.done else status
            self._done.wait(poll_s)

    def _cancelled(self) -> bool:
        if time.monotonic() - self._heartbeat > self._abandon_after_s:
            self._abandoned = True
        return self._abandoned or self._stop.is_set()

    def _set(self, **fields) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)

    def _ended_state(self) -> str:
        return "abandoned" if self._abandoned else "stopped"

    def _work(self) -> None:
        try:
            if not self._slots.acquire(self, self._cancelled):
                self._set(state=self._ended_state())
                return
            try:
                self._set(state="running")
                result = self._slots.workers.train(
                    self.config,
                    on_start=lambda worker: self._set(worker=worker),
                    on_epoch=lambda partial: self._set(result=partial),
                    should_stop=self._cancelled,
                )
            finally:
                self._slots.release(self)
            if result.stopped:
                self._set(state=self._ended_state(), result=result)
                return
            if self._cache is not None:
                self._cache.put(result)
            self._set(state="finished", result=result)
        except TrainingFailed as failure:  # raised in the run: bad settings for the data, no data, …
            if failure.details:
                log.error("training %s failed in its worker process:\n%s", self.config, failure.details)
            self._set(state="failed", error=failure.message)
        except WorkerDied as died:
            log.error("training %s: %s (replaced by a new process)", self.config, died)
            self._set(state="failed", error=WORKER_DIED)
        except Exception:  # a fault on the server's side: in words on the page, in full in the log
            log.exception("training %s failed", self.config)
            self._set(state="failed", error=SERVER_ERROR)


# The time left is estimated from this many recent epochs: epochs slow down when the machine gets
# busier (more students press Train), and a mean over the whole run lagged far behind that.
RECENT_EPOCHS = 5


def _seconds_left(result: ExperimentResult | None) -> float | None:
    """Remaining epochs times the mean time of the recent ones; None before the first epoch ends."""
    if result is None or result.epochs_done < 1:
        return None
    records = max(result.history.values(), key=len)[-RECENT_EPOCHS - 1 :]  # a diverged model's ends early
    per_epoch = (records[-1].seconds - records[0].seconds) / (len(records) - 1)
    return per_epoch * (result.config.epochs - result.epochs_done)


class SharedJobs:
    """Identical runs asked for at the same time train once: a session joins the unfinished job of an
    identical config instead of queueing its own (a class pressing the same lesson together). Every
    session that joined sees the same progress; the job stops when the last of them leaves."""

    def __init__(self, slots: JobSlots, cache: ResultCache | None = None):
        self._slots, self._cache = slots, cache
        self._lock = threading.Lock()
        self._jobs: dict[ExperimentConfig, TrainingJob] = {}
        self._watchers: dict[TrainingJob, set[str]] = {}

    def join(self, config: ExperimentConfig, watcher: str) -> TrainingJob:
        """The unfinished job training `config`, started now if there is none; `watcher` (a session)
        is counted among those who want it."""
        with self._lock:
            for ended in [job for job in self._jobs.values() if job.done]:
                self._forget(ended)
            job = self._jobs.get(config)
            if job is None:
                job = TrainingJob(config, self._slots, self._cache).start()
                self._jobs[config], self._watchers[job] = job, set()
            self._watchers[job].add(watcher)
            job.touch()
            return job

    def leave(self, job: TrainingJob, watcher: str) -> None:
        """`watcher` no longer wants `job`; when nobody does, it stops (the epochs done are kept)."""
        with self._lock:
            watchers = self._watchers.get(job, set())
            watchers.discard(watcher)
            if not watchers:
                job.stop()
                self._forget(job)

    def _forget(self, job: TrainingJob) -> None:
        """Later joins start afresh (a stopped job cannot be joined; a finished one is in the cache)."""
        self._watchers.pop(job, None)
        if self._jobs.get(job.config) is job:
            del self._jobs[job.config]


class RunGroup:
    """Several runs shown together (a lesson's): each a finished result or a job. A run that was
    already finished counts as a job that has finished. `watcher`: the name its jobs were joined
    under in SharedJobs (None when none was)."""

    def __init__(self, runs: list[ExperimentResult | TrainingJob], watcher: str | None = None):
        self.runs, self.watcher = runs, watcher

    def jobs(self) -> list[TrainingJob]:
        return [run for run in self.runs if isinstance(run, TrainingJob)]

    def statuses(self) -> list[JobStatus]:
        return [
            run.status() if isinstance(run, TrainingJob) else JobStatus("finished", run.config, run, None, None, None)
            for run in self.runs
        ]

    @property
    def done(self) -> bool:
        return all(job.done for job in self.jobs())

    def touch(self) -> None:
        """Someone is still looking at these runs."""
        for job in self.jobs():
            job.touch()

    def results(self) -> list[ExperimentResult] | None:
        """Every run's result once all have finished; None while any is training or if any ended otherwise."""
        statuses = self.statuses()
        if any(status.state != "finished" for status in statuses):
            return None
        return [status.result for status in statuses]


@dataclass(frozen=True)
class SweepStatus:
    """A snapshot of a SweepJob. state: "running", then "finished", "stopped" or "failed" (`error`)."""

    state: str
    progress: SweepProgress | None
    summaries: list[TrialSummary]  # finished so far, in the order they finished
    error: str | None


class SweepJob(BackgroundJob):
    """`run_sweep` in a daemon thread, for a user interface that polls `status()` and may `stop()`
    (queue no more blocks of trials; the running ones end unsaved, the saved ones stay); safe from any
    thread. The trials run in worker processes (never in this one), or by `run_block` (the server's
    job slots on a Ray cluster: JobSlots.block_runner)."""

    thread_name = "kalign-sweep"

    def __init__(self, spec: SweepSpec, folder, options: SweepOptions | None = None, cost=None, run_block=None):
        super().__init__()
        self.spec, self.folder = spec, pathlib.Path(folder)
        self.id = secrets.token_urlsafe(16)  # in the page's address while it runs: a reload finds it again
        # The trials train in worker processes, leaving this server's torch threads as they are.
        self._options, self._cost = options or SweepOptions(in_process=False), cost
        self._run_block = run_block
        self._status = SweepStatus("running", None, [], None)

    def status(self) -> SweepStatus:
        with self._lock:
            return self._status

    def _on_progress(self, progress: SweepProgress) -> None:
        with self._lock:
            self._status = replace(self._status, progress=progress, summaries=[*self._status.summaries, progress.last])

    def _work(self) -> None:
        from kalign_core.sweep.runner import run_sweep  # the engine loads torch: the server only when a sweep starts

        try:
            outcome = run_sweep(
                self.spec, self.folder, self._options, self._on_progress, self._stop.is_set, self._cost, self._run_block
            )
            state = "stopped" if outcome.stopped else "finished"
            with self._lock:
                self._status = replace(self._status, state=state, summaries=outcome.summaries)
        except Exception as error:  # the trials saved so far stay on disk
            if isinstance(error, ConfigError):  # settings that do not fit: its message is written for users
                message = str(error)
            elif isinstance(error, DataUnavailable):  # the reason in words; the paths go to the log
                message = error.words
            elif isinstance(error, WorkerDied):
                message = SWEEP_WORKER_DIED
            else:
                message = SERVER_ERROR
            log.exception("sweep into %s failed", self.folder)
            with self._lock:
                self._status = replace(self._status, state="failed", error=message)
