"""The training engine: a block of trials trained as one batched computation. A run
(`run_experiment`) is a block of one trial; a sweep trains its trials in blocks of many.

A block's trials (trial.PairTrial each: data, generator, probe, records) share everything that shapes
their tensors (`block_key`). Their fused hidden layers (slow units, then regular units) are stacked
on a leading trial axis, stored inputs × units, (T, 784, 2·width), and each batch costs a few
batched products (torch.bmm and baddbmm) for all T trials, each trial on its own batch. Each epoch
the block evaluates every trial's test set and measures every trial's probe with batched products
too. Gradients are written by hand (plain SGD on cross-entropy) and tested against autograd.

A trial's numbers do not depend on the block it trains in: a batched product computes each trial's
slice as it would alone, and the evaluation's chunks are the same in any block. So a run and a
sweep trial of the same settings agree to the last bit at the same thread count
(tests/core/test_batched.py), where the BLAS computes a lone product as it computes each of a batch's
(MKL on 2 threads splits a lone product of 5 to 11 rows differently).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from ..config import ExperimentConfig
from ..data import DigitData, load_digits
from ..devices import resolve_device
from ..measures.null_band import null_bands
from ..measures.tracking import Tracker
from ..results import MODEL_NAMES, ExperimentResult
from .coordinate_check import CoordinateCheck
from .trial import PairTrial, Weights, check_fits
from .twin import LinearTwin, TwinScores

# Evaluation works through the data in chunks of about this many hidden activations per trial: 16 MB,
# small enough for a CPU's last-level cache, where its elementwise passes run about 20 % faster than
# at 128 MB. Per trial, so that a trial's chunks (and its bits) are the same in any block.
EVAL_CHUNK_ELEMENTS = 2**22

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
    parametrization: str
    linearized_twin: bool


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
        config.parametrization,
        config.linearized_twin,
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
        stacks = 4 if key.linearized_twin else 2  # the twins' hidden changes are as large as the weights
        size = min(max_trials or len(indices), max(1, limit // (stacks * key.width * key.n_inputs)))
        count = math.ceil(len(indices) / size)
        bounds = [round(i * len(indices) / count) for i in range(count + 1)]
        blocks += [indices[start:stop] for start, stop in zip(bounds, bounds[1:])]
    return blocks


def load_trial_data(
    configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData] | None = None, root=None
) -> dict[tuple[int, ...], DigitData]:
    """Each trial's digits: `data[config.digits]` where given, else loaded from `config.source` (MNIST
    under `root`, as load_digits takes it) once per distinct set of digits. Every trial is checked
    against its data, as run_experiment does."""
    loaded = dict(data or {})
    for config in configs:
        if config.digits not in loaded:
            loaded[config.digits] = load_digits(config.digits, config.source, root=root)
        check_fits(config, loaded[config.digits])
    return loaded


def iter_trials(
    configs: list[ExperimentConfig],
    data: Mapping[tuple[int, ...], DigitData] | None = None,
    on_epoch: Callable[[int, ExperimentResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_trials: int | None = None,
    kernel_machines: bool = True,
    coordinate_check: bool = False,
) -> Iterator[tuple[int, ExperimentResult]]:
    """Train `configs` block by block (see `group_blocks`), yielding (index into configs, result)
    for each trial as its block finishes (blocks of at most `max_trials`).
    `on_epoch(index, partial_result)` follows each trial's epochs, epoch 0 included, like
    run_experiment's callback. `should_stop()` is checked between batches: the block in training
    then ends with its trials marked `stopped` (the epochs they completed), and no later block
    starts. `kernel_machines=False` leaves out the kernel ridge
    machines (result.kernel_machine_errors stays empty): a sweep's summaries do not use them, and
    their float64 solves take about a third of a width-256 trial on the sample. `coordinate_check`
    records μP's coordinate check in each result (coordinate_check.py), as a sweep's summaries use it."""
    data = load_trial_data(configs, data)
    should_stop = should_stop or (lambda: False)
    for block in group_blocks(configs, data, max_trials):
        callbacks = [None if on_epoch is None else _bound(on_epoch, index) for index in block]
        trained = TrialBlock([configs[i] for i in block], data).run(
            callbacks, should_stop, kernel_machines, coordinate_check
        )
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
    """T trials of one block_key and the stacked tensors of their models."""

    def __init__(self, configs: list[ExperimentConfig], data: Mapping[tuple[int, ...], DigitData]):
        self.device = resolve_device(configs[0].device)
        self.trials = [PairTrial(config, data[config.digits], self.device) for config in configs]
        first = self.trials[0]
        self.width, self.k = first.width, first.k
        self.batch, self.epochs, self.lazy_scale = first.config.batch_size, first.config.epochs, first.config.lazy_scale
        self.n = len(first.train_y)
        hidden = [t.initial.features[0] for t in self.trials]
        readout = [t.initial.readout for t in self.trials]
        # Hidden weights stored inputs × units, (T, inputs, 2w), both models' units side by side: the
        # forward X·W′ and the update W′ += Xᵀ·G′ run 1.5 to 2 times faster in this layout than
        # with W as nn.Linear holds it (units × inputs).
        self.w_hidden_t = torch.stack([layer.weight.detach().T.repeat(1, 2) for layer in hidden])
        self.b_hidden = torch.stack([layer.bias.detach().repeat(2) for layer in hidden])  # T × 2w
        readout_start = torch.stack([layer.weight.detach() for layer in readout])  # T × k × w
        self.w_out = readout_start[:, None].repeat(1, 2, 1, 1)  # T × 2 × k × w
        self.b_out = torch.stack([layer.bias.detach().repeat(2, 1) for layer in readout])  # T × 2 × k
        # Per-model learning rates of the effective weights (T × 2 × 1 × 1), multipliers of the
        # logits' gradient: the configured rate times the parametrization's factor for the tensor; a
        # bias's rate is its weight's times `*_bias_ratio`. A retired model's are set to 0.
        scale = first.initial.scaling
        hidden_rate, hidden_bias_rate, readout_rate, readout_bias_rate = scale.rates
        rates = [[t.config.slow_lr * hidden_rate, t.config.regular_lr * hidden_rate] for t in self.trials]
        self.hidden_lr = torch.tensor(rates, device=self.device).view(-1, 2, 1, 1)
        readout_lr = torch.tensor([t.config.regular_lr * readout_rate for t in self.trials], device=self.device)
        self.readout_lr = readout_lr.view(-1, 1, 1, 1).repeat(1, 2, 1, 1)
        self.hidden_bias_ratio = hidden_bias_rate / hidden_rate
        self.readout_bias_ratio = readout_bias_rate / readout_rate
        self.retired: dict[tuple[int, int], Weights] = {}
        # Each distinct training set once (trials of one pair share it), and each trial's first row.
        first_rows: dict[tuple[int, ...], int] = {}  # digits → first row in all_x
        distinct = []
        for trial in self.trials:
            if trial.config.digits not in first_rows:
                first_rows[trial.config.digits] = len(distinct) * self.n
                distinct.append(trial)
        self.all_x = torch.cat([t.train_x for t in distinct])
        self.all_y = torch.cat([t.train_y for t in distinct])
        self.first_row = torch.tensor([first_rows[t.config.digits] for t in self.trials], device=self.device)
        self.test_x = torch.stack([t.test_x for t in self.trials])
        self.test_y = torch.stack([t.test_y for t in self.trials])
        self.probe_size = len(first.probe_y)
        targets = torch.stack([torch.as_tensor(t.target) for t in self.trials])
        self.tracker = Tracker(self.test_x[:, : self.probe_size], targets, scale.kernel_weights)
        self.minus_one = torch.tensor(-1.0, device=self.device)  # the one-hot's −1, expanded per batch
        # Chizat's lazy scale: the models output α(f − f₀). f₀ (T × n × k) is taken by the same
        # products and chunks as the evaluation, so that α(f − f₀) is exactly 0 there before training.
        # The linearized twins need f₀ too, and the initial features φ₀ of every digit.
        self.train_start = self.test_start = self.twin = None
        if self.lazy_scale is not None or first.config.linearized_twin:
            self.train_start, train_features = self._initial_pass(self._train_sets()[0], first.config.linearized_twin)
            self.test_start, test_features = self._initial_pass(
                self.test_x, first.config.linearized_twin, self.probe_size
            )
        if first.config.linearized_twin:
            self.twin = LinearTwin(readout_start, self.test_x.shape[2], train_features, test_features)
        self.train_offset, self.test_offset = (
            (self.train_start, self.test_start) if self.lazy_scale is not None else (None, None)
        )
        self.coordinates: CoordinateCheck | None = None

    def _train_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every trial's training digits and labels (T × n × inputs, T × n)."""
        rows = self.first_row[:, None] + torch.arange(self.n, device=self.device)
        return self.all_x[rows], self.all_y[rows]

    def weights(self, position: int, model: int) -> Weights:
        """A model's weights as nn.Linear holds them (views of the stacks)."""
        units = slice(model * self.width, (model + 1) * self.width)
        return (
            self.w_hidden_t[position, :, units].T,
            self.b_hidden[position, units],
            self.w_out[position, model],
            self.b_out[position, model],
        )

    @torch.no_grad()
    def run(self, callbacks, should_stop, machines: bool, coordinates: bool = False) -> list[ExperimentResult]:
        """Train every trial; `callbacks[position](partial result)` after each of its epochs (epoch 0
        included). Kernel machines (unless `machines` is False) come after the last callback; the
        coordinate check (if `coordinates`) is measured as training goes."""
        started = time.perf_counter()
        if coordinates:
            self.coordinates = CoordinateCheck(self)
        train_x, train_y = self._train_sets()
        initial, _ = self._evaluate(train_x, train_y, self.train_offset, models=1)
        for trial, errors in zip(self.trials, initial):
            trial.initial_loss = {model: loss for model, (_, loss) in errors.items()}  # divergence's yardstick
        self._record(0, dict(enumerate(initial)), started)
        self._measure_null_bands()
        for trial in self.trials:
            trial.measure_infinite_width()
        for trial, callback in zip(self.trials, callbacks):
            if callback:
                callback(trial.result)
        for epoch in range(1, self.epochs + 1):
            active = [position for position, t in enumerate(self.trials) if t.active]
            if not active:
                break
            sums = self.train_epoch(should_stop)
            if sums is None:
                return self._finish(started, machines, stopped=True)
            loss_sum, loss_max, errors = (part.tolist() for part in sums)
            self._record(epoch, {p: self._train_errors(loss_sum[p], errors[p]) for p in active}, started)
            for position in active:
                for model in self.trials[position].retire_diverged(epoch, loss_sum[position], loss_max[position]):
                    self._retire(position, model)
                if callbacks[position]:
                    callbacks[position](self.trials[position].result)
        return self._finish(started, machines, stopped=False)

    def _measure_null_bands(self) -> None:
        """Every trial's null bands of ρ at initialisation, in one batched computation."""
        labels = torch.stack([torch.as_tensor(t.probe_y) for t in self.trials])[:, None]  # T × 1 × m
        permutations = torch.stack([t.null_permutations() for t in self.trials])  # T × kinds × shuffles × m
        bands = null_bands(self.tracker.initial_kernels(), labels, self.k, permutations)
        for trial, trial_bands in zip(self.trials, bands.tolist()):
            trial.set_null_bands(trial_bands)

    def _train_errors(self, loss_sum: list[float], errors: list[float]) -> dict:
        """(error %, mean loss) per model from the epoch's sums over its batches."""
        return {model: (100.0 * errors[model] / self.n, loss_sum[model] / self.n) for model in (0, 1)}

    @torch.no_grad()
    def train_epoch(self, should_stop=lambda: False) -> torch.Tensor | None:
        """One epoch of SGD steps of every trial, each in its own order: each model's loss sum,
        largest batch loss and errors (3 × T × 2); None when should_stop ended it between steps.
        Every trial steps, those whose models have all diverged with learning rates 0, so that the
        stacked tensors never need picking apart."""
        sums = torch.zeros(3, len(self.trials), 2, device=self.device)
        order = torch.stack([torch.randperm(self.n, generator=t.generator) for t in self.trials]).to(self.device)
        rows = order + self.first_row[:, None]
        for start in range(0, self.n, self.batch):
            if should_stop():
                return None
            self._step(order[:, start : start + self.batch], rows[:, start : start + self.batch], sums)
            if self.coordinates is not None:
                self.coordinates.after_step()
        return sums

    def _forward(self, x: torch.Tensor, models: int = 2) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Every trial's models on its own rows x (T × rows × inputs): hidden activations (T × rows
        × models·w), each model's view of them (T × rows × w) and the logits (T × models × rows × k).
        `models` 1: the first model alone, which is all there is to compute before training (both
        start identical); its product gives the same bits as the first half of both models'."""
        w = self.width
        units = models * w
        h = torch.baddbmm(self.b_hidden[:, None, :units], x, self.w_hidden_t[:, :, :units]).relu_()
        per_model = [h[:, :, m * w : (m + 1) * w] for m in range(models)]
        logits = torch.stack(
            [
                torch.baddbmm(self.b_out[:, m, None, :], per_model[m], self.w_out[:, m].transpose(1, 2))
                for m in range(models)
            ],
            dim=1,
        )
        return h, per_model, logits

    def _lazy(self, logits: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
        """The trained predictor's outputs: α(f − f₀) with a lazy scale (f₀ on the same rows,
        T × rows × k), else f itself."""
        return logits if offset is None else (logits - offset[:, None]).mul_(self.lazy_scale)

    def _chunks(self, n: int, first: int = 0) -> list[tuple[int, int]]:
        """(start, stop) rows evaluated together: the first `first` rows (the probe), then chunks of
        a cache's size, the same for a trial in any block."""
        size = max(1, EVAL_CHUNK_ELEMENTS // (2 * self.width))
        starts = ([0] if first else []) + list(range(first, n, size))
        return list(zip(starts, starts[1:] + [n]))

    def _initial_pass(
        self, x: torch.Tensor, keep_features: bool, first: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """f₀ on x (T × n × k), from each trial's first model (both are still identical), and with
        `keep_features` its hidden features φ₀ (T × n × w)."""
        outputs, features = [], []
        for a, b in self._chunks(x.shape[1], first):
            h, _, logits = self._forward(x[:, a:b], models=1)
            outputs.append(logits[:, 0])
            if keep_features:
                features.append(h)
        return torch.cat(outputs, dim=1), torch.cat(features, dim=1) if keep_features else None

    def _twin_outputs(self, change: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The twins' g_lin = g(θ₀) + J₀Δθ from their change J₀Δθ (T × 2 × rows × k) and f₀ on the
        same rows (T × rows × k): α·J₀Δθ under a lazy scale (g(θ₀) = 0), else f₀ + J₀Δθ."""
        return change * self.lazy_scale if self.lazy_scale is not None else change + start[:, None]

    def _evaluate(
        self, x, y, offset, keep: int = 0, models: int = 2, twin: TwinScores | None = None
    ) -> tuple[list[dict], torch.Tensor | None]:
        """Per trial, {model: (error %, mean loss)} on its rows x (T × n × inputs) with labels y,
        and the hidden activations of the first `keep` rows (T × keep × 2w). `models` 1: before
        training, the first model's figures and activations stand for both. `twin` (the test set
        only) gathers the linearized twins' scores."""
        t, n = x.shape[:2]
        errors = torch.zeros(t, models, dtype=torch.float64, device=self.device)
        losses = torch.zeros(t, models, dtype=torch.float64, device=self.device)
        kept = None
        for start, stop in self._chunks(n, keep):
            h, _, logits = self._forward(x[:, start:stop], models)
            if twin is not None:
                f0 = self.test_start[:, start:stop]
                change = self.twin.change(x[:, start:stop], self.twin.test_features[:, start:stop])
                twin.add(change, logits - f0[:, None], self._twin_outputs(change, f0), y[:, start:stop])
            logits = self._lazy(logits, None if offset is None else offset[:, start:stop])
            if start == 0 and keep:
                kept = h if models == 2 else h.repeat(1, 1, 2)
            target = y[:, None, start:stop, None].expand(t, models, stop - start, 1)
            losses -= logits.log_softmax(dim=3).gather(3, target).sum(dim=(2, 3))
            errors += (logits.argmax(dim=3) != y[:, None, start:stop]).sum(dim=2)
        errors, losses = (100.0 * errors / n).tolist(), (losses / n).tolist()
        return [{m: (errors[p][m % models], losses[p][m % models]) for m in (0, 1)} for p in range(t)], kept

    def _record(self, epoch: int, train: dict[int, dict], started: float) -> None:
        """Epoch `epoch`'s records of the trials in `train` (position → its training errors), from
        one evaluation of every trial's test set and one measure of every trial's probe."""
        models = 1 if epoch == 0 else 2
        scores = None if self.twin is None or epoch == 0 else TwinScores(len(self.trials), self.device)
        test, probe = self._evaluate(self.test_x, self.test_y, self.test_offset, self.probe_size, models, scores)
        if scores is not None:
            linear = scores.results()
        elif self.twin is not None:  # at the start each twin is its network: no gap, the same test error
            linear = [{m: (errors[m][0], 0.0, None) for m in (0, 1)} for errors in test]
        else:
            linear = [None] * len(self.trials)
        t, n_inputs, w = len(self.trials), self.w_hidden_t.shape[1], self.width
        measured = self.tracker.measure(
            probe.view(t, -1, 2, w).transpose(1, 2),  # T × 2 × m × w
            self.w_hidden_t.view(t, n_inputs, 2, w).permute(0, 2, 3, 1),  # T × 2 × w × inputs
            self.w_out,
        )
        for position, errors in train.items():
            trial = self.trials[position]
            trial.add_records(
                epoch, errors, test[position], measured[position], started, trial.active, linear[position]
            )

    def _step(self, order, rows, sums) -> None:
        """One SGD step of every trial's models, each trial on its own batch: `rows` of all_x, which
        are `order` in the trial's own set; `sums` accumulates each model's loss sum, largest batch
        loss and errors."""
        t, batch, k = len(self.trials), rows.shape[1], self.k
        # Whole rows by index_select: faster than indexing with a T × batch index.
        x = self.all_x.index_select(0, rows.flatten()).view(t, batch, -1)  # T × batch × inputs
        y = self.all_y[rows]  # T × batch
        h, per_model, logits = self._forward(x)  # T × batch × 2w, 2 × (T × batch × w), T × 2 × batch × k
        start = None if self.train_start is None else self.train_start.gather(1, order[:, :, None].expand(t, batch, k))
        logits = self._lazy(logits, None if self.lazy_scale is None else start)
        log_p = logits.log_softmax(dim=3)
        target = y[:, None, :, None].expand(t, 2, batch, 1)
        nll = -log_p.gather(3, target).squeeze(3)  # T × 2 × batch
        sums[0] += nll.sum(dim=2)
        torch.maximum(sums[1], nll.mean(dim=2), out=sums[1])
        sums[2] += (logits.argmax(dim=3) != y[:, None]).sum(dim=2)
        d_logits = self._output_gradient(log_p, target)
        if self.twin is not None:  # the twins step on the same batch, with the same loss and rates
            features = self.twin.batch_features(order)
            change = self.twin.change(x, features)
            d_twin = self._output_gradient(self._twin_outputs(change, start).log_softmax(dim=3), target)
            self.twin.step(
                x, features, d_twin, self.hidden_lr, self.readout_lr, self.hidden_bias_ratio, self.readout_bias_ratio
            )
        # Hidden-layer gradient (before the readout moves), already scaled by each model's rate.
        scaled = d_logits * self.hidden_lr
        grad = torch.cat([torch.bmm(scaled[:, m], self.w_out[:, m]) for m in (0, 1)], dim=2)  # T × batch × 2w
        step_out = d_logits * self.readout_lr
        for m in (0, 1):
            self.w_out[:, m].baddbmm_(step_out[:, m].transpose(1, 2), per_model[m], alpha=-1.0)
        self.b_out.sub_(step_out.sum(dim=2), alpha=self.readout_bias_ratio)
        # ReLU's derivative in one pass (a boolean mask and masked_fill take ten times longer on CPU).
        torch.ops.aten.threshold_backward.grad_input(grad, h, 0.0, grad_input=grad)
        self.w_hidden_t.baddbmm_(x.transpose(1, 2), grad, alpha=-1.0)
        self.b_hidden.sub_(grad.sum(dim=1), alpha=self.hidden_bias_ratio)

    def _output_gradient(self, log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The batch's cross-entropy gradient w.r.t. the outputs f, from their log-softmax (consumed)
        and the labels: (softmax − one_hot) / batch, and / α under a lazy scale, since
        ∂(CE(α(f − f₀))/α²)/∂f = (softmax − y)/α."""
        d_outputs = log_p.exp_().scatter_add_(3, target, self.minus_one.expand(target.shape))
        d_outputs /= target.shape[2]
        if self.lazy_scale is not None:
            d_outputs /= self.lazy_scale
        return d_outputs

    def _retire(self, position: int, model: int) -> None:
        """A retired model stops learning; its weights as they were are kept aside, since stepping
        at rate 0 keeps non-finite weights no better than they were."""
        self.hidden_lr[position, model] = self.readout_lr[position, model] = 0.0
        self.retired[position, model] = tuple(part.clone() for part in self.weights(position, model))

    def _finish(self, started: float, machines: bool, stopped: bool) -> list[ExperimentResult]:
        """Each trial's result; a trial's `seconds` is its share of the block's time (its records'
        `seconds` count from the block's start)."""
        for (position, model), kept in self.retired.items():
            for now, then in zip(self.weights(position, model), kept):
                now.copy_(then)
        if self.coordinates is not None and not stopped:
            self.coordinates.at_end()
        for position, trial in enumerate(self.trials):
            final = [self.weights(position, model) for model in (0, 1)]
            trial.result.stopped = stopped
            if machines:
                trial.measure_machines(final)
            trial.result.models = {name: trial.export(weights) for name, weights in zip(MODEL_NAMES, final)}
        seconds = (time.perf_counter() - started) / len(self.trials)
        for trial in self.trials:
            trial.result.seconds = seconds
        return [trial.result for trial in self.trials]


def _bound(on_epoch, index: int):
    return lambda result: on_epoch(index, result)
