"""What a sweep is and what it produced: one base config and axes (digit pairs, widths, slow/regular
lr ratios, seeds, parametrizations) expanded into trials, a one-row summary per trial (and its CSV), the aggregates the
figures draw, and the sweep folder as the record of finished trials.

A sweep folder holds each finished trial in its own subfolder (`<folder>/<trial id>`: a lean trial,
lean_runs.py, or a full saved run; written beside it and renamed into place only when complete),
`sweep.json` (the spec, what trials keep and the torch threads per block) and `summary.csv` (the
summaries of all finished trials).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import numbers
import pathlib
from dataclasses import dataclass, replace

import numpy as np

from ..config import ExperimentConfig, check_digits
from ..parametrization import PARAMETRIZATIONS
from ..results import COORDINATE_MODELS, COORDINATE_STEPS, COORDINATES, MODEL_NAMES, ExperimentResult, coordinate_step
from ..runs import RUN_JSON, result_from_json

SUMMARY_CSV, SWEEP_JSON = "summary.csv", "sweep.json"


def counted(n: int, noun: str) -> str:
    """e.g. "1 width", "3 widths"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def round_lr(value: float) -> float:
    """ratio × lr to 12 significant digits, so that 0.1 × 0.01 is 0.001 and not 0.0010000000000000002."""
    return float(f"{value:.12g}")


def pairs_among(digits) -> tuple[tuple[int, int], ...]:
    """Every pair of the given digits, smaller digit first: all 45 for the ten digits."""
    return tuple(itertools.combinations(sorted(check_digits(digits)), 2))


ALL_PAIRS = pairs_among(range(10))


@dataclass(frozen=True)
class SweepSpec:
    """`base` gives every setting the axes do not: the axes replace its digits (by each of `pairs`),
    width, slow_lr (= ratio × base.regular_lr), seed and parametrization. Empty axes take the base's
    value."""

    base: ExperimentConfig = ExperimentConfig()
    pairs: tuple[tuple[int, int], ...] = ALL_PAIRS
    widths: tuple[int, ...] = ()
    ratios: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    parametrizations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        base = self.base
        axes = {
            "pairs": tuple(_check_pair(p) for p in self.pairs),
            "widths": tuple(self.widths) or (base.width,),
            "ratios": tuple(self.ratios) or (round_lr(base.slow_lr / base.regular_lr),),
            "seeds": tuple(self.seeds) or (base.seed,),
            "parametrizations": tuple(self.parametrizations) or (base.parametrization,),
        }
        if not axes["pairs"]:
            raise ValueError("pairs must hold at least one pair of digits")
        for name, values in axes.items():
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{name} repeats {', '.join(map(str, repeated))}")
        for ratio in axes["ratios"]:
            if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
                raise ValueError(f"ratios must be numbers from 0 to 1, slow_lr / regular_lr (got {ratio!r})")
        axes["ratios"] = tuple(float(r) for r in axes["ratios"])
        for name, values in axes.items():
            object.__setattr__(self, name, values)
        self.trials()  # every trial's config is validated now, not halfway through the sweep

    def trials(self) -> list[Trial]:
        return [
            Trial(
                pair,
                width,
                ratio,
                seed,
                replace(
                    self.base,
                    digits=pair,
                    width=width,
                    seed=seed,
                    slow_lr=round_lr(ratio * self.base.regular_lr),
                    parametrization=parametrization,
                ),
            )
            for parametrization, pair, width, ratio, seed in itertools.product(
                self.parametrizations, self.pairs, self.widths, self.ratios, self.seeds
            )
        ]

    def axes_text(self) -> str:
        """e.g. "45 pairs × 3 widths × 1 ratio × 2 seeds", and "× 2 parametrizations" when several."""
        axes = [(self.pairs, "pair"), (self.widths, "width"), (self.ratios, "ratio"), (self.seeds, "seed")]
        if len(self.parametrizations) > 1:
            axes.append((self.parametrizations, "parametrization"))
        return " × ".join(counted(len(values), noun) for values, noun in axes)

    def to_dict(self) -> dict:
        return {
            "base": self.base.to_dict(),
            "pairs": [list(p) for p in self.pairs],
            "widths": list(self.widths),
            "ratios": list(self.ratios),
            "seeds": list(self.seeds),
            "parametrizations": list(self.parametrizations),
        }


def _check_pair(pair) -> tuple[int, int]:
    """A pair as (smaller digit, larger digit)."""
    allowed = f"pairs must each be two different digits from 0 to 9 (got {pair!r})"
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise ValueError(allowed) from None
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and 0 <= d <= 9 for d in (a, b)) or a == b:
        raise ValueError(allowed)
    return (int(min(a, b)), int(max(a, b)))


@dataclass(frozen=True)
class Trial:
    pair: tuple[int, int]
    width: int
    ratio: float
    seed: int
    config: ExperimentConfig

    @property
    def parametrization(self) -> str:
        return self.config.parametrization

    @property
    def id(self) -> str:
        """Stable folder name, e.g. 8v9-w256-r0.1-s0, or 8v9-w256-r0.1-s0-mup (repr keeps every digit of
        the ratio). The standard parametrization is not named, so that sweeps from before the axis
        keep their folders."""
        named = "" if self.parametrization == "standard" else f"-{self.parametrization}"
        return f"{self.pair[0]}v{self.pair[1]}-w{self.width}-r{self.ratio!r}-s{self.seed}{named}"


