"""Starting Python processes from a server: what every process kalign starts (the dashboard's
training workers, a sweep's pool) needs so that it runs the function meant, and not the app again."""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from collections.abc import Callable


def shippable(function: Callable) -> Callable:
    """`function` as pickle finds it now. Pickle ships functions by module and name, and Streamlit
    re-imports a module edited while the app runs, so the function object a module held may no
    longer be the one importable by that name."""
    return getattr(importlib.import_module(function.__module__), function.__name__)


_main_lock = threading.Lock()


@contextlib.contextmanager
def bare_main_module():
    """Spawned processes first re-run the parent's __main__ file (to find functions pickled from it).
    Under Streamlit that file is the app, which would run again in every worker; so workers start
    while __main__ is an empty module. One thread at a time, or the original could be lost."""
    with _main_lock:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main
