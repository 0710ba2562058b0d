"""Which torch devices this machine really has, and what "auto" means."""

from __future__ import annotations

import torch

from .config import ConfigError


def available_devices() -> list[str]:
    """Concrete devices usable here, best first."""
    found = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; a named device that is absent is a ConfigError."""
    devices = available_devices()
    if name == "auto":
        return torch.device(devices[0])
    wanted = "cuda:0" if name == "cuda" else name
    if wanted not in devices:
        raise ConfigError("device", f"{{device}} {name!r} is not available here; choose one of auto, {', '.join(devices)}")
    return torch.device(wanted)
