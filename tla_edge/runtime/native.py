"""Native runtime noise: MediaPipe and LiteRT log from C++ straight to fd 2."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from typing import Iterator

_lock = threading.RLock()


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Silences MediaPipe's and LiteRT's C++ INFO lines, written straight to fd 2, around one native call.

    They appear when a task is created, on its first frame and when it closes;
    environment variables (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL) do not stop
    them. Only the C++ side is silenced: for the duration of the call, Python's
    ``sys.stderr`` (warnings, logging, other threads' messages) writes to the
    real standard error through a copy of it, so nothing Python says is lost.
    Wrap only short native calls (creating, first run, closing), never a
    whole run, and never call it from a finalizer (``__del__``) or during
    interpreter shutdown, where it does nothing. Set ``TLA_EDGE_VERBOSE=1``
    to see the native lines. Python exceptions are raised as usual.
    """
    if os.environ.get("TLA_EDGE_VERBOSE") or sys.is_finalizing():
        yield
        return
    with _lock:  # one redirection at a time; nested uses pass through
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        python_stderr = sys.stderr
        real = None
        try:
            if getattr(python_stderr, "fileno", None) is not None and _fileno(python_stderr) == 2:
                # sys.stderr is fd 2 itself: give Python a stream on the saved copy
                real = io.TextIOWrapper(
                    io.FileIO(os.dup(saved), "w"), encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                    errors="backslashreplace", line_buffering=True,
                )
                sys.stderr = real
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            if real is not None:
                sys.stderr = python_stderr
                with contextlib.suppress(OSError, ValueError):
                    real.close()
            os.close(saved)
            os.close(devnull)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
