"""Lessons: guided experiments a teacher runs in one click, each checking its own claim on the runs
it just made.

A `Lesson` names its runs (`configs`) and computes its `expectations` from their results every time:
claims about directions and ratios with safety margins. `scripts/lesson_margins.py` runs every lesson
on several seeds, on MNIST digits outside the bundled sample and with longer training, and writes the
margins it measured into the README's lesson table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .alignment import AlignmentUndefined, centered_alignment
from .config import ExperimentConfig
from .results import ExperimentResult
from .text import fixed
from .trial import initial_model

# Charts a lesson may add to its runs' error and alignment curves: K − K₀ heatmaps of its first run,
# how far the models moved (hidden weights, tangent kernel), and each run's kernel machines.
CHARTS = ("kernel change", "movement", "machines")
# The fastest settings that keep each claim clear: small batches give many steps per epoch.
_FAST = dict(batch_size=50, probe_size=100)
# "Learns the task": a final test error under this fraction of chance level's error.
LEARNED_FRACTION = 1 / 3


@dataclass(frozen=True)
class Expectation:
    """One claim of a lesson (`text`), whether the runs bear it out, and the numbers behind it.
    `slack` is how far the deciding number lies past the claim's bound, relative to the bound
    (0.5: half again the bound; negative: the claim fails); None for exact claims (0 or not)."""

    text: str
    passed: bool
    value: str
    slack: float | None = None


@dataclass(frozen=True)
class Lesson:
    """`configs` are the runs (one, or several for a small scan), `labels` name them for people;
    `check` turns their results, in the same order, into expectations. `notes` is what a student
    should know before looking; `charts` names the charts shown beside the curves (see CHARTS)."""

    id: str
    title: str
    question: str
    configs: list[ExperimentConfig]
    labels: list[str]
    check: Callable[[list[ExperimentResult]], list[Expectation]]
    next_steps: str
    notes: str = ""
    charts: tuple[str, ...] = ()

    def expectations(self, results: list[ExperimentResult]) -> list[Expectation]:
        """The lesson's claims, measured on `results` (one per config, in order, on any data source
        and device)."""
        if len(results) != len(self.configs) or any(
            dataclasses.replace(r.config, source=c.source, device=c.device) != c for c, r in zip(self.configs, results)
        ):
            raise ValueError(f"lesson {self.id!r} needs the results of its {len(self.configs)} run(s), in order")
        return self.check(results)

    def configs_on(self, source: str = "auto", device: str = "auto") -> list[ExperimentConfig]:
        """The lesson's runs on this data source ("auto", "mnist", "sample") and device."""
        return [dataclasses.replace(c, source=source, device=device) for c in self.configs]


def find_lesson(lesson_id: str) -> Lesson:
    """The lesson with this id; ValueError naming the lessons there are otherwise."""
    for lesson in LESSONS:
        if lesson.id == lesson_id:
            return lesson
    raise ValueError(f"there is no lesson {lesson_id!r}; the lessons are {', '.join(lesson.id for lesson in LESSONS)}")


# What the checks measure.


def chance_error(result: ExperimentResult) -> float:
    """Test error % of guessing among the run's digits."""
    return 100.0 * (1 - 1 / len(result.config.digits))


def learning_slack(result: ExperimentResult, name: str) -> float:
    """Slack of "the model's final test error is under LEARNED_FRACTION of chance level's"."""
    return beyond(result.history[name][-1].test_error, LEARNED_FRACTION * chance_error(result), at_least=False)


def learned(result: ExperimentResult, name: str) -> bool:
    return learning_slack(result, name) > 0


def error_text(result: ExperimentResult, name: str) -> str:
    history = result.history[name]
    return f"{name} {history[0].test_error:.1f}% → {history[-1].test_error:.1f}%"


