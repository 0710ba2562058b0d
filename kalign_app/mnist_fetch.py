"""The app's MNIST download in the background: a server that starts its forms on "auto" fetches
MNIST once, so that later "auto" runs use it, and no page ever waits for the network."""

from __future__ import annotations

import logging
import pathlib
import threading
import time

from kalign_core.data import DataUnavailable, default_data_dir, fetch_mnist
from kalign_core.text import clock

log = logging.getLogger(__name__)


class MnistFetch:
    """MNIST fetched in a daemon thread, retried quietly after a failure (1 min, then twice as long
    each time, at most an hour apart), so that "auto" runs use it once it is on disk and no run
    ever waits for the network. `status()` says where it stands, in words."""

    def __init__(self, root=None, first_retry_s: float = 60.0, longest_retry_s: float = 3600.0):
        self.root = pathlib.Path(root) if root is not None else default_data_dir()
        self._first_retry_s, self._longest_retry_s = first_retry_s, longest_retry_s
        self._lock = threading.Lock()
        self._state, self._since, self._problem = "fetching", time.time(), ""
        self._thread = threading.Thread(target=self._run, name="kalign-mnist-fetch", daemon=True)

    def start(self) -> MnistFetch:
        """Start fetching; later calls do nothing."""
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()
        return self

    @property
    def available(self) -> bool:
        with self._lock:
            return self._state == "available"

    def status(self) -> str:
        with self._lock:
            state, since, problem = self._state, self._since, self._problem
        if state == "available":
            return "Full MNIST is on this machine: 'auto' trains on it."
        if state == "fetching":
            return (
                f"Full MNIST is downloading in the background (since {clock(since)}); until it is "
                "here, 'auto' trains on the bundled sample."
            )
        return (
            f"Full MNIST could not be downloaded ({problem}): 'auto' trains on the bundled sample until it "
            f"is here. kalign tries again at {clock(since)}."
        )

    def _set(self, state: str, since: float, problem: str = "") -> None:
        with self._lock:
            self._state, self._since, self._problem = state, since, problem

    def _run(self) -> None:
        wait = self._first_retry_s
        while True:
            self._set("fetching", time.time())
            try:
                fetch_mnist(self.root)
            except DataUnavailable as failure:
                log.warning("downloading MNIST into %s failed (retrying in %.0f s): %s", self.root, wait, failure)
                self._set("retrying", time.time() + wait, failure.words)
                time.sleep(wait)
                wait = min(2 * wait, self._longest_retry_s)
                continue
            self._set("available", time.time())
            return
