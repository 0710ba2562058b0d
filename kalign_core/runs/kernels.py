"""A run's kernels as `.npz`: every epoch in float32 (a saved run), or compact (a run file: upper
triangles in float16 with a scale each). Nothing is unpickled (`allow_pickle=False`), and every
array's shape and type is checked from its header before anything is unpacked."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np

from ..config import MAX_KERNEL_BYTES, MAX_PROBE_SIZE
from ..results import MODEL_NAMES, ExperimentResult
from .record import RunFileError

KERNELS_NPZ = "kernels.npz"
KERNEL_ARRAYS = ("target", "probe_labels", *MODEL_NAMES)
COMPACT_ARRAYS = (*KERNEL_ARRAYS, *(f"{name}_scale" for name in MODEL_NAMES))
# What a damaged zip or .npz raises while being read.
UNREADABLE = (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


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


def check_compression(info: zipfile.ZipInfo) -> None:
    """Only stored or deflated zip members: zipfile unpacks those a bounded chunk at a time (bzip2
    and lzma chunks may unpack to any size)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise RunFileError(f"{info.filename} is compressed in a way kalign does not read; only zip's deflate is")


def _npz_headers(source) -> dict[str, tuple[tuple, np.dtype]]:
    """Shape and dtype of each array in an .npz from its header alone, so that a small compressed
    upload claiming gigabytes is refused before anything is decompressed."""
    headers = {}
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            check_compression(info)
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
    except UNREADABLE as error:
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
    except UNREADABLE as error:
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
