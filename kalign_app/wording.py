"""What the Train page says about a finished run, as plain text: its reading, how far the models
moved, why a model diverged and the metric cards' numbers. Nothing here draws, so that every setting
the form allows can be checked to get sentences that are true of its numbers.

Symbols follow one convention: a quantity at the epoch shown (the last, for a run) has no subscript,
its value at initialisation has ₀: W − W₀, K − K₀, ρ(Θ, Θ₀)."""

from __future__ import annotations

import math

from kalign_core.results import DIVERGENCE_FACTOR, MODEL_NAMES, ExperimentResult
from kalign_core.text import percent

# Alignment changes smaller than this on both models count as "not moved yet".
UNMOVED_ALIGNMENT = 0.005
# The other model's alignment change under this fraction of the mover's reads as "far less".
FAR_LESS = 1 / 4
# Shares of the initial size below this (0.001 %) are said as "less than 0.001 %": two significant
# figures of them read as exponents ("3.7e-07 %"). Distances 1 − ρ below SMALLEST_DISTANCE likewise.
SMALLEST_SHARE = 1e-5
SMALLEST_DISTANCE = 0.001
# A slow hidden layer that moved less than this share of its initial size (0.01 %) "barely moved":
# what overshot in its divergence were its readout's steps, at the regular learning rate.
BARELY_MOVED = 1e-4


def delta(change: float, digits: int, unit: str, colour: str = "normal") -> dict:
    """st.metric's delta for a change since init: no change at all, or one that rounds to 0 at
    `digits` decimals, is said in words ("up by less than 0.001"), with neither arrow nor colour."""
    if change == 0:
        return dict(delta="unchanged since init", delta_color="off", delta_arrow="off")
    if round(change, digits) == 0:
        way = "up" if change > 0 else "down"
        return dict(
            delta=f"{way} by less than {10**-digits:.{digits}f}{unit} since init", delta_color="off", delta_arrow="off"
        )
    return dict(delta=f"{change:+.{digits}f}{unit} since init", delta_color=colour)


def stopped_with(result: ExperimentResult, name: str) -> str:
    """What a diverged model's cards show: its last record is of the end of the epoch it diverged in."""
    error = error_percent(result.history[name][-1].test_error)
    return (
        f"Its cards (test error {error}) measure the weights it ended that epoch with, after the batch whose loss "
        "blew up."
    )


def error_percent(error: float) -> str:
    """A test or train error as the Train page prints it, e.g. "7.0 %" (a space before every %)."""
    return f"{error:.1f} %"


def rho_value(value: float) -> str:
    """A value of ρ at three decimals; one that rounds to 0 prints as 0.000, never "-0.000"."""
    return "0.000" if round(value, 3) == 0 else f"{value:.3f}"


def share(fraction: float) -> str:
    """A share of the initial size in percent, in words below what two significant figures show
    without an exponent: "0.71 %", "less than 0.001 %"."""
    return "less than 0.001 %" if 0 < abs(fraction) < SMALLEST_SHARE else percent(fraction)


def distance(value: float) -> str:
    """A kernel's distance (1 − ρ from initialisation, or from Θ∞) to two significant figures, "under
    0.001" below that."""
    if value == 0:
        return "0"
    return f"under {SMALLEST_DISTANCE:g}" if 0 < value < SMALLEST_DISTANCE else f"{value:.2g}"


def other_model(name: str) -> str:
    return MODEL_NAMES[1 - MODEL_NAMES.index(name)]


def alignment_change(result: ExperimentResult, name: str) -> float | None:
    """A model's change in ρ since initialisation; None where undefined or not a finite number."""
    change = result.alignment_change(name)
    return change if change is not None and math.isfinite(change) else None


def printed(change: float) -> float:
    """A change in ρ as `rho_change` prints it, for comparisons a reader can check (one said as
    "up by less than 0.001" counts as 0)."""
    return round(change, 3)


def rho_change(change: float | None) -> str:
    if change is None:
        return "ρ undefined"
    if change == 0:
        return "ρ unchanged"
    if round(change, 3) == 0:
        return f"ρ {'up' if change > 0 else 'down'} by less than 0.001"
    return f"ρ {change:+.3f}"


