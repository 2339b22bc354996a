"""A recording folder (``tla-edge record --out``): is it one, may it receive frames, its writer lock, its counts.

:mod:`tla_edge.data.recording` writes the frames; this module holds the rules
of the folder they go into, read through the one manifest reader
(:func:`tla_edge.data.datasets.load_dataset`).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tla_edge import fileio
from tla_edge.data.crops import is_crops_dir
from tla_edge.data.datasets import MANIFEST_NAME, detect_layout, load_dataset
from tla_edge.data.records import manifest_header
from tla_edge.errors import UserError

COLUMNS = ("path", "label", "species", "subject", "session", "split",
           "source", "camera", "resolution", "time", "frame")
"""Columns of a recording's manifest.csv; the first six are the CSV dataset layout's."""


def is_recording(folder: Path) -> bool:
    """True when ``folder`` holds a manifest.csv written by ``tla-edge record``."""
    header = manifest_header(folder / MANIFEST_NAME, "manifest", "record")
    return header is not None and tuple(header[: len(COLUMNS)]) == COLUMNS


def check_out_dir(out: Path) -> bool:
    """Checks that ``out`` may receive a recording; returns True when it already holds one.

    A new or empty folder starts a recording; a folder written by ``tla-edge
    record`` is appended to. Anything else (another dataset's layout, prepared
    crops, unrelated files) is refused, so no dataset is mixed with new frames.

    Raises:
      UserError: ``out`` is a file, or a non-empty folder that is not a recording.
    """
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"--out '{out}' is a file; expected a recording folder (new, empty or written by tla-edge record)")
    if is_recording(out):
        repair_manifest(out / MANIFEST_NAME)  # a torn last line is a killed run's, not a bad row
        load_dataset(out, "csv")  # a row it cannot read is refused now, by line, not after the recording
        return True
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return False
    if is_crops_dir(out):
        what = "a crops folder written by tla-edge prepare"
    else:
        try:
            what = f"a dataset of the {detect_layout(out)} layout"
        except (UserError, FileNotFoundError):
            what = f"{len(entries)} other files or folders"
    raise UserError(
        f"--out '{out}' holds {what}, not a recording; expected a new or empty folder, or one "
        f"written by tla-edge record (its {MANIFEST_NAME} starts with {','.join(COLUMNS[:6])},...)"
    )


def repair_manifest(manifest: Path) -> None:
    """Drops a torn last line (a run killed mid-write) so appended rows stay well formed."""
    data = manifest.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
        fileio.write_bytes_atomic(manifest, keep)
        print(f"tla-edge record: warning: dropped a torn last line of '{manifest}'", file=sys.stderr)


def recording_summary(out: Path) -> dict[str, Any]:
    """Counts of a recording's manifest: frames per label/species, subjects and sessions."""
    rows = load_dataset(out / MANIFEST_NAME, "csv")  # the one manifest reader
    return {
        "frames": len(rows),
        "per_class": dict(sorted(Counter(r.species or r.label for r in rows).items())),
        "subjects": sorted({r.subject for r in rows if r.subject}),
        "sessions": sorted({r.session for r in rows if r.session}),
    }


LOCK_NAME = ".record.lock"
"""Lock file of a recording folder: one ``record`` writes into a folder at a time."""


def lock_folder(out: Path) -> Any:
    """Takes the folder's writer lock (released when the returned file closes, or the process dies).

    Raises:
      UserError: another ``tla-edge record`` holds it.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: the unique run ids still keep file names apart
        return None
    f = (out / LOCK_NAME).open("a")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(
            f"--out '{out}' is being written by another tla-edge record (lock '{out / LOCK_NAME}'); "
            "expected one recording run per folder at a time: wait for it to end, or choose another --out"
        ) from None
    return f
