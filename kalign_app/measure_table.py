"""Any recorded measure across runs, as plain data: the per-epoch measures an EpochRecord holds and
what they are called, the settings runs can be set against, and one row per run and model with its
settings and every measure's value at its last recorded epoch (the table behind "final value against
a setting", and its CSV). No Streamlit or Plotly here."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import fields

from kalign_core.config import ExperimentConfig
from kalign_core.results import LINEAR_MEASURES, MEASURE_LABELS, MODEL_NAMES, ExperimentResult

# Every number an EpochRecord holds per epoch, in its own order.
EPOCH_MEASURES = tuple(MEASURE_LABELS)

NO_TWIN = "trained without the linearized twin"
SETTING_LABELS = {f.name: f.metadata["label"] for f in fields(ExperimentConfig)}
# Settings whose values span decades: a log axis where every value is positive.
LOG_SETTINGS = ("width", "slow_lr", "regular_lr", "lazy_scale")
OFF = "off"  # no lazy scale, or a switch that is off


def setting_value(config: ExperimentConfig, setting: str):
    """A run's `setting` as a table cell and a chart's x: a number, or words ("8, 9"; "off" for no
    lazy scale; "on" and "off" for a switch)."""
    value = getattr(config, setting)
    if setting == "digits":
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else OFF
    return OFF if value is None else value


def _finite(value) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def final_rows(results: Mapping[str, ExperimentResult]) -> list[dict]:
    """One row per run and model: run, model, the epoch of its last record (earlier than the run's
    when the model diverged), every setting, then every measure there (None where undefined or not
    finite, and in runs saved before kalign measured it)."""
    rows = []
    for run, result in results.items():
        for model in MODEL_NAMES:
            last = result.history[model][-1]
            rows.append(
                {
                    "run": run,
                    "model": model,
                    "epoch": last.epoch,
                    **{setting: setting_value(result.config, setting) for setting in SETTING_LABELS},
                    **{measure: _finite(getattr(last, measure)) for measure in EPOCH_MEASURES},
                }
            )
    return rows


def rows_csv(rows: list[dict]) -> str:
    """`final_rows` as CSV, its keys the header; undefined values are empty cells (floats keep every digit)."""
    out = io.StringIO()
    writer = csv.writer(out)
    if rows:
        writer.writerow(rows[0])
    for row in rows:
        writer.writerow(["" if value is None else value for value in row.values()])
    return out.getvalue()


def setting_axis(rows: list[dict], setting: str) -> str:
    """The x axis `setting` wants over `rows`: "category" where a value is words (digits,
    parametrization, a lazy scale that is off), "log" for a setting spanning decades whose values
    are all positive, else "linear"."""
    values = [row[setting] for row in rows]
    if any(isinstance(value, str) for value in values):
        return "category"
    return "log" if setting in LOG_SETTINGS and all(value > 0 for value in values) else "linear"


def lacking(results: Mapping[str, ExperimentResult], measure: str) -> dict[str, list[str]]:
    """Why models have no value of `measure` at any epoch → "run · model" of each: trained without
    the linearized twin (its measures), or saved before kalign measured it or undefined throughout."""
    absent: dict[str, list[str]] = {}
    for run, result in results.items():
        for model in MODEL_NAMES:
            if all(_finite(getattr(record, measure)) is None for record in result.history[model]):
                why = (
                    NO_TWIN
                    if measure in LINEAR_MEASURES and not result.config.linearized_twin
                    else "saved before kalign measured it, or undefined at every epoch"
                )
                absent.setdefault(why, []).append(f"{run} · {model}")
    return absent
