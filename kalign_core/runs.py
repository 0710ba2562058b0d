"""Runs on disk and as downloads: JSON for config and histories, `.npz` for kernels, `torch.save`d
state dicts for weights. Nothing is unpickled: `allow_pickle=False`, `weights_only=True`; every
array's shape and type is checked from its header before anything is unpacked.

A saved run is a folder written in full beside its final place and renamed into it, so a crash
leaves the old version or the new one, never half of each. A run file (`run_file`, `.kalign`) is
one zip to download and upload back: run.json and the kernels in compact form, small enough for
the upload limit at every setting `ExperimentConfig` accepts.
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
from typing import TYPE_CHECKING

import numpy as np

from .config import MAX_EPOCHS, MAX_KERNEL_BYTES, MAX_PROBE_SIZE, ExperimentConfig
from .files import sync_folder, write_durably
from .results import MEASURES, MODEL_NAMES, EpochRecord, ExperimentResult

if TYPE_CHECKING:
    from .model import MLP

FORMAT = "kalign-run"
VERSION = 1
RUN_JSON, KERNELS_NPZ, WEIGHTS_PT = "run.json", "kernels.npz", "weights.pt"
KERNEL_ARRAYS = ("target", "probe_labels", *MODEL_NAMES)
COMPACT_ARRAYS = (*KERNEL_ARRAYS, *(f"{name}_scale" for name in MODEL_NAMES))
# A run file (what the Runs page downloads and uploads back) is at most this large for any run
# ExperimentConfig accepts: its compact kernels take a little over a quarter of MAX_KERNEL_BYTES,
# and with the target kernel (up to 4 MB) and run.json (up to 0.3 MB) a file takes 68 MB at most
# (probe size 993, 33 epochs). The page's upload limit and server.maxUploadSize in
# .streamlit/config.toml are the same (tests/test_run_files.py holds them together).
RUN_FILE_SUFFIX = ".kalign"
MAX_RUN_FILE_BYTES = 72 * 2**20
MAX_RUN_JSON_BYTES = 5 * 2**20
# What a damaged zip or .npz raises while being read.
_UNREADABLE = (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)
_RECORD_FIELDS = list(EpochRecord.__dataclass_fields__)
# Fields that runs saved before kalign measured lazy vs rich lack (they load as None).
_LATER_RECORD_FIELDS = {*MEASURES, "measure_note"}


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
    for field in ("loss", "alignment", *MEASURES):  # null: a non-finite loss, or a measure undefined
        value = getattr(record, field)
        if value is not None and not _is_number(value):
            raise ValueError(f"{field} must be a finite number or null (got {value!r})")
    for field in ("alignment_note", "measure_note"):
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


def kernels_to_npz(result: ExperimentResult, compressed: bool = True) -> bytes:
    """Target kernel, probe labels and each model's kernels stacked over epochs (E+1, m, m), float32
    (with `{name}_epochs` where the result holds some epochs' only)."""
    m = len(result.probe_labels)
    arrays = {"target": result.target_kernel, "probe_labels": result.probe_labels}
    for name in MODEL_NAMES:
        stack = result.kernels[name]
        arrays[name] = np.stack(stack) if stack else np.zeros((0, m, m), np.float32)
    arrays.update(kernel_epoch_arrays(result))
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def kernel_epoch_arrays(result: ExperimentResult) -> dict[str, np.ndarray]:
    """`{name}_epochs`, which epochs each model's stacked kernels are, for a result that does not
    hold every epoch's (a lean sweep trial); nothing for one that does."""
    return {f"{name}_epochs": np.array(epochs, np.int64) for name, epochs in result.kernel_epochs.items()}


def _triangle_size(m: int) -> int:
    return m * (m + 1) // 2


def compact_kernels_npz(result: ExperimentResult) -> bytes:
    """The kernels as a run file holds them, a quarter of their size: each (symmetric) kernel as its
    upper triangle in float16, divided by its largest finite |entry| (kept as `{name}_scale`, so
    that no kernel overflows float16's range, and each keeps 11 significant bits). Target and labels
    stay exact. Stored without compression: deflate saves only about 10 % on these kernels."""
    m = len(result.probe_labels)
    rows, cols = np.triu_indices(m)
    arrays = {"target": result.target_kernel, "probe_labels": result.probe_labels}
    for name in MODEL_NAMES:
        kernels = result.kernels[name]
        packed, scales = np.empty((len(kernels), len(rows)), np.float16), np.ones(len(kernels), np.float32)
        for epoch, kernel in enumerate(kernels):  # one kernel at a time: little memory beside the result
            triangle = kernel[rows, cols]
            finite = np.abs(triangle[np.isfinite(triangle)])
            if finite.size and finite.max() > 0:  # else all zero or undefined: scale 1
                scales[epoch] = finite.max()
            packed[epoch] = triangle / scales[epoch]
        arrays[name], arrays[f"{name}_scale"] = packed, scales
    arrays.update(kernel_epoch_arrays(result))
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def run_file(result: ExperimentResult) -> bytes:
    """One self-contained file (a zip with the extension RUN_FILE_SUFFIX): run.json and the kernels
    in compact form; at most MAX_RUN_FILE_BYTES for any run `ExperimentConfig` accepts."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(RUN_JSON, result_to_json(result), compress_type=zipfile.ZIP_DEFLATED)
        if result.kernels[MODEL_NAMES[0]]:
            archive.writestr(KERNELS_NPZ, compact_kernels_npz(result))
    return out.getvalue()


def read_run_file(data: bytes) -> ExperimentResult:
    """The run in `run_file` output; RunFileError says what is wrong with anything else. Each part's
    size is checked from the zip's directory before it is read (and the zip reader stops there)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            limits = {RUN_JSON: MAX_RUN_JSON_BYTES, KERNELS_NPZ: MAX_RUN_FILE_BYTES}
            if RUN_JSON not in members or set(members) - set(limits):
                raise RunFileError(
                    f"not a kalign run file: it must hold {RUN_JSON} and optionally {KERNELS_NPZ}, "
                    f"nothing else (it holds {', '.join(sorted(members)) or 'nothing'})"
                )
            for name, info in members.items():
                _check_compression(info)
                _check_size(info, limits[name])
            text = archive.read(RUN_JSON)
            kernels = archive.read(KERNELS_NPZ) if KERNELS_NPZ in members else None
    except RunFileError:
        raise
    except _UNREADABLE as error:
        raise RunFileError(f"not a readable kalign run file: {error}") from None
    result = result_from_json(text)
    if kernels is not None:
        attach_kernels(result, kernels)
    return result


def _check_compression(info: zipfile.ZipInfo) -> None:
    """Only stored or deflated zip members: zipfile unpacks those a bounded chunk at a time (bzip2
    and lzma chunks may unpack to any size)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise RunFileError(f"{info.filename} is compressed in a way kalign does not read; only zip's deflate is")


def _check_size(info: zipfile.ZipInfo, limit: int) -> None:
    if info.file_size > limit:
        raise RunFileError(
            f"{info.filename} unpacks to {info.file_size / 2**20:,.1f} MB; at most {limit / 2**20:,.0f} MB is allowed"
        )


def _npz_headers(source) -> dict[str, tuple[tuple, np.dtype]]:
    """Shape and dtype of each array in an .npz from its header alone, so that a small compressed
    upload claiming gigabytes is refused before anything is decompressed."""
    headers = {}
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            _check_compression(info)
            with archive.open(info) as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
            headers[info.filename.removesuffix(".npy")] = (shape, dtype)
    return headers


def attach_kernels(result: ExperimentResult, npz) -> None:
    """Fill `result`'s kernels from `kernels_to_npz` or `compact_kernels_npz` output (bytes or a
    path), checking every array's shape and type from the headers before anything is unpacked."""
    source = (lambda: io.BytesIO(npz)) if isinstance(npz, (bytes, bytearray)) else (lambda: npz)
    try:
        headers = _npz_headers(source())
    except RunFileError:
        raise
    except _UNREADABLE as error:
        raise RunFileError(f"kernel file is not a readable .npz: {error}") from None
    compact = f"{MODEL_NAMES[0]}_scale" in headers
    keys = COMPACT_ARRAYS if compact else KERNEL_ARRAYS
    epoch_keys = [f"{name}_epochs" for name in MODEL_NAMES]
    if any(key in headers for key in epoch_keys):
        keys = (*keys, *epoch_keys)  # the kernels of some epochs only (a lean sweep trial)
    missing = [key for key in keys if key not in headers]
    if missing:
        raise RunFileError(f"kernel file lacks the array(s) {', '.join(missing)}")
    for key in keys:
        if headers[key][1].hasobject:
            raise RunFileError(f"kernel file: {key} holds Python objects, which kalign never loads")
    m = _probe_points(headers)
    if compact:
        _check_compact_types(headers)
    for key, want in _wanted_shapes(result, m, compact, headers).items():
        if headers[key][0] != want:
            raise RunFileError(f"kernel file: {key} must have shape {want} (got {headers[key][0]})")
    if m > MAX_PROBE_SIZE:
        raise RunFileError(f"kernel file: at most {MAX_PROBE_SIZE} probe points are allowed (got {m})")
    # What the kernels take in memory once unpacked, as float32 m×m matrices (as training keeps them).
    snapshots = sum(headers[name][0][0] for name in MODEL_NAMES)
    unpacked = snapshots * m * m * max(4, *(headers[name][1].itemsize for name in MODEL_NAMES))
    if unpacked > MAX_KERNEL_BYTES:
        raise RunFileError(
            f"kernel file unpacks to {unpacked / 2**20:,.0f} MB; at most {MAX_KERNEL_BYTES / 2**20:,.0f} MB is allowed"
        )
    try:
        with np.load(source(), allow_pickle=False) as f:
            arrays = {key: f[key] for key in keys}
    except _UNREADABLE as error:
        raise RunFileError(f"kernel file is not a readable .npz: {error}") from None
    kernel_epochs = _kernel_epochs_from(arrays, result)
    labels, k = arrays["probe_labels"], len(result.config.digits)
    if labels.min() < 0 or labels.max() >= k or np.any(np.diff(labels) < 0):
        raise RunFileError(f"kernel file: probe labels must be classes 0 to {k - 1}, sorted (one per digit)")
    if compact:
        kernels = {name: _expand(arrays[name], arrays[f"{name}_scale"], m) for name in MODEL_NAMES}
    else:
        kernels = {name: list(arrays[name].astype(np.float32)) for name in MODEL_NAMES}
    result.target_kernel = arrays["target"].astype(np.float32)
    result.probe_labels = labels.astype(np.int64)
    result.kernels = kernels
    result.kernel_epochs = kernel_epochs


