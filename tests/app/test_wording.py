"""The Train page's sentences are true of the settings and numbers of every run the form allows:
synthetic runs over learning rates (0, equal, either larger), the lazy scale, divergence and alignment
changes of any sign or undefined, each sentence checked against the numbers it was made from."""

import math
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kalign_app import wording
from kalign_core import ExperimentConfig
from kalign_core.config import MAX_LAZY_SCALE, MAX_LEARNING_RATE, MIN_LAZY_SCALE
from kalign_core.parametrization import PARAMETRIZATIONS
from kalign_core.results import MODEL_NAMES, EpochRecord, ExperimentResult
from kalign_core.text import fixed, percent

DEAD = "the centered feature kernel is zero (all points look the same to it), so alignment is 0/0"
OVERFLOWED = "the feature kernel has non-finite entries"
RATE = st.floats(1e-6, MAX_LEARNING_RATE)
# Alignment changes from exactly 0 through ones that round to 0 at three decimals to large ones.
CHANGE = st.one_of(
    st.just(0.0), st.floats(-0.001, 0.001), st.floats(-0.5, 0.5), st.sampled_from([0.0049, 0.0051, -1e-5])
)
# Shares of the initial size and distances from it: exactly 0, below what two significant figures
# show without an exponent (a hidden layer at a tiny slow rate: 3.7e-9), around the thresholds, large.
TINY = st.sampled_from([1e-12, 3.7e-9, 9.9e-6, 1e-5, 5e-5, 9.9e-5, 1e-4, 2e-4, 9.9e-4, 1e-3])
MOVED = st.one_of(st.just(0.0), TINY, st.floats(0, 10))
FINITE_OR_NOT = st.one_of(st.none(), MOVED, st.sampled_from([math.inf, math.nan]))
DISTANCE = st.one_of(st.none(), st.just(0.0), TINY, st.floats(0, 1))
MACHINE_ERROR = st.one_of(st.none(), st.floats(0, 100))


@st.composite
def rates(draw) -> tuple[float, float]:
    """(slow_lr, regular_lr) as the form allows them, equal rates and a frozen slow layer included."""
    regular = draw(RATE)
    slow = draw(st.one_of(st.just(0.0), st.just(regular), RATE))
    return slow, regular


@st.composite
def model_history(draw, diverged: bool) -> list[EpochRecord]:
    start = draw(st.floats(-0.2, 0.9))
    end = draw(st.one_of(st.none(), CHANGE.map(lambda change: start + change)))
    note = None if end is not None else draw(st.sampled_from([DEAD, OVERFLOWED]))
    last = EpochRecord(
        epoch=2,
        train_error=0.0,
        test_error=draw(st.floats(0, 100)),
        loss=1.0,
        alignment=end,
        alignment_note=note,
        hidden_change=draw(FINITE_OR_NOT) if diverged else draw(st.one_of(st.none(), MOVED)),
        tangent_distance=draw(DISTANCE),
    )
    first = EpochRecord(0, 50.0, 50.0, 1.0, start, hidden_change=0.0, tangent_distance=0.0)
    return [first, EpochRecord(1, 40.0, 40.0, 0.8, start), last]


