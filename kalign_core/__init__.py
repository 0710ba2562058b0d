"""kalign_core: the slow-vs-regular kernel alignment experiment, with no user interface."""

from .alignment import (
    AlignmentUndefined,
    center_kernel,
    centered_alignment,
    debiased_alignment,
    feature_alignment,
)
from .config import ExperimentConfig
from .data import DataUnavailable, DigitData, load_digits
from .devices import available_devices, resolve_device
from .model import MLP
from .runs import RunFileError, load_run, save_run
from .tangent import tangent_kernel
from .training import EpochRecord, ExperimentResult, run_experiment

__all__ = [
    "AlignmentUndefined",
    "DataUnavailable",
    "DigitData",
    "EpochRecord",
    "ExperimentConfig",
    "ExperimentResult",
    "MLP",
    "RunFileError",
    "available_devices",
    "center_kernel",
    "centered_alignment",
    "debiased_alignment",
    "feature_alignment",
    "load_digits",
    "load_run",
    "resolve_device",
    "run_experiment",
    "save_run",
    "tangent_kernel",
]