@torch.no_grad()
def hidden_weight_change(result: ExperimentResult, name: str) -> tuple[float, float]:
    """(largest |change|, relative Frobenius change) of a model's hidden weights and biases since
    initialisation, against the initial weights recomputed from the seed."""
    trained = result.models[name].features[0]
    start = initial_model(result.config, len(result.config.digits), trained.in_features).features[0]
    change = torch.cat([(trained.weight - start.weight).flatten(), trained.bias - start.bias])
    initial = torch.cat([start.weight.flatten(), start.bias])
    return float(change.abs().max()), float(change.norm() / initial.norm())


def kernel_change(result: ExperimentResult, name: str):
    """K − K₀: how a model's centred probe kernel changed from initialisation to its last epoch."""
    kernels = result.kernels[name]
    return kernels[-1].astype(np.float64) - kernels[0]


def ratio_text(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "undefined"
    return f"{numerator / denominator:.1f}×" if denominator > 0 else "no ratio: the second is not positive"


def times(numerator: float | None, denominator: float | None, factor: float) -> float | None:
    """Slack of "numerator ≥ factor × denominator" for a positive numerator (a denominator ≤ 0 is
    beaten by any); None when either is undefined."""
    if numerator is None or denominator is None:
        return None
    if numerator <= 0:
        return -1.0
    return numerator / (factor * denominator) - 1 if denominator > 0 else math.inf


def beyond(measured: float | None, bound: float, at_least: bool = True) -> float | None:
    """Slack of "measured ≥ bound" (or "measured ≤ bound" when not `at_least`), relative to the
    bound; None when measured is undefined."""
    if measured is None or math.isnan(measured):
        return None
    if at_least:
        return measured / bound - 1
    return bound / measured - 1 if measured > 0 else math.inf


def weakest(*slacks: float | None) -> float | None:
    """A claim of several conditions holds by its smallest slack; it is undefined if any is."""
    return None if None in slacks else min(slacks)


def claim(text: str, slack: float | None, value: str) -> Expectation:
    """An expectation decided by its slack (holds at slack ≥ 0)."""
    return Expectation(text, slack is not None and slack >= 0, value, slack)


def signed(value: float | None) -> str:
    return "undefined" if value is None else fixed(value, 3, sign=True)


def plain(value: float | None) -> str:
    return "undefined" if value is None else fixed(value, 3)


def both_learn(result: ExperimentResult) -> Expectation:
    names = ("slow", "regular")
    return claim(
        f"Both models learn the task: test error falls below a third of chance level ({chance_error(result):.0f}%).",
        weakest(*(learning_slack(result, name) for name in names)),
        ", ".join(error_text(result, name) for name in names),
    )


# The lessons' checks, one function each. Each claim's text states its bound; its slack is what
# scripts/lesson_margins.py reports.

SLOW_VS_REGULAR_FACTOR = 2.0
SLOW_VS_REGULAR_GAIN = 0.02


def _check_slow_vs_regular(results):
    (result,) = results
    slow, regular = result.alignment_change("slow"), result.alignment_change("regular")
    return [
        claim(
            f"The regular model's alignment rises clearly more: at least {SLOW_VS_REGULAR_FACTOR:g}× the slow "
            f"model's gain, and by at least {SLOW_VS_REGULAR_GAIN:g}.",
            weakest(times(regular, slow, SLOW_VS_REGULAR_FACTOR), beyond(regular, SLOW_VS_REGULAR_GAIN)),
            f"ρ gain regular {signed(regular)}, slow {signed(slow)} ({ratio_text(regular, slow)})",
        ),
        both_learn(result),
    ]


def _check_random_features(results):
    (result,) = results
    slow_max, _ = hidden_weight_change(result, "slow")
    regular_max, regular_relative = hidden_weight_change(result, "regular")
    slow_rho = {record.alignment for record in result.history["slow"]}
    regular = result.history["regular"]
    epochs = len(result.history["slow"])
    if None in slow_rho:
        rho = "undefined at some epoch"
    elif len(slow_rho) == 1:
        rho = f"{min(slow_rho):.4f} at all {epochs} epochs (0–{epochs - 1})"
    else:
        rho = f"{len(slow_rho)} different values over {epochs} epochs ({min(slow_rho):.4f}–{max(slow_rho):.4f})"
    return [
        Expectation(
            "The slow hidden layer does not move at all: its weights and biases equal their initial values exactly.",
            slow_max == 0.0,
            f"largest |W − W₀| at the end: slow {slow_max:g}, regular {regular_max:.2e} "
            f"(the regular model's hidden weights moved {100 * regular_relative:.2f} %)",
        ),
        Expectation(
            "So its features never change: the slow model's feature-kernel alignment ρ is the same at every epoch, "
            "while the regular model's rises.",
            len(slow_rho) == 1 and None not in slow_rho and (result.alignment_change("regular") or 0) > 0,
            f"slow ρ {rho}; regular ρ {plain(regular[0].alignment)} → {plain(regular[-1].alignment)}",
        ),
        claim(
            f"Yet its readout alone learns the task: test error below a third of chance level "
            f"({chance_error(result):.0f}%).",
            learning_slack(result, "slow"),
            f"{error_text(result, 'slow')}; with features learned too, {error_text(result, 'regular')}",
        ),
    ]


WIDTH_MOVEMENT_FACTOR = 3.0
WIDTH_GAIN_FACTOR = 1.5


def _check_width(results):
    narrow, wide = results
    moved = [r.history["regular"][-1].hidden_change for r in results]
    gains = [r.alignment_change("regular") for r in results]
    widths = [r.config.width for r in results]
    return [
        claim(
            f"The wider network's hidden weights move less: relative to their initial size, the narrow network's "
            f"move at least {WIDTH_MOVEMENT_FACTOR:g}× as far as the wide one's (‖W − W₀‖ / ‖W₀‖).",
            times(moved[0], moved[1], WIDTH_MOVEMENT_FACTOR),
            "‖W − W₀‖ / ‖W₀‖ of the regular model: "
            + ", ".join(f"width {w} {'undefined' if m is None else f'{m:.2e}'}" for w, m in zip(widths, moved))
            + f" ({ratio_text(moved[0], moved[1])})",
        ),
        claim(
            f"Its features move less toward the task: the narrow network's ρ gain is at least {WIDTH_GAIN_FACTOR:g}× "
            "the wide one's.",
            times(gains[0], gains[1], WIDTH_GAIN_FACTOR),
            f"ρ gain of the regular model: width {widths[0]} {signed(gains[0])}, width {widths[1]} {signed(gains[1])} "
            f"({ratio_text(gains[0], gains[1])})",
        ),
        claim(
            "Both widths learn the task (the wide network is not simply failing to train): the regular model's "
            f"test error falls below a third of chance level ({chance_error(wide):.0f}%).",
            weakest(learning_slack(narrow, "regular"), learning_slack(wide, "regular")),
            f"width {widths[0]}: {error_text(narrow, 'regular')}, width {widths[1]}: {error_text(wide, 'regular')}",
        ),
    ]


PAIRS_START_FACTOR = 2.0
PAIRS_GAIN_FACTOR = 1.5


def _check_pairs(results):
    start = [r.history["regular"][0].alignment for r in results]
    gains = [r.alignment_change("regular") for r in results]
    names = [" vs ".join(map(str, r.config.digits)) for r in results]
    return [
        claim(
            f"The easy pair starts far better aligned: its initial ρ is at least {PAIRS_START_FACTOR:g}× the hard "
            "pair's (random features of the pixels already separate it).",
            times(start[0], start[1], PAIRS_START_FACTOR),
            f"initial ρ {names[0]}: {plain(start[0])}, {names[1]}: {plain(start[1])} "
            f"({ratio_text(start[0], start[1])})",
        ),
        claim(
            f"The hard pair's alignment gains more: the regular model's ρ gain is at least {PAIRS_GAIN_FACTOR:g}× the "
            "easy pair's.",
            times(gains[1], gains[0], PAIRS_GAIN_FACTOR),
            f"ρ gain {names[1]}: {signed(gains[1])}, {names[0]}: {signed(gains[0])} "
            f"({ratio_text(gains[1], gains[0])}); "
            f"the easy pair had at most {plain(None if start[0] is None else 1 - start[0])} to gain (ρ ≤ 1)",
        ),
    ]


BLOCKS_MARGIN = 0.15
BLOCKS_CHANGE_ALIGNMENT = 0.5


def _check_blocks(results):
    (result,) = results
    slow, regular = (result.history[name][-1].alignment for name in ("slow", "regular"))
    slow_change, regular_change = kernel_change(result, "slow"), kernel_change(result, "regular")
    try:
        change_alignment = centered_alignment(regular_change, result.target_kernel.astype(np.float64))
    except AlignmentUndefined:
        change_alignment = None
    return [
        claim(
            f"The regular kernel shows the {len(result.config.digits)}-class block pattern: its final ρ exceeds the "
            f"slow model's by at least {BLOCKS_MARGIN:g}.",
            None if None in (slow, regular) else beyond(regular - slow, BLOCKS_MARGIN),
            f"final ρ regular {plain(regular)}, slow {plain(slow)}",
        ),
        Expectation(
            "The slow kernel does not change at all (its hidden layer is frozen): K − K₀ is exactly 0.",
            not slow_change.any(),
            f"largest |K − K₀| at the end: slow {abs(slow_change).max():g}, regular {abs(regular_change).max():.3g}",
        ),
        claim(
            f"What the regular kernel gained is the blocks themselves: ρ(K − K₀, YYᵀ) ≥ {BLOCKS_CHANGE_ALIGNMENT:g}.",
            beyond(change_alignment, BLOCKS_CHANGE_ALIGNMENT),
            f"ρ(K − K₀, YYᵀ) of the regular model at the end: {plain(change_alignment)}",
        ),
    ]


def _check_too_fast(results):
    (result,) = results
    diverged = result.diverged_at["slow"]
    epochs = len(result.history["slow"]) - 1
    regular = result.history["regular"]
    trained_through = result.diverged_at["regular"] is None and len(regular) == result.config.epochs + 1
    return [
        Expectation(
            "The model with the huge learning rate diverges; it is marked at that epoch and stops training there.",
            diverged is not None and epochs == diverged,
            f"slow model: diverged at epoch {diverged}, last recorded epoch {epochs}"
            if diverged is not None
            else f"slow model: did not diverge in {epochs} epochs",
        ),
        claim(
            "The regular model goes on to the last epoch and learns the task: test error below a third of chance "
            f"level ({chance_error(result):.0f}%).",
            learning_slack(result, "regular") if trained_through else -1.0,
            f"regular model: {len(regular) - 1} of {result.config.epochs} epochs, {error_text(result, 'regular')}",
        ),
    ]


LAZY_STEP = (5.0, 20.0)  # "about 10×": each tenfold step of α divides the hidden change by this much
LAZY_FREEZE = 100.0
LAZY_ERROR_SPREAD = 3.0


def _check_lazy_dial(results):
    last = [r.history["regular"][-1] for r in results]
    scales = [r.config.lazy_scale for r in results]
    changes = [record.hidden_change for record in last]
    steps = [a / b if a is not None and b else None for a, b in zip(changes, changes[1:])]
    distances = [record.tangent_distance for record in last]
    errors = [record.test_error for record in last]
    low, high = LAZY_STEP
    return [
        claim(
            f"The hidden weights move about 10× less per tenfold step of α (each step divides their change by "
            f"{low:g} to {high:g}).",
            weakest(*(weakest(beyond(step, low), beyond(step, high, at_least=False)) for step in steps)),
            "‖W − W₀‖ / ‖W₀‖ of the regular model: "
            + ", ".join(f"α {a:g} {c:.2e}" if c is not None else f"α {a:g} undefined" for a, c in zip(scales, changes))
            + " (steps "
            + ", ".join("undefined" if s is None else f"{s:.1f}×" for s in steps)
            + ")",
        ),
        claim(
            f"The tangent kernel freezes: at α {scales[-1]:g} it moves less than 1/{LAZY_FREEZE:g} as much as at "
            f"α {scales[0]:g} (distance 1 − ρ(Θ, Θ₀) at the end).",
            times(distances[0], distances[-1], LAZY_FREEZE),
            "1 − ρ(Θ, Θ₀) of the regular model: "
            + ", ".join(f"α {a:g} {'undefined' if d is None else f'{d:.1e}'}" for a, d in zip(scales, distances)),
        ),
        claim(
            f"Yet the network learns just as well: every α learns the task, and the test errors lie within "
            f"{LAZY_ERROR_SPREAD:g} percentage points of each other.",
            weakest(
                *(learning_slack(r, "regular") for r in results),
                beyond(max(errors) - min(errors), LAZY_ERROR_SPREAD, at_least=False),
            ),
            "test error of the regular model: " + ", ".join(f"α {a:g} {e:.1f}%" for a, e in zip(scales, errors)),
        ),
    ]


MACHINE_FACTOR = 0.75
LAZY_TANGENT_DISTANCE = 0.01


def machine_error(result: ExperimentResult, when: str, kernel: str) -> float | None:
    """Test error % of the ridge machine of the regular model's `kernel` ("feature" or "tangent")
    `when` ("init" or "final"); None where it was not measured."""
    return result.kernel_machine_errors.get("regular", {}).get(when, {}).get(kernel)


def percent(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f}%"


def _check_more_than_kernel(results):
    rich, lazy = results
    rich_start, rich_end = machine_error(rich, "init", "feature"), machine_error(rich, "final", "feature")
    lazy_end = machine_error(lazy, "final", "feature")
    distance = lazy.history["regular"][-1].tangent_distance
    scale = lazy.config.lazy_scale
    return [
        claim(
            "Training gave the rich network a better feature kernel: the machine of its final kernel ΦΦᵀ errs at "
            f"most {MACHINE_FACTOR:g}× as often as the machine of its initial one.",
            beyond(rich_end, MACHINE_FACTOR * rich_start, at_least=False) if rich_start is not None else None,
            f"feature-kernel machine of the rich network: initial {percent(rich_start)}, final {percent(rich_end)}",
        ),
        claim(
            f"The lazy network (α {scale:g}) keeps its initial kernel: its tangent kernel moves less than "
            f"{LAZY_TANGENT_DISTANCE:g} (1 − ρ(Θ, Θ₀) at the end).",
            beyond(distance, LAZY_TANGENT_DISTANCE, at_least=False),
            f"1 − ρ(Θ, Θ₀): lazy {'undefined' if distance is None else f'{distance:.1e}'}, rich "
            f"{plain(rich.history['regular'][-1].tangent_distance)}",
        ),
        claim(
            f"So the rich network ends with the better feature kernel: its final kernel's machine errs at most "
            f"{MACHINE_FACTOR:g}× as often as the lazy network's.",
            beyond(rich_end, MACHINE_FACTOR * lazy_end, at_least=False) if lazy_end is not None else None,
            f"final feature-kernel machine: rich {percent(rich_end)}, lazy {percent(lazy_end)}",
        ),
    ]


LESSONS: list[Lesson] = [
    Lesson(
        id="slow-vs-regular",
        title="Slow vs regular",
        question="Two networks start from the same weights; one hidden layer learns 10× slower. Whose features "
        "line up with the task?",
        configs=[ExperimentConfig(digits=(8, 9), width=2000, slow_lr=0.001, regular_lr=0.01, epochs=3, **_FAST)],
        labels=["8 vs 9, width 2000"],
        check=_check_slow_vs_regular,
        notes="The notebook's experiment: 8 vs 9, width 2000, hidden learning rates 0.001 (slow) and 0.01 "
        "(regular); both readouts learn at 0.01. Alignment ρ measures how much the hidden features' kernel "
        "looks like the labels' kernel YYᵀ.",
        next_steps="Both models reach a low test error, but the regular model's features moved toward the task "
        "far more: the slow one learned mostly through its readout, on nearly random features. Then freeze the "
        "slow hidden layer completely (lesson 'Random features'), or train for more epochs on the Train page "
        "and see whether the difference in ρ gain holds.",
    ),
    Lesson(
        id="random-features",
        title="Random features",
        question="If a hidden layer never learns at all, can the network still solve the task?",
        configs=[ExperimentConfig(digits=(8, 9), width=1000, slow_lr=0.0, regular_lr=0.01, epochs=5, **_FAST)],
        labels=["8 vs 9, slow lr 0"],
        check=_check_random_features,
        notes="The slow model's hidden learning rate is 0: its hidden layer stays at its random initial weights "
        "and only its readout learns. That is a random-features model. It is not the lazy (NTK) regime, "
        "where the whole network, hidden layer included, trains like its linearisation.",
        next_steps="Random ReLU features of the pixels were enough for a linear readout to learn this pair. Then "
        "try widths 100 and 4000 on the Train page (does a wider random-feature layer help its readout?), or "
        "see a frozen kernel next to a learning one in 'Blocks appear'.",
    ),
    Lesson(
        id="lazy-dial",
        title="The lazy dial",
        question="If a network's weights barely move, can it still learn?",
        configs=[
            ExperimentConfig(
                digits=(8, 9),
                width=1000,
                slow_lr=0.001,
                regular_lr=0.01,
                epochs=5,
                lazy_scale=scale,
                batch_size=50,
                probe_size=90,
            )
            for scale in (1.0, 10.0, 100.0)
        ],
        labels=["α 1", "α 10", "α 100"],
        check=_check_lazy_dial,
        charts=("movement",),
        notes="Three runs with the lazy scale α = 1, 10 and 100 (Chizat, Oyallon & Bach 2019): each network trains "
        "α·(f − f₀) on the loss divided by α², so its output learns at the same speed while its weights need "
        "to move α times less. That is the lazy (NTK) regime: the whole network, hidden layer included, "
        "trains like its linearisation around the start, with a fixed tangent kernel Θ. It is not the slow "
        "model's random features, where the hidden layer stops learning and only the readout learns.",
        next_steps="The lazier networks learned as well while their weights and tangent kernel barely moved. Then "
        "compare what their kernels are worth in "
        "'More than its initial kernel', or turn the lazy scale on the Train page and watch 'how far "
        "each model moved'.",
    ),
    Lesson(
        id="width",
        title="Width makes it lazier",
        question="At the same learning rate, do the weights and features of a wider network move more or less?",
        configs=[
            ExperimentConfig(digits=(4, 9), width=width, slow_lr=0.001, regular_lr=0.01, epochs=10, **_FAST)
            for width in (64, 4096)
        ],
        labels=["width 64", "width 4096"],
        check=_check_width,
        charts=("movement",),
        notes="Two runs of 4 vs 9 that differ only in the hidden width, both with PyTorch's default initialisation "
        "and the same learning rates. Under that scaling each hidden unit's share of the output shrinks as the "
        "width grows, so at a fixed learning rate each weight needs to move less.",
        next_steps="Here the wider network's weights and tangent kernel moved less: toward the lazy regime. That "
        "is a property of this scaling at a fixed learning rate, not of width alone: scaled differently with "
        "width (the mean-field or μP parametrization), features keep moving at any width. The Sweeps page "
        "scans widths over many digit pairs and seeds.",
    ),
    Lesson(
        id="easy-and-hard",
        title="Easy and hard pairs",
        question="Does feature learning help most where the task is easy or where it is hard?",
        configs=[
            ExperimentConfig(digits=digits, width=256, slow_lr=0.001, regular_lr=0.01, epochs=10, **_FAST)
            for digits in ((0, 1), (4, 9))
        ],
        labels=["0 vs 1 (easy)", "4 vs 9 (hard)"],
        check=_check_pairs,
        notes="0 and 1 look different pixel by pixel; 4 and 9 share most strokes. Both runs use the same width and "
        "learning rates. The initial ρ is the same for both models of a run (they share their start).",
        next_steps="The hard pair's alignment gained more; the easy pair started close to the ceiling ρ = 1. Then "
        "run the Sweeps page on all 45 pairs and read the alignment-gain heatmap: does the gain follow how "
        "poorly a pair starts?",
    ),
    Lesson(
        id="blocks-appear",
        title="Blocks appear",
        question="What does a kernel that learned the task look like?",
        configs=[
            ExperimentConfig(
                digits=(3, 8, 9), width=256, slow_lr=0.0, regular_lr=0.05, epochs=20, batch_size=50, probe_size=90
            )
        ],
        labels=["3, 8, 9, width 256"],
        check=_check_blocks,
        notes="Three digits; the slow model's hidden layer is frozen (slow lr 0), the regular one learns at 0.05. "
        "The heatmaps show K − K₀, what each feature kernel φφᵀ gained since initialisation, on the probe digits "
        "sorted by class: a learned kernel gains high similarity inside each class (diagonal blocks) and "
        "low similarity across classes.",
        charts=("kernel change",),
        next_steps="Open the run on the Kernels page and move the epoch slider to watch the blocks form. Then try a "
        "slow learning rate of 0.001 instead of 0 (do the blocks form, and how fast?), or 5 digits.",
    ),
    Lesson(
        id="too-fast",
        title="Too fast",
        question="What happens when a learning rate is far too large?",
        configs=[ExperimentConfig(digits=(8, 9), width=256, slow_lr=100.0, regular_lr=0.01, epochs=5, **_FAST)],
        labels=["slow model's hidden lr 100"],
        check=_check_too_fast,
        notes="Here the 'slow' model's hidden layer gets a learning rate of 100, 10,000× the regular model's 0.01: "
        "it is not slow at all. kalign calls a model diverged when a batch loss grows past 10× its initial "
        "loss (or stops being a number), marks the epoch and stops training that model; the other goes on.",
        next_steps="On the Train page, divide the slow learning rate by 10 at a time until that model trains to the "
        "last epoch.",
    ),
    Lesson(
        id="more-than-its-kernel",
        title="A better kernel, learned",
        question="Does training give a network a better kernel than the one it started with?",
        configs=[
            ExperimentConfig(
                digits=(3, 5, 8),
                width=256,
                slow_lr=0.001,
                regular_lr=0.1,
                epochs=40,
                lazy_scale=scale,
                batch_size=50,
                probe_size=90,
            )
            for scale in (None, 100.0)
        ],
        labels=["rich (α off)", "lazy (α 100)"],
        check=_check_more_than_kernel,
        charts=("machines",),
        notes="Two runs of 3, 5 and 8 from the same start: the ordinary (rich) network, and the same network made "
        "lazy with α = 100. At the start and the end of each run, kalign fits kernel ridge machines with the "
        "network's feature kernel ΦΦᵀ and tangent kernel Θ on up to 1,000 training digits and scores them on "
        "held-out ones. A machine is solved exactly, while the networks train for 40 epochs and have not "
        "converged, so the lesson compares machines with machines: the kernel a network ends with (its "
        "'after kernel') against the one it started with. The chart shows the tangent kernels' machines too: on "
        "this little data the initial tangent kernel's machine is hard to beat, and training need not improve it.",
        next_steps="Rich training made the network's feature kernel better for a kernel machine; lazy training kept "
        "the tangent kernel it started with. Then open a run on Train to see its networks-and-machines chart, or train "
        "the rich run for more epochs there and compare its machines again.",
    ),
]
