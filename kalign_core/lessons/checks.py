"""What the lessons claim and how each claim is measured on a lesson's results: directions and
ratios with safety margins (`slack`), worded for the Lessons page and the command line."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..engine.trial import initial_model
from ..measures.alignment import AlignmentUndefined, centered_alignment
from ..results import ExperimentResult
from ..text import fixed, percent
from .lesson import Expectation

# "Learns the task": a final test error under this fraction of chance level's error.
LEARNED_FRACTION = 1 / 3


def chance_error(result: ExperimentResult) -> float:
    """Test error % of guessing among the run's digits."""
    return 100.0 * (1 - 1 / len(result.config.digits))


def learning_slack(result: ExperimentResult, name: str) -> float:
    """Slack of "the model's final test error is under LEARNED_FRACTION of chance level's"."""
    return beyond(result.history[name][-1].test_error, LEARNED_FRACTION * chance_error(result), at_least=False)


def error_text(result: ExperimentResult, name: str) -> str:
    history = result.history[name]
    return f"{name} {history[0].test_error:.1f}% → {history[-1].test_error:.1f}%"


@torch.no_grad()
def hidden_weight_changes(result: ExperimentResult) -> dict[str, tuple[float, float]]:
    """Each model's (largest |change|, relative Frobenius change) of its hidden weights and biases
    since initialisation, against the initial weights recomputed once from the seed."""
    inputs = result.models["slow"].features[0].in_features
    start = initial_model(result.config, len(result.config.digits), inputs).features[0]
    initial = torch.cat([start.weight.flatten(), start.bias])
    changes = {}
    for name, model in result.models.items():
        trained = model.features[0]
        change = torch.cat([(trained.weight - start.weight).flatten(), trained.bias - start.bias])
        changes[name] = float(change.abs().max()), float(change.norm() / initial.norm())
    return changes


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


def check_slow_vs_regular(results):
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


def check_random_features(results):
    (result,) = results
    changes = hidden_weight_changes(result)
    (slow_max, _), (regular_max, regular_relative) = changes["slow"], changes["regular"]
    slow_rho = {record.alignment for record in result.history["slow"]}
    regular = result.history["regular"]
    epochs = len(result.history["slow"])
    if None in slow_rho:
        rho = "undefined at some epoch"
    elif len(slow_rho) == 1:
        rho = f"{min(slow_rho):.4f} at initialisation and after each of the {epochs - 1} epochs"
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


def check_width(results):
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


SCALING_NTK_FACTOR = 3.0  # theory: √(widest / narrowest)
SCALING_MUP_BAND = (0.5, 2.0)  # theory: 1
SCALING_GAIN_FACTOR = 5.0


def check_width_or_scaling(results):
    """Runs in order: NTK narrow, NTK wide, μP narrow, μP wide."""
    moved = [r.history["regular"][-1].hidden_change for r in results]
    gains = [r.alignment_change("regular") for r in results]
    narrow, wide = results[0].config.width, results[1].config.width
    low, high = SCALING_MUP_BAND
    mup_ratio = None if None in moved[2:] or not moved[2] else moved[3] / moved[2]

    def changes(first: int) -> str:
        pair = moved[first : first + 2]
        return ", ".join(f"width {w} {'undefined' if m is None else f'{m:.2e}'}" for w, m in zip((narrow, wide), pair))

    return [
        claim(
            f"Under NTK scaling the wider network's hidden weights move less: relative to their initial size, the "
            f"width-{narrow} network's move at least {SCALING_NTK_FACTOR:g}× as far as the width-{wide} one's (theory: "
            f"√({wide}/{narrow}) = {math.sqrt(wide / narrow):g}×).",
            times(moved[0], moved[1], SCALING_NTK_FACTOR),
            f"‖W − W₀‖ / ‖W₀‖ of the regular model under NTK: {changes(0)} ({ratio_text(moved[0], moved[1])})",
        ),
        claim(
            f"Under μP they move about as far at both widths: width {wide}'s change is {low:g} to {high:g} times "
            f"width {narrow}'s (theory: the same).",
            None if mup_ratio is None else weakest(beyond(mup_ratio, low), beyond(mup_ratio, high, at_least=False)),
            f"‖W − W₀‖ / ‖W₀‖ of the regular model under μP: {changes(2)} "
            f"({'undefined' if mup_ratio is None else f'{mup_ratio:.2f}×'})",
        ),
        claim(
            f"So under μP the wide network's features still move toward the task, under NTK hardly: at width {wide} "
            f"the ρ gain under μP is at least {SCALING_GAIN_FACTOR:g}× the gain under NTK.",
            times(gains[3], gains[1], SCALING_GAIN_FACTOR),
            f"ρ gain of the regular model, width {narrow} → {wide}: NTK {signed(gains[0])} → {signed(gains[1])}, "
            f"μP {signed(gains[2])} → {signed(gains[3])} ({ratio_text(gains[3], gains[1])} at width {wide})",
        ),
    ]


