"""Datasets on disk -> labelled records: the layouts, and the ids and selections shared by every command.

Three layouts are read (:func:`load_dataset`):

``nuaa``
    The NUAA Photograph Imposter Database as distributed: ``ClientRaw/`` and
    ``ImposterRaw/`` with ``client_train_raw.txt``, ``imposter_train_raw.txt``
    (and ``*_test_raw.txt`` when present) giving the split. The detected-face
    (``ClientFace/`` + ``ImposterFace/``, ``*_face.txt``) and normalised
    (``ClientNormalized/`` + ``ImposterNormalized/``, ``*_normalized.txt``)
    variants are read the same way, as is a NUAA root holding ``raw/``,
    ``Detectedface/`` or ``NormalizedFace/`` (raw preferred). List entries may
    use ``/`` or ``\\`` and LF or CRLF. Images on disk that no list names are
    ignored; entries missing on disk are skipped; both are counted. Subject and
    session come from the file name ``ID_glasses_pos_session_picNo``.
``folder``
    ``real/`` and ``attack/<species>/`` (images directly in ``attack/`` get the
    species ``"attack"``). The first folder under ``real/`` (or under
    ``attack/<species>/``) is the subject; the session is ``""``.
``csv``
    A CSV file (or a folder holding one ``*.csv``) with columns
    ``path,label[,species,subject,session,split]``; paths relative to the CSV.
    Labels ``real``/``live``/``bona_fide``/``1`` and ``attack``/``spoof``/``0``
    are accepted, as is ``<species>_attack`` (e.g. ``print_attack``). A folder
    with ``real/`` or ``attack/`` *and* a ``manifest.csv`` with those columns (a
    recording by ``tla-edge record``) is read through its manifest.

Prepared crops (written by ``tla-edge prepare``) are read by
:mod:`tla_edge.data.crops`; a recording is written by :mod:`tla_edge.data.recording`.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tla_edge.data import nuaa
from tla_edge.data.records import Dataset, Record, images_under
from tla_edge.errors import UserError

LAYOUTS = ("nuaa", "folder", "csv")
LABELS = ("real", "attack")

MANIFEST_NAME = "manifest.csv"

# The one vocabulary of labels. The plain words name the class folders of the
# folder layout and are what ``tla-edge record --label`` accepts; a CSV label
# cell may also use the other spellings datasets ship with.
REAL_WORDS = ("real", "live", "bona_fide", "bonafide")
"""Words for bona fide, in the order a folder layout's class folder is looked for."""
ATTACK_WORDS = ("attack", "spoof")
"""Words for an attack of no named species."""
CSV_REAL_WORDS = frozenset(REAL_WORDS) | {"bona-fide", "genuine", "client", "1"}
"""Every spelling of bona fide accepted in a CSV label cell."""
CSV_ATTACK_WORDS = frozenset(ATTACK_WORDS) | {"fake", "imposter", "impostor", "0"}
"""Every spelling of an attack accepted in a CSV label cell (besides ``<species>_attack``)."""

# --- layout detection ---------------------------------------------------------


def _class_dirs(path: Path) -> tuple[Path | None, Path | None]:
    real = next((path / d for d in REAL_WORDS if (path / d).is_dir()), None)
    attack = next((path / d for d in ATTACK_WORDS if (path / d).is_dir()), None)
    return real, attack


def _csv_in(path: Path) -> Path | None:
    """The one CSV with ``path`` and ``label`` columns in a folder, or None."""
    found = []
    for candidate in sorted(path.glob("*.csv")):
        try:
            with candidate.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
        except UnicodeDecodeError as err:
            if candidate.name == MANIFEST_NAME:
                # A recording's manifest with one bad byte must not turn the folder
                # into the folder layout (subjects and sessions gone) without a word.
                raise UserError(_not_utf8(candidate, err)) from None
            continue
        except OSError:
            continue
        cols = {c.strip().lower() for c in header}
        if {"path", "label"} <= cols:
            found.append(candidate)
    return found[0] if len(found) == 1 else None


