"""μP's coordinate check (Yang & Hu 2021; `get_coord_data` in Microsoft's mup): how large a network's
coordinates are, as the mean |·| of its hidden pre-activations and of its outputs on the probe
digits, compared across widths at initialisation, after each of the first few SGD steps and at the
end of training. A parametrization whose sizes grow or vanish with the width fails the check.

mup's check looks at the first steps because that is where a wrong scaling shows: an update too
large for the width compounds from one step to the next, so the sizes after t = 1, 2, 3, 4 steps
spread apart with width at a growing rate, while under μP they stay put. Four steps match mup's own
plots (its examples train 3 to 5 steps) and stay inside one epoch at the lab's batch of 50 on the
sample (16 steps an epoch).

The engine measures a block's trials at once, on the weights it holds: each trial's probe (the
first rows of its test set) through both its models in one batched product.
"""

from __future__ import annotations

import math

import torch

from ..results import COORDINATE_STEPS, COORDINATES, MODEL_NAMES, coordinate_step


def block_sizes(probe, w_hidden_t, b_hidden, w_out, b_out) -> list[list[dict[str, float | None]]]:
    """Per trial and model (as the engine stacks them: probe T × m × inputs, hidden weights T ×
    inputs × 2w, hidden biases T × 2w, readouts T × 2 × k × w and T × 2 × k), the mean |h| of the
    hidden pre-activations h = W·x + b and the mean |f| of the outputs f = A·relu(h) + c; None where
    not finite (a diverged model)."""
    t, m = probe.shape[:2]
    width = w_out.shape[-1]
    pre = torch.baddbmm(b_hidden[:, None], probe, w_hidden_t).view(t, m, 2, width).transpose(1, 2)  # T × 2 × m × w
    outputs = torch.matmul(pre.relu(), w_out.transpose(2, 3)) + b_out[:, :, None]  # T × 2 × m × k
    means = [x.abs().mean(dim=(2, 3), dtype=torch.float64).tolist() for x in (pre, outputs)]
    return [
        [{name: _finite(size[trial][model]) for name, size in zip(COORDINATES, means)} for model in (0, 1)]
        for trial in range(t)
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class CoordinateCheck:
    """Writes a block's coordinate sizes into each trial's result.coordinate_sizes: "init" (both
    models start alike), "<model>_step<t>" after SGD step t = 1 … COORDINATE_STEPS (counted across
    epochs; absent where the run has fewer steps) and "<model>" at the end."""

    def __init__(self, block):
        self.block, self.steps = block, 0
        self._record(("init", None))

    def after_step(self) -> None:
        self.steps += 1
        if self.steps <= COORDINATE_STEPS:
            self._record(tuple(coordinate_step(name, self.steps) for name in MODEL_NAMES))

    def at_end(self) -> None:
        self._record(MODEL_NAMES)

    def _record(self, keys: tuple[str | None, str | None]) -> None:
        b = self.block
        sizes = block_sizes(b.test_x[:, : b.probe_size], b.w_hidden_t, b.b_hidden, b.w_out, b.b_out)
        for trial, per_model in zip(b.trials, sizes):
            for key, size in zip(keys, per_model):
                if key is not None:
                    trial.result.coordinate_sizes[key] = size
