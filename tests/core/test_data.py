"""load_digits: the bundled sample (shapes, range, labels, a deterministic stratified split), and the
MNIST source without a network: "mnist" fails clearly and leaves nothing behind, "auto" falls back
to the sample and says why. The network is replaced by local sockets: one that refuses connections
and one that accepts and never answers. (Damaged MNIST caches: tests/core/test_data_faults.py.)"""

import socket
import threading

import numpy as np
import pytest
from torchvision.datasets import MNIST

from apptest import wait_until
from kalign_app.mnist_fetch import MnistFetch
from kalign_core import data
from kalign_core.data import DataUnavailable, DigitData, load_digits
from test_data_faults import write_fake_mnist


def row_set(x):
    return {row.tobytes() for row in x}


# ---------------------------------------------------------------- the bundled sample


def test_sample_8_vs_9_shapes_range_and_labels(sample_89):
    d = sample_89
    assert (d.source, d.digits, d.n_classes) == ("sample", (8, 9), 2)
    assert d.train_x.shape == (800, 784) and d.test_x.shape == (200, 784)
    assert d.train_x.dtype == d.test_x.dtype == np.float32
    assert d.train_y.dtype == d.test_y.dtype == np.int64
    for x in (d.train_x, d.test_x):
        assert x.min() == 0.0 and x.max() == 1.0
        assert 0.05 < x.mean() < 0.25  # real MNIST digits: mostly background, ~13% ink
    assert np.bincount(d.train_y).tolist() == [400, 400]
    assert np.bincount(d.test_y).tolist() == [100, 100]


def test_all_ten_digits_split_400_100_per_class_without_overlap():
    d = load_digits(tuple(range(10)), source="sample")
    assert np.bincount(d.train_y).tolist() == [400] * 10
    assert np.bincount(d.test_y).tolist() == [100] * 10
    assert not row_set(d.train_x) & row_set(d.test_x)


def test_labels_follow_the_order_of_digits(sample_89):
    flipped = load_digits((9, 8), source="sample")
    np.testing.assert_array_equal(flipped.train_x, sample_89.train_x)
    np.testing.assert_array_equal(flipped.train_y, 1 - sample_89.train_y)
    # And the subset is the same images as within all ten digits.
    every = load_digits(tuple(range(10)), source="sample")
    eights = every.train_x[every.train_y == 8]
    np.testing.assert_array_equal(sample_89.train_x[sample_89.train_y == 0], eights)


def test_sample_split_is_deterministic_across_reloads(sample_89):
    data._sample_arrays.cache_clear()
    np.random.seed(123)  # the global RNG plays no part
    again = load_digits((8, 9), source="sample")
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(again, field), getattr(sample_89, field))


@pytest.mark.parametrize(
    "digits, source, field",
    [
        ((8,), "sample", "digits"),
        ((8, 8), "sample", "digits"),
        ((8, 12), "sample", "digits"),
        ((8, 9), "web", "source"),
    ],
)
def test_bad_arguments_name_the_field(digits, source, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        load_digits(digits, source=source)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(train_x=np.zeros((5, 4)), train_y=np.zeros(4, int)), "one label per row"),
        (dict(train_y=np.array([0, 1, 2, 0, 1])), "class indices 0..1"),
        (dict(test_y=np.array([0, -1])), "class indices 0..1"),
        (dict(test_x=np.zeros((2, 3)), test_y=np.zeros(2, int)), "same number of features"),
        (dict(train_x=np.zeros(5)), "N×features"),
    ],
)
def test_custom_digit_data_is_checked(arrays, message):
    good = dict(
        train_x=np.zeros((5, 4)), train_y=np.array([0, 1, 0, 1, 0]), test_x=np.zeros((2, 4)), test_y=np.array([0, 1])
    )
    with pytest.raises(ValueError, match=message):
        DigitData(**{**good, **arrays}, digits=(3, 5))


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KALIGN_DATA_DIR", str(tmp_path / "kd"))
    assert data.default_data_dir() == tmp_path / "kd"
    monkeypatch.delenv("KALIGN_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_data_dir() == tmp_path / "cache" / "kalign"


# ---------------------------------------------------------------- MNIST without a network


@pytest.fixture
def fresh_download_state(monkeypatch):
    data._mnist_arrays.cache_clear()
    monkeypatch.setattr(data, "_last_failed_download", -float("inf"))
    yield
    data._mnist_arrays.cache_clear()


@pytest.fixture
def refusing_network(monkeypatch, fresh_download_state):
    """MNIST's mirrors point at a local port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])


@pytest.fixture
def silent_network(monkeypatch, fresh_download_state):
    """A mirror that accepts connections and never answers: only the download timeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.getsockname()[1]}/"])
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.3)
    yield
    server.close()


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.slow
def test_mnist_unavailable_is_a_clear_error_and_leaves_no_partial_files(refusing_network, tmp_path):
    root = tmp_path / "mnist-cache"
    with pytest.raises(DataUnavailable) as raised:
        load_digits((8, 9), source="mnist", root=root)
    message = str(raised.value)
    assert "MNIST is not on disk" in message and str(root) in message and "download" in message
    assert leftovers(root) == []


