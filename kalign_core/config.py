"""The experiment's settings: one dataclass, validated on construction."""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import asdict, dataclass, field, fields

from .parametrization import MUP_BASE_WIDTH, PARAMETRIZATIONS

SOURCES = ("auto", "mnist", "sample")
MAX_WIDTH = 32_768
MAX_EPOCHS = 500
MAX_BATCH_SIZE = 60_000
MAX_PROBE_SIZE = 1_000
MIN_PROBE_SIZE = 4
# Far beyond any rate that trains (a model diverges, and kalign marks it, long before); a rate near
# float32's limit (3.4e38) would overflow inside the SGD step itself.
MAX_LEARNING_RATE = 1e6
# Chizat's lazy scale α: weights move O(1/α), so past about 1,000 a float32 step rounds away.
MIN_LAZY_SCALE, MAX_LAZY_SCALE = 1.0, 1000.0
# The largest whole number a browser holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_SEED = 2**53 - 1
# A run keeps each model's m×m float32 probe feature kernel at every epoch; this bounds their total.
# Its tangent kernels, as many and as large, are kept beside them in memory (not in saved runs), so a
# run's kernels take at most twice this; the limit itself predates them and saved runs rely on it.
MAX_KERNEL_BYTES = 256 * 2**20
# The linearized twin keeps the initial hidden features of every training and test digit
# (float32, digits × width): this bounds them per run.
MAX_TWIN_FEATURE_BYTES = 2**30


class ConfigError(ValueError):
    """Invalid settings. `fields` names the settings at fault (one, or several that only clash
    together); `describe(names)` words the message with each setting called what the reader knows it
    as: a form label, a URL parameter, a command-line option. str() uses the field names."""

    def __init__(self, fields: tuple[str, ...] | str, template: str):
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.template = template  # str.format placeholders {field} for each field named
        super().__init__(self.describe())

    def describe(self, names=None) -> str:
        names = names or {}
        return self.template.format(**{field: names.get(field, field) for field in self.fields})


def got(value) -> str:
    """` (got VALUE)` for a message template: the value's repr, its braces kept literal."""
    return f" (got {value!r})".replace("{", "{{").replace("}", "}}")


def kernel_snapshot_bytes(epochs: int, probe_size: int) -> int:
    """Memory of the feature kernels a run keeps (and saves): 2 models × (epochs + 1) × probe_size²
    float32; its tangent kernels take as much again in memory."""
    return 2 * (epochs + 1) * probe_size**2 * 4


def twin_feature_bytes(n_digits: int, width: int) -> int:
    """Memory of the initial features the linearized twin keeps: n_digits × width float32."""
    return 4 * n_digits * width


def _setting(default, label: str, help: str, **more):
    """An ExperimentConfig field with what every user interface calls it and says about it (see Setting)."""
    return field(default=default, metadata={"label": label, "help": help, **more})