@st.composite
def results(draw) -> ExperimentResult:
    slow_lr, regular_lr = draw(rates())
    config = ExperimentConfig(
        slow_lr=slow_lr,
        regular_lr=regular_lr,
        lazy_scale=draw(st.one_of(st.none(), st.floats(MIN_LAZY_SCALE, MAX_LAZY_SCALE))),
        epochs=2,
        probe_size=4,
        parametrization=draw(st.sampled_from(PARAMETRIZATIONS)),
    )
    # Equal rates are one training: the models diverge together or not at all.
    diverged = draw(st.booleans())
    diverges = {name: diverged if slow_lr == regular_lr else draw(st.booleans()) for name in MODEL_NAMES}
    history = {name: draw(model_history(diverges[name])) for name in MODEL_NAMES}
    if slow_lr == regular_lr:
        history["regular"] = history["slow"]
    band = draw(st.one_of(st.none(), st.tuples(st.floats(-0.1, 0.1), st.floats(0, 0.2))))
    initial = {kind: draw(MACHINE_ERROR) for kind in ("feature", "tangent")}
    machines = draw(st.booleans())
    limit = draw(
        st.one_of(
            st.just({}),  # a run saved before kalign measured it
            st.just({"alignment": None, "distance": None, "note": "the standard parametrization has none"}),
            st.fixed_dictionaries(
                {"alignment": st.one_of(st.none(), st.floats(-1, 1)), "distance": DISTANCE, "note": st.none()},
                optional={"machine": MACHINE_ERROR},
            ),
        )
    )
    return ExperimentResult(
        config=config,
        source="sample",
        device="cpu",
        history=history,
        kernels={name: [] for name in MODEL_NAMES},
        target_kernel=np.eye(4, dtype=np.float32),
        probe_labels=np.array([0, 0, 1, 1]),
        diverged_at={name: 2 if diverges[name] else None for name in MODEL_NAMES},
        alignment_null={} if band is None else {"feature": (band[0], band[0] + band[1])},
        kernel_machine_errors={name: {"init": initial} for name in MODEL_NAMES} if machines else {},
        infinite_width=limit,
    )


def everything_said(result: ExperimentResult) -> str:
    """Every sentence and metric number the Train page shows of `result`."""
    cards = []
    for name in MODEL_NAMES:
        first, last = result.history[name][0], result.history[name][-1]
        cards.append(wording.delta(last.test_error - first.test_error, 1, " pp")["delta"])
        if last.alignment is not None:
            cards += [
                wording.rho_value(last.alignment),
                wording.delta(last.alignment - first.alignment, 3, "")["delta"],
            ]
    cards.append(wording.error_percent(last.test_error))
    said = [
        wording.page_caption(result.config),
        wording.reading(result),
        wording.movement_reading(result),
        *wording.divergence_messages(result),
    ]
    return "\n".join(said + cards)


def printed_rho(text: str) -> float:
    """A change in ρ as the sentences print it ("+0.056", "unchanged", "up by less than 0.001") as a
    number: a change said in words as its sign times a tiny amount."""
    words = {"unchanged": 0.0, "up by less than 0.001": 1e-9, "down by less than 0.001": -1e-9}
    return words[text] if text in words else float(text)


def without_settings(result: ExperimentResult, said: str) -> str:
    """`said` without the learning rates and α as the form shows them (%g, e.g. 1e-06): what is left
    are the numbers the run measured."""
    config = result.config
    for value in (config.slow_lr, config.regular_lr, config.lazy_scale):
        if value is not None:
            said = said.replace(f"{value:g}", "<setting>")
    return said


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(results())
def test_no_number_prints_as_a_signed_zero_or_float_noise_and_no_subscript_as_an_underscore(result):
    said = everything_said(result)
    for zero in ("-0.0", "+0.0", "±0", "−0.0"):
        assert not re.search(re.escape(zero) + r"(?![0-9]*[1-9])", said), said
    assert "_T" not in said and "_0" not in said and "_t" not in said
    # No raw float noise; learning rates keep the form's own %g (1e+06).
    assert not re.search(r"\bnan\b|\binf\b|[eE]\+\d+ %", said), said


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(results())
def test_measured_numbers_read_as_words_never_as_exponents_and_every_percent_is_spaced(result):
    said = without_settings(result, everything_said(result))
    assert not re.search(r"\d[eE][-+]?\d", said), said
    assert not re.search(r"\d%", said), said  # "7.0 %", never "7.0%"


