"""Digits for the experiment: full MNIST through torchvision, or the real 5,000-digit sample shipped
in the package for offline machines. Returns plain arrays; training moves them to its device."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from .config import check_digits
from .files import sync_folder, write_atomically
from .text import clock

SAMPLE_PATH = pathlib.Path(__file__).parent / "data" / "mnist_sample.npz"
SAMPLE_TEST_PER_CLASS = 100
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CHECKSUMS = "kalign-sha256.json"
# Digits per class in MNIST's fixed training and test sets (torchvision's files, checked by checksum).
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
DOWNLOAD_TIMEOUT_S = 5.0
# After a failed download, "auto" does not try the network again for this long.
DOWNLOAD_RETRY_AFTER_S = 600.0

_download_lock = threading.Lock()
_last_failed_download = -float("inf")
_last_failure_words = "the download failed"

log = logging.getLogger("kalign.data")


@dataclass(frozen=True)
class DigitData:
    """Images as N×784 float32 in [0, 1]; labels as class indices 0..k-1 in the order of `digits`."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    digits: tuple[int, ...]
    source: str = "custom"
    # Why "auto" fell back to the sample, for the user; empty otherwise.
    note: str = ""

    def __post_init__(self) -> None:
        k = len(self.digits)
        for x, y, split in ((self.train_x, self.train_y, "train"), (self.test_x, self.test_y, "test")):
            if x.ndim != 2 or x.shape[0] != y.shape[0]:
                raise ValueError(f"{split}_x must be N×features with one label per row (got {x.shape} and {y.shape})")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"{split}_y must hold class indices 0..{k - 1} for {k} digits")
        if self.train_x.shape[1] != self.test_x.shape[1]:
            raise ValueError("train_x and test_x must have the same number of features")

    @property
    def n_classes(self) -> int:
        return len(self.digits)


NOT_HERE = "full MNIST is not on this machine yet"
PARTIAL = "the copy of full MNIST on this machine is partial (an interrupted download)"
DAMAGED = "the copy of full MNIST on this machine is corrupt (checksum mismatch)"
UNREADABLE = "the copy of full MNIST on this machine could not be read as MNIST"
NOT_DIGITS = "the copy of full MNIST on this machine does not hold 28×28 images"


class DataUnavailable(RuntimeError):
    """MNIST could not be found on disk nor downloaded. str() holds the details, for the server's log
    and the command line (paths, the download's own error); `words` says why for a page, with
    neither."""

    def __init__(self, details: str, words: str = NOT_HERE):
        super().__init__(details)
        self.words = words


# Error texts of a failed download, by what a user is told: the first group that matches wins (a
# name that cannot be looked up is what a machine without internet sees).
_DOWNLOAD_FAILURES = (
    (
        (
            "name or service not known",
            "temporary failure in name resolution",
            "nodename nor servname",
            "getaddrinfo failed",
            "network is unreachable",
            "no route to host",
        ),
        "no internet connection",
    ),
    (("timed out", "timeout"), "the download timed out"),
    (
        ("connection refused", "connection reset", "remote end closed", "http error"),
        "MNIST's download servers could not be reached",
    ),
    (("md5", "checksum", "not found or corrupted"), "the downloaded files were damaged (checksum mismatch)"),
    (
        ("no space left", "disk quota", "permission denied", "read-only file system", "file exists", "not a directory"),
        "kalign could not write the files to its data folder",
    ),
)


def download_failure_words(error_text: str) -> str:
    """Why a download failed, in a user's words, from the error text it ended with."""
    lowered = error_text.lower()
    for patterns, words in _DOWNLOAD_FAILURES:
        if any(pattern in lowered for pattern in patterns):
            return words
    return "the download failed"


def default_data_dir() -> pathlib.Path:
    env = os.environ.get("KALIGN_DATA_DIR")
    if env:
        return pathlib.Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache) / "kalign"


