"""run.json: a run's config, histories and status as JSON (NaN and inf as null), read back with
every field checked, and its histories as CSV. Every reader of runs raises `RunFileError`."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from ..config import MAX_EPOCHS, ExperimentConfig
from ..results import (
    COORDINATE_KEYS,
    COORDINATES,
    LINEAR_MEASURES,
    MEASURES,
    MODEL_NAMES,
    EpochRecord,
    ExperimentResult,
)

FORMAT = "kalign-run"
VERSION = 1
RUN_JSON = "run.json"
_RECORD_FIELDS = list(EpochRecord.__dataclass_fields__)
# Fields that runs saved before kalign measured lazy vs rich, or trained a linearized twin, lack
# (they load as None).
_LATER_RECORD_FIELDS = {*MEASURES, "measure_note", *LINEAR_MEASURES, "linear_note"}


class RunFileError(ValueError):
    """A run file or folder that is not a valid kalign run; the message says what is wrong."""


def result_to_json(result: ExperimentResult) -> str:
    """Config, histories and status as JSON (NaN and inf are written as null)."""
    return json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "config": result.config.to_dict(),
            "source": result.source,
            "source_note": result.source_note,
            "device": result.device,
            "stopped": result.stopped,
            "seconds": result.seconds,
            "diverged_at": result.diverged_at,
            "provenance": result.provenance,
            "kernel_machine_errors": result.kernel_machine_errors,
            "alignment_null": result.alignment_null,
            "coordinate_sizes": result.coordinate_sizes,
            "infinite_width": result.infinite_width,
            "history": {name: [_finite_record(record) for record in result.history[name]] for name in MODEL_NAMES},
        },
        indent=1,
    )


def _finite_record(record: EpochRecord) -> dict:
    return {
        key: (None if isinstance(value, float) and not math.isfinite(value) else value)
        for key, value in record.__dict__.items()
    }


def result_from_json(text: str | bytes) -> ExperimentResult:
    """Rebuild a result (without kernels or models) from `result_to_json`'s output."""
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(f"run file is not valid JSON: {error}") from None
    except RecursionError:
        raise RunFileError("run file is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RunFileError(f'not a kalign run: expected a JSON object with "format": "{FORMAT}"')
    if doc.get("version") != VERSION:
        raise RunFileError(f"unsupported run version {doc.get('version')!r} (this kalign reads {VERSION})")
    try:
        config = ExperimentConfig.from_dict(doc["config"])
        history = {name: [_record_from_dict(r) for r in doc["history"][name]] for name in MODEL_NAMES}
        diverged = {name: _optional_int(doc["diverged_at"][name], "diverged_at") for name in MODEL_NAMES}
        if not isinstance(doc["stopped"], bool):
            raise ValueError(f"stopped must be true or false (got {doc['stopped']!r})")
        result = ExperimentResult(
            config=config,
            source=str(doc["source"]),
            source_note=str(doc.get("source_note", "")),
            device=str(doc["device"]),
            history=history,
            kernels={name: [] for name in MODEL_NAMES},
            target_kernel=np.zeros((0, 0), np.float32),
            probe_labels=np.zeros(0, np.int64),
            diverged_at=diverged,
            stopped=doc["stopped"],
            seconds=float(doc["seconds"]),
            provenance=_provenance_from(doc.get("provenance", {})),
            kernel_machine_errors=_machine_errors_from(doc.get("kernel_machine_errors", {})),
            alignment_null=_null_from(doc.get("alignment_null", {})),
            coordinate_sizes=_coordinate_sizes_from(doc.get("coordinate_sizes", {})),
            infinite_width=_infinite_width_from(doc.get("infinite_width", {})),
        )
    except KeyError as missing:
        raise RunFileError(f"run file lacks the field {missing}") from None
    except (TypeError, ValueError) as error:
        raise RunFileError(f"run file has a wrong value: {error}") from None
    for name, records in history.items():
        if not 1 <= len(records) <= config.epochs + 1:
            raise RunFileError(
                f"run file: the {name} history must have 1 to {config.epochs + 1} entries, one per epoch "
                f"from 0 (got {len(records)})"
            )
    return result


def _provenance_from(value) -> dict:
    """Provenance as saved: names with text or numbers (runs saved before it was recorded have none)."""
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError(f"provenance must map names to text or numbers (got {value!r:.80})")
    return dict(value)


def _machine_errors_from(value) -> dict:
    """kernel_machine_errors as saved: model → init/final → feature/tangent → error % or null
    (runs saved before kalign measured them have none)."""

    def valid(errors):
        return (
            isinstance(errors, dict)
            and set(errors) == {"feature", "tangent"}
            and all(e is None or (_is_number(e) and 0 <= e <= 100) for e in errors.values())
        )

    if (
        not isinstance(value, dict)
        or not set(value) <= set(MODEL_NAMES)
        or not all(
            isinstance(by_time, dict) and set(by_time) <= {"init", "final"} and all(map(valid, by_time.values()))
            for by_time in value.values()
        )
    ):
        raise ValueError(
            f"kernel_machine_errors must map each model to init/final feature and tangent errors "
            f"in % (got {value!r:.80})"
        )
    return value


def _null_from(value) -> dict:
    """alignment_null as saved: feature/tangent → [low, high] (older runs have none)."""
    if (
        not isinstance(value, dict)
        or not set(value) <= {"feature", "tangent"}
        or not all(
            isinstance(band, list) and len(band) == 2 and all(map(_is_number, band)) and band[0] <= band[1]
            for band in value.values()
        )
    ):
        raise ValueError(f"alignment_null must map feature/tangent to [low, high] (got {value!r:.80})")
    return {kind: tuple(band) for kind, band in value.items()}


def _coordinate_sizes_from(value) -> dict:
    """coordinate_sizes as saved: init/slow/regular/<model>_step<t> → mean_abs_hidden/mean_abs_output →
    a size or null (runs other than sweep trials, and trials saved before kalign measured them, have none)."""
    if (
        not isinstance(value, dict)
        or not set(value) <= set(COORDINATE_KEYS)
        or not all(
            isinstance(sizes, dict)
            and set(sizes) == set(COORDINATES)
            and all(v is None or (_is_number(v) and v >= 0) for v in sizes.values())
            for sizes in value.values()
        )
    ):
        raise ValueError(
            f"coordinate_sizes must map {', '.join(COORDINATE_KEYS)} to {' and '.join(COORDINATES)} sizes "
            f"(got {value!r:.80})"
        )
    return value


def _infinite_width_from(value) -> dict:
    """infinite_width as saved: alignment/distance/machine → a number or null, note → text or null
    (runs saved before kalign measured it have none)."""
    numbers = {"alignment": (-1, 1), "distance": (0, 2), "machine": (0, 100)}
    if (
        not isinstance(value, dict)
        or not set(value) <= {*numbers, "note"}
        or not all(
            value.get(name) is None or (_is_number(value[name]) and low <= value[name] <= high)
            for name, (low, high) in numbers.items()
        )
        or not (value.get("note") is None or isinstance(value["note"], str))
    ):
        raise ValueError(
            "infinite_width must map alignment, distance and machine to numbers or null and note to text "
            f"(got {value!r:.80})"
        )
    return value


def _optional_int(value, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{name} must be an epoch number or null (got {value!r})")


def _record_from_dict(d) -> EpochRecord:
    required = set(_RECORD_FIELDS) - _LATER_RECORD_FIELDS
    if not isinstance(d, dict) or not required <= set(d) <= set(_RECORD_FIELDS):
        raise ValueError(
            f"each history entry needs exactly the fields {', '.join(_RECORD_FIELDS)} "
            f"(runs saved by earlier versions lack {', '.join(sorted(_LATER_RECORD_FIELDS))})"
        )
    record = EpochRecord(**d)
    if not _is_number(record.epoch, whole=True) or not 0 <= record.epoch <= MAX_EPOCHS:
        raise ValueError(f"epoch must be a whole number from 0 to {MAX_EPOCHS} (got {record.epoch!r})")
    for field in ("train_error", "test_error", "seconds"):
        if not _is_number(getattr(record, field)):
            raise ValueError(f"{field} must be a finite number (got {getattr(record, field)!r})")
    for field in ("loss", "alignment", *MEASURES, *LINEAR_MEASURES):  # null: a non-finite loss, or a measure undefined
        value = getattr(record, field)
        if value is not None and not _is_number(value):
            raise ValueError(f"{field} must be a finite number or null (got {value!r})")
    for field in ("alignment_note", "measure_note", "linear_note"):
        value = getattr(record, field)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{field} must be text or null (got {value!r:.80})")
    return record


def _is_number(value, whole: bool = False) -> bool:
    kinds = (int,) if whole else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


def history_csv(result: ExperimentResult) -> str:
    """One row per model and epoch."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", *_RECORD_FIELDS])
    for name in MODEL_NAMES:
        for record in result.history[name]:
            writer.writerow([name, *(getattr(record, f) for f in _RECORD_FIELDS)])
    return out.getvalue()