@settings(max_examples=400, deadline=None)
@given(results())
def test_the_reading_says_what_the_learning_rates_make_of_the_two_models(result):
    slow_lr, regular_lr = result.config.slow_lr, result.config.regular_lr
    reading = wording.reading(result)
    said = reading + wording.movement_reading(result)
    if slow_lr == regular_lr:
        assert "so the two models train identically (same start, same batches, same rates)" in reading
        assert " than the " not in said and not re.search("random[- ]features", said) and "faster" not in said
    else:
        assert "train identically" not in reading
    assert ("is a random-features model" in reading) == (slow_lr == 0)
    assert len(re.findall("random[- ]features", said)) <= 1, said  # said once, not in two sentences in a row
    assert ("the faster one" in reading) == (slow_lr > regular_lr)
    if slow_lr > regular_lr:
        assert not re.search("random[- ]features", said)
    advice = "that is not the lazy regime" in said or "A frozen hidden layer is not the lazy regime" in said
    if any(epoch is not None for epoch in result.diverged_at.values()):  # the advice then is lower rates
        assert not advice
    if advice:  # widening makes it lazier under standard and ntk only (the Width lab measures it)
        assert ("widen the network" in said) == (result.config.parametrization != "mup")


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(results())
def test_every_comparison_is_true_of_the_numbers_as_printed(result):
    reading = wording.reading(result)
    for mover, other in re.findall(r"more \(ρ (\S+)\) than the \w+ model's \(ρ ([^)]+)\)", reading):
        assert printed_rho(mover) > printed_rho(other), reading
    for mover, other in re.findall(r"far more \(ρ (\S+)\) than the \w+ model's \(ρ ([^)]+)\)", reading):
        assert printed_rho(other) < printed_rho(mover) / 4, reading
    for value in re.findall(r"features moved toward the task \(ρ ([^),]+)\)", reading):
        assert printed_rho(value) > 0, reading
    for value in re.findall(r"did not \(ρ ([^)]+)\)", reading):
        assert printed_rho(value) <= 0, reading
    both = r" \(ρ (.+?) slow, ρ (.+?) regular\)"
    claims = {
        "moved away from the task": lambda change: change < 0,
        "Neither model's features moved toward the task": lambda change: change <= 0,
        "has moved by 0.005 or more": lambda change: abs(change) < 0.005,
        "toward the task by about as much": lambda change: change > 0,
    }
    for claim, holds in claims.items():
        for values in re.findall(re.escape(claim) + both, reading):
            assert all(holds(printed_rho(v)) for v in values), reading
            assert "about as much" not in claim or values[0] == values[1], reading


def barely_moved_slow(result: ExperimentResult) -> bool:
    """The slow model's hidden layer frozen or moved under 0.01 %, at rates that differ: what moved in
    it trained at the regular rate (its readout's)."""
    config, change = result.config, result.history["slow"][-1].hidden_change
    barely = change is not None and math.isfinite(change) and change < 1e-4
    return config.slow_lr != config.regular_lr and (config.slow_lr == 0 or barely)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(results())
def test_a_divergence_is_blamed_on_what_the_numbers_show(result):
    diverged = [name for name in MODEL_NAMES if result.diverged_at[name] is not None]
    messages = wording.divergence_messages(result)
    assert len(messages) == len(diverged)
    lazy = result.config.lazy_scale
    for name, message in zip(diverged, messages):
        last = result.history[name][-1]
        assert f"diverged at epoch {result.diverged_at[name]}" in message
        # The cards show the last record: the end of the epoch it diverged in, whatever its error.
        assert (
            f"Its cards (test error {wording.error_percent(last.test_error)}) measure the weights it ended " in message
        )
        assert ("ReLUs" in message) == (last.alignment is None and last.alignment_note == DEAD)
        change = last.hidden_change
        overflowed = last.alignment_note == OVERFLOWED or (change is not None and not math.isfinite(change))
        assert ("overflowed" in message) == (overflowed and "ReLUs" not in message)
        frozen = name == "slow" and result.config.slow_lr == 0
        assert ("its readout's steps" in message) == (frozen and "ReLUs" not in message and not overflowed)
        cause_known = "ReLUs" not in message and not overflowed
        barely = name == "slow" and barely_moved_slow(result) and not frozen
        assert ("barely moved (less than 0.01 %" in message) == (barely and cause_known)
        if barely and cause_known:
            # The slow rate trained nothing that moved: the regular rate (and α) is named, never the slow one.
            assert f"the regular learning rate {result.config.regular_lr:g}" in message
            assert "smaller slow learning rate" not in message and "smaller regular learning rate" in message
        elif cause_known and change is not None and not frozen:
            moved = "did not move at all" if change == 0 else f"had moved {wording.share(change)} of their initial size"
            assert f"Its hidden weights {moved}" in message
            assert ("α(f − f₀)" in message) == (lazy is not None)
            if lazy is not None:
                assert f"α = {lazy:g}" in message
        if name == "slow" and barely_moved_slow(result):
            assert "smaller slow learning rate" not in message
        assert ("or a smaller α" in message) == (lazy is not None)