def per_model(values: dict[str, str]) -> str:
    """Both models' values as printed: once when they print the same, else each named."""
    if values["slow"] == values["regular"]:
        return f"{values['slow']} (both)"
    return f"{values['slow']} (slow) and {values['regular']} (regular)"


def reading(result: ExperimentResult) -> str:
    """A few plain-language sentences on what the run shows, true of its settings and numbers."""
    config = result.config
    if config.slow_lr == config.regular_lr:
        return same_training_reading(result)
    return rates_sentence(config.slow_lr, config.regular_lr) + outcome(result)


def rates_sentence(slow_lr: float, regular_lr: float) -> str:
    """What the two learning rates make of the slow model, where its name would mislead."""
    if slow_lr == 0:
        return (
            "The slow model's hidden layer is frozen (slow learning rate 0): it is a random-features model, "
            "where only the readout learns. "
        )
    if slow_lr > regular_lr:
        return (
            f"Here the “slow” model is the faster one: its hidden layer's learning rate {slow_lr:g} is above "
            f"the regular {regular_lr:g}. "
        )
    return ""


def page_caption(config) -> str:
    """The Train page's line under its title, true of `config` (the form's settings; None when they
    are not valid yet)."""
    same = "Both models start from the same weights and see the same batches"
    if config is None:
        return f"{same}. Watch whether their features align with the task."
    if config.slow_lr == config.regular_lr:
        rates = (
            f", and both learning rates are {config.regular_lr:g}, so they train identically: set a smaller slow "
            "learning rate to compare a slow hidden layer with a regular one."
        )
    else:
        rates = (
            f"; only the slow model's hidden layer has its own learning rate ({config.slow_lr:g}; the regular "
            f"{config.regular_lr:g} trains its readout and the whole regular model)."
        )
    lazy = (
        f" Both train the lazily scaled α(f − f₀) with α = {config.lazy_scale:g}."
        if config.lazy_scale is not None
        else ""
    )
    return f"{same}{rates}{lazy} Watch whether their features align with the task."


def same_training_reading(result: ExperimentResult) -> str:
    rate = result.config.regular_lr
    same = (
        f"Both learning rates are {rate:g}, so the two models train identically (same start, same batches, same rates)"
    )
    if all(result.diverged_at[name] is not None for name in MODEL_NAMES):
        alpha = " or the lazy scale α" if result.config.lazy_scale is not None else ""
        return f"{same}, and both diverged: lower the learning rate{alpha}."
    changes = per_model({name: rho_change(alignment_change(result, name)) for name in MODEL_NAMES})
    return f"{same}: {changes} since initialisation; {test_errors(result)}."


def test_errors(result: ExperimentResult) -> str:
    return "test error ended at " + per_model(
        {name: error_percent(result.history[name][-1].test_error) for name in MODEL_NAMES}
    )


def outcome(result: ExperimentResult) -> str:
    """What the run shows of two models trained at different rates."""
    change = {name: alignment_change(result, name) for name in MODEL_NAMES}
    errors = test_errors(result)
    both = f"{rho_change(change['slow'])} slow, {rho_change(change['regular'])} regular"
    diverged = [name for name in MODEL_NAMES if result.diverged_at[name] is not None]
    if len(diverged) == 2:
        alpha = " or the lazy scale α" if result.config.lazy_scale is not None else ""
        still = still_slow_layer(result)
        if still:
            lower = (
                "lower the regular learning rate (it trains the regular model and the slow model's readout; the "
                f"slow model's hidden layer {still}){alpha}"
            )
        else:
            lower = f"lower the learning rates{alpha}"
        return f"Both models diverged, so this run says nothing about feature learning yet: {lower}."
    if diverged:
        bad, good = diverged[0], other_model(diverged[0])
        return (
            f"The {bad} model diverged, so only the {good} model trained to the end ({rho_change(change[good])}, "
            f"test error {error_percent(result.history[good][-1].test_error)}); lower the learning rate named "
            "above to compare the two."
        )
    if None in change.values():
        return (
            f"A model's alignment is undefined (see the note under the charts), so they cannot be compared; {errors}."
        )
    if max(abs(printed(c)) for c in change.values()) < UNMOVED_ALIGNMENT:
        lazy = result.config.lazy_scale
        why = (
            f"with the lazy scale α = {lazy:g} every weight moves about 1/α as far"
            if lazy is not None
            else "try more epochs or larger learning rates"
        )
        return f"Neither model's alignment has moved by {UNMOVED_ALIGNMENT:g} or more ({both}): {why}; {errors}."
    return comparison(change, both) + f"; {errors}."