def _probe_points(headers) -> int:
    """The number of probe points, from the labels' header."""
    labels_shape, labels_dtype = headers["probe_labels"]
    if len(labels_shape) != 1 or labels_dtype.kind not in "iu":
        raise RunFileError(
            f"kernel file: probe labels must be one list of whole class numbers (got {labels_dtype} {labels_shape})"
        )
    if labels_shape[0] < 1:
        raise RunFileError("kernel file: probe labels are empty; a run has at least one probe point")
    return labels_shape[0]


def _wanted_shapes(result: ExperimentResult, m: int, compact: bool, headers) -> dict[str, tuple]:
    """Each array's shape: one kernel per epoch of each model's history (or per epoch its
    `{name}_epochs` names), as an m×m matrix or, in a compact file, as an upper triangle with a scale."""
    epochs = {name: len(result.history[name]) for name in MODEL_NAMES}
    if f"{MODEL_NAMES[0]}_epochs" in headers:
        epochs = {name: _one_dimension(headers, f"{name}_epochs") for name in MODEL_NAMES}
    if not compact:
        return {"target": (m, m), **{name: (n, m, m) for name, n in epochs.items()}}
    return {
        "target": (m, m),
        **{name: (n, _triangle_size(m)) for name, n in epochs.items()},
        **{f"{name}_scale": (n,) for name, n in epochs.items()},
    }


