"""The dashboard's runs trained on a Ray cluster (KALIGN_RAY_ADDRESS) instead of this machine's
worker processes: the same pool interface as `workers.WorkerPool`, so the job slots, live epochs,
Stop and the results cache work as they do locally.

Each slot is a Ray actor with its own torch threads that trains one run at a time with the worker's
own `_train`, so a run sends the same messages (started, one per epoch, done or failed) and its
numbers equal the library's at the same thread count. The actor keeps them in a queue the server
drains every POLL_S; Stop sets the actor's flag, which the run checks between batches. An actor whose
node is lost ends its run as a worker that died does (`WorkerDied`): the job says so and frees its
slot, and a new actor takes the slot where the cluster has room.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
import queue
import threading
import time
from dataclasses import dataclass

from kalign_app import workers
from kalign_core.data import default_data_dir
from kalign_core.results import ExperimentResult

log = logging.getLogger(__name__)

# Torch threads per run, as on a local server; fewer where a node has fewer CPUs.
THREADS_PER_JOB = 2
# How long a new actor may wait for a node with room before its run says so, and an idle one to answer.
PLACEMENT_TIMEOUT_S = 120.0
IDLE_ANSWER_S = 10.0


class _Trainer:
    """A Ray actor (threaded: `messages` and `stop` are answered while `train`'s thread runs)."""

    def __init__(self, threads: int):
        import torch

        from kalign_core.engine import training  # noqa: F401  (loaded now, not at the first run)

        torch.set_num_threads(threads)
        self._outbox: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()

    def ready(self) -> tuple[list[str], int]:
        from kalign_core.devices import available_devices

        return available_devices(), os.getpid()

    def train(self, config: dict, data_dir: str) -> None:
        """Start a run in a thread of this actor; its messages queue up for `messages`."""
        self._stop.clear()
        threading.Thread(target=workers._train, args=(self, self._stop, (config, data_dir)), daemon=True).start()

    def run_block(self, configs: list[dict], threads: int, keep: str, data_dir: str) -> list:
        """A sweep's block of trials (sweep.backends.train_block), ending between batches at `stop`."""
        from kalign_core.config import ExperimentConfig
        from kalign_core.engine.batched import load_trial_data
        from kalign_core.sweep.backends import train_block

        self._stop.clear()
        # From the server's data folder, as a run's digits are.
        data = load_trial_data([ExperimentConfig.from_dict(c) for c in configs], root=data_dir)
        return train_block(configs, threads, keep, self._stop.is_set, data)

    def send_bytes(self, message: bytes) -> None:  # what `_train` sends to: the queue
        self._outbox.put(message)

    def messages(self, wait_s: float) -> list[bytes]:
        """The messages queued so far, waiting up to `wait_s` for the first."""
        try:
            first = self._outbox.get(timeout=wait_s)
        except queue.Empty:
            return []
        batch = [first]
        while not self._outbox.empty():
            batch.append(self._outbox.get_nowait())
        return batch

    def stop(self) -> None:
        self._stop.set()


class RayPool:
    """Up to `size` actors of `threads` CPUs (and `gpus` GPUs) each on the Ray cluster `connect`
    joined. Same methods as `workers.WorkerPool`."""

    def __init__(self, size: int, threads: int, gpus: float = 0.0):
        import ray

        self._ray = ray
        # Ray hides GPUs from actors that do not ask: each slot asks its share, and "auto" finds it.
        self._actor_class = ray.remote(num_cpus=threads, num_gpus=gpus, max_concurrency=4, max_restarts=0)(_Trainer)
        self.size, self.threads = size, threads
        self._idle: list = []
        self._devices: list[str] | None = None
        self._lock = threading.Lock()
        self._capacity, self._capacity_read_at = size, -math.inf

    def warm(self) -> None:
        with self._lock:
            while len(self._idle) < self.size:
                self._idle.append(self._actor_class.remote(self.threads))

    def train(self, config, on_start, on_epoch, should_stop) -> ExperimentResult:
        """`workers.Worker.train` on an actor of the cluster: the result as `run_experiment` returns it.
        Raises TrainingFailed for an error in the run, WorkerDied when its actor (or node) is lost."""
        with self._actor(should_stop, workers.TrainingFailed) as actor:
            self._call(actor.train.remote(config.to_dict(), str(default_data_dir())), None)
            return workers.follow(self._messages(actor, should_stop), on_start, on_epoch)

    def run_block(self, configs: list[dict], threads: int, keep: str, should_stop) -> list:
        """A sweep's block of trials on an actor of the cluster (`_Trainer.run_block`); nothing when
        should_stop turns true before an actor is found. Raises WorkerDied when the actor (or its
        node) is lost: the trials of the sweep saved so far stay."""
        from ray.exceptions import RayTaskError

        try:
            # An error raised in the block (a RayTaskError, also an instance of its cause) leaves the actor fine.
            with self._actor(should_stop, RayTaskError) as actor:
                ref = actor.run_block.remote(configs, threads, keep, str(default_data_dir()))
                while not self._ray.wait([ref], timeout=workers.POLL_S)[0]:
                    if should_stop():
                        actor.stop.remote()
                return self._call(ref, None)
        except workers.TrainingFailed:  # stopped while it waited for an actor
            return []

    @contextlib.contextmanager
    def _actor(self, should_stop, harmless: type[BaseException] | tuple):
        """An actor checked out for the `with` block: back to the idle ones after it, or after an
        error of the `harmless` kinds; any other error (a lost actor or node) replaces it."""
        actor = self._checkout(should_stop)
        try:
            yield actor
        except harmless:
            self._checkin(actor)
            raise
        except BaseException:
            self._replace(actor)
            raise
        self._checkin(actor)

    def _messages(self, actor, should_stop):
        while True:
            if should_stop():
                actor.stop.remote()
            for message in self._call(actor.messages.remote(workers.POLL_S), None):
                yield workers.decoded(message)

    def _call(self, ref, timeout_s: float | None):
        """ray.get, with a lost actor or node (or no room for it in time) raised as WorkerDied."""
        from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError

        try:
            return self._ray.get(ref, timeout=timeout_s)
        # ObjectLostError: a result lost with its node before it was fetched.
        except (RayActorError, GetTimeoutError, ObjectLostError) as error:
            log.error("a Ray training actor was lost: %s", error)
            raise workers.WorkerDied(None, None) from None

    def devices(self) -> list[str] | None:
        """The devices the actors can train on, best first, once one has answered."""
        with self._lock:
            if self._devices is None and self._idle:
                ready, _ = self._ray.wait([self._idle[0].ready.remote()], timeout=0.5)
                if ready:
                    self._devices = self._ray.get(ready[0])[0]
            return self._devices

    @property
    def pids(self) -> list[int]:
        """The idle actors' process ids (on their nodes)."""
        with self._lock:
            idle = list(self._idle)
        return [pid for _, pid in self._ray.get([actor.ready.remote() for actor in idle])]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for actor in idle:
            self._ray.kill(actor)

    def _checkout(self, should_stop):
        """An idle actor that still answers (its node may have gone while it waited), else a new one
        once the cluster has placed it (a lost node leaves fewer places than slots until the slots
        see it). Raises WorkerDied when none is placed in time."""
        pending, deadline = None, time.monotonic() + PLACEMENT_TIMEOUT_S
        try:
            while True:
                with self._lock:
                    idle = self._idle.pop() if self._idle else None
                if idle is not None:
                    if self._answers(idle, IDLE_ANSWER_S):
                        return idle
                    self._ray.kill(idle)
                    continue
                pending = pending or self._actor_class.remote(self.threads)
                answered = self._answers(pending, workers.POLL_S)
                if answered:
                    actor, pending = pending, None
                    return actor
                if answered is None:  # died before it answered
                    pending = None
                if should_stop():
                    raise workers.TrainingFailed("stopped before it started", None)
                if time.monotonic() > deadline:
                    log.error("no node of the Ray cluster had room for a run in %.0f s", PLACEMENT_TIMEOUT_S)
                    raise workers.WorkerDied(None, None)
        finally:
            if pending is not None:
                self._ray.kill(pending)

    def _answers(self, actor, timeout_s: float) -> bool | None:
        """True when `actor` answers within `timeout_s`, False when it has not yet, None when dead."""
        from ray.exceptions import RayActorError

        ready, _ = self._ray.wait([actor.ready.remote()], timeout=timeout_s)
        if not ready:
            return False
        try:
            self._ray.get(ready[0])
            return True
        except RayActorError:
            return None

    def _checkin(self, actor) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(actor)
                return
        self._ray.kill(actor)

    def _replace(self, actor) -> None:
        self._ray.kill(actor)  # the next run starts a new one where the cluster has room

    def capacity(self) -> int:
        """Runs the cluster can train at once now: each live node's CPUs over a run's threads (fewer
        once a node is lost, more when one joins); read at most once a second."""
        now = time.monotonic()
        with self._lock:
            if now - self._capacity_read_at > 1.0:
                self._capacity = sum(int(cpus // self.threads) for cpus in _node_cpus(self._ray))
                self._capacity_read_at = now
            return self._capacity


def connect(address: str, local_cpus: int | None = None) -> Cluster:
    """Join the Ray cluster at `address` ("local": start one on this machine, with `local_cpus` CPUs
    where given, else this machine's) unless this process already has; what it has."""
    import ray

    if not ray.is_initialized():
        # kalign travels with the job: cluster nodes need torch and numpy, not a checkout.
        root = pathlib.Path(__file__).resolve().parent.parent
        _in_lasting_thread(
            lambda: ray.init(
                address=address,  # "local" starts a Ray of our own, even beside another on this machine
                num_cpus=local_cpus if address == "local" else None,
                runtime_env={"py_modules": [str(root / "kalign_core"), str(root / "kalign_app")]},
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        )
    nodes = _node_cpus(ray)
    return Cluster(int(sum(nodes)), float(ray.cluster_resources().get("GPU", 0)), int(min(nodes, default=1)))


def _in_lasting_thread(start) -> None:
    """Call `start` in a thread that lives as long as this process. A Ray started here dies with the
    thread that started it (its processes ask the kernel to end them when their parent thread ends),
    and Streamlit runs each page in a thread that ends with the page."""
    done, failures = threading.Event(), []

    def run():
        try:
            start()
        except BaseException as error:  # raised again in the caller's thread
            failures.append(error)
        done.set()
        if not failures:
            threading.Event().wait()

    threading.Thread(target=run, name="kalign-ray", daemon=True).start()
    done.wait()
    if failures:
        raise failures[0]


def _node_cpus(ray) -> list[float]:
    """The CPUs of each live node that has any (a head may keep none for runs)."""
    return [cpus for node in ray.nodes() if node["Alive"] and (cpus := node["Resources"].get("CPU", 0)) > 0]


@dataclass(frozen=True)
class Cluster:
    cpus: int
    gpus: float
    smallest_node_cpus: int  # an actor's threads must fit on one node

    def threads_per_job(self) -> int:
        return max(1, min(THREADS_PER_JOB, self.smallest_node_cpus))
