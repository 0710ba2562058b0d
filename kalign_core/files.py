"""Writing files so that a crash or a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets


def write_atomically(path, data: bytes | str) -> pathlib.Path:
    """Write `data` (str as UTF-8) to `path` so that readers see the old file or the new one, never a
    part, and the new one survives a power cut once this returns: a temporary file beside it, flushed
    to disk, renamed over `path`, then the folder's entry flushed too. Returns the path."""
    path = pathlib.Path(path)
    # Opened like any new file (not mkstemp's owner-only mode), under a name no one else uses.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_durably(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    sync_folder(path.parent)
    return path


def write_durably(path, data: bytes | str) -> None:
    """Write `data` (str as UTF-8) to the new file `path` and flush it to disk. Atomic only inside a
    private folder that is renamed into place afterwards (see runs.write_run_folder)."""
    with open(path, "xb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


def sync_folder(folder) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
