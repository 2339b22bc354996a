"""argparse ``type=`` functions for every flag of the subcommands; each error echoes the text received.

The types here check the form of a value (an integer, a finite number, a
non-empty path) and, where a flag has one, its range. Rules that need more
than one flag (``--out`` against an input, a threshold against a model) are
the library's, which says what it received in its own words.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def integer(text: str) -> int:
    """Any integer (a seed, a size the library checks itself)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def number(text: str) -> float:
    """A number as ``float()`` reads it; the library checks its range (``nan`` included) in its own words."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def path(text: str) -> Path:
    """A file or folder name: any non-empty text (whether it exists is the command's check)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a path; expected a file or folder name")
    return Path(text)


def _at_least(text: str, lowest: int) -> int:
    value = integer(text)
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{text!r} is not >= {lowest}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _at_least(text, 0)


def probability(text: str) -> float:
    """A number in [0, 1] (a score, a threshold, a fraction)."""
    value = number(text)
    if not 0.0 <= value <= 1.0:  # False for nan too
        raise argparse.ArgumentTypeError(f"{text!r} is not in [0, 1]")
    return value


def threshold(text: str) -> float:
    """A decision threshold: a number strictly between 0 and 1 (0 makes every face live, 1 none)."""
    value = number(text)
    if not 0.0 < value < 1.0:  # False for nan too
        raise argparse.ArgumentTypeError(f"{text!r} is not strictly between 0 and 1")
    return value


def threads(text: str) -> int:
    """An interpreter thread count: an integer in [1, 64] (more crashes LiteRT without a word)."""
    from tla_edge.runtime.cpu import MAX_THREADS

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count; expected an integer in [1, {MAX_THREADS}]")
    return value