def load_digits(digits=(8, 9), source: str = "auto", root=None) -> DigitData:
    """The chosen digits, relabelled 0..k-1 in the order given.

    source: "mnist" (torchvision's 70,000 digits, downloaded into `root` or KALIGN_DATA_DIR when
    absent), "sample" (the bundled 5,000), or "auto" (MNIST when on disk, else the sample: "auto"
    never waits for the network; the app fetches MNIST in the background). The result's `source`
    says which was used, and its `note` why the sample was.
    """
    digits = check_digits(digits)
    if source not in ("auto", "mnist", "sample"):
        raise ValueError(f"source must be 'auto', 'mnist' or 'sample' (got {source!r})")
    root = pathlib.Path(root) if root is not None else default_data_dir()
    if source == "sample":
        return _select(_sample_arrays(), digits, "sample")
    try:
        return _select(_mnist_arrays(str(root), allow_download=source == "mnist"), digits, "mnist")
    except DataUnavailable as unavailable:
        if source == "mnist":
            raise
        log.warning("training on the bundled sample: %s", unavailable)
        note = f"{unavailable.words}; 'auto' never waits for a download (choose full MNIST to download it, about 12 MB)"
        return _select(_sample_arrays(), digits, "sample", note=note)


def digit_counts(digits, source: str = "auto", root=None) -> tuple[int, int]:
    """(training, held-out) digits of these classes that a run with `source` will have, without
    loading images: "auto" counts MNIST when kalign's copy is on disk, else the sample."""
    digits = check_digits(digits)
    root = pathlib.Path(root) if root is not None else default_data_dir()
    if source == "mnist" or (source == "auto" and (root / "MNIST" / "raw" / CHECKSUMS).is_file()):
        return sum(MNIST_TRAIN_COUNTS[d] for d in digits), sum(MNIST_TEST_COUNTS[d] for d in digits)
    _, train_y, _, test_y = _sample_arrays()
    return int(np.isin(train_y, digits).sum()), int(np.isin(test_y, digits).sum())


def _select(arrays, digits: tuple[int, ...], source: str, note: str = "") -> DigitData:
    train_x, train_y, test_x, test_y = arrays
    lookup = np.full(10, -1)
    lookup[list(digits)] = np.arange(len(digits))

    def subset(x, y):
        keep = lookup[y] >= 0
        return (x[keep].astype(np.float32) / 255.0), lookup[y[keep]].astype(np.int64)

    return DigitData(*subset(train_x, train_y), *subset(test_x, test_y), digits=digits, source=source, note=note)