def test_auto_never_waits_for_the_network_and_says_why_it_used_the_sample(
    refusing_network, tmp_path, sample_89, monkeypatch
):
    attempts, real_download = [], data._download_mnist

    def counted(root):
        if root != tmp_path:  # a background fetch another test started (an "auto" page) keeps its course
            return real_download(root)
        attempts.append(root)

    monkeypatch.setattr(data, "_download_mnist", counted)
    d = load_digits((8, 9), source="auto", root=tmp_path)
    assert attempts == []  # a Train press never waits for a download
    assert d.source == "sample"
    assert "full MNIST is not on this machine yet" in d.note and "choose full MNIST to download it" in d.note
    assert str(tmp_path) not in d.note  # the note reaches a page: the folder is for the log
    np.testing.assert_array_equal(d.train_x, sample_89.train_x)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_silent_server_times_out_instead_of_hanging(silent_network, tmp_path):
    outcome = {}

    def load():
        try:
            load_digits((8, 9), source="mnist", root=tmp_path)
        except DataUnavailable as unavailable:
            outcome["error"] = str(unavailable)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=60)  # a guard against hanging forever, not a speed test
    assert not worker.is_alive(), "load_digits hung on a server that never answers"
    assert "downloading it failed" in outcome["error"]
    assert socket.getdefaulttimeout() is None  # the short timeout was only for the download
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_after_a_failed_download_mnist_does_not_retry_at_once(refusing_network, tmp_path, monkeypatch):
    with pytest.raises(DataUnavailable):
        load_digits((8, 9), source="mnist", root=tmp_path)
    attempts = []
    monkeypatch.setattr(data, "_download_mnist", lambda root: attempts.append(root))
    with pytest.raises(DataUnavailable, match=r"a download failed at .* \(kalign tries again from"):
        load_digits((8, 9), source="mnist", root=tmp_path)
    assert attempts == []


@pytest.mark.slow
def test_the_background_fetch_retries_quietly_then_auto_trains_on_mnist(refusing_network, tmp_path, monkeypatch):
    """First the network refuses (the status says so, with the next try), then a download succeeds
    (a stand-in downloader writes a well-formed file set): "auto" uses MNIST from then on."""
    real_download = data._download_mnist
    attempts = []

    def refused_then_fine(root):
        if root != tmp_path:  # a fetch another test started (e.g. an "auto" page) keeps its own course
            return real_download(root)
        attempts.append(root)
        if len(attempts) == 1:
            return real_download(root)  # refused: the mirrors point at a closed port
        write_fake_mnist(root / "MNIST" / "raw")

    monkeypatch.setattr(data, "_download_mnist", refused_then_fine)
    fetch = MnistFetch(tmp_path, first_retry_s=0.5)
    assert "downloading in the background" in fetch.status()
    fetch.start()
    wait_until(lambda: len(attempts) >= 1 and "could not be downloaded" in fetch.status() or fetch.available)
    wait_until(lambda: fetch.available)
    assert len(attempts) == 2 and "Full MNIST is on this machine" in fetch.status()
    d = load_digits((3, 4), source="auto", root=tmp_path)
    assert d.source == "mnist" and d.note == ""
