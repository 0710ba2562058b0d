"""A run: the slow and the regular model of one config trained side by side, their errors and
alignment recorded each epoch. It is a block of one trial in the training engine (batched.py), so a
run and a sweep trial of the same settings agree to the last bit."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ExperimentConfig
from ..data import DigitData, load_digits
from ..results import ExperimentResult
from .batched import TrialBlock
from .trial import check_fits


def run_experiment(
    config: ExperimentConfig | None = None,
    data: DigitData | None = None,
    on_epoch: Callable[[ExperimentResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExperimentResult:
    """Train both models for `config.epochs` epochs; `on_epoch(partial_result)` after each.

    `should_stop()` is checked between batches: a stopped run returns the epochs completed, marked
    `stopped`. A model whose loss explodes or becomes non-finite stops training and is recorded in
    `diverged_at`; the other model goes on. The kernel machines are measured after the last
    `on_epoch`: every epoch's records are out before them.
    """
    config = config or ExperimentConfig()
    data = data if data is not None else load_digits(config.digits, config.source)
    check_fits(config, data)
    [result] = TrialBlock([config], {config.digits: data}).run([on_epoch], should_stop or (lambda: False), True)
    return result
