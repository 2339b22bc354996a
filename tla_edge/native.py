"""Native runtime noise: MediaPipe and LiteRT log from C++ straight to fd 2."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Silences MediaPipe's and LiteRT's C++ INFO lines, written straight to fd 2.

    They appear when a task is created, on its first frame and when it closes;
    environment variables (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL) do not stop
    them. Set ``TLA_EDGE_VERBOSE=1`` to see them. Python exceptions are raised
    as usual, not printed, so no error is hidden.
    """
    if os.environ.get("TLA_EDGE_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