@settings(max_examples=400, deadline=None)
@given(results())
def test_both_models_diverged_names_the_rates_that_matter(result):
    reading = wording.reading(result)
    if any(result.diverged_at[name] is None for name in MODEL_NAMES):
        assert "diverged: lower" not in reading
        return
    if result.config.slow_lr == result.config.regular_lr:
        assert "both diverged: lower the learning rate" in reading
    elif barely_moved_slow(result):
        assert "lower the regular learning rate" in reading and "learning rates" not in reading
    else:
        assert "lower the learning rates" in reading
    assert ("α" in reading) == (result.config.lazy_scale is not None)


@settings(max_examples=400, deadline=None)
@given(results())
def test_how_far_the_models_moved_is_said_once_when_equal_and_in_words_when_tiny(result):
    last = {name: result.history[name][-1] for name in MODEL_NAMES}
    moved = wording.moved_sentence(last)
    changes = [last[name].hidden_change for name in MODEL_NAMES]
    if not all(c is not None and math.isfinite(c) for c in changes):
        assert moved == ""
        return
    shares = {name: wording.share(last[name].hidden_change) for name in MODEL_NAMES}
    for name in MODEL_NAMES:
        change = last[name].hidden_change
        if change == 0:
            assert f"{'Neither' if changes == [0, 0] else f'The {name}'} model's hidden weights" in moved
            assert "did not move at all" in moved or "Neither model's hidden weights moved at all" in moved
        elif 0 < change < 1e-5:
            assert shares[name] == "less than 0.001 %"
        else:
            assert shares[name] == percent(change)
    assert " 0 %" not in moved and not moved.startswith("0 %")
    if 0 not in changes:
        if shares["slow"] == shares["regular"]:
            assert f"moved {shares['slow']} (both) of their initial size" in moved
        else:
            assert f"moved {shares['slow']} (slow) and {shares['regular']} (regular) of their initial size" in moved
    distances = [last[name].tangent_distance for name in MODEL_NAMES]
    if all(d is not None for d in distances):
        said = [wording.distance(d) for d in distances]
        for d, text in zip(distances, said):
            assert text == ("0" if d == 0 else "under 0.001" if d < 0.001 else f"{d:.2g}")
        assert (f"is {said[0]} (both)" in moved) == (said[0] == said[1])
    if result.config.slow_lr == result.config.regular_lr and 0 not in changes:
        assert "(both)" in moved  # one training: its numbers once


@settings(max_examples=300, deadline=None)
@given(results())
def test_the_machines_are_stated_without_a_race_and_not_after_the_regular_model_diverged(result):
    sentence = wording.machines_sentence(result)
    initial = result.kernel_machine_errors.get("regular", {}).get("init", {})
    scored = {kind: error for kind, error in initial.items() if error is not None}
    if not scored or result.diverged_at["regular"] is not None:
        assert sentence == ""
        return
    for kind, symbol in (("tangent", "Θ₀"), ("feature", "K₀")):
        if kind in scored:
            assert f"{symbol} {wording.error_percent(scored[kind])}" in sentence or (
                f"{symbol} scores {wording.error_percent(scored[kind])} test error" in sentence
            )
    assert "solved exactly" in sentence and "not a race" in sentence
    assert "only as far as" not in sentence and "network " + "scores" not in sentence


