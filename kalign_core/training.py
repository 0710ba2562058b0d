"""Train the slow and the regular model side by side and record errors and alignment each epoch.

Both models start from identical weights and see the same batches. Their hidden layers are stored
as one (2·width × 784) matrix, so each batch costs two large matrix products for the pair: the
forward pass and a fused "gradient and SGD update" (W ← W − G X by addmm). Gradients are written
by hand (plain SGD on cross-entropy) and tested against autograd.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .alignment import AlignmentUndefined, centered_feature_kernel, feature_alignment, one_hot
from .config import ExperimentConfig
from .data import DigitData, load_digits
from .devices import resolve_device
from .model import MLP, init_weights

MODEL_NAMES = ("slow", "regular")
# A model has diverged when a batch loss exceeds this multiple of its initial loss (or is not finite).
DIVERGENCE_FACTOR = 10.0
# Evaluation works through the data in chunks of about this many hidden activations.
EVAL_CHUNK_ELEMENTS = 2**25


@dataclass(frozen=True)
class EpochRecord:
    """One model after `epoch` epochs (0 = at initialisation). Errors in percent.

    train_error and loss at epoch 0 are measured on the whole training set; after that they are the
    running means over the epoch's batches (what the training loop already computes, for free).
    """

    epoch: int
    train_error: float
    test_error: float
    loss: float
    alignment: float | None
    alignment_note: str | None = None
    seconds: float = 0.0


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    source: str
    device: str
    history: dict[str, list[EpochRecord]]
    # Centered probe kernels (m×m float32, probe sorted by class): kernels[name][epoch].
    kernels: dict[str, list[np.ndarray]]
    target_kernel: np.ndarray
    probe_labels: np.ndarray
    diverged_at: dict[str, int | None]
    stopped: bool = False
    seconds: float = 0.0
    models: dict[str, MLP] = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return max(len(h) for h in self.history.values()) - 1

    def curve(self, name: str, metric: str) -> list:
        """One metric of one model over epochs, e.g. curve("regular", "alignment")."""
        return [getattr(record, metric) for record in self.history[name]]

    def copy(self) -> "ExperimentResult":
        """A snapshot whose containers no longer grow with the run (records and arrays are shared)."""
        return replace(
            self,
            history={k: list(v) for k, v in self.history.items()},
            kernels={k: list(v) for k, v in self.kernels.items()},
            diverged_at=dict(self.diverged_at),
            models=dict(self.models),
        )


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
    _check_fits(config, data)
    trainer = _PairTrainer(config, data, device)
    return trainer.run(on_epoch, should_stop or (lambda: False))


def _check_fits(config: ExperimentConfig, data: DigitData) -> None:
    if tuple(data.digits) != tuple(config.digits):
        raise ValueError(f"data holds digits {list(data.digits)} but config.digits is {list(config.digits)}")
    n_train, n_test = len(data.train_y), len(data.test_y)
    if config.batch_size > n_train:
        raise ValueError(
            f"batch_size must be from 1 to {n_train:,}, the training digits available (got {config.batch_size:,})"
        )
    if not len(data.digits) <= config.probe_size <= n_test:
        raise ValueError(
            f"probe_size must be from {len(data.digits)} to {n_test:,}, the test digits available "
            f"(got {config.probe_size:,})"
        )


def stratified_probe(labels: np.ndarray, size: int, n_classes: int, generator: torch.Generator) -> np.ndarray:
    """Indices of `size` points with classes as equal as the data allow, sorted by class."""
    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    quota = [size // n_classes + (c < size % n_classes) for c in range(n_classes)]
    # Classes short of their quota hand the rest to the others.
    for _ in range(n_classes):
        spare = sum(max(0, q - len(m)) for q, m in zip(quota, members))
        quota = [min(q, len(m)) for q, m in zip(quota, members)]
        for c in range(n_classes):
            give = min(spare, len(members[c]) - quota[c])
            quota[c] += give
            spare -= give
    chosen = []
    for m, q in zip(members, quota):
        order = torch.randperm(len(m), generator=generator).numpy()
        chosen.append(np.sort(m[order[:q]]))
    return np.concatenate(chosen)


class _PairTrainer:
    def __init__(self, config: ExperimentConfig, data: DigitData, device: torch.device):
        self.config, self.device = config, device
        self.width, self.k = config.width, data.n_classes
        generator = torch.Generator().manual_seed(config.seed)
        init = MLP(self.width, self.k, data.train_x.shape[1])
        init_weights(init, generator)
        hidden, readout = init.features[0], init.readout
        # Rows [0, w) are the slow model's hidden units, rows [w, 2w) the regular model's.
        self.w_hidden = hidden.weight.detach().repeat(2, 1).to(device)
        self.b_hidden = hidden.bias.detach().repeat(2).to(device)
        self.w_out = [readout.weight.detach().clone().to(device) for _ in MODEL_NAMES]
        self.b_out = [readout.bias.detach().clone().to(device) for _ in MODEL_NAMES]
        self.hidden_lr = [config.slow_lr, config.regular_lr]
        self.readout_lr = config.regular_lr
        self.active = [0, 1]
        self.generator = generator

        self.train_x = torch.from_numpy(np.ascontiguousarray(data.train_x, np.float32)).to(device)
        self.train_y = torch.from_numpy(data.train_y.astype(np.int64)).to(device)
        self.test_x = torch.from_numpy(np.ascontiguousarray(data.test_x, np.float32)).to(device)
        self.test_y = torch.from_numpy(data.test_y.astype(np.int64)).to(device)
        probe = stratified_probe(data.test_y, config.probe_size, self.k, generator)
        self.probe_x = self.test_x[torch.from_numpy(probe).to(device)]
        self.probe_y = data.test_y[probe]

        target = one_hot(self.probe_y, self.k)
        self.result = ExperimentResult(
            config=config,
            source=data.source,
            device=str(device),
            history={name: [] for name in MODEL_NAMES},
            kernels={name: [] for name in MODEL_NAMES},
            target_kernel=centered_feature_kernel(target),
            probe_labels=self.probe_y.copy(),
            diverged_at={name: None for name in MODEL_NAMES},
        )

    def _rows(self, model: int) -> slice:
        """This model's rows in the fused hidden layer, counted within the active ones."""
        position = self.active.index(model)
        return slice(position * self.width, (position + 1) * self.width)

    def _span(self) -> slice:
        first, last = self.active[0], self.active[-1]
        return slice(first * self.width, (last + 1) * self.width)

    def _hidden_t(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden activations of the active models, transposed: (n_active·w) × batch."""
        span = self._span()
        return torch.addmm(self.b_hidden[span, None], self.w_hidden[span], x.T).relu_()

    def _step(self, x, y, loss_sum, loss_max, errors) -> None:
        span = self._span()
        h_t = self._hidden_t(x)
        grad_t = torch.empty_like(h_t)
        batch = x.shape[0]
        for m in self.active:
            rows = self._rows(m)
            logits_t = torch.addmm(self.b_out[m][:, None], self.w_out[m], h_t[rows])
            log_p = logits_t.log_softmax(dim=0)
            nll = -log_p.gather(0, y[None]).squeeze(0)
            loss_sum[m] += nll.sum()
            torch.maximum(loss_max[m], nll.mean(), out=loss_max[m])
            errors[m] += (logits_t.argmax(dim=0) != y).sum()
            d_logits = log_p.exp_()
            d_logits[y, torch.arange(batch, device=y.device)] -= 1.0
            d_logits /= batch
            torch.mm(self.w_out[m].T, d_logits * self.hidden_lr[m], out=grad_t[rows])
            self.w_out[m].addmm_(d_logits, h_t[rows].T, alpha=-self.readout_lr)
            self.b_out[m].sub_(d_logits.sum(dim=1), alpha=self.readout_lr)
        grad_t.masked_fill_(h_t == 0, 0.0)  # ReLU derivative
        self.w_hidden[span].addmm_(grad_t, x, alpha=-1.0)
        self.b_hidden[span].sub_(grad_t.sum(dim=1))

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[int, tuple[float, float]]:
        """(error %, mean loss) per active model on a whole set, in chunks."""
        chunk = max(1, EVAL_CHUNK_ELEMENTS // (len(self.active) * self.width))
        errors = torch.zeros(2, dtype=torch.float64, device=self.device)
        losses = torch.zeros(2, dtype=torch.float64, device=self.device)
        for start in range(0, x.shape[0], chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            h_t = self._hidden_t(xb)
            for m in self.active:
                logits_t = torch.addmm(self.b_out[m][:, None], self.w_out[m], h_t[self._rows(m)])
                losses[m] -= logits_t.log_softmax(dim=0).gather(0, yb[None]).sum()
                errors[m] += (logits_t.argmax(dim=0) != yb).sum()
        n = x.shape[0]
        errors, losses = errors.tolist(), losses.tolist()
        return {m: (100.0 * errors[m] / n, losses[m] / n) for m in self.active}

    def _record(self, epoch: int, train: dict, started: float) -> None:
        test = self._evaluate(self.test_x, self.test_y)
        h_t = self._hidden_t(self.probe_x)
        for m in self.active:
            phi = h_t[self._rows(m)].T
            try:
                alignment, note = feature_alignment(phi, self.probe_y), None
            except AlignmentUndefined as undefined:
                alignment, note = None, undefined.reason
            name = MODEL_NAMES[m]
            self.result.history[name].append(
                EpochRecord(
                    epoch=epoch,
                    train_error=train[m][0],
                    test_error=test[m][0],
                    loss=train[m][1],
                    alignment=alignment,
                    alignment_note=note,
                    seconds=time.perf_counter() - started,
                )
            )
            self.result.kernels[name].append(centered_feature_kernel(phi))

    @torch.no_grad()
    def run(self, on_epoch, should_stop) -> ExperimentResult:
        started = time.perf_counter()
        initial = self._evaluate(self.train_x, self.train_y)
        initial_loss = {m: initial[m][1] for m in self.active}
        self._record(0, initial, started)
        if on_epoch:
            on_epoch(self.result)
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
                self._step(self.train_x[idx], self.train_y[idx], loss_sum, loss_max, errors)
            if self.result.stopped:
                break
            loss_sum, loss_max, errors = loss_sum.tolist(), loss_max.tolist(), errors.tolist()
            train = {m: (100.0 * errors[m] / n, loss_sum[m] / n) for m in self.active}
            self._record(epoch, train, started)
            for m in list(self.active):
                exploded = loss_max[m] > DIVERGENCE_FACTOR * initial_loss[m]
                if exploded or not math.isfinite(loss_sum[m]):
                    self.result.diverged_at[MODEL_NAMES[m]] = epoch
                    self.active.remove(m)
            if on_epoch:
                on_epoch(self.result)
            if not self.active:
                break
        self.result.seconds = time.perf_counter() - started
        self.result.models = {name: self._export(m) for m, name in enumerate(MODEL_NAMES)}
        return self.result

    def _export(self, m: int) -> MLP:
        model = MLP(self.width, self.k, self.train_x.shape[1])
        rows = slice(m * self.width, (m + 1) * self.width)
        # Inactive models keep their rows in w_hidden untouched since they stopped training.
        model.features[0].weight.copy_(self.w_hidden[rows])
        model.features[0].bias.copy_(self.b_hidden[rows])
        model.readout.weight.copy_(self.w_out[m])
        model.readout.bias.copy_(self.b_out[m])
        return model.eval()
