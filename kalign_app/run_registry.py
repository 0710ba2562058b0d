"""Every session's runs by an unguessable id, server-wide: the id goes in the page's address while the
run trains, so that a reload, a second tab or a dropped connection finds the run again instead of
leaving it to hold a slot for nobody. A student (one browser, see `students.py`) has at most one run
training or waiting at a time.

A run is a Train page job or a lesson's group of jobs: anything with `done` and `touch()`. Nothing
here knows about Streamlit.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# An ended run stays findable at least this long, so that a reload just after its end still shows it.
KEEP_ENDED_S = 600.0


class Run(Protocol):
    @property
    def done(self) -> bool: ...

    def touch(self) -> None: ...


@dataclass
class Entry:
    """A registered run: who started it, and the lesson it belongs to (None for a Train page run)."""

    run: Run
    student: str
    lesson: str | None = None
    ended_at: float | None = field(default=None, repr=False)


class RunNotFound(LookupError):
    """No run with this id on this server; the message says so in words."""

    def __init__(self, run_id: str):
        super().__init__(
            f"The run in this link (run={run_id[:12]}…) is not on this server: it ended more than "
            f"{KEEP_ENDED_S / 60:.0f} minutes ago, or the server was restarted. The link's settings are kept: "
            "press Train (or Run this lesson) to run it again."
        )


class AlreadyRunning(Exception):
    """The student has a run training or waiting already: `run_id` is that run."""

    def __init__(self, run_id: str, entry: Entry):
        self.run_id, self.entry = run_id, entry
        super().__init__("you have a run training or waiting for a slot already: one at a time")


class RunRegistry:
    """Runs by id, and by the student who started them; safe from any thread."""

    def __init__(self, keep_ended_s: float = KEEP_ENDED_S, clock: Callable[[], float] = time.monotonic):
        self._keep_ended_s, self._clock = keep_ended_s, clock
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}

    def start(self, student: str, start: Callable[[str], Run], lesson: str | None = None) -> str:
        """The id of a new run, `start(its id)`; AlreadyRunning (and nothing started) when `student`
        has one that has not ended."""
        with self._lock:
            self._forget_old()
            active = self._active(student)
            if active is not None:
                raise AlreadyRunning(*active)
            run_id = secrets.token_urlsafe(16)
            self._entries[run_id] = Entry(start(run_id), student, lesson)
            return run_id

    def find(self, run_id: str) -> Entry:
        """The run with this id (it may have ended since); RunNotFound when there is none."""
        with self._lock:
            self._forget_old()
            entry = self._entries.get(run_id)
        if entry is None:
            raise RunNotFound(run_id)
        return entry

    def active(self, student: str) -> tuple[str, Entry] | None:
        """The id and entry of the student's run that has not ended, if any."""
        with self._lock:
            return self._active(student)

    def _active(self, student: str) -> tuple[str, Entry] | None:
        for run_id, entry in self._entries.items():
            if entry.student == student and not entry.run.done:
                return run_id, entry
        return None

    def _forget_old(self) -> None:
        """Drop runs that ended more than `keep_ended_s` ago (their results are large)."""
        now = self._clock()
        for run_id, entry in list(self._entries.items()):
            if entry.ended_at is None and entry.run.done:
                entry.ended_at = now
            if entry.ended_at is not None and now - entry.ended_at > self._keep_ended_s:
                del self._entries[run_id]

    def __len__(self) -> int:
        return len(self._entries)
