"""How and where a sweep's trials run (`SweepOptions`), checked once when made, and settled against
the sweep folder's record: a resumed sweep keeps the torch threads per block it trained at (CPU
products round differently with another count) and what each trial's folder keeps.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from dataclasses import dataclass, replace

from ..config import check_int
from ..devices import cpu_count, resolve_device
from ..runs import RUN_JSON
from .spec import SWEEP_JSON, SweepSpec

BACKENDS = ("local", "ray")
# What a trial's folder keeps: "lean" (runs/lean.py) or "all" (every epoch's kernels and the weights).
KEEP = ("lean", "all")
MAX_WORKERS = 1024
MAX_THREADS = 256
MAX_GPUS_PER_TRIAL = 8
# A block's batched products keep two threads busy: on 2 cores, one block on 2 threads trained the
# 45-pair matrix 1.2 times faster than two worker processes of 1 thread (benchmarks/sweep.py), which
# also pay their start-up; machines with more cores run more such workers.
BLOCK_THREADS = 2


@dataclass(frozen=True)
class SweepOptions:
    """backend "local": in this process when `in_process` (default: when workers=1), else in a pool
    of `workers` processes. backend "ray": tasks on the cluster at `address`, or on a local Ray
    instance with workers × threads_per_trial CPUs; `gpus_per_trial` is asked per block of trials
    (e.g. 0.25 lets four blocks share a GPU). `workers` None: one per block's threads of the cores
    here. `threads_per_trial` None: what the folder's sweep trained at, else `default_threads`.
    `keep` None: what the folder's sweep kept, else "lean"."""

    backend: str = "local"
    workers: int | None = 1
    threads_per_trial: int | None = None
    address: str | None = None
    in_process: bool | None = None
    gpus_per_trial: float = 0.0
    keep: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {self.backend!r})")
        if self.keep is not None and self.keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)} (got {self.keep!r})")
        if self.workers is not None:
            check_int("workers", self.workers, 1, MAX_WORKERS)
        if self.threads_per_trial is not None:
            check_int("threads_per_trial", self.threads_per_trial, 1, MAX_THREADS)
        gpus = self.gpus_per_trial
        if isinstance(gpus, bool) or not (isinstance(gpus, (int, float)) and 0 <= gpus <= MAX_GPUS_PER_TRIAL):
            raise ValueError(f"gpus_per_trial must be a number from 0 to {MAX_GPUS_PER_TRIAL} (got {gpus!r})")

    def settled(self, spec: SweepSpec, folder=None) -> SweepOptions:
        """These options with threads, workers and keep decided, for a sweep of `spec` into `folder`
        (None: a new sweep). Refuses what the folder's sweep recorded otherwise."""
        record = None if folder is None else recorded(pathlib.Path(folder))
        keep = _kept_by(folder, self.keep, record)
        threads = self.threads_per_trial
        recorded_count = None if record is None else recorded_threads(pathlib.Path(folder), record)
        if threads is None:
            threads = recorded_count or default_threads(spec, self.workers)
        elif recorded_count not in (None, threads):
            raise ValueError(
                f"the sweep in {folder} trains at {recorded_count} torch thread(s) per block; resume it with the "
                f"same (got {threads}), or start a new sweep"
            )
        workers = self.workers if self.workers is not None else default_workers(spec, threads)
        return replace(self, keep=keep, threads_per_trial=threads, workers=workers)


def default_threads(spec: SweepSpec, workers: int | None = None) -> int:
    """Torch threads per block of trials: BLOCK_THREADS on CPU, up to the cores there are (each of
    `workers`' share of them, where given), 1 on an accelerator (the host threads only launch its
    work)."""
    if not _trains_on_cpu(spec):
        return 1
    return min(BLOCK_THREADS, max(1, cpu_count() // (workers or 1)))


def default_workers(spec: SweepSpec, threads_per_trial: int = 1) -> int:
    """One worker per `threads_per_trial` cores on CPU; one on an accelerator (they share it)."""
    if not _trains_on_cpu(spec):
        return 1
    return max(1, cpu_count() // threads_per_trial)


def _trains_on_cpu(spec: SweepSpec) -> bool:
    """Whether the sweep's trials train on a CPU. Only "auto" is resolved here: a named accelerator
    may be on the workers (Ray) and not on this machine."""
    device = spec.base.device
    return device == "cpu" or (device == "auto" and resolve_device(device).type == "cpu")


def _kept_by(folder, keep: str | None, record: dict | None) -> str:
    """`keep`, checked against what the sweep in `folder` recorded (`record`, its sweep.json); None:
    that record. Sweeps written before kalign kept lean trials kept everything."""
    kept = None if record is None else record.get("keep", "all")
    if kept is not None and kept not in KEEP:
        raise ValueError(f"{pathlib.Path(folder) / SWEEP_JSON} records keep={kept!r}; kalign knows {', '.join(KEEP)}")
    if keep is None:
        return kept or "lean"
    if kept not in (None, keep):
        raise ValueError(f"the sweep in {folder} keeps {kept!r}; resume it with the same (got {keep!r})")
    return keep


def recorded_threads(folder, record: dict | None = None) -> int | None:
    """The torch threads per block the sweep in `folder` trains at: its sweep.json's record (`record`
    where already read), else (a sweep recorded before kalign kept the count) what its first
    finished trial's run.json says it trained at; None for a new sweep."""
    folder = pathlib.Path(folder)
    record = recorded(folder) if record is None else record
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


def recorded(folder: pathlib.Path) -> dict | None:
    """What the sweep in `folder` recorded in its sweep.json; None when there is none."""
    if not (folder / SWEEP_JSON).is_file():
        return None
    try:
        record = json.loads((folder / SWEEP_JSON).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / SWEEP_JSON} is unreadable ({error}): not a kalign sweep folder?") from None
    if not isinstance(record, dict):
        raise ValueError(f"{folder / SWEEP_JSON} is unreadable (not an object): not a kalign sweep folder?")
    return record
