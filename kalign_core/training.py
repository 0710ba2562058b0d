"""Train the slow and the regular model side by side and record errors and alignment each epoch.

Both models start from identical weights and see the same batches. Their hidden layers are stored
as one (2·width × 784) matrix, so each batch costs two large matrix products for the pair: the
forward pass and a fused "gradient and SGD update" (W ← W − G X by addmm). Gradients are written
by hand (plain SGD on cross-entropy) and tested against autograd.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from .alignment import centered_feature_kernel, one_hot
from .config import ExperimentConfig
from .data import DigitData, load_digits
from .devices import resolve_device
from .kernel_machines import choose_points, machine_errors
from .model import INPUT_SIZE, MLP, init_weights
from .null_band import null_band
from .results import DIVERGENCE_FACTOR, MODEL_NAMES, EpochRecord, ExperimentResult
from .tracking import Measured, Tracker

# Evaluation works through the data in chunks of about this many hidden activations: 16 MB, small
# enough for a CPU's last-level cache, where its elementwise passes run about 20 % faster than at 128 MB.
EVAL_CHUNK_ELEMENTS = 2**22


def run_experiment(
    config: ExperimentConfig | None = None,
    data: DigitData | None = None,
    on_epoch: Callable[[ExperimentResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExperimentResult:
    """Train both models for `config.epochs` epochs; `on_epoch(partial_result)` after each.

    `should_stop()` is checked between batches: a stopped run returns the epochs completed, marked
    `stopped`. A model whose loss explodes or becomes non-finite stops training and is recorded in
    `diverged_at`; the other model goes on.
    """
    config = config or ExperimentConfig()
    device = resolve_device(config.device)
    data = data if data is not None else load_digits(config.digits, config.source)
    check_fits(config, data)
    trainer = PairTrainer(config, data, device)
    return trainer.run(on_epoch, should_stop or (lambda: False))


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
    config: ExperimentConfig, n_classes: int, in_features: int = INPUT_SIZE, generator: torch.Generator | None = None
) -> MLP:
    """The weights both models of a run start from. Training draws them first from a generator
    seeded with `config.seed` (pass it to continue drawing from it, as training does)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    model = MLP(config.width, n_classes, in_features)
    init_weights(model, generator)
    return model


