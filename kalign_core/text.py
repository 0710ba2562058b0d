"""Numbers, shares, durations and moments as people read them, for every sentence kalign prints (app,
command line, lessons)."""

from __future__ import annotations

import math
import time


def fixed(value: float, digits: int, sign: bool = False) -> str:
    """`value` at `digits` decimals (with its sign when `sign`); a value that would print as
    "0.000" without being 0 is given to two significant figures instead, so that no reader sees
    "−0.000" or "+0.000"."""
    if not math.isfinite(value):
        return "not a number"
    if value == 0:
        return f"{0:.{digits}f}"
    plus = "+" if sign else ""
    return f"{value:{plus}.2g}" if round(value, digits) == 0 else f"{value:{plus}.{digits}f}"


def clock(seconds_since_epoch: float) -> str:
    """A moment as a wall clock shows it, e.g. "14:05 CET": a message read later still makes sense."""
    return time.strftime("%H:%M %Z", time.localtime(seconds_since_epoch))


def percent(fraction: float | None) -> str:
    """`fraction` in percent to two significant figures ("not measured" for None), without an
    exponent from 100 % up: two significant figures of 99.5 and more would print as "1e+02"."""
    if fraction is None:
        return "not measured"
    value = 100 * fraction
    if not math.isfinite(value):
        return "not a number"
    return f"{value:,.0f} %" if abs(value) >= 99.5 else f"{value:.2g} %"


def duration(seconds: float) -> str:
    """e.g. "4.2 s", "38 s", "3 min 05 s"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