def comparison(change: dict[str, float], both: str) -> str:
    """How the two models' alignment changes compare, as printed (so "more" is never said of two
    numbers that print the same)."""
    mover = max(MODEL_NAMES, key=change.get)
    other = other_model(mover)
    if change[mover] < 0:
        return f"Both models' features moved away from the task ({both})"
    if change[mover] == 0:
        return f"Neither model's features moved toward the task ({both})"
    if change[other] <= 0:
        return (
            f"The **{mover}** model's features moved toward the task ({rho_change(change[mover])}) while the "
            f"{other} model's did not ({rho_change(change[other])})"
        )
    if printed(change[mover]) == printed(change[other]):
        return f"Both models' features moved toward the task by about as much ({both})"
    amount = "far more" if printed(change[other]) < FAR_LESS * printed(change[mover]) else "more"
    return (
        f"The **{mover}** model's features moved toward the task {amount} ({rho_change(change[mover])}) than the "
        f"{other} model's ({rho_change(change[other])})"
    )


def movement_reading(result: ExperimentResult) -> str:
    """How far each model moved, whether ρ at the start beats chance, what the slow rate makes of the
    slow model and what the kernel machines say."""
    last = {name: result.history[name][-1] for name in MODEL_NAMES}
    sentences = [
        moved_sentence(last),
        twin_sentence(last),
        chance_sentence(result),
        regime_sentence(result),
        machines_sentence(result),
        infinite_width_sentence(result),
    ]
    return " ".join(sentence for sentence in sentences if sentence)


def moved_sentence(last: dict) -> str:
    """How far both models' hidden weights and tangent kernels moved: "(both)" where they print
    the same, "did not move at all" for exactly 0, words below what two significant figures show."""
    changes = {name: last[name].hidden_change for name in MODEL_NAMES}
    if not finite(*changes.values()):
        return ""  # not measured, or a diverged model's weights overflowed (its notice says so)
    still = [name for name in MODEL_NAMES if changes[name] == 0]
    if len(still) == 2:
        moved = "Neither model's hidden weights moved at all"
    elif still:
        mover = other_model(still[0])
        moved = (
            f"The {still[0]} model's hidden weights did not move at all, the {mover} model's moved "
            f"{share(changes[mover])} of their initial size"
        )
    else:
        moved = f"The hidden weights moved {per_model({n: share(c) for n, c in changes.items()})} of their initial size"
    distances = {name: last[name].tangent_distance for name in MODEL_NAMES}
    if finite(*distances.values()):
        moved += "; the distance of their tangent kernels from initialisation, 1 − ρ(Θ, Θ₀), is " + per_model(
            {name: distance(value) for name, value in distances.items()}
        )
    return moved + "."


def twin_sentence(last: dict) -> str:
    """Each network against its linearized twin at its last epoch: the gap and both test errors;
    nothing for a run without twins."""
    parts = []
    for name, record in last.items():
        if record.linear_gap is None and record.linear_note is None:
            continue  # no twin
        if record.linear_gap is None:
            parts.append(f"the {name} network's gap from its twin is undefined ({record.linear_note})")
            continue
        twin = "undefined" if record.linear_test_error is None else error_percent(record.linear_test_error)
        parts.append(
            f"the {name} network is {distance(record.linear_gap)} from its twin and tests at "
            f"{error_percent(record.test_error)} against the twin's {twin}"
        )
    if not parts:
        return ""
    return (
        "Measured against its linearized twin g(θ₀) + J₀(θ − θ₀) with the gap ‖g − g_lin‖ / ‖g_lin − g₀‖ on the "
        f"test digits: {'; '.join(parts)}."
    )


