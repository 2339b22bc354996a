"""Progress bars on stderr, drawn by tqdm (installed with every runtime: LiteRT requires it).

    with Progress(len(records), "prepare") as bar:
        for r in records:
            ...
            bar.update()

A thin layer that keeps one look and two habits across the project: on a
terminal tqdm redraws the bar in place at most every ``min_interval``
seconds; into a log file (not a TTY), where tqdm's carriage returns would pile
up on one line, the same bar is written as a plain line at the first step,
then every ``log_interval`` seconds and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

BAR_CHARSET = " #"
"""Empty and full cells of the bar: plain ASCII, readable in any log."""


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def bar_format(desc: str, known_total: bool, width: int) -> str:
    """tqdm's ``bar_format``: ``desc  42% |#####     |  1470/3491  00:38<00:53  38.10img/s, postfix``."""
    head = "{desc}  " if desc else ""
    if not known_total:
        return head + "{n_fmt}  {elapsed}  {rate_fmt}{postfix}"
    return head + "{percentage:3.0f}% |{bar:" + str(width) + "}|  {n_fmt}/{total_fmt}  {elapsed}<{remaining}  {rate_fmt}{postfix}"


class Progress:
    """A progress bar over tqdm: ``desc  42% |#########           |  1470/3491  00:38<00:53  38.10img/s``.

    Args:
      total: number of steps (None or 0: unknown, shows a count only).
      desc: label at the start of the line.
      unit: unit of the rate, e.g. ``"img"``.
      stream: where to write (default stderr).
      width: bar width in characters.
      min_interval: seconds between redraws on a terminal.
      log_interval: seconds between lines when the stream is not a terminal.
      enabled: False writes nothing (e.g. ``--quiet``); steps are still counted.
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
        self.enabled = enabled
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._log_interval = log_interval
        self._last_line = -float("inf")
        self._closed = False
        draws = enabled and self._tty
        self._bar = tqdm(
            total=self.total or None,
            desc=desc,
            unit=unit,
            file=self.stream,
            ascii=BAR_CHARSET,
            bar_format=bar_format(desc, bool(self.total), width),
            mininterval=min_interval,
            # Where tqdm does not draw (a log, or disabled) it must never start to:
            # an infinite delay keeps it silent, and miniters=1 keeps its monitor
            # thread from forcing a refresh; it still counts, times and formats.
            delay=0 if draws else float("inf"),
            miniters=None if draws else 1,
            smoothing=0.3 if draws else 0,
        )

    @property
    def n(self) -> int:
        """Steps done so far."""
        return int(self._bar.n)

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return time.time() - self._bar.start_t

    @property
    def rate(self) -> float:
        """Steps per second so far."""
        elapsed = self.elapsed
        return self.n / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The current bar as text."""
        return str(self._bar)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Advances by ``n`` steps (and sets the text after the bar); redraws when due."""
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(n)
        if self.enabled and not self._tty:
            now = time.perf_counter()
            if now - self._last_line >= self._log_interval:
                self._last_line = now
                self._write_line()

    def _write_line(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draws the final state and ends the line."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and not self._tty:
            self._write_line()
        self._bar.close()

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
