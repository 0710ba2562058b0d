"""One trial: the slow and the regular model of one config, and everything it owns besides its
batches: its data on the device, its random generator (initial weights, probe, batch order), its
probe, its records, the divergence check, the null bands and the kernel machines.

Both models start from identical weights and see the same batches. The engine (batched.py) trains
the trials of a block together and hands each its numbers; a run is a block of one trial.
"""

from __future__ import annotations

import functools
import math
import platform
import time

import numpy as np
import torch

from ..config import ExperimentConfig
from ..data import DigitData
from ..measures.alignment import AlignmentUndefined, centered_alignment, centered_feature_kernel, one_hot
from ..measures.infinite_width import NO_LIMIT, distance_to_limit, has_limit, infinite_width_kernel
from ..measures.kernel_machines import choose_points, infinite_width_machine_error, machine_errors
from ..measures.null_band import draw_permutations
from ..measures.tracking import Measured
from ..model import INPUT_SIZE, MLP, init_weights
from ..results import DIVERGENCE_FACTOR, MODEL_NAMES, EpochRecord, ExperimentResult


def check_fits(config: ExperimentConfig, data: DigitData) -> None:
    if tuple(data.digits) != tuple(config.digits):
        raise ValueError(f"data holds digits {list(data.digits)} but config.digits is {list(config.digits)}")
    config.check_fits(len(data.train_y), len(data.test_y))


def run_provenance(device: torch.device) -> dict:
    """What, besides the config, decides a run's numbers to the last bit: the library versions, the
    torch threads of the calling (training) thread (CPU matrix products round differently with
    different counts), the device and the CPU model (whose math kernels round differently)."""
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": name,
        "cpu": cpu_model(),
    }


@functools.cache
def cpu_model() -> str:
    """The CPU's model name: Linux's /proc/cpuinfo, else what the platform module says, else the
    machine type (e.g. 'arm64')."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def stratified_probe(labels: np.ndarray, size: int, n_classes: int, generator: torch.Generator) -> np.ndarray:
    """Indices of `size` points with classes as equal as the data allow, sorted by class."""
    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    quota = [size // n_classes + (c < size % n_classes) for c in range(n_classes)]
    # Classes short of their quota hand the rest to the others.
    for _ in range(n_classes):
        spare = sum(max(0, q - len(member)) for q, member in zip(quota, members))
        quota = [min(q, len(member)) for q, member in zip(quota, members)]
        for c in range(n_classes):
            give = min(spare, len(members[c]) - quota[c])
            quota[c] += give
            spare -= give
    chosen = []
    for member, q in zip(members, quota):
        order = torch.randperm(len(member), generator=generator).numpy()
        chosen.append(np.sort(member[order[:q]]))
    return np.concatenate(chosen)


def initial_model(
    config: ExperimentConfig,
    n_classes: int | None = None,
    in_features: int = INPUT_SIZE,
    generator: torch.Generator | None = None,
) -> MLP:
    """The untrained model both models of a run start from, for every parametrization: one output per
    digit of `config.digits` unless `n_classes` says otherwise. Training draws it first from a
    generator seeded with `config.seed` (pass it to continue drawing from it, as training does)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    n_classes = len(config.digits) if n_classes is None else n_classes
    model = MLP(config.width, n_classes, in_features, config.parametrization)
    init_weights(model, generator)
    return model


# The kernels whose alignment has a null band, in the order the tracker stacks them.
NULL_BAND_KERNELS = ("feature", "tangent")