@dataclass(frozen=True)
class ExperimentConfig:
    """Two one-hidden-layer MLPs from the same initial weights and the same batch order.

    `slow_lr` trains the slow model's hidden layer; `regular_lr` trains the regular model's hidden
    layer and the readout of both (the notebook's semantics). `slow_lr=0` is the random-features limit.
    `lazy_scale` None trains the notebook's model f; a number α makes both models train Chizat's
    α·(f − f₀) on loss/α² (f₀ the output at initialisation): the larger α, the lazier.
    """

    digits: tuple[int, ...] = _setting((8, 9), "Digits", "2 to 10 distinct digits 0-9 for the models to tell apart")
    width: int = _setting(2000, "Hidden width", "hidden ReLU units in each model")
    slow_lr: float = _setting(
        0.001,
        "Slow learning rate",
        "learning rate of the slow model's hidden layer; 0 freezes it (random features: only its readout learns)",
    )
    regular_lr: float = _setting(
        0.01, "Regular learning rate", "learning rate of the regular model's hidden layer and of both readouts"
    )
    batch_size: int = _setting(200, "Batch size", "training digits per SGD step")
    epochs: int = _setting(10, "Epochs", "passes over the training digits")
    seed: int = _setting(0, "Seed", "seeds the shared initial weights, probe set and batch order")
    device: str = _setting("auto", "Device", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    probe_size: int = _setting(200, "Probe size", "held-out digits on which kernels and alignment are measured")
    source: str = _setting(
        "auto",
        "Data source",
        "full MNIST (70,000 digits) downloads once, about 12 MB; the bundled sample (5,000 digits) works offline; "
        "auto uses MNIST when it is on disk, else the sample, never waiting for a download",
        choices=SOURCES,
    )
    lazy_scale: float | None = _setting(
        None,
        "Lazy scale α",
        "Chizat's lazy dial, 1 to 1000: both models train α·(f − f₀) on loss/α² (f₀ their output at the start). "
        "The larger α, the less the weights move (about 1/α as far) while the function learns as fast: the "
        "network trains like its linearisation, its tangent kernel fixed (the lazy/NTK regime). "
        "Off (the default): the plain network.",
        metavar="ALPHA",
    )
    parametrization: str = _setting(
        "standard",
        "Parametrization",
        "how the weights scale with the width: standard (PyTorch's init, the learning rates as given), ntk (NTK: "
        "N(0, 1) weights behind multipliers σ/√fan-in, the learning rates as given at every width) or mup (μP: as "
        f"ntk at width {MUP_BASE_WIDTH}; elsewhere the readout's multiplier is σ·√{MUP_BASE_WIDTH}/width and the "
        f"hidden layer's and readout weights' learning rates are × width/{MUP_BASE_WIDTH})",
        choices=PARAMETRIZATIONS,
    )
    linearized_twin: bool = _setting(
        False,
        "Linearized twin",
        "each model also trains its linearization at the start, g(θ₀) + J(θ₀)(θ − θ₀), on the same batches, "
        "loss and learning rates; every epoch records the twin's test error and how far the network is from it "
        f"(keeps the initial features of every digit: digits × width at most {MAX_TWIN_FEATURE_BYTES / 2**20:,.0f} MB)",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "digits", check_digits(self.digits))
        check_int("width", self.width, 1, MAX_WIDTH)
        _check_rate("slow_lr", self.slow_lr, allow_zero=True)
        _check_rate("regular_lr", self.regular_lr, allow_zero=False)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("probe_size", self.probe_size, MIN_PROBE_SIZE, MAX_PROBE_SIZE)
        snapshots = kernel_snapshot_bytes(self.epochs, self.probe_size)
        if snapshots > MAX_KERNEL_BYTES:
            raise ConfigError(
                ("epochs", "probe_size"),
                f"{{epochs}} {self.epochs} × {{probe_size}} {self.probe_size} keep {snapshots / 2**20:,.0f} MB of "
                f"kernels (they grow with the probe size squared); the limit is {MAX_KERNEL_BYTES / 2**20:.0f} MB: "
                "lower either",
            )
        for choice in (f for f in fields(self) if "choices" in f.metadata):
            value, allowed = getattr(self, choice.name), choice.metadata["choices"]
            if value not in allowed:
                raise ConfigError(choice.name, f"{{{choice.name}}} must be one of {', '.join(allowed)}" + got(value))
        if not isinstance(self.device, str) or not _is_device_name(self.device):
            raise ConfigError("device", "{device} must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'" + got(self.device))
        if not isinstance(self.linearized_twin, bool):
            raise ConfigError("linearized_twin", "{linearized_twin} must be on or off" + got(self.linearized_twin))
        if self.lazy_scale is not None:
            _check_lazy_scale(self.lazy_scale)
            object.__setattr__(self, "lazy_scale", float(self.lazy_scale))
        for name in ("width", "batch_size", "epochs", "seed", "probe_size"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "slow_lr", float(self.slow_lr))
        object.__setattr__(self, "regular_lr", float(self.regular_lr))

    def check_fits(self, n_train: int, n_test: int) -> None:
        """ConfigError unless the batch fits in `n_train` training digits and the probe in `n_test`
        held-out ones (those of the chosen digits in the data source), and the linearized twin's
        initial features of them all fit its memory limit."""
        if self.batch_size > n_train:
            raise ConfigError(
                "batch_size",
                f"{{batch_size}} must be from 1 to {n_train:,}, the training digits available" + got(self.batch_size),
            )
        smallest = max(MIN_PROBE_SIZE, len(self.digits))
        if not smallest <= self.probe_size <= n_test:
            raise ConfigError(
                "probe_size",
                f"{{probe_size}} must be from {smallest} to {n_test:,}, the held-out digits available"
                + got(self.probe_size),
            )
        twin = twin_feature_bytes(n_train + n_test, self.width)
        if self.linearized_twin and twin > MAX_TWIN_FEATURE_BYTES:
            raise ConfigError(
                ("linearized_twin", "width"),
                f"{{linearized_twin}} keeps the initial features of all {n_train + n_test:,} digits at {{width}} "
                f"{self.width:,}: {twin / 2**20:,.0f} MB, above its limit of {MAX_TWIN_FEATURE_BYTES / 2**20:,.0f} MB; "
                "lower the width, choose fewer digits or turn the twin off",
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["digits"] = list(self.digits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentConfig:
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


def check_digits(digits) -> tuple[int, ...]:
    allowed = "{digits} must be 2 to 10 distinct whole numbers from 0 to 9"
    try:
        values = tuple(digits)
    except TypeError:
        raise ConfigError("digits", allowed + got(digits)) from None
    if not all(_is_int(d) and 0 <= d <= 9 for d in values):
        raise ConfigError("digits", allowed + got(list(values)))
    values = tuple(int(d) for d in values)
    if len(set(values)) != len(values):
        raise ConfigError("digits", f"{allowed}; {list(values)} repeats a digit")
    if not 2 <= len(values) <= 10:
        raise ConfigError("digits", allowed + got(list(values)))
    return values


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(name, f"{{{name}}} must be a whole number from {low} to {high:,}" + got(value))


def _check_rate(name: str, value, allow_zero: bool) -> None:
    lowest = "0 or more" if allow_zero else "greater than 0"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > MAX_LEARNING_RATE:
        raise ConfigError(
            name, f"{{{name}}} must be a finite number {lowest} and at most {MAX_LEARNING_RATE:,.0f}" + got(value)
        )


def _check_lazy_scale(value) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not MIN_LAZY_SCALE <= value <= MAX_LAZY_SCALE:
        raise ConfigError(
            "lazy_scale",
            f"{{lazy_scale}} must be off or a number from {MIN_LAZY_SCALE:g} to {MAX_LAZY_SCALE:,g}" + got(value),
        )


def _is_device_name(name: str) -> bool:
    if name in ("auto", "cpu", "mps", "cuda"):
        return True
    prefix, _, index = name.partition(":")
    return prefix == "cuda" and index.isdigit()


@dataclass(frozen=True)
class Setting:
    """One ExperimentConfig field as the command line, the form and the URL know it, from the field's
    type and metadata: a new field is defined once, in ExperimentConfig."""

    name: str
    label: str  # the form's
    help: str
    default: object
    kind: type  # int, float, str or bool (a switch): of the value, or of each of its values when `many`
    many: bool  # a list of values (the digits)
    optional: bool  # may be off (None), e.g. the lazy scale
    choices: tuple[str, ...] | None = None
    metavar: str | None = None  # the command line's name for the value, when not the field's

    @property
    def option(self) -> str:
        """The command-line option, e.g. --slow-lr."""
        return "--" + self.name.replace("_", "-")


def _settings() -> dict[str, Setting]:
    hints = typing.get_type_hints(ExperimentConfig)
    settings = {}
    for f in fields(ExperimentConfig):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
        many = typing.get_origin(hint) is tuple
        optional = type(None) in typing.get_args(hint)
        kind = args[0] if many or optional else hint
        settings[f.name] = Setting(f.name, default=f.default, kind=kind, many=many, optional=optional, **f.metadata)
    return settings


# Every setting by field name, in ExperimentConfig's order.
SETTINGS = _settings()