def detect_layout(path: str | Path) -> str:
    """Says which layout a dataset path has.

    Args:
      path: a dataset folder or a CSV file.

    Returns:
      ``"nuaa"``, ``"folder"`` or ``"csv"``.

    Raises:
      FileNotFoundError: the path does not exist.
      UserError: the path matches no layout; the message says what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset '{path}' not found")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise UserError(
            f"dataset '{path}' is a file but not a .csv; expected a dataset folder or a CSV "
            "manifest with columns path,label"
        )
    if nuaa.find_root(path) is not None:
        return "nuaa"
    real, attack = _class_dirs(path)
    if (real is not None or attack is not None) and _csv_in(path) == path / MANIFEST_NAME:
        # A recording (tla-edge record): real/ and attack/<species>/ plus a
        # manifest.csv that also carries subject and session; read the manifest.
        return "csv"
    if real is not None or attack is not None:
        return "folder"
    if _csv_in(path) is not None:
        return "csv"
    raise UserError(
        f"dataset folder '{path}' matches no layout; expected a NUAA copy (ClientRaw/ and "
        "ImposterRaw/ with client_train_raw.txt, imposter_train_raw.txt), a folder with real/ "
        "and attack/<species>/ subfolders, or a CSV manifest with columns path,label"
    )


def load_dataset(path: str | Path, layout: str = "auto") -> Dataset:
    """Reads a dataset's labelled images.

    Args:
      path: a dataset folder or CSV file.
      layout: ``"auto"`` (see :func:`detect_layout`), ``"nuaa"``, ``"folder"`` or ``"csv"``.

    Returns:
      A :class:`Dataset` (a list of :class:`Record`, sorted by path) that also
      counts unlisted and missing files.

    Raises:
      FileNotFoundError: the path does not exist.
      UserError: unknown layout name, or the path does not have that layout.
    """
    if layout not in ("auto",) + LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; expected one of auto, {', '.join(LAYOUTS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset '{path}' not found")
    if layout == "auto":
        layout = detect_layout(path)
    loader = {"nuaa": nuaa.load_nuaa, "folder": _load_folder, "csv": _load_csv}[layout]
    data = loader(path)
    check_conflicting_labels(data, path)
    return data


def check_conflicting_labels(records: Sequence[Record], where: str | Path) -> None:
    """Refuses one image listed with two labels (real and attack): its score would count twice, both ways.

    Raises:
      UserError: names the image and its labels.
    """
    labels: dict[Path, set[str]] = {}
    for r in records:
        labels.setdefault(Path(os.path.abspath(r.path)), set()).add(r.label)
    both = [p for p, ls in labels.items() if len(ls) > 1]
    if both:
        raise UserError(
            f"dataset '{where}' lists {len(both)} image(s) as both real and attack, e.g. '{both[0]}'; "
            "expected one label per image"
        )


def check_two_classes(records: Sequence[Record], what: str = "dataset") -> None:
    """Checks that a dataset has images of both classes.

    Args:
      records: the records.
      what: how to name the dataset in the message, e.g. ``"dataset 'data/nuaa'"``.

    Raises:
      UserError: no records, or only one class (the message names the missing one).
    """
    if len(records) == 0:
        raise UserError(f"{what} has no images; expected real and attack images")
    counts = Counter(r.label for r in records)
    for label in LABELS:
        if counts[label] == 0:
            other = "attack" if label == "real" else "real"
            raise UserError(
                f"{what} has only {other} images ({counts[other]}) and no {label} images; "
                "expected both real and attack images"
            )


# --- folder -------------------------------------------------------------------


def _load_folder(path: Path) -> Dataset:
    real, attack = _class_dirs(path)
    if real is None and attack is None:
        raise UserError(
            f"dataset folder '{path}' has no real/ or attack/ subfolder; expected real/ and "
            "attack/<species>/"
        )
    data = Dataset(root=path, layout="folder")
    if real is not None:
        for img in images_under(real):
            parts = img.relative_to(real).parts
            data.append(Record(img, "real", "", parts[0] if len(parts) > 1 else "", "", ""))
    if attack is not None:
        for img in images_under(attack):
            parts = img.relative_to(attack).parts
            species = parts[0] if len(parts) > 1 else "attack"
            subject = parts[1] if len(parts) > 2 else ""
            data.append(Record(img, "attack", species, subject, "", ""))
    data.sort(key=lambda r: str(r.path))
    return data


# --- csv ----------------------------------------------------------------------


def parse_label(value: str) -> tuple[str, str]:
    """``(label, species)`` of a CSV label cell.

    Raises:
      ValueError: the label is not one of the accepted spellings.
    """
    v = value.strip().lower()
    if v in CSV_REAL_WORDS:
        return "real", ""
    if v in CSV_ATTACK_WORDS:
        return "attack", ""
    for tail in ("_attack", "-attack", "_spoof"):
        if v.endswith(tail) and len(v) > len(tail):
            return "attack", v[: -len(tail)]
    raise ValueError(
        f"label {value!r} is not real or attack; expected real|live|bona_fide|1 or "
        "attack|spoof|0 (or <species>_attack)"
    )


def _load_csv(path: Path) -> Dataset:
    csv_path = path if path.is_file() else _csv_in(path)
    if csv_path is None:
        raise UserError(
            f"dataset folder '{path}' holds no single CSV with columns path,label; expected one "
            "CSV manifest with columns path,label[,species,subject,session,split]"
        )
    try:
        return _read_csv(csv_path)
    except UnicodeDecodeError as err:
        raise UserError(_not_utf8(csv_path, err)) from None


def _not_utf8(csv_path: Path, err: UnicodeDecodeError) -> str:
    return (f"CSV '{csv_path}' is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "expected a UTF-8 CSV manifest")


def _read_csv(csv_path: Path) -> Dataset:
    data = Dataset(root=csv_path, layout="csv")
    seen: dict[Path, tuple[int, str]] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c: c.strip().lower() for c in reader.fieldnames or []}
        if not {"path", "label"} <= set(cols.values()):
            raise UserError(
                f"CSV '{csv_path}' has columns {list(cols.values())}; expected at least path,label"
            )
        first_missing = ""
        for raw in reader:
            line_no = reader.line_num
            if not any((v or "").strip() for k, v in raw.items() if k is not None):
                continue  # a blank line
            record = _csv_record(csv_path, line_no, raw, cols)
            key = Path(os.path.abspath(record.path))
            if key in seen:
                # listed twice, it would be scored and counted twice
                how, expected = (("twice", "each image once") if seen[key][1] == record.label else
                                 (f"as {seen[key][1]} and as {record.label}", "one label per image"))
                raise UserError(f"CSV '{csv_path}' lines {seen[key][0]} and {line_no} list "
                                f"'{raw.get(_col(cols, 'path'))}' {how}; expected {expected}")
            seen[key] = (line_no, record.label)
            if not record.path.is_file():
                data.note_missing(record.path)
                first_missing = first_missing or f"line {line_no} '{raw.get(_col(cols, 'path'))}'"
                continue
            data.append(record)
    if data.missing:
        data.notes.append(f"{data.missing} CSV rows name files missing on disk and were skipped "
                          f"(first: {first_missing})")
    return data


def _col(cols: dict[str, str], name: str) -> str | None:
    """The header text of the column ``name`` (headers are matched case- and space-insensitively)."""
    return next((k for k, v in cols.items() if v == name), None)


def _csv_record(csv_path: Path, line_no: int, raw: dict, cols: dict[str, str]) -> Record:
    """One CSV row as a Record; a row with too few columns or an unknown label is refused by line."""
    if raw.get(_col(cols, "label")) is None:  # csv.DictReader gives None to the columns a short row lacks
        n = sum(v is not None for k, v in raw.items() if k is not None)
        raise UserError(f"CSV '{csv_path}' line {line_no} has {n} column(s); expected {len(cols)} "
                        f"({','.join(cols.values())})")
    row = {cols[k]: (v or "").strip() for k, v in raw.items() if k is not None}
    if not row.get("path"):
        raise UserError(f"CSV '{csv_path}' line {line_no} has an empty path; expected an image file name")
    try:
        label, species = parse_label(row["label"])
    except ValueError as err:
        raise UserError(f"CSV '{csv_path}' line {line_no}: {err}") from None
    if label == "attack":
        species = row.get("species") or species or "attack"
    img = Path(row["path"].replace("\\", "/"))
    img = img if img.is_absolute() else csv_path.parent / img
    return Record(img, label, species, row.get("subject", ""), row.get("session", ""), row.get("split", ""))


def id_list(value: str | Iterable[str] | None) -> list[str] | None:
    """``"01,02"`` or ``["01", "02"]`` -> ``["01", "02"]``; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def same_id(a: str, b: str) -> bool:
    """True for equal ids, ``"02" == "2"``: session and subject numbers match with or without leading zeros.

    Surrounding spaces are ignored. This is the one definition of "the same
    session" (training's hold-out, calibration sets, evaluation filters).
    """
    a, b = a.strip(), b.strip()
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def id_in(value: str, wanted: Sequence[str] | None) -> bool:
    """True when ``wanted`` is None (no filter) or names ``value`` (see :func:`same_id`)."""
    return wanted is None or any(same_id(value, w) for w in wanted)