# A model's weights as the engine hands them over: hidden (width × inputs), hidden bias, readout
# (k × width), readout bias.
Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class PairTrial:
    """One trial's slow and regular model, less their weights (the engine holds those): data, random
    generator, probe, initial model, active models and result."""

    def __init__(self, config: ExperimentConfig, data: DigitData, device: torch.device):
        self.config, self.device = config, device
        self.width, self.k = config.width, data.n_classes
        self.generator = torch.Generator().manual_seed(config.seed)
        self.initial = initial_model(config, self.k, data.train_x.shape[1], self.generator).to(device)
        self.active = [0, 1]
        self.initial_loss: dict[int, float] = {}

        self.train_x = torch.from_numpy(np.ascontiguousarray(data.train_x, np.float32)).to(device)
        self.train_y = torch.from_numpy(data.train_y.astype(np.int64)).to(device)
        probe = stratified_probe(data.test_y, config.probe_size, self.k, self.generator)
        # The test set is held probe first, so the test evaluation yields the probe's features too.
        test_order = np.concatenate([probe, np.setdiff1d(np.arange(len(data.test_y)), probe)])
        self.test_x = torch.from_numpy(np.ascontiguousarray(data.test_x[test_order], np.float32)).to(device)
        self.test_y = torch.from_numpy(data.test_y[test_order].astype(np.int64)).to(device)
        self.probe_y = data.test_y[probe]
        self.target = one_hot(self.probe_y, self.k)
        self.result = ExperimentResult(
            config=config,
            source=data.source,
            source_note=data.note,
            device=str(device),
            history={name: [] for name in MODEL_NAMES},
            kernels={name: [] for name in MODEL_NAMES},
            target_kernel=centered_feature_kernel(self.target),
            probe_labels=self.probe_y.copy(),
            diverged_at={name: None for name in MODEL_NAMES},
            provenance=run_provenance(device),
        )

    def add_records(
        self,
        epoch: int,
        train: dict,
        test: dict,
        measured: list[Measured],
        started: float,
        models: list[int],
        linear: dict | None = None,
    ) -> None:
        """The epoch's record and kernels of each of `models`, from its (error %, mean loss) on the
        training and test sets, its `measured` probe and, with a linearized twin, `linear` (twin's
        test error %, gap, why either is None), all by model index."""
        for model_index in models:
            probe = measured[model_index]
            name = MODEL_NAMES[model_index]
            twin_error, gap, twin_note = (None, None, None) if linear is None else linear[model_index]
            self.result.history[name].append(
                EpochRecord(
                    epoch=epoch,
                    train_error=train[model_index][0],
                    test_error=test[model_index][0],
                    loss=train[model_index][1],
                    alignment=probe.alignment,
                    alignment_note=probe.alignment_note,
                    seconds=time.perf_counter() - started,
                    **probe.measures,
                    measure_note=probe.measure_note,
                    linear_test_error=twin_error,
                    linear_gap=gap,
                    linear_note=twin_note,
                )
            )
            self.result.kernels[name].append(probe.feature_kernel)
            self.result.tangent_kernels[name].append(probe.tangent_kernel)

    def retire_diverged(self, epoch: int, loss_sum: list[float], loss_max: list[float]) -> list[int]:
        """A model whose largest batch loss exploded, or whose loss is no longer finite, stops: the
        models retired now."""
        retired = []
        for model_index in list(self.active):
            exploded = loss_max[model_index] > DIVERGENCE_FACTOR * self.initial_loss[model_index]
            if exploded or not math.isfinite(loss_sum[model_index]):
                self.result.diverged_at[MODEL_NAMES[model_index]] = epoch
                self.active.remove(model_index)
                retired.append(model_index)
        return retired

    def null_permutations(self) -> torch.Tensor:
        """The label shuffles of the null bands of ρ, for each of NULL_BAND_KERNELS in turn (kinds ×
        shuffles × probe points). Their own generator (like the kernel machines') leaves the
        training's random stream (batch order) untouched."""
        generator = torch.Generator().manual_seed(self.config.seed)
        return torch.stack([draw_permutations(len(self.probe_y), generator) for _ in NULL_BAND_KERNELS])

    def set_null_bands(self, bands: list[list[float]]) -> None:
        """Once per run, at initialisation: the (low, high) band of each of NULL_BAND_KERNELS."""
        self.result.alignment_null = {kind: tuple(band) for kind, band in zip(NULL_BAND_KERNELS, bands)}

    def measure_infinite_width(self) -> None:
        """Once per run, after epoch 0's records: Θ∞ on the probe, its alignment with the task, and
        the initial tangent kernel's distance to it."""
        parametrization = self.config.parametrization
        if not has_limit(parametrization):
            self.result.infinite_width = {
                "alignment": None,
                "distance": None,
                "note": f"the {parametrization} parametrization has no infinite-width tangent kernel Θ∞: {NO_LIMIT}",
            }
            return
        limit = infinite_width_kernel(self.test_x[: len(self.probe_y)], "ntk", parametrization, self.k)
        try:
            alignment = float(centered_alignment(limit, self.result.target_kernel))
        except AlignmentUndefined:  # identical probe digits: Θ∞ is constant once centered
            alignment = None
        distance = distance_to_limit(self.result.tangent_kernels[MODEL_NAMES[0]][0], limit)
        self.result.infinite_width = {"alignment": alignment, "distance": distance, "note": None}

    def measure_machines(self, final: list[Weights]) -> None:
        """Once per run, after its last epoch: the kernel machines of the initial model (both models'
        start) and of each model's `final` weights."""
        generator = torch.Generator().manual_seed(self.config.seed)
        points = choose_points(
            self.train_x,
            self.train_y,
            self.test_x,
            self.test_y,
            self.k,
            lambda labels, size: stratified_probe(labels, size, self.k, generator),
            self.initial.scaling.kernel_weights,
        )
        grams = points.grams()
        hidden, readout = self.initial.features[0], self.initial.readout
        start = (hidden.weight.detach(), hidden.bias.detach(), readout.weight.detach())
        initial = machine_errors(points, *start, grams)
        self.result.kernel_machine_errors = {
            name: {"init": initial, "final": machine_errors(points, w, b, a, grams)}
            for name, (w, b, a, _) in zip(MODEL_NAMES, final)
        }
        if has_limit(self.config.parametrization):
            machine = infinite_width_machine_error(points, self.config.parametrization)
            self.result.infinite_width = {**self.result.infinite_width, "machine": machine}

    def export(self, weights: Weights) -> MLP:
        model = MLP(self.width, self.k, self.train_x.shape[1], self.config.parametrization)
        for parameter, value in zip(
            (model.features[0].weight, model.features[0].bias, model.readout.weight, model.readout.bias), weights
        ):
            parameter.data.copy_(value)
        return model.eval()
