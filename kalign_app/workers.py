"""Long-lived training processes for a shared server, so that training never runs in its Python.

Threads of one process share one GIL, and the engine's step is many small torch ops that each need
it back: beside a busy Streamlit server a run went 25 to 60 times slower. So each run trains in a
worker process of a `WorkerPool`, started once (spawn costs seconds, mostly importing torch) and
reused run after run, with its own torch thread count set inside it.

A new worker says "ready" with the devices it can train on (the server itself never loads torch).
The server talks to a worker over a pipe: it sends a config (as a dict: Streamlit may have
re-imported the class since) and the data folder, the worker answers "started",
then one message per epoch and a last one, each carrying only the epochs added since the previous
message (a `tail` of the result), which the server appends to what it has. Messages are pickles
made by our own worker from our own objects; nothing a user uploaded travels this way. Stop is a
multiprocessing Event the worker checks between batches. A worker that dies (killed, out of memory)
closes its end of the pipe, which the server reads as `WorkerDied`, and is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace

from kalign_core.config import ExperimentConfig
from kalign_core.data import DataUnavailable, default_data_dir, load_digits
from kalign_core.processes import bare_main_module, shippable
from kalign_core.results import ExperimentResult

# How often the server checks whether a run should stop while it waits for the worker's next message.
POLL_S = 0.2


@dataclass(frozen=True)
class WorkerInfo:
    """The process that trains a run, as measured inside it."""

    pid: int
    torch_threads: int


class WorkerDied(Exception):
    """The worker process ended in the middle of a run (killed, out of memory, crashed)."""

    def __init__(self, pid: int | None, exitcode: int | None):
        super().__init__(f"training process {pid} ended with exit code {exitcode}")
        self.pid, self.exitcode = pid, exitcode


# What a page says of a run or sweep that an error on the server stopped: the exception and its
# traceback go to the server's log, never to a page.
SERVER_ERROR = "an error on the server stopped it; the details are in the server's log"


class TrainingFailed(Exception):
    """The run raised in its worker: `message` is for the user, `details` (a traceback, or where the
    data was missing) for the log, None when the message says it all (bad settings for the data)."""

    def __init__(self, message: str, details: str | None):
        super().__init__(message)
        self.message, self.details = message, details


# -- inside a worker process -----------------------------------------------------------------------


def serve(connection, stop, threads: int) -> None:
    """A worker's life: train each config the server sends until it sends None or goes away.
    torch and the engine are imported here, before the first request: the server that starts the
    worker never needs them, and the first run does not wait for them."""
    import torch

    from kalign_core.devices import available_devices
    from kalign_core.engine import training  # noqa: F401  (loaded now; `_train` finds it in sys.modules)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the server's to handle; it ends us
    torch.set_num_threads(threads)
    with contextlib.suppress(OSError):
        _send(connection, ("ready", available_devices()))
    with contextlib.suppress(EOFError, OSError):  # the server closed the pipe or exited
        while (request := _receive(connection)) is not None:
            _train(connection, stop, request)


def _train(connection, stop, request: tuple[dict, str]) -> None:
    import torch

    from kalign_core.engine.training import run_experiment

    config, data_dir = request
    _send(connection, ("started", WorkerInfo(os.getpid(), torch.get_num_threads())))
    sent = {}  # epochs already sent, per model (a diverged model's history ends early)

    def send_tail(kind: str, result: ExperimentResult) -> None:
        _send(connection, (kind, tail(result, sent)))
        sent.update({name: len(records) for name, records in result.history.items()})

    try:
        config = ExperimentConfig.from_dict(config)
        data = load_digits(config.digits, config.source, root=data_dir)
        result = run_experiment(config, data, on_epoch=lambda live: send_tail("epoch", live), should_stop=stop.is_set)
    except ValueError as error:  # bad settings for this data
        _send(connection, ("failed", str(error), None))
        return
    except DataUnavailable as error:  # no data: the page gets the reason in words, the log the paths
        _send(connection, ("failed", error.words, str(error)))
        return
    except Exception:  # e.g. out of memory in torch: the page says so in words, the server's log has it all
        _send(connection, ("failed", SERVER_ERROR, traceback.format_exc()))
        return
    send_tail("done", result)


def follow(messages, on_start: Callable[[WorkerInfo], None], on_epoch: Callable[[ExperimentResult], None]):
    """The result a run's messages (as `_train` sends them) build up, calling on_start and on_epoch
    as they come; raises TrainingFailed for a run that failed."""
    result = None
    for kind, *payload in messages:
        if kind == "started":
            on_start(payload[0])
        elif kind == "failed":
            raise TrainingFailed(*payload)
        else:
            result = extend(result, payload[0])
            if kind == "done":
                return result
            on_epoch(result)
    raise RuntimeError("the run's messages ended before its result")


# -- results in pieces -----------------------------------------------------------------------------


def tail(result: ExperimentResult, sent: dict[str, int]) -> ExperimentResult:
    """`result` holding only the epochs after the first `sent[name]` of each model."""
    return replace(
        result,
        history={name: records[sent.get(name, 0) :] for name, records in result.history.items()},
        kernels={name: stack[sent.get(name, 0) :] for name, stack in result.kernels.items()},
        tangent_kernels={name: stack[sent.get(name, 0) :] for name, stack in result.tangent_kernels.items()},
    )


def extend(earlier: ExperimentResult | None, newer: ExperimentResult) -> ExperimentResult:
    """`earlier` followed by the epochs of the `newer` tail, with the tail's other fields: a new
    snapshot whose containers do not change afterwards."""
    if earlier is None:
        return newer
    return replace(
        newer,
        history={name: earlier.history[name] + records for name, records in newer.history.items()},
        kernels={name: earlier.kernels[name] + stack for name, stack in newer.kernels.items()},
        tangent_kernels={name: earlier.tangent_kernels[name] + stack for name, stack in newer.tangent_kernels.items()},
    )


# -- in the server ---------------------------------------------------------------------------------


class Worker:
    """One training process and the server's end of its pipe and stop flag."""

    def __init__(self, threads: int):
        # spawn, not fork: forking a process that runs threads (Streamlit, torch) can deadlock.
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._stop = context.Event()
        self.process = context.Process(
            target=shippable(serve), args=(child_end, self._stop, threads), name="kalign-trainer", daemon=True
        )
        with bare_main_module():
            # OpenMP reads this as torch loads, in the new process. Its default has idle threads spin,
            # which on a busy machine (the server, browsers, other runs) made runs at 2 threads 4
            # to 8 times slower; sleeping threads do not change the numbers. A value set by the user
            # stands. The server's own torch has loaded already, so only the processes it starts see it.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            self.process.start()
        child_end.close()  # else the pipe stays open when the worker dies, and its death goes unseen
        self.devices: list[str] | None = None  # what it can train on, once it said "ready"

    def poll_ready(self) -> list[str] | None:
        """The worker's devices if it has said "ready" (never waits). Only for an idle worker: a
        training one's messages are read by `train`."""
        if self.devices is None and self._connection.poll(0):
            self._take(self._receive())
        return self.devices

    def _take(self, message) -> None:
        kind, *payload = message
        if kind != "ready":
            raise RuntimeError(f"worker {self.process.pid} said {kind!r} before it was ready")
        self.devices = payload[0]

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def train(
        self,
        config: ExperimentConfig,
        on_start: Callable[[WorkerInfo], None],
        on_epoch: Callable[[ExperimentResult], None],
        should_stop: Callable[[], bool],
    ) -> ExperimentResult:
        """Train `config` here: the result, as `run_experiment` would return it in this process.
        Raises TrainingFailed for an error in the run, WorkerDied when the process ends."""
        self._stop.clear()  # a stop meant for the previous run may have come after it ended
        # The data folder as the server sees it now (KALIGN_DATA_DIR), not as it was when the worker started.
        self._send((config.to_dict(), str(default_data_dir())))
        return follow(self._messages(should_stop), on_start, on_epoch)

    def _messages(self, should_stop: Callable[[], bool]):
        """The run's messages as they come, passing on should_stop to the worker meanwhile."""
        while True:
            if should_stop():
                self._stop.set()
            if not self._connection.poll(POLL_S):
                continue
            message = self._receive()
            if message[0] == "ready":
                self._take(message)
            else:
                yield message

    def close(self) -> None:
        """End the process (at once: a worker that misbehaved may be mid-run)."""
        self._connection.close()
        self.process.terminate()
        self.process.join(5)

    def _send(self, message) -> None:
        try:
            _send(self._connection, message)
        except OSError:
            raise self._died() from None

    def _receive(self):
        try:
            return _receive(self._connection)
        except (EOFError, OSError):
            raise self._died() from None

    def _died(self) -> WorkerDied:
        self.process.join(5)
        return WorkerDied(self.process.pid, self.process.exitcode)


