"""The NUAA Photograph Imposter Database layout, as distributed.

``ClientRaw/`` and ``ImposterRaw/`` with ``client_train_raw.txt``,
``imposter_train_raw.txt`` (and ``*_test_raw.txt``) giving the split; the
detected-face and normalised variants are read the same way, as is a NUAA
root holding ``raw/``, ``Detectedface/`` or ``NormalizedFace/``. See
:mod:`tla_edge.data.datasets` for the details.
"""

from __future__ import annotations

import re
from pathlib import Path

from tla_edge.data.records import Dataset, Record, images_under
from tla_edge.errors import UserError

# (real folder, attack folder, list suffix) of the three NUAA variants, preferred first.
VARIANTS = (
    ("ClientRaw", "ImposterRaw", "raw"),
    ("ClientFace", "ImposterFace", "face"),
    ("ClientNormalized", "ImposterNormalized", "normalized"),
)
SUBDIRS = ("raw", "Detectedface", "NormalizedFace")
NAME = re.compile(r"^(?P<subject>\d+)_(?P<glasses>\d+)_(?P<pos>\d+)_(?P<session>\d+)_(?P<pic>\d+)$")
"""A NUAA file name: ``ID_glasses_pos_session_picNo``."""


def find_root(path: Path) -> tuple[Path, tuple[str, str, str]] | None:
    """The folder and variant of a NUAA copy at or directly under ``path``, or None."""
    for base in [path] + [path / sub for sub in SUBDIRS]:
        for variant in VARIANTS:
            if (base / variant[0]).is_dir() and (base / variant[1]).is_dir():
                return base, variant
    return None


def parse_nuaa_name(name: str) -> tuple[str, str] | None:
    """``(subject, session)`` of a NUAA file name ``ID_glasses_pos_session_picNo``, or None."""
    m = NAME.match(Path(name.replace("\\", "/")).stem)
    if m is None:
        return None
    return m["subject"], m["session"]


def read_list(list_path: Path) -> list[str]:
    """Entries of a NUAA list file, ``/``-separated, blank lines dropped (LF or CRLF)."""
    text = list_path.read_bytes().decode("utf-8-sig", errors="replace")
    out = []
    for line in text.splitlines():
        entry = line.strip().replace("\\", "/").strip("/")
        if entry:
            out.append(entry)
    return out


def load_nuaa(path: Path) -> Dataset:
    """Reads a NUAA copy (any variant) at or directly under ``path``; the split comes from the lists.

    Raises:
      UserError: ``path`` holds no NUAA copy.
    """
    found = find_root(path)
    if found is None:
        raise UserError(
            f"dataset folder '{path}' is not a NUAA copy; expected ClientRaw/ and ImposterRaw/ "
            "(or ClientFace/ + ImposterFace/, ClientNormalized/ + ImposterNormalized/)"
        )
    root, (real_dir, attack_dir, suffix) = found
    data = Dataset(root=root, layout="nuaa")
    if root != path:
        data.notes.append(f"read the {root.name}/ variant of '{path}'")
    for folder, prefix, label, species in (
        (real_dir, "client", "real", ""),
        (attack_dir, "imposter", "attack", "print"),
    ):
        on_disk = images_under(root / folder)
        listed: set[Path] = set()
        lists = [(split, root / f"{prefix}_{split}_{suffix}.txt") for split in ("train", "test")]
        lists = [(split, p) for split, p in lists if p.is_file()]
        if not lists:
            data.notes.append(f"no {prefix}_*_{suffix}.txt lists: every image in {folder}/ read, split ''")
            entries = [("", p) for p in on_disk]
        else:
            entries = []
            for split, list_path in lists:
                for entry in read_list(list_path):
                    entries.append((split, root / folder / entry))
        for split, img in entries:
            if img in listed:
                continue
            if not img.is_file():
                data.note_missing(img)
                continue
            listed.add(img)
            parsed = parse_nuaa_name(img.name)
            if parsed is None:
                subject = img.parent.name if img.parent != root / folder else ""
                session = ""
            else:
                subject, session = parsed
            data.append(Record(img, label, species, subject, session, split))
        data.unlisted += sum(1 for p in on_disk if p not in listed)
    if data.unlisted:
        data.notes.append(f"{data.unlisted} images on disk are in no list and were ignored")
    if data.missing:
        data.notes.append(f"{data.missing} list entries are missing on disk and were skipped")
    data.sort(key=lambda r: str(r.path))
    return data
