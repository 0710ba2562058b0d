"""What the Train page says about a finished run, as plain text: its reading, how far the models
moved, why a model diverged and the metric cards' numbers. Nothing here draws, so that every setting
the form allows can be checked to get sentences that are true of its numbers.

Symbols follow one convention: a quantity at the epoch shown (the last, for a run) has no subscript,
its value at initialisation has ₀: W − W₀, K − K₀, ρ(Θ, Θ₀)."""

from __future__ import annotations

import math

from kalign_core.results import DIVERGENCE_FACTOR, MODEL_NAMES, ExperimentResult
from kalign_core.text import fixed, percent

# Alignment changes smaller than this on both models count as "not moved yet".
UNMOVED_ALIGNMENT = 0.005
# The other model's alignment change under this fraction of the mover's reads as "far less".
FAR_LESS = 1 / 4


def delta(change: float, digits: int, unit: str, colour: str = "normal") -> dict:
    """st.metric's delta for a change since init: no change at all is said in words, with neither
    arrow nor colour; a tiny one keeps its sign and significant figures (see `fixed`)."""
    if change == 0:
        return dict(delta="unchanged since init", delta_color="off", delta_arrow="off")
    return dict(delta=f"{fixed(change, digits, sign=True)}{unit} since init", delta_color=colour)


def other_model(name: str) -> str:
    return MODEL_NAMES[1 - MODEL_NAMES.index(name)]


def alignment_change(result: ExperimentResult, name: str) -> float | None:
    """A model's change in ρ since initialisation; None where undefined or not a finite number."""
    change = result.alignment_change(name)
    return change if change is not None and math.isfinite(change) else None


def printed(change: float) -> float:
    """A change in ρ as `rho_change` prints it, for comparisons a reader can check."""
    return float(fixed(change, 3))


def rho_change(change: float | None) -> str:
    if change is None:
        return "ρ undefined"
    return "ρ unchanged" if change == 0 else f"ρ {fixed(change, 3, sign=True)}"


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


def same_training_reading(result: ExperimentResult) -> str:
    rate = result.config.regular_lr
    same = f"Both learning rates are {rate:g}, so the two models are the same training (same start, same batches)"
    if all(result.diverged_at[name] is not None for name in MODEL_NAMES):
        return f"{same}, and it diverged: lower the learning rate."
    changes = per_model({name: rho_change(alignment_change(result, name)) for name in MODEL_NAMES})
    return f"{same}: {changes} since initialisation; {test_errors(result)}."


def test_errors(result: ExperimentResult) -> str:
    return "test error ended at " + per_model(
        {name: f"{result.history[name][-1].test_error:.1f}%" for name in MODEL_NAMES}
    )


def outcome(result: ExperimentResult) -> str:
    """What the run shows of two models trained at different rates."""
    change = {name: alignment_change(result, name) for name in MODEL_NAMES}
    errors = test_errors(result)
    both = f"{rho_change(change['slow'])} slow, {rho_change(change['regular'])} regular"
    diverged = [name for name in MODEL_NAMES if result.diverged_at[name] is not None]
    if len(diverged) == 2:
        return "Both models diverged, so this run says nothing about feature learning yet: lower the learning rates."
    if diverged:
        bad, good = diverged[0], other_model(diverged[0])
        return (
            f"The {bad} model diverged, so only the {good} model trained to the end ({rho_change(change[good])}, "
            f"test error {result.history[good][-1].test_error:.1f}%); lower the learning rate named above to "
            "compare the two."
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
    sentences = [moved_sentence(last), chance_sentence(result), regime_sentence(result), machines_sentence(result)]
    return " ".join(sentence for sentence in sentences if sentence)


def moved_sentence(last: dict) -> str:
    if not finite(last["slow"].hidden_change, last["regular"].hidden_change):
        return ""  # not measured, or a diverged model's weights overflowed (its notice says so)
    moved = (
        f"The slow model's hidden weights moved {percent(last['slow'].hidden_change)} of their initial "
        f"size against {percent(last['regular'].hidden_change)} for the regular one"
    )
    if finite(last["slow"].tangent_distance, last["regular"].tangent_distance):
        moved += (
            f"; their tangent kernels moved 1 − ρ(Θ, Θ₀) = {last['slow'].tangent_distance:.2g} and "
            f"{last['regular'].tangent_distance:.2g}"
        )
    return moved + "."


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
        f"At initialisation ρ = {fixed(start, 3)} is {where} chance (95 % of label shuffles give "
        f"{fixed(low, 3)} to {fixed(high, 3)})"
    )
    return sentence + (": random ReLU features of pixels already carry class structure." if start > high else ".")