def _send(connection, message) -> None:
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection):
    return decoded(connection.recv_bytes())


def decoded(message: bytes):
    """A message `_send` made: only ever from kalign's own training code (a worker or a Ray actor)."""
    return pickle.loads(message)


class WorkerPool:
    """Up to `size` idle workers with `threads` torch threads each, kept for the next runs.

    The server's job slots decide who trains; each run takes a worker for its length. A worker is
    started when none is idle (normally only the first time: `warm` starts them all ahead), and one
    that died or misbehaved is closed and replaced at once.
    """

    def __init__(self, size: int, threads: int):
        self.size, self.threads = size, threads
        self._idle: list[Worker] = []
        self._devices: list[str] | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start workers until `size` are idle (their imports then run while no one waits)."""
        with self._lock:
            while len(self._idle) < self.size:
                self._idle.append(Worker(self.threads))

    def train(self, config, on_start, on_epoch, should_stop) -> ExperimentResult:
        """`Worker.train` on an idle worker (see there)."""
        worker = self._checkout()
        try:
            result = worker.train(config, on_start, on_epoch, should_stop)
        except TrainingFailed:
            self._checkin(worker)  # the worker said so and is ready for the next run
            raise
        except BaseException:  # it died, or the conversation broke off: its state is unknown
            self._replace(worker)
            raise
        self._checkin(worker)
        return result

    def capacity(self) -> int:
        """Runs this pool can train at once: its size (the machine does not change under it)."""
        return self.size

    def devices(self) -> list[str] | None:
        """The devices the workers can train on, best first; None until one has started (it
        imports torch: a second or more). Kept once known: the workers run on this machine, and
        all may be busy training later."""
        with self._lock:
            if self._devices is None:
                any(self._note_devices(worker) for worker in self._idle)
            return self._devices

    def _note_devices(self, worker: Worker) -> bool:
        """Keep `worker`'s devices if it has said "ready" (never waits; the lock is held). A worker
        that died before that, or misbehaved, is left for `_checkout` to replace."""
        with contextlib.suppress(WorkerDied, EOFError, OSError, RuntimeError):
            if worker.poll_ready() is not None:
                self._devices = worker.devices
        return self._devices is not None

    @property
    def pids(self) -> list[int]:
        """The idle workers' process ids."""
        with self._lock:
            return [worker.process.pid for worker in self._idle]

    def close(self) -> None:
        """End the idle workers (those training end with their runs' pools' owners)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def _checkout(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    if self._devices is None:  # its "ready" is read now, before a run reads past it
                        self._note_devices(worker)
                    return worker
                worker.close()  # died while idle
        return Worker(self.threads)

    def _checkin(self, worker: Worker) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(worker)
                return
        worker.close()  # more runs than slots (e.g. two generations of server state): keep `size`

    def _replace(self, worker: Worker) -> None:
        worker.close()
        self._checkin(Worker(self.threads))


_pools: dict[tuple[int, int], WorkerPool] = {}
_pools_lock = threading.Lock()


def shared_pool(size: int, threads: int) -> WorkerPool:
    """This process's pool of that size and thread count: server state that is rebuilt (Streamlit's
    resource cache cleared, a new JobSlots) reuses warm workers instead of spawning more."""
    with _pools_lock:
        return _pools.setdefault((size, threads), WorkerPool(size, threads))
