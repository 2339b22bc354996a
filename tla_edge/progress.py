"""A tiny progress bar on stderr (tqdm is not a dependency).

    with Progress(len(records), "prepare") as bar:
        for r in records:
            ...
            bar.update()

On a terminal the bar redraws in place at most every ``min_interval`` seconds;
into a log file (not a TTY) it writes a plain line every ``log_interval``
seconds, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A progress bar: ``desc  42% |#########           | 1470/3491  38.1 it/s  ETA 0:53``.

    Args:
      total: number of steps (None or 0: unknown, shows a count only).
      desc: label at the start of the line.
      unit: unit of the rate, e.g. ``"img"``.
      stream: where to write (default stderr).
      width: bar width in characters.
      min_interval: seconds between redraws on a terminal.
      log_interval: seconds between lines when the stream is not a terminal.
      enabled: False writes nothing (e.g. ``--quiet``).
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        stream: IO[str] | None = None,
        width: int = 24,
        min_interval: float = 0.2,
        log_interval: float = 10.0,
        enabled: bool = True,
    ) -> None:
        self.total = int(total) if total else 0
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.n = 0
        self.postfix = ""
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = min_interval if self._tty else log_interval
        self._last = -float("inf")
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Steps per second so far."""
        return self.n / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """The current bar as text."""
        rate = self.rate
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(1.0, self.n / self.total)
            filled = int(round(frac * self.width))
            parts.append(f"{frac * 100:3.0f}% |{'#' * filled}{' ' * (self.width - filled)}|")
            parts.append(f"{self.n}/{self.total}")
        else:
            parts.append(f"{self.n}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        else:
            parts.append(format_duration(self.elapsed))
        if self.postfix:
            parts.append(self.postfix)
        return "  ".join(parts)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Advances by ``n`` steps; redraws when due."""
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._last = now
            self._draw()

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draws the final state and ends the line."""
        if not self._closed:
            self._closed = True
            self._draw(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", **kwargs
) -> Iterator[T]:
    """Yields from ``iterable`` while drawing a :class:`Progress` bar."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