def evenly_spread(n: int, limit: int | None) -> np.ndarray:
    """Indices of ``limit`` items evenly spread over ``n`` (all of them when ``limit`` is None or >= n).

    Evenly spread, not the first ``limit``, so a small trial of a sorted
    dataset still sees both classes and every subject and session.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def check_known_ids(flag: str, wanted: Sequence[str] | None, values: Sequence[str], what: str = "images") -> None:
    """Refuses a session or subject asked for that none of ``values`` matches (a typo is not ignored).

    Raises:
      UserError: ``--subjects names 'nobody', in none of the 40 images; expected some of: 0001, 0002``.
    """
    have = sorted(set(values))
    unknown = [w for w in wanted or () if not any(same_id(h, w) for h in have)]
    if unknown:
        shown = ", ".join(h or "''" for h in have[:20]) + (", ..." if len(have) > 20 else "")
        raise UserError(f"{flag} names {', '.join(repr(u) for u in unknown)}, in none of the "
                        f"{len(values)} {what}; expected some of: {shown}")


def filter_records(
    records: Sequence[Record],
    split: str | None = None,
    sessions: str | Iterable[str] | None = None,
    subjects: str | Iterable[str] | None = None,
) -> list[Record]:
    """The records of one split (None: all) and of these sessions and subjects (None: all; ``"2"`` matches ``"02"``).

    Raises:
      UserError: a session or subject asked for is in none of the records (a typo is not ignored).
    """
    want_sessions, want_subjects = id_list(sessions), id_list(subjects)
    check_known_ids("--sessions", want_sessions, [r.session for r in records])
    check_known_ids("--subjects", want_subjects, [r.subject for r in records])
    return [
        r
        for r in records
        if (split is None or r.split == split)
        and id_in(r.session, want_sessions)
        and id_in(r.subject, want_subjects)
    ]


def read_image_rgb(path: str | Path) -> np.ndarray | None:
    """Reads an image file as ``(H, W, 3)`` uint8 RGB; None when it cannot be decoded.

    Grey and 4-channel images are converted to 3-channel RGB. Non-ASCII paths
    work (the bytes are decoded in memory).
    """
    from tla_edge.runtime.sources import bgr_to_rgb, read_image_bgr  # the one image reader

    try:
        return bgr_to_rgb(read_image_bgr(path))
    except ValueError:
        return None
