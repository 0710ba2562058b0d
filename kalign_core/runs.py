"""Runs on disk and as downloads: JSON for config and histories, `.npz` for kernels, `torch.save`d
state dicts for weights. Nothing is unpickled: `allow_pickle=False`, `weights_only=True`.

A saved run is a folder written in full beside its final place and renamed into it, so a crash
leaves the old version or the new one, never half of each.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
import shutil
import tempfile
import zipfile
import zlib

import numpy as np
import torch

from .config import MAX_EPOCHS, MAX_KERNEL_BYTES, MAX_PROBE_SIZE, ExperimentConfig
from .model import MLP
from .training import MODEL_NAMES, EpochRecord, ExperimentResult

FORMAT = "kalign-run"
VERSION = 1
RUN_JSON, KERNELS_NPZ, WEIGHTS_PT = "run.json", "kernels.npz", "weights.pt"
KERNEL_ARRAYS = ("target", "probe_labels", *MODEL_NAMES)
_RECORD_FIELDS = list(EpochRecord.__dataclass_fields__)


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
            "history": {
                name: [_finite_record(record) for record in result.history[name]] for name in MODEL_NAMES
            },
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
        raise RunFileError(f"not a kalign run: expected a JSON object with \"format\": \"{FORMAT}\"")
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


def _optional_int(value, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{name} must be an epoch number or null (got {value!r})")


def _record_from_dict(d) -> EpochRecord:
    if not isinstance(d, dict) or set(d) != set(_RECORD_FIELDS):
        raise ValueError(f"each history entry needs exactly the fields {', '.join(_RECORD_FIELDS)}")
    record = EpochRecord(**d)
    if not _is_number(record.epoch, whole=True) or not 0 <= record.epoch <= MAX_EPOCHS:
        raise ValueError(f"epoch must be a whole number from 0 to {MAX_EPOCHS} (got {record.epoch!r})")
    for field in ("train_error", "test_error", "seconds"):
        if not _is_number(getattr(record, field)):
            raise ValueError(f"{field} must be a finite number (got {getattr(record, field)!r})")
    for field in ("loss", "alignment"):  # null: a non-finite loss, or alignment undefined
        value = getattr(record, field)
        if value is not None and not _is_number(value):
            raise ValueError(f"{field} must be a finite number or null (got {value!r})")
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


def kernels_to_npz(result: ExperimentResult) -> bytes:
    """Target kernel, probe labels and each model's kernels stacked over epochs (E+1, m, m)."""
    m = len(result.probe_labels)
    arrays = {"target": result.target_kernel, "probe_labels": result.probe_labels}
    for name in MODEL_NAMES:
        stack = result.kernels[name]
        arrays[name] = np.stack(stack) if stack else np.zeros((0, m, m), np.float32)
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


def _npz_headers(source) -> dict[str, tuple[tuple, np.dtype]]:
    """Shape and dtype of each array in an .npz from its header alone, so that a small compressed
    upload claiming gigabytes is refused before anything is decompressed."""
    headers = {}
    with zipfile.ZipFile(source) as archive:
        for member in archive.namelist():
            with archive.open(member) as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
            headers[member.removesuffix(".npy")] = (shape, dtype)
    return headers


