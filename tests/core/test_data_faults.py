"""A missing, partial or corrupt MNIST cache is detected by checksum, and "auto" falls back to the
bundled sample with the reason, instead of failing. No network: downloads fail fast here."""

import struct

import numpy as np
import pytest

from kalign_core import data
from kalign_core.data import MNIST_FILES, DataUnavailable, load_digits


def _write_idx(path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, dtype 0x08, ndim), big-endian sizes, then uint8 data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(raw) -> None:
    """A tiny, well-formed MNIST file set in `raw`, as a completed kalign download leaves it."""
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data._write_checksums(raw)


def _rewrite(raw, name: str, content: bytes) -> None:
    """Replace one file and record its checksum, as if kalign had downloaded it so."""
    (raw / name).write_bytes(content)
    data._write_checksums(raw)


def _rewrite_images(raw, shape) -> None:
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros(shape))
    data._write_checksums(raw)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A tiny, well-formed MNIST cache (as a completed kalign download would leave it)."""
    data._mnist_arrays.cache_clear()
    monkeypatch.setattr(data, "_last_failed_download", float("inf"))  # never touch the network
    write_fake_mnist(tmp_path / "MNIST" / "raw")
    yield tmp_path
    data._mnist_arrays.cache_clear()


def test_verified_cache_is_read_as_mnist(fake_mnist):
    digits = load_digits((3, 4), source="mnist", root=fake_mnist)
    assert digits.source == "mnist" and digits.note == ""
    assert digits.train_x.shape == (12, 784) and set(digits.train_y) == {0, 1}
    assert 0.0 <= digits.train_x.min() and digits.train_x.max() <= 1.0


@pytest.mark.parametrize(
    "damage, reason, words",
    [
        (lambda raw: (raw / MNIST_FILES[0]).write_bytes(b"\0" * 100), "corrupt", data.DAMAGED),
        (lambda raw: (raw / MNIST_FILES[2]).unlink(), "partial", data.PARTIAL),
        (lambda raw: (raw / data.CHECKSUMS).unlink(), "partial or not downloaded by kalign", data.PARTIAL),
        (lambda raw: (raw / data.CHECKSUMS).write_text("{not json"), "no valid", data.PARTIAL),
        # Files whose checksums kalign recorded but that torchvision cannot read, or that hold other images.
        (lambda raw: _rewrite(raw, MNIST_FILES[0], b"not idx"), "not readable", data.UNREADABLE),
        (lambda raw: _rewrite_images(raw, (60, 7, 7)), "28×28", data.NOT_DIGITS),
    ],
    ids=["corrupt-file", "missing-file", "no-checksums", "garbled-checksums", "unreadable", "not-28x28"],
)
def test_damaged_cache_is_reported_and_auto_falls_back(fake_mnist, damage, reason, words):
    """The error's details (for the log and the command line) name the damage and the folder; the
    fallback's note, shown on a page, says it in words, without the folder."""
    damage(fake_mnist / "MNIST" / "raw")
    with pytest.raises(DataUnavailable, match=reason) as raised:
        load_digits((3, 4), source="mnist", root=fake_mnist)
    assert str(fake_mnist) in str(raised.value) and raised.value.words.startswith(words)
    fallback = load_digits((3, 4), source="auto", root=fake_mnist)
    assert fallback.source == "sample"
    assert fallback.note.startswith(words) and str(fake_mnist) not in fallback.note


def test_a_run_on_the_fallback_carries_the_reason_into_its_saved_result(fake_mnist, monkeypatch, tmp_path):
    from kalign_core import ExperimentConfig, load_run, run_experiment, save_run

    (fake_mnist / "MNIST" / "raw" / MNIST_FILES[1]).write_bytes(b"\1")
    monkeypatch.setenv("KALIGN_DATA_DIR", str(fake_mnist))
    result = run_experiment(ExperimentConfig(width=8, epochs=1, device="cpu", source="auto"))
    assert result.source == "sample" and "corrupt" in result.source_note
    assert load_run(save_run(result, tmp_path / "run")).source_note == result.source_note