@settings(max_examples=300, deadline=None)
@given(results())
def test_the_infinite_width_sentence_states_the_measured_numbers_or_why_there_are_none(result):
    sentence = wording.infinite_width_sentence(result)
    measured = result.infinite_width
    if not measured:
        assert sentence == ""
        return
    if measured["note"]:
        assert sentence == f"No infinite-width reference here: {measured['note']}."
        return
    for key, text in (
        ("distance", f"lies {wording.distance(measured['distance'] or 0.0)} from its infinite-width limit Θ∞"),
        ("alignment", f"Θ∞ aligns with the task at ρ = {wording.rho_value(measured['alignment'] or 0.0)}"),
        ("machine", f"its ridge machine scores {wording.error_percent(measured.get('machine') or 0.0)}"),
    ):
        assert (text in sentence) == (measured.get(key) is not None), (key, sentence)


@settings(max_examples=300, deadline=None)
@given(rates(), st.one_of(st.none(), st.floats(MIN_LAZY_SCALE, MAX_LAZY_SCALE)))
def test_the_train_pages_caption_is_true_of_the_settings(learning_rates, lazy):
    slow_lr, regular_lr = learning_rates
    config = ExperimentConfig(slow_lr=slow_lr, regular_lr=regular_lr, lazy_scale=lazy)
    caption = wording.page_caption(config)
    assert "same weights" in caption and "same batches" in caption
    assert ("they train identically" in caption) == (slow_lr == regular_lr)
    assert ("only the slow model's hidden layer has its own learning rate" in caption) == (slow_lr != regular_lr)
    if slow_lr != regular_lr:
        assert f"({slow_lr:g}; the regular {regular_lr:g} trains its readout and the whole regular model)" in caption
    assert ("α" in caption) == (lazy is not None)
    if lazy is not None:
        assert f"α = {lazy:g}" in caption
    assert "α" not in wording.page_caption(None) and "rate" not in wording.page_caption(None)


@given(st.one_of(st.floats(-1e3, 1e3), st.floats(-1e-3, 1e-3)), st.integers(1, 3))
@example(0.75, 1)  # an exact tie: 0.8 lies half a unit away, which float arithmetic makes a hair more
def test_a_number_prints_close_to_its_value_and_a_change_with_its_sign(value, digits):
    shown = fixed(value, digits)
    half_unit = 0.5 * 10**-digits * (1 + 1e-9)
    assert math.isclose(float(shown), value, rel_tol=0.05, abs_tol=half_unit)
    change = wording.delta(value, digits, " pp")
    if value == 0:
        assert change["delta"] == "unchanged since init" and change["delta_color"] == "off"
    elif round(value, digits) == 0:  # a change too small for its decimals: its direction in words, no arrow
        way = "up" if value > 0 else "down"
        assert change["delta"] == f"{way} by less than {10**-digits:.{digits}f} pp since init"
        assert change["delta_color"] == "off" and change["delta_arrow"] == "off"
    else:
        number = change["delta"].removesuffix(" pp since init")
        assert number[0] == ("+" if value > 0 else "-") and float(number) != 0
        assert math.isclose(float(number), value, rel_tol=0.05, abs_tol=half_unit)


def test_each_network_is_read_against_its_twin_with_the_numbers_measured():
    config = ExperimentConfig(epochs=1, probe_size=4, linearized_twin=True)
    start = EpochRecord(0, 50.0, 50.0, 0.7, 0.4, linear_test_error=50.0, linear_gap=0.0)
    history = {
        "slow": [start, EpochRecord(1, 9.0, 8.0, 0.3, 0.4, linear_test_error=8.5, linear_gap=0.0123)],
        "regular": [start, EpochRecord(1, 5.0, 3.0, 0.2, 0.4, linear_note="gone", linear_test_error=None)],
    }
    result = ExperimentResult(
        config,
        "sample",
        "cpu",
        history,
        {n: [] for n in MODEL_NAMES},
        np.eye(4),
        np.zeros(4),
        dict.fromkeys(MODEL_NAMES),
    )
    said = wording.movement_reading(result)
    assert "the slow network is 0.012 from its twin and tests at 8.0 % against the twin's 8.5 %" in said
    assert "the regular network's gap from its twin is undefined (gone)" in said
    plain = replace(result, config=ExperimentConfig(epochs=1, probe_size=4))
    plain.history = {
        n: [replace(r, linear_test_error=None, linear_gap=None, linear_note=None) for r in h]
        for n, h in history.items()
    }
    assert "twin" not in wording.movement_reading(plain)