def attach_kernels(result: ExperimentResult, npz) -> None:
    """Fill `result`'s kernels from `kernels_to_npz` output (bytes or a path), checking shapes."""
    source = (lambda: io.BytesIO(npz)) if isinstance(npz, (bytes, bytearray)) else (lambda: npz)
    try:
        headers = _npz_headers(source())
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise RunFileError(f"kernel file is not a readable .npz: {error}") from None
    missing = [key for key in KERNEL_ARRAYS if key not in headers]
    if missing:
        raise RunFileError(f"kernel file lacks the array(s) {', '.join(missing)}")
    for key in KERNEL_ARRAYS:
        if headers[key][1].hasobject:
            raise RunFileError(f"kernel file: {key} holds Python objects, which kalign never loads")
    labels_shape, labels_dtype = headers["probe_labels"]
    if len(labels_shape) != 1 or labels_dtype.kind not in "iu":
        raise RunFileError(
            f"kernel file: probe labels must be one list of whole class numbers (got {labels_dtype} {labels_shape})"
        )
    m = labels_shape[0]
    if m < 1:
        raise RunFileError("kernel file: probe labels are empty; a run has at least one probe point")
    wanted = {"target": (m, m), **{name: (len(result.history[name]), m, m) for name in MODEL_NAMES}}
    for key, want in wanted.items():
        if headers[key][0] != want:
            raise RunFileError(f"kernel file: {key} must have shape {want} (got {headers[key][0]})")
    if m > MAX_PROBE_SIZE:
        raise RunFileError(f"kernel file: at most {MAX_PROBE_SIZE} probe points are allowed (got {m})")
    unpacked = sum(math.prod(shape) * dtype.itemsize for key, (shape, dtype) in headers.items() if key in KERNEL_ARRAYS)
    if unpacked > MAX_KERNEL_BYTES:
        raise RunFileError(
            f"kernel file unpacks to {unpacked / 2**20:,.0f} MB; at most {MAX_KERNEL_BYTES / 2**20:,.0f} MB is allowed"
        )
    try:
        with np.load(source(), allow_pickle=False) as f:
            arrays = {key: f[key] for key in KERNEL_ARRAYS}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise RunFileError(f"kernel file is not a readable .npz: {error}") from None
    labels, k = arrays["probe_labels"], len(result.config.digits)
    if labels.min() < 0 or labels.max() >= k or np.any(np.diff(labels) < 0):
        raise RunFileError(f"kernel file: probe labels must be classes 0 to {k - 1}, sorted (one per digit)")
    result.target_kernel = arrays["target"].astype(np.float32)
    result.probe_labels = arrays["probe_labels"].astype(np.int64)
    result.kernels = {name: list(arrays[name].astype(np.float32)) for name in MODEL_NAMES}


def check_run_target(folder) -> None:
    """A run may be saved at `folder` only when nothing is there or an earlier run is: never over
    someone's other files."""
    folder = pathlib.Path(folder)
    if folder.exists() and not (folder.is_dir() and (folder / RUN_JSON).is_file()):
        raise RunFileError(f"{folder} exists and is not a saved kalign run; choose a new folder")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RunFileError(f"cannot save into {folder}: {parent} is a file, not a folder")


def save_run(result: ExperimentResult, folder) -> pathlib.Path:
    """Write the run into `folder` atomically (replacing an earlier version); returns the folder."""
    folder = pathlib.Path(folder)
    check_run_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
    try:
        (staging / RUN_JSON).write_text(result_to_json(result))
        (staging / KERNELS_NPZ).write_bytes(kernels_to_npz(result))
        if result.models:
            weights = {
                name: {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                for name, model in result.models.items()
            }
            torch.save(weights, staging / WEIGHTS_PT)
        for path in staging.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        retired = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(folder, retired)
        os.replace(staging, folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_run(folder) -> ExperimentResult:
    """Read a run written by `save_run`; models are rebuilt when weights were saved."""
    folder = pathlib.Path(folder)
    retired = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and retired.exists():
        os.replace(retired, folder)  # a save crashed between its two renames: keep the old version
    if not (folder / RUN_JSON).is_file():
        raise RunFileError(f"{folder} is not a saved kalign run (no {RUN_JSON})")
    result = result_from_json((folder / RUN_JSON).read_bytes())
    attach_kernels(result, folder / KERNELS_NPZ)
    if (folder / WEIGHTS_PT).is_file():
        try:
            weights = torch.load(folder / WEIGHTS_PT, map_location="cpu", weights_only=True)
            result.models = {name: _model_from_state(weights[name], result) for name in MODEL_NAMES}
        except Exception as error:
            raise RunFileError(f"weights in {folder} are unreadable: {error}") from None
    return result


def _model_from_state(state: dict, result: ExperimentResult) -> MLP:
    model = MLP(result.config.width, len(result.config.digits), state["features.0.weight"].shape[1])
    model.load_state_dict(state)
    return model.eval()
