"""kalign_core: the slow-vs-regular kernel alignment experiment, with no user interface.

The names below load their module on first use (PEP 562), so that `from kalign_core import data`
or `import kalign_core.results` does not import torch: the app's server shows a form in a second
while its training processes load torch.
"""

import importlib

_EXPORTS = {
    "AlignmentUndefined": "measures.alignment",
    "center_kernel": "measures.alignment",
    "centered_alignment": "measures.alignment",
    "debiased_alignment": "measures.alignment",
    "feature_alignment": "measures.alignment",
    "ConfigError": "config",
    "ExperimentConfig": "config",
    "DataUnavailable": "data",
    "DigitData": "data",
    "load_digits": "data",
    "available_devices": "devices",
    "resolve_device": "devices",
    "MLP": "model",
    "EpochRecord": "results",
    "ExperimentResult": "results",
    "RunFileError": "runs",
    "load_run": "runs",
    "save_run": "runs",
    "tangent_kernel": "measures.tangent",
    "infinite_width_kernel": "measures.infinite_width",
    "initial_model": "engine.trial",
    "run_experiment": "engine.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kalign_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
