"""The width lab's numbers: each measure of a sweep's trials at their last epoch against width, one
line per parametrization and model (mean and spread over seeds), with the slope of a straight line
fitted on log-log axes and, where theory gives one, the slope it expects.

The theory slope applies to the relative hidden-weight change ‖W − W₀‖_F / ‖W₀‖_F only: width^−½
under the NTK parametrization (the lazy regime: the hidden weights barely move in wide networks),
width^0 under μP (they move as much at every width). No slope is claimed for the other measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..results import COORDINATE_STEPS, MEASURE_LABELS, MODEL_NAMES, coordinate_step
from .spec import TrialSummary, mean_spread

# The slope of log(relative hidden-weight change) against log(width) that theory expects.
THEORY_SLOPES = {"ntk": -0.5, "mup": 0.0}
THEORY_MEASURE = "hidden_change"
INFINITE_WIDTH_MEASURE = "infinite_width_distance"


@dataclass(frozen=True)
class Measure:
    """A column family of TrialSummary: `name` + "_" + each of `models`, or `name` itself when
    `models` is empty (one value per trial, e.g. the alignment gain). `model_labels` names each of
    `models` for people where its own name would not do."""

    name: str
    label: str
    models: tuple[str, ...] = MODEL_NAMES
    model_labels: tuple[str, ...] = ()

    def column(self, model: str | None) -> str:
        return self.name if model is None else f"{self.name}_{model}"

    def model_label(self, model: str | None) -> str | None:
        return dict(zip(self.models, self.model_labels)).get(model, model)


def _recorded(name: str) -> Measure:
    """An EpochRecord measure (each model's at its last epoch), called as the record calls it."""
    return Measure(name, MEASURE_LABELS[name])


# What the lab plots against width, at each trial's last epoch.
LAB_MEASURES = {
    m.name: m
    for m in (
        _recorded("hidden_change"),
        _recorded("readout_change"),
        _recorded("feature_distance"),
        _recorded("tangent_distance"),
        Measure("alignment_gain", "Alignment gain (regular − slow)", models=()),
        _recorded("test_error"),
        _recorded("pattern_stability"),
        Measure(INFINITE_WIDTH_MEASURE, "Θ₀'s distance to Θ∞ at initialisation √(2(1 − ρ(Θ₀, Θ∞)))", ("init",)),
        _recorded("linear_gap"),
    )
}
# The coordinate check, as mup draws it: the regular model's sizes after t SGD steps, t = 0 (the
# initialisation both models share) to COORDINATE_STEPS, and after the whole run.
COORDINATE_TIMES = {
    "init": "t = 0",
    **{coordinate_step("regular", t): f"t = {t}" for t in range(1, COORDINATE_STEPS + 1)},
    "regular": "end",
}
COORDINATE_MEASURES = {
    m.name: m
    for m in (
        Measure(name, label, tuple(COORDINATE_TIMES), tuple(COORDINATE_TIMES.values()))
        for name, label in (
            ("mean_abs_hidden", "Mean |hidden pre-activation|"),
            ("mean_abs_output", "Mean |output|"),
        )
    )
}


@dataclass(frozen=True)
class WidthLine:
    """One parametrization's (and model's) measure against width: per width the mean and spread
    (standard deviation) over seeds, and how many seeds; the fitted and the theory's slope.
    `left_out`: trials whose model diverged, or whose value is undefined."""

    parametrization: str
    model: str | None
    widths: list[int]
    means: list[float]
    spreads: list[float]
    seeds: list[int]
    slope: float | None
    theory: float | None
    left_out: int


def fitted_slope(widths, values) -> float | None:
    """Least-squares slope of log(value) on log(width), over the points where both are positive
    numbers (None values skipped); None with fewer than two distinct widths left."""
    points = [
        (math.log(w), math.log(v))
        for w, v in zip(widths, values)
        if v is not None and w > 0 and v > 0 and math.isfinite(v)
    ]
    if len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def theory_slope(measure: str, parametrization: str) -> float | None:
    """The slope theory gives `measure` against width: the hidden-weight change's under ntk and μP,
    and Θ₀'s distance to Θ∞ (a sum over units whose sampling error falls like width^−½)."""
    if measure == INFINITE_WIDTH_MEASURE:
        return -0.5
    return THEORY_SLOPES.get(parametrization) if measure == THEORY_MEASURE else None


def width_lines(summaries: list[TrialSummary], measure: Measure) -> list[WidthLine]:
    """`measure` against width, one line per parametrization × model (per parametrization for a
    per-trial measure), parametrizations in their sweep order. A model that diverged is left out of
    its trial's values (its last record is from before it diverged); a per-trial measure needs both."""
    lines = []
    for parametrization in dict.fromkeys(s.parametrization for s in summaries):
        ours = [s for s in summaries if s.parametrization == parametrization]
        for model in measure.models or (None,):
            column = measure.column(model)
            kept = [s for s in ours if not _diverged(s, model) and getattr(s, column) is not None]
            stats = mean_spread(kept, "width", column)
            if not stats:
                continue
            widths = list(stats)
            means = [mean for mean, _, _ in stats.values()]
            lines.append(
                WidthLine(
                    parametrization,
                    model,
                    widths,
                    means,
                    [spread for _, spread, _ in stats.values()],
                    [seeds for _, _, seeds in stats.values()],
                    fitted_slope(widths, means),
                    theory_slope(measure.name, parametrization),
                    len(ours) - len(kept),
                )
            )
    return lines


def _diverged(summary: TrialSummary, model: str | None) -> bool:
    """Whether `model` (None: either model; "init": neither, the start is before training) diverged."""
    names = MODEL_NAMES if model is None else (model,) if model in MODEL_NAMES else ()
    return any(getattr(summary, f"diverged_{name}") is not None for name in names)


def slope_text(line: WidthLine) -> str:
    """e.g. "fitted slope −0.47 over widths 64–4096; theory −½"."""
    if line.slope is None:
        fitted = "no slope fitted (fewer than two widths with positive values)"
    else:
        fitted = f"fitted slope {_signed(line.slope)} over widths {min(line.widths)}–{max(line.widths)}"
    return fitted if line.theory is None else f"{fitted}; theory {_fraction(line.theory)}"


def short_slope_text(line: WidthLine) -> str:
    """e.g. "slope −0.47 (theory −½)", for a legend."""
    fitted = "no slope" if line.slope is None else f"slope {_signed(line.slope)}"
    return fitted if line.theory is None else f"{fitted} (theory {_fraction(line.theory)})"


def _signed(value: float) -> str:
    return f"{value:.2f}".replace("-", "−")


def _fraction(value: float) -> str:
    return {-0.5: "−½", 0.0: "0"}.get(value, _signed(value))
