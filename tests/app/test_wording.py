"""The Train page's sentences are true of the settings and numbers of every run the form allows:
synthetic runs over learning rates (0, equal, either larger), the lazy scale, divergence and alignment
changes of any sign or undefined, each sentence checked against the numbers it was made from."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalign_app import wording
from kalign_core import ExperimentConfig
from kalign_core.config import MAX_LAZY_SCALE, MAX_LEARNING_RATE, MIN_LAZY_SCALE
from kalign_core.results import MODEL_NAMES, EpochRecord, ExperimentResult
from kalign_core.text import percent

DEAD = "the centered feature kernel is zero (all points look the same to it), so alignment is 0/0"
OVERFLOWED = "the feature kernel has non-finite entries"
RATE = st.floats(1e-6, MAX_LEARNING_RATE)
# Alignment changes from exactly 0 through ones that round to 0 at three decimals to large ones.
CHANGE = st.one_of(
    st.just(0.0), st.floats(-0.001, 0.001), st.floats(-0.5, 0.5), st.sampled_from([0.0049, 0.0051, -1e-5])
)
FINITE_OR_NOT = st.one_of(st.none(), st.just(0.0), st.floats(0, 10), st.sampled_from([math.inf, math.nan]))


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
        hidden_change=draw(FINITE_OR_NOT) if diverged else draw(st.one_of(st.none(), st.floats(0, 10))),
        tangent_distance=draw(st.one_of(st.none(), st.floats(0, 1))),
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
    )
    # Equal rates are one training: the models diverge together or not at all.
    diverged = draw(st.booleans())
    diverges = {name: diverged if slow_lr == regular_lr else draw(st.booleans()) for name in MODEL_NAMES}
    history = {name: draw(model_history(diverges[name])) for name in MODEL_NAMES}
    if slow_lr == regular_lr:
        history["regular"] = history["slow"]
    band = draw(st.one_of(st.none(), st.tuples(st.floats(-0.1, 0.1), st.floats(0, 0.2))))
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
    )


def everything_said(result: ExperimentResult) -> str:
    """Every sentence and metric number the Train page shows of `result`."""
    cards = []
    for name in MODEL_NAMES:
        first, last = result.history[name][0], result.history[name][-1]
        cards.append(wording.delta(last.test_error - first.test_error, 1, " pp")["delta"])
        if last.alignment is not None:
            cards += [wording.fixed(last.alignment, 3), wording.delta(last.alignment - first.alignment, 3, "")["delta"]]
    said = [wording.reading(result), wording.movement_reading(result), *wording.divergence_messages(result)]
    return "\n".join(said + cards)


def printed_rho(text: str) -> float:
    """A change in ρ as the sentences print it ("+0.056", "unchanged", "-1e-05") as a number."""
    return 0.0 if text == "unchanged" else float(text)


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
def test_the_reading_says_what_the_learning_rates_make_of_the_two_models(result):
    slow_lr, regular_lr = result.config.slow_lr, result.config.regular_lr
    reading = wording.reading(result)
    said = reading + wording.movement_reading(result)
    if slow_lr == regular_lr:
        assert "same training" in reading
        assert " than " not in said and not re.search("random[- ]features", said) and "faster" not in said
    else:
        assert "same training" not in reading
    assert ("is a random-features model" in reading) == (slow_lr == 0)
    assert ("the faster one" in reading) == (slow_lr > regular_lr)
    if slow_lr > regular_lr:
        assert not re.search("random[- ]features", said)


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(results())
def test_every_comparison_is_true_of_the_numbers_as_printed(result):
    reading = wording.reading(result)
    for mover, other in re.findall(r"more \(ρ (\S+)\) than the \w+ model's \(ρ ([^)]+)\)", reading):
        assert printed_rho(mover) > printed_rho(other), reading
    for mover, other in re.findall(r"far more \(ρ (\S+)\) than the \w+ model's \(ρ ([^)]+)\)", reading):
        assert printed_rho(other) < printed_rho(mover) / 4, reading
    for value in re.findall(r"features moved toward the task \(ρ ([^ )]+)\)", reading):
        assert printed_rho(value) > 0, reading
    for value in re.findall(r"did not \(ρ ([^)]+)\)", reading):
        assert printed_rho(value) <= 0, reading
    both = r" \(ρ (\S+) slow, ρ (\S+) regular\)"
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
        assert ("ReLUs" in message) == (last.alignment is None and last.alignment_note == DEAD)
        change = last.hidden_change
        overflowed = last.alignment_note == OVERFLOWED or (change is not None and not math.isfinite(change))
        assert ("overflowed" in message) == (overflowed and "ReLUs" not in message)
        frozen = name == "slow" and result.config.slow_lr == 0
        assert ("its readout's steps" in message) == (frozen and "ReLUs" not in message and not overflowed)
        if "ReLUs" not in message and not overflowed and change is not None and not frozen:
            assert f"moved {percent(change)} of their initial size" in message
            assert ("α(f − f₀)" in message) == (lazy is not None)
            if lazy is not None:
                assert f"α = {lazy:g}" in message
        assert ("or a smaller α" in message) == (lazy is not None)


@given(st.floats(-1e3, 1e3), st.integers(1, 3))
def test_a_number_prints_close_to_its_value_and_a_change_with_its_sign(value, digits):
    shown = wording.fixed(value, digits)
    assert math.isclose(float(shown), value, rel_tol=0.05, abs_tol=0.5 * 10**-digits)
    change = wording.delta(value, digits, " pp")
    if value == 0:
        assert change["delta"] == "unchanged since init" and change["delta_color"] == "off"
    else:
        number = change["delta"].removesuffix(" pp since init")
        assert number[0] == ("+" if value > 0 else "-") and float(number) != 0
        assert math.isclose(float(number), value, rel_tol=0.05, abs_tol=0.5 * 10**-digits)
