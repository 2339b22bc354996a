"""A dataset's labelled images: :class:`Record` and :class:`Dataset`, shared by every layout reader."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple

from tla_edge.errors import UserError
from tla_edge.runtime.sources import IMAGE_EXTENSIONS

class Record(NamedTuple):
    """One labelled image of a dataset."""

    path: Path
    """The image file."""
    label: str
    """``"real"`` (bona fide, live) or ``"attack"``."""
    species: str
    """Attack species (``"print"``, ``"replay"``, ``"mask"``, ...); ``""`` for real."""
    subject: str
    """Subject identifier; ``""`` when unknown."""
    session: str
    """Capture session; ``""`` when unknown."""
    split: str
    """``"train"``, ``"test"``, ... ; ``""`` when the dataset does not say."""


MISSING_NAMED = 20
"""Missing files named in a dataset's summary (the rest are counted)."""


class Dataset(list):
    """A ``list[Record]`` that also says how it was read.

    Attributes:
      root: the dataset folder (or the CSV file).
      layout: ``"nuaa"``, ``"folder"`` or ``"csv"``.
      unlisted: images on disk that no list names (ignored).
      missing: list or CSV entries whose file is not on disk (skipped).
      missing_paths: the first :data:`MISSING_NAMED` of them, to name on the console.
      notes: human-readable remarks about the reading, for summaries.
    """

    def __init__(self, records: Iterable[Record] = (), root: Path | None = None, layout: str = "") -> None:
        super().__init__(records)
        self.root = root
        self.layout = layout
        self.unlisted = 0
        self.missing = 0
        self.missing_paths: list[Path] = []
        self.notes: list[str] = []

    def note_missing(self, path: Path) -> None:
        """Counts one listed file that is not on disk (and keeps the first few names)."""
        self.missing += 1
        if len(self.missing_paths) < MISSING_NAMED:
            self.missing_paths.append(path)

    def summary(self) -> dict:
        """Counts per label, species, session and split, plus unlisted and missing files."""
        return {
            "root": str(self.root) if self.root is not None else None,
            "layout": self.layout,
            "images": len(self),
            "labels": dict(Counter(r.label for r in self)),
            "species": dict(Counter(r.species for r in self if r.label == "attack")),
            "sessions": dict(sorted(Counter(r.session for r in self).items())),
            "splits": dict(sorted(Counter(r.split for r in self).items())),
            "unlisted": self.unlisted,
            "missing": self.missing,
            "notes": list(self.notes),
        }


def images_under(folder: Path) -> list[Path]:
    """Image files (:data:`~tla_edge.runtime.sources.IMAGE_EXTENSIONS`, any case) anywhere under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def manifest_header(manifest: Path, what: str, writer: str) -> list[str] | None:
    """The first row of a manifest.csv, or None where there is no such file.

    Args:
      manifest: the manifest's path.
      what: which manifest, for the error (``"crops manifest"``, ``"manifest"``).
      writer: the command that writes it (``"prepare"``, ``"record"``).

    Raises:
      UserError: the file is not UTF-8 text.
    """
    if not manifest.is_file():
        return None
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError as err:
        raise UserError(f"{what} '{manifest}' is not UTF-8 text (offset {err.start}); "
                        f"expected the manifest.csv tla-edge {writer} writes") from None