@dataclass(frozen=True)
class TrialSummary:
    """One trial in one row. alignment_gain = (final − initial alignment of the regular model)
    − (final − initial of the slow one): how much more feature learning moved the kernel towards
    the target. Both models start from the same weights, so the initial values agree.
    tangent_alignment_gain is the same for the tangent kernel's alignment; hidden_change_*,
    readout_change_*, feature_distance_*, tangent_distance_* and pattern_stability_* are each model's
    EpochRecord measures at its last epoch; mean_abs_hidden_* and mean_abs_output_* its coordinate
    sizes (engine/coordinate_check.py) at the end, *_init those of the start both models share,
    *_regular_step1 … *_regular_step4 the regular model's after each of its first SGD steps;
    infinite_width_distance_init the start's tangent kernel's distance to Θ∞ (None under "standard");
    linear_gap_* and linear_test_error_* each model's gap from its linearized twin and the twin's
    test error at its last epoch (None for trials trained without the twin).
    Summaries written before kalign measured these lack them: None (and parametrization "standard").
    None = undefined (alignment 0/0, or a diverged model); diverged_* = epoch of divergence."""

    trial_id: str
    digit_a: int
    digit_b: int
    width: int
    lr_ratio: float
    seed: int
    slow_lr: float
    regular_lr: float
    epochs: int
    source: str
    initial_alignment_slow: float | None
    final_alignment_slow: float | None
    initial_alignment_regular: float | None
    final_alignment_regular: float | None
    alignment_gain: float | None
    test_error_slow: float
    test_error_regular: float
    diverged_slow: int | None
    diverged_regular: int | None
    seconds: float
    tangent_alignment_gain: float | None = None
    hidden_change_slow: float | None = None
    hidden_change_regular: float | None = None
    parametrization: str = "standard"
    readout_change_slow: float | None = None
    readout_change_regular: float | None = None
    feature_distance_slow: float | None = None
    feature_distance_regular: float | None = None
    tangent_distance_slow: float | None = None
    tangent_distance_regular: float | None = None
    pattern_stability_slow: float | None = None
    pattern_stability_regular: float | None = None
    mean_abs_hidden_init: float | None = None
    mean_abs_hidden_slow: float | None = None
    mean_abs_hidden_regular: float | None = None
    mean_abs_output_init: float | None = None
    mean_abs_output_slow: float | None = None
    mean_abs_output_regular: float | None = None
    infinite_width_distance_init: float | None = None
    mean_abs_hidden_regular_step1: float | None = None
    mean_abs_hidden_regular_step2: float | None = None
    mean_abs_hidden_regular_step3: float | None = None
    mean_abs_hidden_regular_step4: float | None = None
    mean_abs_output_regular_step1: float | None = None
    mean_abs_output_regular_step2: float | None = None
    mean_abs_output_regular_step3: float | None = None
    mean_abs_output_regular_step4: float | None = None
    linear_gap_slow: float | None = None
    linear_gap_regular: float | None = None
    linear_test_error_slow: float | None = None
    linear_test_error_regular: float | None = None

    @property
    def pair(self) -> tuple[int, int]:
        return self.digit_a, self.digit_b


SUMMARY_FIELDS = [f.name for f in dataclasses.fields(TrialSummary)]
# Columns that summaries written by earlier versions lack: those after seconds.
_LATER_FIELDS = set(SUMMARY_FIELDS[SUMMARY_FIELDS.index("seconds") + 1 :])
# The coordinate check's sizes after each of the first steps that a summary keeps: the regular model's
# (the slow model's hidden layer learns slowly on purpose), in the order of its last columns.
STEP_COORDINATES = tuple(
    (size, coordinate_step("regular", t)) for size in COORDINATES for t in range(1, COORDINATE_STEPS + 1)
)
# The last epoch's measures a summary keeps of each model.
_LAST_MEASURES = ("readout_change", "feature_distance", "tangent_distance", "pattern_stability")
# The linearized twin's, kept by keyword (columns of their own, after the others).
_TWIN_MEASURES = ("linear_gap", "linear_test_error")


def summarize(trial: Trial, result: ExperimentResult) -> TrialSummary:
    slow, regular = result.history["slow"], result.history["regular"]
    return TrialSummary(
        trial.id,
        *trial.pair,
        trial.width,
        trial.ratio,
        trial.seed,
        result.config.slow_lr,
        result.config.regular_lr,
        result.config.epochs,
        result.source,
        *alignment_ends(result, "alignment"),
        alignment_gain(result, "alignment"),
        slow[-1].test_error,
        regular[-1].test_error,
        result.diverged_at["slow"],
        result.diverged_at["regular"],
        result.seconds,
        alignment_gain(result, "tangent_alignment"),
        slow[-1].hidden_change,
        regular[-1].hidden_change,
        trial.parametrization,
        *(getattr(history[-1], measure) for measure in _LAST_MEASURES for history in (slow, regular)),
        *(result.coordinate_sizes.get(when, {}).get(size) for size in COORDINATES for when in COORDINATE_MODELS),
        result.infinite_width.get("distance"),
        *(result.coordinate_sizes.get(when, {}).get(size) for size, when in STEP_COORDINATES),
        **{
            f"{measure}_{name}": getattr(result.history[name][-1], measure)
            for measure in _TWIN_MEASURES
            for name in MODEL_NAMES
        },
    )


