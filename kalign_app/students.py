"""Who a student is, for "one run at a time": one browser, all its tabs.

Streamlit gives a page no cookie of its own without extra packages, but every browser already has
one: Streamlit's XSRF cookie, set on the browser's first visit and sent with every page and every
reload. Its value is re-masked on each visit (Tornado's format "2|mask|masked token|time"); the
token under the mask stays the same for the browser, so it names the browser. Only a digest of it
is kept, never the token itself (it guards the server's uploads against cross-site requests).
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping

XSRF_COOKIE = "_streamlit_xsrf"


def browser_id(cookies: Mapping[str, str]) -> str | None:
    """A stable name for the browser that sent `cookies`; None without Streamlit's XSRF cookie (XSRF
    protection off, or a test session), where each tab counts as a student of its own."""
    cookie = cookies.get(XSRF_COOKIE)
    if not isinstance(cookie, str) or not cookie:  # AppTest's stand-in client gives mock objects
        return None
    return "browser-" + hashlib.sha256(_unmasked(cookie)).hexdigest()[:32]


def _unmasked(cookie: str) -> bytes:
    """The token under a version-2 cookie's mask; any other value as it is."""
    parts = cookie.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = binascii.a2b_hex(parts[1]), binascii.a2b_hex(parts[2])
        except binascii.Error:
            return cookie.encode()
        if mask:
            return bytes(byte ^ mask[i % len(mask)] for i, byte in enumerate(masked))
    return cookie.encode()