class PairTrainer:
    def __init__(self, config: ExperimentConfig, data: DigitData, device: torch.device):
        self.config, self.device = config, device
        self.width, self.k = config.width, data.n_classes
        generator = torch.Generator().manual_seed(config.seed)
        init = initial_model(config, self.k, data.train_x.shape[1], generator)
        hidden, readout = init.features[0], init.readout
        # Rows [0, w) are the slow model's hidden units, rows [w, 2w) the regular model's; the
        # readouts are stacked (2 × k × w) so that batched products serve both models at once.
        self.w_hidden = hidden.weight.detach().repeat(2, 1).to(device)
        self.b_hidden = hidden.bias.detach().repeat(2).to(device)
        self.w_out = readout.weight.detach().repeat(2, 1, 1).to(device)
        self.b_out = readout.bias.detach().repeat(2, 1).to(device)
        self.hidden_lr = torch.tensor([config.slow_lr, config.regular_lr], device=device).view(2, 1, 1)
        self.readout_lr = config.regular_lr
        self.active = [0, 1]
        self.generator = generator

        self.train_x = torch.from_numpy(np.ascontiguousarray(data.train_x, np.float32)).to(device)
        self.train_y = torch.from_numpy(data.train_y.astype(np.int64)).to(device)
        probe = stratified_probe(data.test_y, config.probe_size, self.k, generator)
        # The test set is held probe first, so the test evaluation yields the probe's features too.
        test_order = np.concatenate([probe, np.setdiff1d(np.arange(len(data.test_y)), probe)])
        self.test_x = torch.from_numpy(np.ascontiguousarray(data.test_x[test_order], np.float32)).to(device)
        self.test_y = torch.from_numpy(data.test_y[test_order].astype(np.int64)).to(device)
        self.probe_y = data.test_y[probe]

        target = one_hot(self.probe_y, self.k)
        self.tracker = Tracker(self.test_x[None, : len(probe)], target[None])
        # Chizat's lazy scale: the models output α(f − f₀); f₀ is the same for both (identical
        # starts), so it is computed once per set (k × n) and sliced like the data.
        self.lazy_scale = config.lazy_scale
        self.train_offset = self._initial_outputs(self.train_x) if self.lazy_scale is not None else None
        self.result = ExperimentResult(
            config=config,
            source=data.source,
            source_note=data.note,
            device=str(device),
            history={name: [] for name in MODEL_NAMES},
            kernels={name: [] for name in MODEL_NAMES},
            target_kernel=centered_feature_kernel(target),
            probe_labels=self.probe_y.copy(),
            diverged_at={name: None for name in MODEL_NAMES},
            provenance=run_provenance(device),
        )

    def _active_slice(self) -> slice:
        """The active models' entries in the stacked per-model tensors (active ones are adjacent)."""
        return slice(self.active[0], self.active[-1] + 1)

    def _span(self) -> slice:
        """The active models' rows of the fused hidden layer."""
        active = self._active_slice()
        return slice(active.start * self.width, active.stop * self.width)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden activations, transposed ((n_active·w) × batch), and logits (n_active × k × batch).

        The transposed layout keeps each model's units a contiguous block of rows, so one batched
        product computes both readouts.
        """
        span, models = self._span(), self._active_slice()
        h_t = torch.addmm(self.b_hidden[span, None], self.w_hidden[span], x.T).relu_()
        per_model = h_t.view(-1, self.width, x.shape[0])
        logits = torch.baddbmm(self.b_out[models, :, None], self.w_out[models], per_model)
        return h_t, logits

    @functools.cached_property
    def test_offset(self) -> torch.Tensor | None:
        """f₀ on the test set, taken as `_evaluate` goes through it (the probe first), or None. Only
        a run of its own needs it (the batched engine takes f₀ with its own products)."""
        return None if self.lazy_scale is None else self._initial_outputs(self.test_x, len(self.probe_y))

    @torch.no_grad()
    def _initial_outputs(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        """f₀ on every row of x (k × n), from the first model (both are still identical), in the
        chunks `_evaluate` takes (`first` rows, then EVAL_CHUNK_ELEMENTS): the same products give
        the same bits, so α(f − f₀) is exactly 0 before training."""
        chunk = max(1, EVAL_CHUNK_ELEMENTS // (2 * self.width))
        return torch.cat([self._forward(x[a:b])[1][0] for a, b in chunks(x.shape[0], chunk, first)], dim=1)

    def _lazy(self, logits: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
        """The trained predictor's outputs: α(f − f₀) with a lazy scale, else f itself."""
        return logits if offset is None else (logits - offset).mul_(self.lazy_scale)

    def _step(self, x, y, offset, loss_sum, loss_max, errors) -> None:
        """One SGD step of both models on the batch (x, y); accumulates loss and errors on the device.
        `offset` is f₀ on the batch (k × batch) with a lazy scale, else None."""
        span, models = self._span(), self._active_slice()
        batch = x.shape[0]
        h_t, logits = self._forward(x)
        logits = self._lazy(logits, offset)
        log_p = logits.log_softmax(dim=1)
        nll = -log_p.gather(1, y.expand(log_p.shape[0], 1, batch)).squeeze(1)
        loss_sum[models] += nll.sum(dim=1)
        torch.maximum(loss_max[models], nll.mean(dim=1), out=loss_max[models])
        errors[models] += (logits.argmax(dim=1) != y).sum(dim=1)
        # Cross-entropy gradient w.r.t. the logits: (softmax - one_hot) / batch.
        d_logits = log_p.exp_()
        d_logits[:, y, torch.arange(batch, device=y.device)] -= 1.0
        d_logits /= batch
        if offset is not None:
            d_logits /= self.lazy_scale  # ∂(CE(α(f − f₀))/α²)/∂f = (softmax − y)/α
        w_out, b_out = self.w_out[models], self.b_out[models]
        # Hidden-layer gradient (before the readout moves), already scaled by each model's rate.
        grad_t = torch.bmm(w_out.transpose(1, 2), d_logits * self.hidden_lr[models]).view_as(h_t)
        w_out.baddbmm_(d_logits, h_t.view(-1, self.width, batch).transpose(1, 2), alpha=-self.readout_lr)
        b_out.sub_(d_logits.sum(dim=2), alpha=self.readout_lr)
        # ReLU's derivative in one pass (a boolean mask and masked_fill take ten times longer on CPU).
        torch.ops.aten.threshold_backward.grad_input(grad_t, h_t, 0.0, grad_input=grad_t)
        self.w_hidden[span].addmm_(grad_t, x, alpha=-1.0)
        self.b_hidden[span].sub_(grad_t.sum(dim=1))

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None, keep: int = 0):
        """(error %, mean loss) per active model on a whole set, in chunks, and the hidden
        activations ((n_active·w) × keep) of its first `keep` rows. `offset`: f₀ on x, or None."""
        chunk = max(1, EVAL_CHUNK_ELEMENTS // (len(self.active) * self.width))
        n, models = x.shape[0], self._active_slice()
        errors = torch.zeros(2, dtype=torch.float64, device=self.device)
        losses = torch.zeros(2, dtype=torch.float64, device=self.device)
        kept = None
        for start, stop in chunks(n, chunk, first=keep):
            xb, yb = x[start:stop], y[start:stop]
            h_t, logits = self._forward(xb)
            logits = self._lazy(logits, None if offset is None else offset[:, start:stop])
            if start == 0 and keep:
                kept = h_t
            losses[models] -= logits.log_softmax(dim=1).gather(1, yb.expand(logits.shape[0], 1, -1)).sum(dim=(1, 2))
            errors[models] += (logits.argmax(dim=1) != yb).sum(dim=1)
        errors, losses = errors.tolist(), losses.tolist()
        return {
            model_index: (100.0 * errors[model_index] / n, losses[model_index] / n) for model_index in self.active
        }, kept

    def _record(self, epoch: int, train: dict, started: float) -> None:
        test, probe_features = self._evaluate(self.test_x, self.test_y, self.test_offset, keep=len(self.probe_y))
        span, models = self._span(), self._active_slice()
        n_active, n_inputs = len(self.active), self.train_x.shape[1]
        [measured] = self.tracker.measure(
            probe_features.view(n_active, self.width, -1).transpose(1, 2)[None],
            self.w_hidden[span].view(n_active, self.width, n_inputs)[None],
            self.w_out[models][None],
            models,
        )
        self.add_records(epoch, train, test, dict(zip(self.active, measured)), started)

    def add_records(self, epoch: int, train: dict, test: dict, measured: dict[int, Measured], started: float) -> None:
        """The epoch's record and kernels of each active model, from its (error %, mean loss) on the
        training and test sets and its `measured` probe (by model index)."""
        for model_index in self.active:
            probe = measured[model_index]
            name = MODEL_NAMES[model_index]
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
                )
            )
            self.result.kernels[name].append(probe.feature_kernel)
            self.result.tangent_kernels[name].append(probe.tangent_kernel)

    @torch.no_grad()
    def run(self, on_epoch, should_stop) -> ExperimentResult:
        started = time.perf_counter()
        self.begin(on_epoch, started)
        n, batch = len(self.train_y), self.config.batch_size
        for epoch in range(1, self.config.epochs + 1):
            loss_sum = torch.zeros(2, device=self.device)
            loss_max = torch.zeros(2, device=self.device)
            errors = torch.zeros(2, device=self.device)
            order = torch.randperm(n, generator=self.generator).to(self.device)
            for start in range(0, n, batch):
                if should_stop():
                    self.result.stopped = True
                    break
                idx = order[start : start + batch]
                offset = None if self.train_offset is None else self.train_offset[:, idx]
                self._step(self.train_x[idx], self.train_y[idx], offset, loss_sum, loss_max, errors)
            if self.result.stopped:
                break
            self.end_epoch(epoch, loss_sum, loss_max, errors, started)
            if on_epoch:
                on_epoch(self.result)
            if not self.active:
                break
        return self.finish(started)

    # begin, end_epoch and finish are what a run does besides its batches. The batched trial engine
    # (batched.py) calls their parts: it evaluates and measures a block's trials together.
    def begin(self, on_epoch, started: float) -> None:
        """Before the first batch: epoch 0's record, then `after_start`."""
        self._record(0, self.initial_train(), started)
        self.after_start(self.tracker.initial_kernels(0), on_epoch, machines=True)

    def initial_train(self) -> dict:
        """(error %, mean loss) per model on the training set before training; the losses are the
        yardstick of divergence."""
        initial, _ = self._evaluate(self.train_x, self.train_y, self.train_offset)
        self.initial_loss = {model_index: initial[model_index][1] for model_index in self.active}
        return initial

    def after_start(self, initial_kernels: tuple[torch.Tensor, torch.Tensor], on_epoch, machines: bool) -> None:
        """After epoch 0's record: the null bands of the initial (feature, tangent) kernels, the
        callback, and (unless `machines` is False: the batched engine may leave them out) the
        initial kernel machines."""
        self._measure_null_bands(initial_kernels)
        if on_epoch:
            on_epoch(self.result)
        if machines:
            self._measure_initial_machines()  # after the epoch-0 callback, so the first charts come first

    def end_epoch(self, epoch: int, loss_sum, loss_max, errors, started: float) -> None:
        """Record the epoch from its per-model sums over the batches (loss, errors) and largest batch
        loss, and retire the models that diverged."""
        self._record(epoch, self.train_errors(loss_sum, errors), started)
        self.retire_diverged(epoch, loss_sum, loss_max)

    def train_errors(self, loss_sum, errors) -> dict:
        """(error %, mean loss) per active model from the epoch's sums over its batches."""
        n = len(self.train_y)
        loss_sum, errors = loss_sum.tolist(), errors.tolist()
        return {
            model_index: (100.0 * errors[model_index] / n, loss_sum[model_index] / n) for model_index in self.active
        }

    def retire_diverged(self, epoch: int, loss_sum, loss_max) -> None:
        """A model whose largest batch loss exploded, or whose loss is no longer finite, stops."""
        loss_sum, loss_max = loss_sum.tolist(), loss_max.tolist()
        for model_index in list(self.active):
            exploded = loss_max[model_index] > DIVERGENCE_FACTOR * self.initial_loss[model_index]
            if exploded or not math.isfinite(loss_sum[model_index]):
                self.result.diverged_at[MODEL_NAMES[model_index]] = epoch
                self.active.remove(model_index)

    def finish(self, started: float, machines: bool = True) -> ExperimentResult:
        for model_index, name in enumerate(MODEL_NAMES if machines else ()):
            self.result.kernel_machine_errors[name]["final"] = self._machine_errors(model_index)
        self.result.seconds = time.perf_counter() - started
        self.result.models = {name: self._export(model_index) for model_index, name in enumerate(MODEL_NAMES)}
        return self.result

    def _measure_null_bands(self, initial_kernels: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Once per run, at initialisation, the null bands of ρ. Their own generator (like the kernel
        machines') leaves the training's random stream (batch order) untouched."""
        generator = torch.Generator().manual_seed(self.config.seed)
        self.result.alignment_null = {
            kind: null_band(kernel, self.probe_y, self.k, generator)
            for kind, kernel in zip(("feature", "tangent"), initial_kernels)
        }

    def _measure_initial_machines(self) -> None:
        """Once per run: the digits the kernel machines see, and the initial machines."""
        generator = torch.Generator().manual_seed(self.config.seed)
        self.machine_points = choose_points(
            self.train_x,
            self.train_y,
            self.test_x,
            self.test_y,
            self.k,
            lambda labels, size: stratified_probe(labels, size, self.k, generator),
        )
        self.machine_grams = self.machine_points.grams()
        errors = self._machine_errors(0)  # both models are still the same
        self.result.kernel_machine_errors = {name: {"init": errors} for name in MODEL_NAMES}

    def _machine_errors(self, model_index: int) -> dict[str, float | None]:
        rows = slice(model_index * self.width, (model_index + 1) * self.width)
        return machine_errors(
            self.machine_points, self.w_hidden[rows], self.b_hidden[rows], self.w_out[model_index], self.machine_grams
        )

    def _export(self, model_index: int) -> MLP:
        model = MLP(self.width, self.k, self.train_x.shape[1])
        rows = slice(model_index * self.width, (model_index + 1) * self.width)
        # Inactive models keep their rows in w_hidden untouched since they stopped training.
        model.features[0].weight.copy_(self.w_hidden[rows])
        model.features[0].bias.copy_(self.b_hidden[rows])
        model.readout.weight.copy_(self.w_out[model_index])
        model.readout.bias.copy_(self.b_out[model_index])
        return model.eval()


def chunks(n: int, size: int, first: int = 0):
    """(start, stop) pairs covering range(n): the first `first` rows as one chunk, then `size` each."""
    starts = ([0] if first else []) + list(range(first, n, size))
    return zip(starts, starts[1:] + [n])