def finite(*values: float | None) -> bool:
    return all(value is not None and math.isfinite(value) for value in values)


def chance_sentence(result: ExperimentResult) -> str:
    band, start = result.alignment_null.get("feature"), result.history["slow"][0].alignment
    if band is None or start is None:
        return ""
    low, high = band
    if start > high:
        where = "far above" if start > high + (high - low) else "above"
    else:
        where = "below" if start < low else "within"
    sentence = (
        f"At initialisation ρ = {rho_value(start)} is {where} chance (95 % of label shuffles give "
        f"{rho_value(low)} to {rho_value(high)})"
    )
    return sentence + (": random ReLU features of pixels already carry class structure." if start > high else ".")


# How to reach the lazy regime under each parametrization: a lazy scale α always; width too where the
# hidden weights move less as the network widens (measured in the Width lab and the width lesson; under
# standard only at a rate that still trains the widest, since its tangent kernel grows with width).
LAZY_HOW = {
    "standard": "widen the network (at a learning rate that still trains it, a wider one's hidden weights move "
    "less) or turn on the lazy scale α",
    "ntk": "widen the network (under ntk the hidden weights move like width^−½) or turn on the lazy scale α",
    "mup": "turn on the lazy scale α (under μP the features keep moving at every width)",
}


def regime_sentence(result: ExperimentResult) -> str:
    """Which regime the run is in, and how to reach the lazy one; nothing after a divergence, where
    the reading's advice is to lower the learning rates."""
    config = result.config
    if any(epoch is not None for epoch in result.diverged_at.values()):
        return ""
    if config.lazy_scale is not None:
        return (
            f"Both models trained Chizat's lazily scaled α(f − f₀) with α = {config.lazy_scale:g}: "
            "the larger α, the less every weight moves while the function learns."
        )
    how = LAZY_HOW[config.parametrization]
    not_lazy = f"that is not the lazy regime: for that, {how}."
    if config.slow_lr == 0:  # the reading has said it is a random-features model
        return (
            "A frozen hidden layer is not the lazy regime (there every weight learns, staying close to its start): "
            f"for that, {how}."
        )
    if config.slow_lr < config.regular_lr:
        return (
            "The smaller the slow learning rate, the closer the slow model is to a random-features model "
            f"(its readout learning on nearly fixed features); {not_lazy}"
        )
    return ""


MACHINE_KERNELS = {"tangent": "initial tangent kernel Θ₀", "feature": "initial feature kernel K₀"}


def machines_sentence(result: ExperimentResult) -> str:
    """The machines of the initial kernels (both models' start), and why they are no race with the
    networks; nothing when the regular model diverged (its run stopped early)."""
    initial = result.kernel_machine_errors.get("regular", {}).get("init", {})
    scores = [
        (label, error_percent(initial[kind]))
        for kind, label in MACHINE_KERNELS.items()
        if initial.get(kind) is not None
    ]
    if not scores or result.diverged_at["regular"] is not None:
        return ""
    (label, error), *others = scores
    scored = f"The kernel ridge machine of the {label} scores {error} test error" + "".join(
        f", that of the {label} {error}" for label, error in others
    )
    epochs = result.epochs_done
    return (
        f"{scored}. A machine is solved exactly, while a network trains for as many epochs as it is given ({epochs} "
        f"epoch{'s' if epochs != 1 else ''} here), not until it converges: the two are not a race."
    )


