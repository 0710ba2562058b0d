"""The notebook's network: one hidden ReLU layer (`features`) and a linear `readout`, in the effective
weights of its parametrization (see parametrization.py)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .parametrization import scaling

INPUT_SIZE = 784


class MLP(nn.Module):
    def __init__(self, width: int, n_classes: int, in_features: int = INPUT_SIZE, parametrization: str = "standard"):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.readout = nn.Linear(width, n_classes)
        self.scaling = scaling(parametrization, width, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


def init_weights(model: MLP, generator: torch.Generator) -> None:
    """The model's initial weights drawn from `generator` (so that the same seed gives the same
    weights in any thread and on any device), hidden weight, hidden bias, readout weight, readout
    bias in turn: nn.Linear's default U(±1/√fan_in) for the standard parametrization, else N(0, 1)
    times each tensor's multiplier."""
    layers = (model.features[0], model.readout)
    tensors = [(layer, p) for layer in layers for p in (layer.weight, layer.bias)]
    with torch.no_grad():
        for (layer, p), multiplier in zip(tensors, model.scaling.multipliers):
            drawn = torch.empty(p.shape)
            if model.scaling.normal:
                drawn.normal_(generator=generator).mul_(multiplier)
            else:
                bound = 1.0 / math.sqrt(layer.in_features)
                drawn.uniform_(-bound, bound, generator=generator)
            p.copy_(drawn)