def alignment_ends(result: ExperimentResult, metric: str) -> list:
    """Initial and final `metric` of the slow model, then of the regular one."""
    return [getattr(result.history[name][i], metric) for name in ("slow", "regular") for i in (0, -1)]


def alignment_gain(result: ExperimentResult, metric: str) -> float | None:
    """(final − initial `metric` of the regular model) − (the same of the slow one); None if undefined."""
    ends = alignment_ends(result, metric)
    if None in ends:
        return None
    slow_start, slow_end, regular_start, regular_end = ends
    return (regular_end - regular_start) - (slow_end - slow_start)


def summary_csv(summaries: list[TrialSummary]) -> str:
    """One row per trial; undefined values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(SUMMARY_FIELDS)
    for s in summaries:
        writer.writerow(["" if v is None else v for v in dataclasses.astuple(s)])
    return out.getvalue()


def read_summary_csv(text: str) -> list[TrialSummary]:
    """Back from `summary_csv` (floats round-trip exactly: csv writes their repr)."""
    kinds = {f.name: f.type for f in dataclasses.fields(TrialSummary)}
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not set(SUMMARY_FIELDS) - _LATER_FIELDS <= set(rows[0]) <= set(SUMMARY_FIELDS):
        raise ValueError(
            f"a sweep summary needs exactly the columns {', '.join(SUMMARY_FIELDS)} "
            f"(summaries written by earlier versions lack {', '.join(sorted(_LATER_FIELDS))})"
        )

    def parse(name, cell):
        kind = kinds[name]
        if cell == "" and "None" in kind:
            return None
        if name == "parametrization" and cell not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)} (got {cell!r})")
        if kind.startswith("int"):
            return int(cell)
        return float(cell) if kind.startswith("float") else cell

    return [TrialSummary(**{k: parse(k, v) for k, v in row.items()}) for row in rows]


# -- aggregation for the figures -------------------------------------------------------------------


def mean_spread(summaries: list[TrialSummary], key: str, metric: str = "alignment_gain") -> dict:
    """`metric` grouped by `key` (e.g. "width"): {value: (mean, spread, seeds)}. Within a group each
    seed's trials (other pairs, ratios, ...) are averaged first; mean and spread (standard deviation)
    are then taken over those per-seed means, so the spread is the seed-to-seed noise. Undefined
    values are left out."""
    groups: dict = {}
    for s in summaries:
        value = getattr(s, metric)
        if value is not None:
            groups.setdefault(getattr(s, key), {}).setdefault(s.seed, []).append(value)
    spread = {}
    for group, by_seed in sorted(groups.items()):
        seed_means = [np.mean(values) for values in by_seed.values()]
        spread[group] = (float(np.mean(seed_means)), float(np.std(seed_means)), len(seed_means))
    return spread


def pair_matrix(summaries: list[TrialSummary], metric: str = "alignment_gain") -> np.ndarray:
    """10×10 symmetric matrix of `metric` averaged per digit pair over the other axes; NaN where absent
    or undefined."""
    matrix = np.full((10, 10), np.nan)
    for (a, b), (mean, _, _) in mean_spread(summaries, "pair", metric).items():
        matrix[a, b] = matrix[b, a] = mean
    return matrix


# -- the sweep folder ------------------------------------------------------------------------------


def finished_trials(spec: SweepSpec, folder) -> dict[str, TrialSummary]:
    """Summaries of the spec's trials already saved in `folder`; a saved trial with other settings
    is an error (the folder belongs to another sweep)."""
    folder = pathlib.Path(folder)
    done = {}
    for trial in spec.trials():
        path = folder / trial.id / RUN_JSON
        if not path.is_file():
            continue
        result = result_from_json(path.read_bytes())
        if result.config != trial.config:
            theirs, ours = result.config.to_dict(), trial.config.to_dict()
            differ = ", ".join(f"{k}={theirs[k]!r} there, {ours[k]!r} here" for k in ours if theirs[k] != ours[k])
            raise ValueError(
                f"{folder / trial.id} holds a run with other settings ({differ}); choose another sweep folder"
            )
        if not result.stopped:
            done[trial.id] = summarize(trial, result)
    return done


def saved_sweeps(base) -> list[str]:
    """Names of the sweep folders (those with a summary) in `base`, newest first."""
    base = pathlib.Path(base)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if not p.name.startswith(".") and (p / SUMMARY_CSV).is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / SUMMARY_CSV).stat().st_mtime, reverse=True)]
