"""What this machine computes on: the torch devices it really has (and what "auto" means), the cores
this process may use, and torch's thread count for a block of work.

torch is imported inside the functions: the app's server, which never trains, checks device names
without loading it (seconds) when the name is "auto" or "cpu", which every machine has.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:
    import torch

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
# Names that need no look-up: "auto" picks the best device there is, and every machine has a CPU.
EVERYWHERE = ("auto", "cpu")


def available_devices() -> list[str]:
    """Concrete devices usable here, best first."""
    import torch

    found = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; a named device that is absent is a ConfigError."""
    import torch

    devices = available_devices()
    if name == "auto":
        return torch.device(devices[0])
    wanted = "cuda:0" if name == "cuda" else name
    if wanted not in devices:
        raise ConfigError(
            "device", f"{{device}} {name!r} is not available here; choose one of auto, {', '.join(devices)}"
        )
    return torch.device(wanted)


def check_device(name: str) -> None:
    """ConfigError when `name` is not a device of this machine."""
    if name not in EVERYWHERE:
        resolve_device(name)


def cpu_count() -> int:
    """Cores this process may use, as a container sees them: its CPU affinity, capped by a cgroup
    CPU quota (a container limited to 2 CPUs on a 64-core host gets 2, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.floor(quota)))


def cgroup_cpu_quota(root=CGROUP_ROOT, membership=pathlib.Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time per period that the cgroup quotas allow this process (cgroup v2
    `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), the smallest over its cgroup and their
    ancestors; None without a quota (or where cgroups cannot be read)."""
    quotas = []
    try:
        lines = pathlib.Path(membership).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers:  # v2, "0::/path"; cpu.max holds "max 100000" or e.g. "200000 100000"
            for folder in _cgroup_folders(pathlib.Path(root), path):
                quotas.append(_ratio(*(_read(folder / "cpu.max") or "").split()))
        elif "cpu" in controllers.split(","):  # v1, e.g. "4:cpu,cpuacct:/path"
            for folder in _cgroup_folders(pathlib.Path(root) / "cpu", path):
                quotas.append(_ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")))
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def _cgroup_folders(mount: pathlib.Path, path: str) -> list[pathlib.Path]:
    """The cgroup's folder and its ancestors up to the mount; just the mount where the path is not
    visible (a container shown its host's path)."""
    folder = mount / path.strip().lstrip("/")
    if not folder.is_dir():
        return [mount]
    return [folder, *(p for p in folder.parents if p.is_relative_to(mount))]


def _read(file: pathlib.Path) -> str | None:
    try:
        return file.read_text()
    except OSError:
        return None


def _ratio(quota=None, period=None) -> float | None:
    """quota / period; None when unlimited ("max", -1) or unreadable."""
    try:
        value = int(quota) / int(period)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch's thread count set to `n` inside the block, and back after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