def regime_sentence(result: ExperimentResult) -> str:
    config = result.config
    if config.lazy_scale is not None:
        return (
            f"Both models trained Chizat's lazily scaled α(f − f₀) with α = {config.lazy_scale:g}: "
            "the larger α, the less every weight moves while the function learns."
        )
    not_lazy = "that is not the lazy regime: for that, turn on the lazy scale α."
    if config.slow_lr == 0:
        return (
            f"A frozen hidden layer makes the slow model a random-features model (only its readout learns); {not_lazy}"
        )
    if config.slow_lr < config.regular_lr:
        return (
            "The smaller the slow learning rate, the closer the slow model is to a random-features model "
            f"(its readout learning on nearly fixed features); {not_lazy}"
        )
    return ""


def machines_sentence(result: ExperimentResult) -> str:
    initial = result.kernel_machine_errors.get("regular", {}).get("init", {}).get("tangent")
    if initial is None:
        return ""
    epochs = result.epochs_done
    return (
        f"The ridge machine of the initial tangent kernel Θ₀ scores {initial:.1f} % test error, the regular "
        f"network {result.history['regular'][-1].test_error:.1f} % after {epochs} epoch{'s' if epochs != 1 else ''}: "
        "the machine is solved exactly, the network only as far as its training went."
    )


def divergence_messages(result: ExperimentResult) -> list[str]:
    """One message per diverged model: when, the cause its numbers point to, and what to try."""
    return [
        f"The **{name}** model diverged at epoch {result.diverged_at[name]}: a batch loss grew past "
        f"{DIVERGENCE_FACTOR:g}× its initial loss (or stopped being a number), so it stopped training there; its "
        f"curves end at the ✕. {divergence_cause(result, name)}Try {divergence_advice(result, name)}."
        for name in MODEL_NAMES
        if result.diverged_at[name] is not None
    ]


def divergence_cause(result: ExperimentResult, name: str) -> str:
    """What the model's last record says of why it diverged (empty when it says nothing)."""
    last = result.history[name][-1]
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
    if name == "slow" and result.config.slow_lr == 0:
        return (
            "Its hidden layer is frozen (slow learning rate 0), so its readout's steps, at the regular learning "
            f"rate {result.config.regular_lr:g}, overshot. "
        )
    if change is None:
        return ""
    lazy = result.config.lazy_scale
    if lazy is not None:
        return (
            f"Its hidden weights had moved {percent(change)} of their initial size: with α = {lazy:g} it trains "
            "α(f − f₀), close to linear in its weights, and at this learning rate each step overshoots, so the "
            "loss grows. "
        )
    apart = " and its features still told the probe digits apart (ρ defined)" if last.alignment is not None else ""
    return (
        f"Its hidden weights had moved {percent(change)} of their initial size{apart}: its steps overshot at "
        "this learning rate. "
    )


def divergence_advice(result: ExperimentResult, name: str) -> str:
    config = result.config
    if name == "regular":
        advice = "a smaller regular learning rate (e.g. 10 times smaller)"
    elif config.slow_lr == 0:
        advice = "a smaller regular learning rate (it trains this model's readout; its hidden layer is frozen)"
    else:
        advice = "a smaller slow learning rate, or a smaller regular one (it also trains this model's readout)"
    return advice + (", or a smaller α" if config.lazy_scale is not None else "")