def _one_dimension(headers, key: str) -> int:
    shape, dtype = headers[key]
    if len(shape) != 1 or dtype.kind not in "iu":
        raise RunFileError(f"kernel file: {key} must be one list of whole epoch numbers (got {dtype} {shape})")
    return shape[0]


def _kernel_epochs_from(arrays: dict, result: ExperimentResult) -> dict[str, list[int]]:
    """The epochs a file with `{name}_epochs` holds, checked: recorded epochs, rising, from 0."""
    if f"{MODEL_NAMES[0]}_epochs" not in arrays:
        return {}
    kept = {}
    for name in MODEL_NAMES:
        epochs = [int(e) for e in arrays[f"{name}_epochs"]]
        recorded = len(result.history[name])
        if not epochs or epochs[0] != 0 or epochs[-1] >= recorded or any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise RunFileError(
                f"kernel file: {name}_epochs must rise from 0 and name epochs the run recorded (0 to {recorded - 1})"
            )
        kept[name] = epochs
    return kept


def _check_compact_types(headers) -> None:
    for key in (*MODEL_NAMES, *(f"{name}_scale" for name in MODEL_NAMES)):
        dtype = headers[key][1]
        if dtype.kind != "f" or dtype.itemsize > 4:
            raise RunFileError(f"kernel file: {key} must hold float16 or float32 numbers (got {dtype})")