def infinite_width_sentence(result: ExperimentResult) -> str:
    """Where the run starts against its infinite-width limit Θ∞ (nothing for runs saved before kalign
    measured it; why not, for a parametrization without one)."""
    measured = result.infinite_width
    if not measured:
        return ""
    if measured.get("note"):
        return f"No infinite-width reference here: {measured['note']}."
    said = []
    if measured.get("distance") is not None:
        said.append(
            f"At initialisation the tangent kernel lies {distance(measured['distance'])} from its infinite-width "
            "limit Θ∞ (√(2(1 − ρ(Θ₀, Θ∞))): 0 when they agree up to scale; it falls like width^−½)"
        )
    if measured.get("alignment") is not None:
        said.append(f"Θ∞ aligns with the task at ρ = {rho_value(measured['alignment'])} (the dash-dot line)")
    if measured.get("machine") is not None:
        said.append(f"its ridge machine scores {error_percent(measured['machine'])} test error")
    return "; ".join(said) + "." if said else ""


def divergence_messages(result: ExperimentResult) -> list[str]:
    """One message per diverged model: when, what its cards show, the cause its numbers point to,
    and what to try."""
    return [
        f"The **{name}** model diverged at epoch {epoch}: a batch loss grew past {DIVERGENCE_FACTOR:g}× its "
        "initial loss (or stopped being a number), so it trained no further than the end of that epoch; its "
        f"curves end at the ✕. {stopped_with(result, name)} {divergence_cause(result, name)}"
        f"Try {divergence_advice(result, name)}."
        for name in MODEL_NAMES
        if (epoch := result.diverged_at[name]) is not None
    ]


def still_slow_layer(result: ExperimentResult) -> str | None:
    """Why the regular learning rate alone trained what moved in the slow model ("is frozen" or
    "barely moved": its readout trains at the regular rate); None when its hidden layer moved."""
    config = result.config
    if config.slow_lr == config.regular_lr:
        return None
    if config.slow_lr == 0:
        return "is frozen"
    change = result.history["slow"][-1].hidden_change
    return "barely moved" if change is not None and math.isfinite(change) and change < BARELY_MOVED else None


def divergence_cause(result: ExperimentResult, name: str) -> str:
    """What the model's last record says of why it diverged (empty when it says nothing)."""
    last = result.history[name][-1]
    config = result.config
    note = last.alignment_note or ""
    if last.alignment is None and "is zero" in note:
        return (
            "By then its features were the same for every probe digit (the centered feature kernel is zero, so "
            "ρ is undefined), as when its ReLUs have died. "
        )
    change = last.hidden_change
    if "non-finite" in note or (change is not None and not math.isfinite(change)):
        return (
            "By then its weights or features had stopped being finite numbers: its steps grew until they overflowed. "
        )
    lazy = "" if config.lazy_scale is None else f" with the lazy scale α = {config.lazy_scale:g}"
    if name == "slow" and config.slow_lr == 0:
        return (
            "Its hidden layer is frozen (slow learning rate 0), so its readout's steps, at the regular learning "
            f"rate {config.regular_lr:g}{lazy}, overshot. "
        )
    if name == "slow" and still_slow_layer(result):
        return (
            "Its hidden weights barely moved (less than 0.01 % of their initial size), so the steps that overshot "
            f"were its readout's, which trains at the regular learning rate {config.regular_lr:g}{lazy}. "
        )
    if change is None:
        return ""
    moved = "did not move at all" if change == 0 else f"had moved {share(change)} of their initial size"
    if config.lazy_scale is not None:
        return (
            f"Its hidden weights {moved}: with α = {config.lazy_scale:g} it trains α(f − f₀), close to linear in "
            "its weights, and at this learning rate each step overshoots, so the loss grows. "
        )
    apart = " and its features still told the probe digits apart (ρ defined)" if last.alignment is not None else ""
    return f"Its hidden weights {moved}{apart}: its steps overshot at this learning rate. "


def divergence_advice(result: ExperimentResult, name: str) -> str:
    config, still = result.config, still_slow_layer(result)
    if name == "regular":
        advice = "a smaller regular learning rate (e.g. 10 times smaller)"
    elif still:
        advice = f"a smaller regular learning rate (it trains this model's readout; its hidden layer {still})"
    else:
        advice = "a smaller slow learning rate, or a smaller regular one (it also trains this model's readout)"
    return advice + (", or a smaller α" if config.lazy_scale is not None else "")