PAIRS_START_FACTOR = 2.0
PAIRS_GAIN_FACTOR = 1.5


def check_pairs(results):
    start = [r.history["regular"][0].alignment for r in results]
    gains = [r.alignment_change("regular") for r in results]
    names = [" vs ".join(map(str, r.config.digits)) for r in results]
    return [
        claim(
            f"The easy pair starts far better aligned: its initial ρ is at least {PAIRS_START_FACTOR:g}× the hard "
            "pair's.",
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


def check_blocks(results):
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


def check_too_fast(results):
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


def check_lazy_dial(results):
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


def share(error: float | None) -> float | None:
    """A test error % as a fraction, as `percent` takes it."""
    return None if error is None else error / 100


def check_more_than_kernel(results):
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
            f"feature-kernel machine of the rich network: initial {percent(share(rich_start))}, "
            f"final {percent(share(rich_end))}",
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
            f"final feature-kernel machine: rich {percent(share(rich_end))}, lazy {percent(share(lazy_end))}",
        ),
    ]


# Infinite width: how much closer to Θ∞ the widest run must start than the narrowest (theory: the
# square root of their width ratio), the band the fitted slope must fall in (theory −½), and how near
# the widest run's ρ(Θ₀, YYᵀ) must lie to ρ(Θ∞, YYᵀ).
INFINITE_CLOSER_FACTOR = 4.0
INFINITE_SLOPE_BAND = (-0.75, -0.3)
INFINITE_ALIGNMENT_GAP = 0.01


def check_infinite_width(results):
    """Runs in order of growing width, one parametrization with a Θ∞."""
    widths = [r.config.width for r in results]
    distances = [r.infinite_width.get("distance") for r in results]
    narrow, wide = widths[0], widths[-1]
    known = None not in distances and min(distances) > 0
    slope = float(np.polyfit(np.log(widths), np.log(distances), 1)[0]) if known else None
    low, high = INFINITE_SLOPE_BAND
    each_closer = [times(d, d_wider, 1.0) for d, d_wider in zip(distances, distances[1:])]
    limit = results[-1].infinite_width.get("alignment")
    start = results[-1].history["regular"][0].tangent_alignment
    gap = None if limit is None or start is None else abs(start - limit)
    listed = ", ".join(f"width {w} {'undefined' if d is None else f'{d:.3f}'}" for w, d in zip(widths, distances))
    return [
        claim(
            f"The tangent kernel at initialisation approaches Θ∞ as the width grows: each wider network starts "
            f"closer to it, and width {wide} at least {INFINITE_CLOSER_FACTOR:g}× closer than width {narrow} "
            f"(theory: √({wide}/{narrow}) = {math.sqrt(wide / narrow):g}×).",
            weakest(times(distances[0], distances[-1], INFINITE_CLOSER_FACTOR), *each_closer),
            f"distance √(2(1 − ρ(Θ₀, Θ∞))): {listed} ({ratio_text(distances[0], distances[-1])})",
        ),
        claim(
            f"It closes in like width^−½, the size of a finite network's fluctuations around Θ∞: fitted as "
            f"width^−s, the distance falls with s between {-high:g} and {-low:g}.",
            None if slope is None else weakest(beyond(-slope, -high), beyond(-slope, -low, at_least=False)),
            "no fit: a distance is undefined" if slope is None else f"fitted s = {-slope:.2f} (theory 0.5)",
        ),
        claim(
            f"So the wide network sees the task as Θ∞ does: at width {wide} its initial tangent kernel's alignment "
            f"ρ(Θ₀, YYᵀ) lies within {INFINITE_ALIGNMENT_GAP:g} of ρ(Θ∞, YYᵀ).",
            None if gap is None else beyond(gap, INFINITE_ALIGNMENT_GAP, at_least=False),
            f"ρ(Θ₀, YYᵀ) {plain(start)}, ρ(Θ∞, YYᵀ) {plain(limit)} at width {wide}; at width {narrow} "
            f"{plain(results[0].history['regular'][0].tangent_alignment)}",
        ),
    ]


