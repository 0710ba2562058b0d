"""Many small trials trained as one batched computation (issue 13).

A sweep's trials are small: at width 256 on the sample's 800 digits a batch's largest product is
512×784 by 784×50. Here a block of trials trains as one: their fused hidden layers (slow units,
then regular units, as in the pair trainer) are stacked on a leading trial axis, stored inputs ×
units, (T, 784, 2·width), and each batch costs a few batched products (torch.bmm and baddbmm) for
all T trials, each trial on its own batch. Measured on 2 shared cores (45 trials, width 256): the
training steps alone run at 79–81 GFLOP/s on one thread against a loop of single trials' 62–73,
and at 141–164 on two threads against 73–92. What a trial does besides its batches (its
evaluation and probe measures each epoch, its null bands, and above all its kernel machines'
float64 solves) takes most of a trial's time at this size, and is unchanged here.

Everything but the batches is each trial's own `PairTrainer` (training.py), built as
`run_experiment` builds it: its generator, initial weights, probe, batch order, evaluation, kernels,
records, divergence checks, null bands and kernel machines. The trainer keeps views of its slice
of the stacked tensors, so its own code evaluates and records it.

Results equal `run_experiment`'s up to float32 rounding: a batched product sums in another order
than mm, and a per-trial learning rate scales the readout's gradient before its product instead of
after it (baddbmm's alpha is one number for all trials), so the weights differ by an ulp or so
after a step and the differences grow slowly with training (tests/test_batched.py bounds them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from .config import ExperimentConfig
from .data import DigitData, load_digits
from .devices import resolve_device
from .results import ExperimentResult
from .tracking import Tracker
from .training import EVAL_CHUNK_ELEMENTS, PairTrainer, check_fits, chunks

# A block's stacked hidden weights hold at most this many numbers. On a CPU, 16 MB of float32, so
# that each step's forward pass and update find them in cache: at width 256 a block then holds 10
# trials, and the 45-pair matrix trained in blocks of 8 to 12 in 4.7–4.8 s against 5.8–6.0 s in one
# block of 45 (2 threads here; forward and update together ran at 0.8 of peak in blocks of 16 or fewer against
# 0.65 with 45). Elsewhere 256 MB (e.g. 21 trials of width 2000): a GPU gains by launching fewer,
# larger products.
CPU_BLOCK_WEIGHTS = 2**22
MAX_BLOCK_WEIGHTS = 2**26


@dataclass(frozen=True)
class BlockKey:
    """What the trials of one block share: everything that shapes the stacked tensors, the loop
    over batches and the evaluation. Digits, seeds and learning rates may differ."""

    width: int
    batch_size: int
    epochs: int
    lazy_scale: float | None
    device: str
    n_classes: int
    n_train: int
    n_test: int
    probe_size: int
    n_inputs: int


def block_key(config: ExperimentConfig, data: DigitData) -> BlockKey:
    return BlockKey(
        config.width,
        config.batch_size,
        config.epochs,
        config.lazy_scale,
        str(resolve_device(config.device)),
        data.n_classes,
        len(data.train_y),
        len(data.test_y),
        config.probe_size,
        data.train_x.shape[1],
    )


def group_blocks(
    configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData], max_trials: int | None = None
) -> list[list[int]]:
    """Indices into `configs`, in blocks that train together: trials of one `block_key`, in their
    order, split evenly into blocks of at most `max_trials` (e.g. to give each of several workers a
    block) and at most as many as the block weight limit of their device allows."""
    groups: dict[BlockKey, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(block_key(config, data[config.digits]), []).append(index)
    blocks = []
    for key, indices in groups.items():
        limit = CPU_BLOCK_WEIGHTS if key.device == "cpu" else MAX_BLOCK_WEIGHTS
        size = min(max_trials or len(indices), max(1, limit // (2 * key.width * key.n_inputs)))
        count = math.ceil(len(indices) / size)
        bounds = [round(i * len(indices) / count) for i in range(count + 1)]
        blocks += [indices[start:stop] for start, stop in zip(bounds, bounds[1:])]
    return blocks


def load_trial_data(
    configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData] | None = None
) -> dict[tuple[int, ...], DigitData]:
    """Each trial's digits: `data[config.digits]` where given, else loaded from `config.source` once
    per distinct set of digits. Every trial is checked against its data, as run_experiment does."""
    loaded = dict(data or {})
    for config in configs:
        if config.digits not in loaded:
            loaded[config.digits] = load_digits(config.digits, config.source)
        check_fits(config, loaded[config.digits])
    return loaded


def iter_trials(
    configs: list[ExperimentConfig],
    data: Mapping[tuple[int, ...], DigitData] | None = None,
    on_epoch: Callable[[int, ExperimentResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_trials: int | None = None,
    kernel_machines: bool = True,
) -> Iterator[tuple[int, ExperimentResult]]:
    """Train `configs` block by block (see `group_blocks`), yielding (index into configs, result)
    for each trial as its block finishes (blocks of at most `max_trials`).
    `on_epoch(index, partial_result)` follows each trial's epochs, epoch 0 included, like
    run_experiment's callback. `should_stop()` is checked between batches: the block in training
    then ends with its trials marked `stopped` (the epochs they completed), and no later block
    starts. `kernel_machines=False` leaves out the kernel ridge
    machines (result.kernel_machine_errors stays empty): a sweep's summaries do not use them, and
    their float64 solves take about a third of a width-256 trial on the sample."""
    data = load_trial_data(configs, data)
    should_stop = should_stop or (lambda: False)
    for block in group_blocks(configs, data, max_trials):
        trained = TrialBlock([configs[i] for i in block], data, block, on_epoch).run(should_stop, kernel_machines)
        yield from zip(block, trained)
        if trained[0].stopped:
            return


def run_trials(
    configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData] | None = None, **options
) -> list[ExperimentResult | None]:
    """`iter_trials(configs, data, **options)`' results in the order of `configs`; None for the
    trials of blocks that a stop left unstarted."""
    results: list[ExperimentResult | None] = [None] * len(configs)
    for index, result in iter_trials(configs, data, **options):
        results[index] = result
    return results


class TrialBlock:
    """T trials of one block_key: their pair trainers and the stacked tensors the trainers' own
    parameters are views of."""

    def __init__(
        self, configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData], indices: list[int], on_epoch
    ):
        self.device = resolve_device(configs[0].device)
        self.trainers = [PairTrainer(config, data[config.digits], self.device) for config in configs]
        self.callbacks = [None if on_epoch is None else _bound(on_epoch, index) for index in indices]
        first = self.trainers[0]
        self.width, self.k, self.batch, self.epochs = first.width, first.k, first.config.batch_size, first.config.epochs
        self.lazy_scale = first.lazy_scale
        self.n = len(first.train_y)
        # Hidden weights stored inputs × units, (T, inputs, 2w): the forward X·W′ᵀ and the update
        # W′ᵀ += Xᵀ·G′ run 1.5 to 2 times faster in this layout than with W′ as the trainer holds it
        # (units × inputs), which stays a view: a transposed one.
        self.w_hidden_t = self._stack("w_hidden", transposed=True)
        self.b_hidden = self._stack("b_hidden")  # T × 2w
        self.w_out = self._stack("w_out")  # T × 2 × k × w
        self.b_out = self._stack("b_out")  # T × 2 × k
        self.train_offset = (
            torch.stack([t.train_offset for t in self.trainers]) if self.lazy_scale is not None else None
        )
        # Each distinct training set once (trials of one pair share it), and each trial's first row.
        first_rows: dict[tuple[int, ...], int] = {}  # digits → first row in all_x
        distinct = []
        for trainer in self.trainers:
            if trainer.config.digits not in first_rows:
                first_rows[trainer.config.digits] = len(distinct) * self.n
                distinct.append(trainer)
        self.all_x = torch.cat([t.train_x for t in distinct])
        self.all_y = torch.cat([t.train_y for t in distinct])
        self.first_row = torch.tensor([first_rows[t.config.digits] for t in self.trainers], device=self.device)
        # The test sets (each probe first) and their f₀, stacked: a block evaluates and measures its
        # trials together, each epoch.
        self.test_x = torch.stack([t.test_x for t in self.trainers])
        self.test_y = torch.stack([t.test_y for t in self.trainers])
        # f₀ on the test sets (t × n_test × k), by the block's own products in the chunks of
        # `_evaluate_test`, so that α(f − f₀) is exactly 0 there before training, as in run_experiment.
        self.test_offset = None
        if self.lazy_scale is not None:
            self.test_offset = torch.cat(
                [self._forward(self.test_x[:, a:b])[2][:, 0] for a, b in self._test_chunks()], 1
            )
        self.tracker = Tracker.stacked([t.tracker for t in self.trainers])
        self.minus_one = torch.tensor(-1.0, device=self.device)  # the one-hot's −1, expanded per batch
        # Per-model learning rates (T × 2 × 1 × 1), multipliers of the logits' gradient; a retired
        # model's are set to 0.
        self.hidden_lr = torch.stack([t.hidden_lr for t in self.trainers])
        readout_lr = torch.tensor([t.readout_lr for t in self.trainers], device=self.device)
        self.readout_lr = readout_lr.view(-1, 1, 1, 1).repeat(1, 2, 1, 1)
        self.retired: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}

    def _stack(self, name: str, transposed: bool = False) -> torch.Tensor:
        """The trainers' `name` tensors (each transposed, if asked) stacked on a new leading axis;
        each trainer's own becomes a view of its slice."""
        own = [getattr(t, name) for t in self.trainers]
        stacked = torch.stack([tensor.T if transposed else tensor for tensor in own])
        for position, trainer in enumerate(self.trainers):
            setattr(trainer, name, stacked[position].T if transposed else stacked[position])
        return stacked

    @torch.no_grad()
    def run(self, should_stop, machines: bool) -> list[ExperimentResult]:
        started = time.perf_counter()
        self._record(0, {position: t.initial_train() for position, t in enumerate(self.trainers)}, started)
        for position, (trainer, callback) in enumerate(zip(self.trainers, self.callbacks)):
            trainer.after_start(self.tracker.initial_kernels(position), callback, machines)
        for epoch in range(1, self.epochs + 1):
            active = [position for position, t in enumerate(self.trainers) if t.active]
            if not active:
                break
            sums = self.train_epoch(should_stop)
            if sums is None:
                return self._finish(started, machines, stopped=True)
            loss_sum, loss_max, errors = sums
            train = {p: self.trainers[p].train_errors(loss_sum[p], errors[p]) for p in active}
            self._record(epoch, train, started)
            for position in active:
                self.trainers[position].retire_diverged(epoch, loss_sum[position], loss_max[position])
                self._retire_diverged(position)
                if self.callbacks[position]:
                    self.callbacks[position](self.trainers[position].result)
        return self._finish(started, machines, stopped=False)

    @torch.no_grad()
    def train_epoch(self, should_stop=lambda: False) -> torch.Tensor | None:
        """One epoch of SGD steps of every trial, each in its own order: each model's loss sum,
        largest batch loss and errors (3 × T × 2); None when should_stop ended it between steps.
        Every trial steps, those whose models have all diverged with learning rates 0, so that the
        stacked tensors never need picking apart."""
        sums = torch.zeros(3, len(self.trainers), 2, device=self.device)
        order = torch.stack([torch.randperm(self.n, generator=t.generator) for t in self.trainers]).to(self.device)
        rows = order + self.first_row[:, None]
        for start in range(0, self.n, self.batch):
            if should_stop():
                return None
            self._step(order[:, start : start + self.batch], rows[:, start : start + self.batch], sums)
        return sums

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Every trial's models on its own rows x (t × rows × inputs): hidden activations (t × rows
        × 2w), each model's view of them (t × rows × w) and the logits (t × 2 × rows × k)."""
        w = self.width
        h = torch.baddbmm(self.b_hidden[:, None, :], x, self.w_hidden_t).relu_()
        per_model = [h[:, :, m * w : (m + 1) * w] for m in (0, 1)]
        logits = torch.stack(
            [torch.baddbmm(self.b_out[:, m, None, :], per_model[m], self.w_out[:, m].transpose(1, 2)) for m in (0, 1)],
            dim=1,
        )
        return h, per_model, logits

    def _record(self, epoch: int, train: dict[int, dict], started: float) -> None:
        """Epoch `epoch`'s records of the trials in `train` (position → its training errors), from
        one evaluation of every trial's test set and one measure of every trial's probe."""
        test, probe = self._evaluate_test()
        t, n_inputs, w = len(self.trainers), self.w_hidden_t.shape[1], self.width
        measured = self.tracker.measure(
            probe.view(t, -1, 2, w).transpose(1, 2),  # t × 2 × m × w
            self.w_hidden_t.view(t, n_inputs, 2, w).permute(0, 2, 3, 1),  # t × 2 × w × inputs
            self.w_out,
        )
        for position, errors in train.items():
            self.trainers[position].add_records(
                epoch, errors, test[position], dict(enumerate(measured[position])), started
            )

    def _evaluate_test(self) -> tuple[list[dict], torch.Tensor]:
        """Per trial, (error %, mean loss) of each model on its test set, and the hidden activations
        on the probe (its test set's first rows): t × m × 2w."""
        t, n_test = len(self.trainers), self.test_x.shape[1]
        errors = torch.zeros(t, 2, dtype=torch.float64, device=self.device)
        losses = torch.zeros(t, 2, dtype=torch.float64, device=self.device)
        probe = None
        for start, stop in self._test_chunks():
            y = self.test_y[:, start:stop]
            h, _, logits = self._forward(self.test_x[:, start:stop])
            if self.test_offset is not None:
                logits = (logits - self.test_offset[:, None, start:stop]).mul_(self.lazy_scale)
            if start == 0:
                probe = h
            target = y[:, None, :, None].expand(t, 2, stop - start, 1)
            losses -= logits.log_softmax(dim=3).gather(3, target).sum(dim=(2, 3))
            errors += (logits.argmax(dim=3) != y[:, None]).sum(dim=2)
        errors, losses = (100.0 * errors / n_test).tolist(), (losses / n_test).tolist()
        return [{m: (errors[p][m], losses[p][m]) for m in (0, 1)} for p in range(t)], probe

    def _test_chunks(self) -> list[tuple[int, int]]:
        """The rows of the test sets evaluated together: the probe, then chunks of a cache's size."""
        rows = max(1, EVAL_CHUNK_ELEMENTS // (len(self.trainers) * 2 * self.width))
        return list(chunks(self.test_x.shape[1], rows, first=len(self.trainers[0].probe_y)))

    def _step(self, order, rows, sums) -> None:
        """One SGD step of every trial's models, each trial on its own batch: `rows` of all_x, which
        are `order` in the trial's own set. The batched form of `PairTrainer._step`, with batch
        rows first; `sums` accumulates each model's loss sum, largest batch loss and errors."""
        t, batch, k = len(self.trainers), rows.shape[1], self.k
        x, y = self.all_x[rows], self.all_y[rows]  # t × batch × inputs, t × batch
        h, per_model, logits = self._forward(x)  # t × batch × 2w, 2 × (t × batch × w), t × 2 × batch × k
        if self.train_offset is not None:
            offset = self.train_offset.gather(2, order[:, None, :].expand(t, k, batch))
            logits = (logits - offset.transpose(1, 2)[:, None]).mul_(self.lazy_scale)
        log_p = logits.log_softmax(dim=3)
        target = y[:, None, :, None].expand(t, 2, batch, 1)
        nll = -log_p.gather(3, target).squeeze(3)  # t × 2 × batch
        sums[0] += nll.sum(dim=2)
        torch.maximum(sums[1], nll.mean(dim=2), out=sums[1])
        sums[2] += (logits.argmax(dim=3) != y[:, None]).sum(dim=2)
        # Cross-entropy gradient w.r.t. the logits: (softmax - one_hot) / batch.
        d_logits = log_p.exp_().scatter_add_(3, target, self.minus_one.expand(target.shape))
        d_logits /= batch
        if self.train_offset is not None:
            d_logits /= self.lazy_scale  # ∂(CE(α(f − f₀))/α²)/∂f = (softmax − y)/α
        # Hidden-layer gradient (before the readout moves), already scaled by each model's rate.
        scaled = d_logits * self.hidden_lr
        grad = torch.cat([torch.bmm(scaled[:, m], self.w_out[:, m]) for m in (0, 1)], dim=2)  # t × batch × 2w
        step_out = d_logits * self.readout_lr
        for m in (0, 1):
            self.w_out[:, m].baddbmm_(step_out[:, m].transpose(1, 2), per_model[m], alpha=-1.0)
        self.b_out.sub_(step_out.sum(dim=2))
        torch.ops.aten.threshold_backward.grad_input(grad, h, 0.0, grad_input=grad)
        self.w_hidden_t.baddbmm_(x.transpose(1, 2), grad, alpha=-1.0)
        self.b_hidden.sub_(grad.sum(dim=1))

    def _retire_diverged(self, position: int) -> None:
        """Models its trainer has just retired stop learning; their weights as they were are kept
        aside, since stepping at rate 0 keeps non-finite weights no better than they were."""
        trainer = self.trainers[position]
        for m in (0, 1):
            if m not in trainer.active and (position, m) not in self.retired:
                self.hidden_lr[position, m] = self.readout_lr[position, m] = 0.0
                rows = slice(m * self.width, (m + 1) * self.width)
                self.retired[position, m] = (
                    rows,
                    trainer.w_hidden[rows].clone(),
                    trainer.b_hidden[rows].clone(),
                    trainer.w_out[m].clone(),
                    trainer.b_out[m].clone(),
                )

    def _finish(self, started: float, machines: bool, stopped: bool) -> list[ExperimentResult]:
        """Each trial's result, as run_experiment ends it; a trial's `seconds` is its share of the
        block's time (its records' `seconds` count from the block's start)."""
        for (position, m), (rows, w_hidden, b_hidden, w_out, b_out) in self.retired.items():
            trainer = self.trainers[position]
            trainer.w_hidden[rows], trainer.b_hidden[rows] = w_hidden, b_hidden
            trainer.w_out[m], trainer.b_out[m] = w_out, b_out
        results = []
        for trainer in self.trainers:
            trainer.result.stopped = stopped
            results.append(trainer.finish(started, machines))
        for result in results:
            result.seconds = (time.perf_counter() - started) / len(results)
        return results


def _bound(on_epoch, index: int):
    return lambda result: on_epoch(index, result)
