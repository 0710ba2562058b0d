"""Which torch devices this machine really has, and what "auto" means.

torch is imported inside the functions: the app's server checks device names without loading it
(seconds) when the name is "auto" or "cpu", which every machine has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:
    import torch

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
        raise ConfigError("device", f"{{device}} {name!r} is not available here; choose one of auto, {', '.join(devices)}")
    return torch.device(wanted)


def check_device(name: str) -> None:
    """ConfigError when `name` is not a device of this machine."""
    if name not in EVERYWHERE:
        resolve_device(name)
