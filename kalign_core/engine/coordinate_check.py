"""μP's coordinate check (Yang & Hu 2021; `get_coord_data` in Microsoft's mup): how large a network's
coordinates are, as the mean |·| of its hidden pre-activations and of its outputs on the probe
digits, at initialisation and after training, compared across widths. A parametrization whose
sizes grow or vanish with the width fails the check.

A sweep trial measures it from the models its result holds and, for the start, the initial model
rebuilt from the config: the same generator, drawn in the same order as a trial draws it (the
weights, then the probe), gives the same weights and probe.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import ExperimentConfig
from ..data import DigitData
from ..model import MLP
from ..results import COORDINATES
from .trial import initial_model, stratified_probe


def coordinate_sizes(config: ExperimentConfig, data: DigitData, models: dict[str, MLP]) -> dict[str, dict]:
    """{"init" | each of `models`' names: {"mean_abs_hidden": …, "mean_abs_output": …}} on the probe
    of the trial `config` describes (None where not finite, e.g. a diverged model)."""
    generator = torch.Generator().manual_seed(config.seed)
    initial = initial_model(config, data.n_classes, data.train_x.shape[1], generator)
    probe = stratified_probe(data.test_y, config.probe_size, data.n_classes, generator)
    inputs = torch.from_numpy(np.ascontiguousarray(data.test_x[probe], np.float32))
    return {name: sizes(model, inputs) for name, model in {"init": initial, **models}.items()}


def sizes(model: MLP, inputs: torch.Tensor) -> dict[str, float | None]:
    """Mean |h| of `model`'s hidden pre-activations h = W·x + b and mean |f| of its outputs."""
    device = next(model.parameters()).device
    with torch.no_grad():
        x = inputs.to(device)
        pre_activations = model.features[0](x)
        outputs = model.readout(torch.relu(pre_activations))
        means = [t.abs().mean(dtype=torch.float64).item() for t in (pre_activations, outputs)]
    return {name: mean if math.isfinite(mean) else None for name, mean in zip(COORDINATES, means)}
