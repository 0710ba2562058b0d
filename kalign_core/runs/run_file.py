"""A run file (`.kalign`): one zip to download and upload back, with run.json and the kernels in
compact form, small enough for the upload limit at every setting `ExperimentConfig` accepts."""

from __future__ import annotations

import io
import zipfile

from ..results import MODEL_NAMES, ExperimentResult
from .kernels import KERNELS_NPZ, UNREADABLE, attach_kernels, check_compression, compact_kernels_npz
from .record import RUN_JSON, RunFileError, result_from_json, result_to_json

# A run file (what the Runs page downloads and uploads back) is at most this large for any run
# ExperimentConfig accepts: its compact kernels take a little over a quarter of MAX_KERNEL_BYTES,
# and with the target kernel (up to 4 MB) and run.json (up to 0.3 MB) a file takes 68 MB at most
# (probe size 993, 33 epochs). The page's upload limit and server.maxUploadSize in
# .streamlit/config.toml are the same (tests/app/test_run_files.py holds them together).
RUN_FILE_SUFFIX = ".kalign"
MAX_RUN_FILE_BYTES = 72 * 2**20
MAX_RUN_JSON_BYTES = 5 * 2**20


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
                check_compression(info)
                _check_size(info, limits[name])
            text = archive.read(RUN_JSON)
            kernels = archive.read(KERNELS_NPZ) if KERNELS_NPZ in members else None
    except RunFileError:
        raise
    except UNREADABLE as error:
        raise RunFileError(f"not a readable kalign run file: {error}") from None
    result = result_from_json(text)
    if kernels is not None:
        attach_kernels(result, kernels)
    return result


def _check_size(info: zipfile.ZipInfo, limit: int) -> None:
    if info.file_size > limit:
        raise RunFileError(
            f"{info.filename} unpacks to {info.file_size / 2**20:,.1f} MB; at most {limit / 2**20:,.0f} MB is allowed"
        )