TWIN_GAP = 0.05  # "stays with its twin": the gap below this at every epoch
TWIN_ERROR_POINTS = 1.0  # test errors "the same": within this many percentage points
TWIN_LEFT_GAP = 5 * TWIN_GAP  # "leaves its twin": the rich gap at least this at the end
TWIN_LEFT_FACTOR = 10.0  # and at least this many times the lazy run's
TWIN_RICH_ERROR_POINTS = 2.0  # the rich network and its twin test "about as well"


def gaps_text(result: ExperimentResult) -> str:
    """The regular model's gap from its twin after the first and the last epoch, and its largest."""
    gaps = [r.linear_gap for r in result.history["regular"][1:]]
    if None in gaps or not gaps:
        return "gap undefined: " + (result.history["regular"][-1].linear_note or "no epoch trained")
    return f"gap after epoch 1 {gaps[0]:.3f}, at the end {gaps[-1]:.3f}, largest {max(gaps):.3f}"


def twin_errors(result: ExperimentResult) -> tuple[float, float | None]:
    last = result.history["regular"][-1]
    return last.test_error, last.linear_test_error


def errors_text(result: ExperimentResult) -> str:
    network, twin = twin_errors(result)
    return f"test error network {network:.1f}%, twin {'undefined' if twin is None else f'{twin:.1f}%'}"


def better_text(network: float, twin: float | None) -> str:
    if twin is None or network == twin:
        return "neither tests better" if twin is not None else "the twin's error is undefined"
    return "the network tests better" if network < twin else "the twin tests better"


def check_linearization(results):
    rich, lazy = results
    lazy_gaps = [r.linear_gap for r in lazy.history["regular"][1:]]
    largest = None if None in lazy_gaps or not lazy_gaps else max(lazy_gaps)
    network, twin = twin_errors(lazy)
    rich_network, rich_twin = twin_errors(rich)
    rich_gap, lazy_gap = rich.history["regular"][-1].linear_gap, lazy.history["regular"][-1].linear_gap
    scale = lazy.config.lazy_scale
    return [
        claim(
            f"Under α = {scale:g} the network stays with its linearized twin: the gap ‖g − g_lin‖ / ‖g_lin − g₀‖ "
            f"stays below {TWIN_GAP:g} at every epoch, and their test errors end within {TWIN_ERROR_POINTS:g} "
            "percentage point.",
            weakest(
                beyond(largest, TWIN_GAP, at_least=False),
                None if twin is None else beyond(abs(network - twin), TWIN_ERROR_POINTS, at_least=False),
            ),
            f"regular model, α {scale:g}: {gaps_text(lazy)}; {errors_text(lazy)}",
        ),
        claim(
            f"Without α the same network leaves its twin: its gap ends at least {TWIN_LEFT_GAP:g} and at least "
            f"{TWIN_LEFT_FACTOR:g}× the lazy run's.",
            weakest(beyond(rich_gap, TWIN_LEFT_GAP), times(rich_gap, lazy_gap, TWIN_LEFT_FACTOR)),
            f"regular model, α off: {gaps_text(rich)} ({ratio_text(rich_gap, lazy_gap)} the lazy run's)",
        ),
        claim(
            f"Far from its twin, the rich network still tests about as well: their test errors end within "
            f"{TWIN_RICH_ERROR_POINTS:g} percentage points (which of the two tests better changes with the seed and "
            "the epochs).",
            None
            if rich_twin is None
            else beyond(abs(rich_network - rich_twin), TWIN_RICH_ERROR_POINTS, at_least=False),
            f"regular model, α off: {errors_text(rich)} ({better_text(rich_network, rich_twin)})",
        ),
    ]