def _expand(triangles: np.ndarray, scales: np.ndarray, m: int) -> list[np.ndarray]:
    """One model's m×m float32 kernels from their scaled upper triangles."""
    rows, cols = np.triu_indices(m)
    kernels = []
    for triangle, scale in zip(triangles, scales.astype(np.float32)):
        kernel = np.empty((m, m), np.float32)
        kernel[rows, cols] = kernel[cols, rows] = triangle.astype(np.float32) * scale
        kernels.append(kernel)
    return kernels


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
    """Write the run into `folder` atomically (replacing an earlier version); returns the folder.

    The folder keeps every epoch's kernels in full float32, so `load_run` gives back exactly what
    training computed: saved runs and sweep trials are for analysis, and a disk has room. A run
    file's compact kernels are 3.5 times smaller and quicker to write, but rounded to float16.
    Measured (2 shared cores), 300 epochs, 3 digits, width 256, probe 200: this folder 82 MB, saved
    in 3.0 s and loaded in 0.6 to 1.0 s; its run file 23 MB, written in 0.3 s and read in 0.3 s."""
    return write_run_folder(run_files(result), folder)


def run_files(result: ExperimentResult) -> dict[str, bytes]:
    """The files of a saved run, by name: run.json, the kernels and (when the result has models)
    the weights."""
    files = {RUN_JSON: result_to_json(result).encode(), KERNELS_NPZ: kernels_to_npz(result)}
    if result.models:
        import torch

        weights = {
            name: {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            for name, model in result.models.items()
        }
        buffer = io.BytesIO()
        torch.save(weights, buffer)
        files[WEIGHTS_PT] = buffer.getvalue()
    return files


def write_run_folder(files: dict[str, bytes], folder) -> pathlib.Path:
    """Write `files` (e.g. `run_files` output) as the run folder `folder` atomically, replacing an
    earlier version; returns the folder."""
    folder = pathlib.Path(folder)
    check_run_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
    try:
        for name, data in files.items():  # in a private folder: plain writes, one rename below
            write_durably(staging / name, data)
        sync_folder(staging)
        retired = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(folder, retired)
        os.replace(staging, folder)
        sync_folder(folder.parent)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def saved_runs(folder) -> tuple[dict, dict]:
    """(name -> result without kernels, name -> why it cannot be read) for the runs in `folder`."""
    folder, found, broken = pathlib.Path(folder), {}, {}
    if not folder.is_dir():
        return found, broken
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            found[path.name] = result_from_json((path / RUN_JSON).read_bytes())
        except (OSError, RunFileError) as error:
            broken[path.name] = str(error)
    return found, broken


def load_run(folder) -> ExperimentResult:
    """Read a run written by `save_run` (or a lean sweep trial, which keeps some epochs' kernels:
    `kernel_epochs` says which); models are rebuilt when weights were saved."""
    folder = pathlib.Path(folder)
    retired = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and retired.exists():
        os.replace(retired, folder)  # a save crashed between its two renames: keep the old version
    if not (folder / RUN_JSON).is_file():
        raise RunFileError(f"{folder} is not a saved kalign run (no {RUN_JSON})")
    result = result_from_json((folder / RUN_JSON).read_bytes())
    attach_kernels(result, folder / KERNELS_NPZ)
    if (folder / WEIGHTS_PT).is_file():
        import torch  # only here: listing and reading runs does not need it

        try:
            weights = torch.load(folder / WEIGHTS_PT, map_location="cpu", weights_only=True)
            result.models = {name: _model_from_state(weights[name], result) for name in MODEL_NAMES}
        except Exception as error:
            raise RunFileError(f"weights in {folder} are unreadable: {error}") from None
    return result


def _model_from_state(state: dict, result: ExperimentResult) -> MLP:
    from .model import MLP

    model = MLP(result.config.width, len(result.config.digits), state["features.0.weight"].shape[1])
    model.load_state_dict(state)
    return model.eval()
