"""Damaged run files, for the tests of every reader of runs (the library's and the Runs page's)."""

import io

import numpy as np


def npz_replacing(npz, **replace) -> bytes:
    """The .npz `npz` (a path or file) with arrays replaced (None: left out)."""
    with np.load(npz, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    for key, value in replace.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()