@functools.lru_cache(maxsize=1)
def _sample_arrays():
    """The bundled sample, split per digit into 400 train / 100 test by a fixed permutation."""
    with np.load(SAMPLE_PATH, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        test[rng.permutation(members)[:SAMPLE_TEST_PER_CLASS]] = True
    return images[~test], labels[~test], images[test], labels[test]


@functools.lru_cache(maxsize=2)
def _mnist_arrays(root: str, allow_download: bool):
    """MNIST as uint8 arrays, downloaded first when `allow_download` and not on disk."""
    global _last_failed_download, _last_failure_words
    try:
        return _read_mnist(root)
    except DataUnavailable as missing:
        if not allow_download:
            raise
        on_disk, on_disk_words = str(missing), missing.words
    since_failure = time.monotonic() - _last_failed_download
    if since_failure < DOWNLOAD_RETRY_AFTER_S:
        # Clock times, not "N min ago": the note is saved with the run and read much later.
        failed_at = time.time() - max(since_failure, 0.0)
        failed = f"a download failed at {clock(failed_at)}"
        again = f"kalign tries again from {clock(failed_at + DOWNLOAD_RETRY_AFTER_S)}"
        raise DataUnavailable(
            f"{on_disk}, and {failed} ({again})", f"{on_disk_words}, and {failed} ({_last_failure_words}; {again})"
        )
    try:
        fetch_mnist(root)
    except DataUnavailable as failed:
        _last_failed_download, _last_failure_words = time.monotonic(), failed.words
        raise DataUnavailable(
            f"{on_disk}, and downloading it failed ({failed})",
            f"{on_disk_words}, and it could not be downloaded: {failed.words}",
        ) from failed
    return _read_mnist(root)


def fetch_mnist(root=None) -> None:
    """Download MNIST into `root` (default: KALIGN_DATA_DIR) unless a good copy is there (one
    download at a time); DataUnavailable when the download fails: its last error line as the
    details, the reason in a user's words as `words`."""
    root = pathlib.Path(root) if root is not None else default_data_dir()
    with _download_lock:
        try:
            _verify_checksums(root)
            return
        except DataUnavailable:
            pass
        try:
            _download_mnist(root)
        except Exception as error:
            last_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise DataUnavailable(last_line, download_failure_words(str(error))) from error


def _read_mnist(root: str):
    _verify_checksums(pathlib.Path(root))  # before importing torchvision: seconds, when MNIST is absent
    from torchvision.datasets import MNIST

    try:
        train = MNIST(root, train=True, download=False)
        test = MNIST(root, train=False, download=False)
    except Exception as error:  # missing, partial or corrupt files
        raise DataUnavailable(f"MNIST is not readable in {root}: {error}", UNREADABLE) from error
    arrays = (
        train.data.reshape(len(train.data), -1).numpy(),
        train.targets.numpy(),
        test.data.reshape(len(test.data), -1).numpy(),
        test.targets.numpy(),
    )
    if arrays[0].shape[1:] != (784,) or arrays[2].shape[1:] != (784,):
        raise DataUnavailable(f"MNIST in {root} does not hold 28×28 images; delete it to download again", NOT_DIGITS)
    return arrays


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksums(raw: pathlib.Path) -> None:
    """Record the extracted files' hashes at download time (torchvision checks only the archives)."""
    sums = {path.name: _file_sha256(path) for path in sorted(raw.glob("*-ubyte"))}
    write_atomically(raw / CHECKSUMS, json.dumps(sums, indent=1))


def _verify_checksums(root: pathlib.Path) -> None:
    """A missing, partial or corrupt cache is DataUnavailable, with the reason."""
    raw = root / "MNIST" / "raw"
    if not raw.is_dir():
        raise DataUnavailable(f"MNIST is not on disk in {root}")
    try:
        expected = json.loads((raw / CHECKSUMS).read_text())
    except (OSError, ValueError):
        raise DataUnavailable(
            f"MNIST in {raw} has no valid {CHECKSUMS}: partial or not downloaded by kalign", PARTIAL
        ) from None
    missing = [name for name in MNIST_FILES if name not in expected or not (raw / name).is_file()]
    if missing:
        raise DataUnavailable(f"MNIST in {raw} is partial: {', '.join(missing)} missing", PARTIAL)
    corrupt = [name for name in MNIST_FILES if _file_sha256(raw / name) != expected[name]]
    if corrupt:
        raise DataUnavailable(f"MNIST in {raw} is corrupt: checksum mismatch in {', '.join(corrupt)}", DAMAGED)


# Runs in a child process: the socket timeout it sets is process-wide, and must not reach the
# sockets of a server (Streamlit's) running the parent.
_DOWNLOAD_SCRIPT = """
import socket, sys
from torchvision.datasets import MNIST
socket.setdefaulttimeout(float(sys.argv[2]))
MNIST.mirrors = sys.argv[3:]
for train in (True, False):
    MNIST(sys.argv[1], train=train, download=True)
"""


def _download_mnist(root: pathlib.Path) -> None:
    from torchvision.datasets import MNIST

    root.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".mnist-download-", dir=root))
    try:
        child = subprocess.run(
            [sys.executable, "-c", _DOWNLOAD_SCRIPT, str(staging), str(DOWNLOAD_TIMEOUT_S), *MNIST.mirrors],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(child.stderr.strip() or f"download process exited with {child.returncode}")
        _write_checksums(staging / "MNIST" / "raw")
        target = root / "MNIST"
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / "MNIST", target)
        sync_folder(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
