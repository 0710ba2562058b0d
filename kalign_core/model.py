"""The notebook's network: one hidden ReLU layer (`features`) and a linear `readout`."""

from __future__ import annotations

import math

import torch
from torch import nn

INPUT_SIZE = 784


class MLP(nn.Module):
    def __init__(self, width: int, n_classes: int, in_features: int = INPUT_SIZE):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.readout = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


def init_weights(model: MLP, generator: torch.Generator) -> None:
    """PyTorch's default Linear init, U(±1/√fan_in), drawn from `generator` so that the same seed
    gives the same weights in any thread and on any device."""
    with torch.no_grad():
        for layer in (model.features[0], model.readout):
            bound = 1.0 / math.sqrt(layer.in_features)
            for p in (layer.weight, layer.bias):
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))
