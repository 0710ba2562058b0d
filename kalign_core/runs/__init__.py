"""Runs on disk and as downloads: `record` (run.json), `kernels` (.npz), `run_file` (the .kalign
zip), `folders` (saved runs) and `lean` (what a sweep trial keeps). The names below are what
callers use; `from kalign_core.runs import save_run` needs no knowledge of the module that holds it."""

from .folders import WEIGHTS_PT, check_run_target, load_run, run_files, save_run, saved_runs, write_run_folder
from .kernels import KERNELS_NPZ, attach_kernels, compact_kernels_npz, kernel_epoch_arrays, kernels_to_npz
from .record import RUN_JSON, RunFileError, history_csv, result_from_json, result_to_json
from .run_file import MAX_RUN_FILE_BYTES, MAX_RUN_JSON_BYTES, RUN_FILE_SUFFIX, read_run_file, run_file

__all__ = [
    "KERNELS_NPZ",
    "MAX_RUN_FILE_BYTES",
    "MAX_RUN_JSON_BYTES",
    "RUN_FILE_SUFFIX",
    "RUN_JSON",
    "WEIGHTS_PT",
    "RunFileError",
    "attach_kernels",
    "check_run_target",
    "compact_kernels_npz",
    "history_csv",
    "kernel_epoch_arrays",
    "kernels_to_npz",
    "load_run",
    "read_run_file",
    "result_from_json",
    "result_to_json",
    "run_file",
    "run_files",
    "save_run",
    "saved_runs",
    "write_run_folder",
]
