"""The experiment's settings: one dataclass, validated on construction."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

SOURCES = ("auto", "mnist", "sample")
MAX_WIDTH = 32_768
MAX_EPOCHS = 500
MAX_BATCH_SIZE = 60_000
MAX_PROBE_SIZE = 1_000
MIN_PROBE_SIZE = 4
# A run keeps each model's m×m float32 probe kernel at every epoch; this bounds their total.
MAX_KERNEL_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ExperimentConfig:
    """Two one-hidden-layer MLPs from the same initial weights and the same batch order.

    `slow_lr` trains the slow model's hidden layer; `regular_lr` trains the regular model's hidden
    layer and the readout of both (the notebook's semantics). `slow_lr=0` is the random-features limit.
    """

    digits: tuple[int, ...] = (8, 9)
    width: int = 2000
    slow_lr: float = 0.001
    regular_lr: float = 0.01
    batch_size: int = 200
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    probe_size: int = 200
    source: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "digits", _check_digits(self.digits))
        _check_int("width", self.width, 1, MAX_WIDTH)
        _check_rate("slow_lr", self.slow_lr, allow_zero=True)
        _check_rate("regular_lr", self.regular_lr, allow_zero=False)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("probe_size", self.probe_size, MIN_PROBE_SIZE, MAX_PROBE_SIZE)
        snapshots = 2 * (self.epochs + 1) * self.probe_size**2 * 4
        if snapshots > MAX_KERNEL_BYTES:
            raise ValueError(
                f"probe_size and epochs together keep {snapshots / 2**20:,.0f} MB of kernel snapshots "
                f"(2 models × (epochs + 1) × probe_size² floats), above {MAX_KERNEL_BYTES / 2**20:.0f} MB: "
                f"lower probe_size (the kernels grow with its square) or epochs"
            )
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)} (got {self.source!r})")
        if not isinstance(self.device, str) or not _is_device_name(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' (got {self.device!r})"
            )
        for name in ("width", "batch_size", "epochs", "seed", "probe_size"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "slow_lr", float(self.slow_lr))
        object.__setattr__(self, "regular_lr", float(self.regular_lr))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["digits"] = list(self.digits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        """Build from JSON-like data; unknown keys are an error, missing keys take defaults."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object (got {type(d).__name__})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(map(str, unknown))}")
        kwargs = dict(d)
        if "digits" in kwargs and isinstance(kwargs["digits"], list):
            kwargs["digits"] = tuple(kwargs["digits"])
        return cls(**kwargs)


def _check_digits(digits) -> tuple[int, ...]:
    allowed = "digits must be 2 to 10 distinct whole numbers from 0 to 9"
    try:
        values = tuple(digits)
    except TypeError:
        raise ValueError(f"{allowed} (got {digits!r})") from None
    if not all(_is_int(d) and 0 <= d <= 9 for d in values):
        raise ValueError(f"{allowed} (got {list(values)!r})")
    values = tuple(int(d) for d in values)
    if len(set(values)) != len(values):
        raise ValueError(f"{allowed}; {list(values)} repeats a digit")
    if not 2 <= len(values) <= 10:
        raise ValueError(f"{allowed} (got {len(values)})")
    return values


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high:,} (got {value!r})")


def _check_rate(name: str, value, allow_zero: bool) -> None:
    lowest = "0 or more" if allow_zero else "greater than 0"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {lowest} (got {value!r})")


def _is_device_name(name: str) -> bool:
    if name in ("auto", "cpu", "mps", "cuda"):
        return True
    prefix, _, index = name.partition(":")
    return prefix == "cuda" and index.isdigit()
