"""Datasets on disk -> labelled records, and prepared crops -> arrays.

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

Prepared crops (written by ``tla-edge prepare``) are read back into arrays by
:func:`load_crops`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from tla_edge.errors import UserError

LAYOUTS = ("nuaa", "folder", "csv")
LABELS = ("real", "attack")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

MANIFEST_NAME = "manifest.csv"
PREPARE_JSON = "prepare.json"
MANIFEST_COLUMNS = (
    "crop",
    "source",
    "label",
    "species",
    "subject",
    "session",
    "split",
    "scale",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "det_score",
)

_REAL_NAMES = {"real", "live", "bona_fide", "bonafide", "bona-fide", "genuine", "client", "1"}
_ATTACK_NAMES = {"attack", "spoof", "fake", "imposter", "impostor", "0"}
_REAL_DIRS = ("real", "live", "bona_fide", "bonafide")
_ATTACK_DIRS = ("attack", "spoof")

# (real folder, attack folder, list suffix) of the three NUAA variants, preferred first.
_NUAA_VARIANTS = (
    ("ClientRaw", "ImposterRaw", "raw"),
    ("ClientFace", "ImposterFace", "face"),
    ("ClientNormalized", "ImposterNormalized", "normalized"),
)
_NUAA_SUBDIRS = ("raw", "Detectedface", "NormalizedFace")
_NUAA_NAME = re.compile(r"^(?P<subject>\d+)_(?P<glasses>\d+)_(?P<pos>\d+)_(?P<session>\d+)_(?P<pic>\d+)$")


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


# --- layout detection ---------------------------------------------------------


def _nuaa_root(path: Path) -> tuple[Path, tuple[str, str, str]] | None:
    """The folder and variant of a NUAA copy at or directly under ``path``, or None."""
    for base in [path] + [path / sub for sub in _NUAA_SUBDIRS]:
        for variant in _NUAA_VARIANTS:
            if (base / variant[0]).is_dir() and (base / variant[1]).is_dir():
                return base, variant
    return None


def _class_dirs(path: Path) -> tuple[Path | None, Path | None]:
    real = next((path / d for d in _REAL_DIRS if (path / d).is_dir()), None)
    attack = next((path / d for d in _ATTACK_DIRS if (path / d).is_dir()), None)
    return real, attack


def _csv_in(path: Path) -> Path | None:
    """The one CSV with ``path`` and ``label`` columns in a folder, or None."""
    found = []
    for candidate in sorted(path.glob("*.csv")):
        try:
            with candidate.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError):
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
    if _nuaa_root(path) is not None:
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
    loader = {"nuaa": _load_nuaa, "folder": _load_folder, "csv": _load_csv}[layout]
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


# --- NUAA ---------------------------------------------------------------------


def parse_nuaa_name(name: str) -> tuple[str, str] | None:
    """``(subject, session)`` of a NUAA file name ``ID_glasses_pos_session_picNo``, or None."""
    m = _NUAA_NAME.match(Path(name.replace("\\", "/")).stem)
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


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _load_nuaa(path: Path) -> Dataset:
    found = _nuaa_root(path)
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
        on_disk = _images_under(root / folder)
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
        for img in _images_under(real):
            parts = img.relative_to(real).parts
            data.append(Record(img, "real", "", parts[0] if len(parts) > 1 else "", "", ""))
    if attack is not None:
        for img in _images_under(attack):
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
    if v in _REAL_NAMES:
        return "real", ""
    if v in _ATTACK_NAMES:
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
        raise UserError(
            f"CSV '{csv_path}' is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "expected a UTF-8 CSV manifest"
        ) from None


def _read_csv(csv_path: Path) -> Dataset:
    base = csv_path.parent
    data = Dataset(root=csv_path, layout="csv")
    seen: dict[Path, tuple[int, str]] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c: c.strip().lower() for c in reader.fieldnames or []}
        if not {"path", "label"} <= set(cols.values()):
            raise UserError(
                f"CSV '{csv_path}' has columns {list(cols.values())}; expected at least path,label"
            )
        for line_no, raw in enumerate(reader, start=2):
            row = {cols[k]: (v or "").strip() for k, v in raw.items() if k is not None}
            if not row.get("path"):
                continue
            try:
                label, species = parse_label(row["label"])
            except ValueError as err:
                raise UserError(f"CSV '{csv_path}' line {line_no}: {err}") from None
            if label == "attack":
                species = row.get("species") or species or "attack"
            img = Path(row["path"].replace("\\", "/"))
            img = img if img.is_absolute() else base / img
            key = Path(os.path.abspath(img))
            if key in seen and seen[key][1] != label:
                raise UserError(
                    f"CSV '{csv_path}' lines {seen[key][0]} and {line_no} list '{row['path']}' as "
                    f"{seen[key][1]} and as {label}; expected one label per image"
                )
            seen.setdefault(key, (line_no, label))
            if not img.is_file():
                data.note_missing(img)
                continue
            data.append(
                Record(img, label, species, row.get("subject", ""), row.get("session", ""), row.get("split", ""))
            )
    if data.missing:
        data.notes.append(f"{data.missing} CSV rows name files missing on disk and were skipped")
    return data


# --- prepared crops -----------------------------------------------------------


def scale_dir_name(scale: float) -> str:
    """The subfolder of one crop scale: ``2.7`` -> ``"s2.7"``, ``3`` -> ``"s3.0"``."""
    scale = float(scale)
    text = f"{scale:.1f}" if round(scale, 1) == scale else f"{scale:g}"
    return f"s{text}"


def read_manifest(crops_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``CROPS/manifest.csv`` as dicts of strings.

    Raises:
      FileNotFoundError: no manifest.
      UserError: the manifest lacks the expected columns.
    """
    manifest = Path(crops_dir) / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(
            f"crops manifest '{manifest}' not found; expected a folder written by tla-edge prepare"
        )
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("crop", "label", "scale") if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(
                    f"crops manifest '{manifest}' lacks columns {missing}; expected {','.join(MANIFEST_COLUMNS)}"
                )
            return list(reader)
    except UnicodeDecodeError as err:
        raise UserError(f"crops manifest '{manifest}' is not UTF-8 text (offset {err.start}); "
                        "expected the manifest.csv tla-edge prepare writes") from None


def is_crops_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder written by ``tla-edge prepare`` (manifest with a crop column)."""
    manifest = Path(path) / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError as err:
        raise UserError(f"crops manifest '{manifest}' is not UTF-8 text (offset {err.start}); "
                        "expected the manifest.csv tla-edge prepare writes") from None
    return "crop" in header and "scale" in header


@dataclasses.dataclass
class CropSet:
    """Prepared crops of one scale as arrays, with their per-row annotations."""

    images: np.ndarray
    """``(N, H, W, 3)`` uint8 RGB crops."""
    labels: np.ndarray
    """``(N,)`` int8: 1 real (live, bona fide), 0 attack."""
    species: list[str]
    """Attack species per row (``""`` for real)."""
    subjects: list[str]
    """Subject per row."""
    sessions: list[str]
    """Session per row."""
    sources: list[str]
    """Source image per row (as in the manifest)."""
    splits: list[str]
    """Split per row."""
    crops: list[Path]
    """Crop file per row."""
    scale: float
    """The crop scale of every row."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: np.ndarray | Sequence[bool] | Sequence[int]) -> "CropSet":
        """The rows selected by a boolean mask or an index array."""
        idx = np.asarray(mask)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return CropSet(
            self.images[idx],
            self.labels[idx],
            pick(self.species),
            pick(self.subjects),
            pick(self.sessions),
            pick(self.sources),
            pick(self.splits),
            pick(self.crops),
            self.scale,
        )

    def summary(self) -> dict:
        """Counts per class, species and session."""
        return {
            "crops": len(self),
            "scale": self.scale,
            "real": int((self.labels == 1).sum()),
            "attack": int((self.labels == 0).sum()),
            "species": dict(Counter(s for s, y in zip(self.species, self.labels) if y == 0)),
            "sessions": dict(sorted(Counter(self.sessions).items())),
        }


def id_list(value: str | Iterable[str] | None) -> list[str] | None:
    """``"01,02"`` or ``["01", "02"]`` -> ``["01", "02"]``; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def same_id(a: str, b: str) -> bool:
    """True for equal ids, ``"02" == "2"``: session and subject numbers match with or without leading zeros."""
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def load_crops(
    crops_dir: str | Path,
    scale: float | None = None,
    split: str | None = None,
    sessions: str | Iterable[str] | None = None,
    subjects: str | Iterable[str] | None = None,
    workers: int = 4,
) -> CropSet:
    """Reads prepared crops of one scale into arrays.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      scale: the crop scale to read; may be None only when the folder holds one scale.
      split: keep only rows of this split (None: all).
      sessions: keep only these sessions (a list or a comma-separated string; ``"2"`` matches ``"02"``).
      subjects: keep only these subjects (same forms as ``sessions``).
      workers: threads decoding PNGs.

    Returns:
      The :class:`CropSet`, in manifest order.

    Raises:
      FileNotFoundError: no manifest, or a crop file it names is missing.
      UserError: several scales and none chosen, a scale not present, or no row
        left after filtering (the message lists what is there).
    """
    crops_dir = Path(crops_dir)
    rows = read_manifest(crops_dir)
    scales = sorted({float(r["scale"]) for r in rows})
    if not rows:
        raise UserError(f"crops folder '{crops_dir}' has an empty manifest; run tla-edge prepare first")
    if scale is None:
        if len(scales) > 1:
            raise UserError(
                f"crops folder '{crops_dir}' holds scales {', '.join(f'{s:g}' for s in scales)}; "
                "choose one (scale=... / --scale)"
            )
        scale = scales[0]
    scale = float(scale)
    matching = [s for s in scales if abs(s - scale) < 1e-6]
    if not matching:
        raise UserError(
            f"crops folder '{crops_dir}' has no crops at scale {scale:g}; it holds "
            f"{', '.join(f'{s:g}' for s in scales)}"
        )
    rows = [r for r in rows if abs(float(r["scale"]) - scale) < 1e-6]
    want_sessions = id_list(sessions)
    want_subjects = id_list(subjects)
    kept = [
        r
        for r in rows
        if (split is None or r.get("split", "") == split)
        and (want_sessions is None or any(same_id(r.get("session", ""), s) for s in want_sessions))
        and (want_subjects is None or any(same_id(r.get("subject", ""), s) for s in want_subjects))
    ]
    if not kept:
        raise UserError(
            f"no crops in '{crops_dir}' at scale {scale:g} match split={split!r} "
            f"sessions={want_sessions} subjects={want_subjects}; it has splits "
            f"{sorted({r.get('split', '') for r in rows})}, sessions "
            f"{sorted({r.get('session', '') for r in rows})}"
        )
    paths = [crops_dir / r["crop"] for r in kept]

    def read(p: Path) -> np.ndarray:
        rgb = read_image_rgb(p)
        if rgb is None:
            raise FileNotFoundError(f"crop '{p}' named in the manifest is missing or unreadable")
        return rgb

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = list(pool.map(read, paths))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise UserError(f"crops in '{crops_dir}' at scale {scale:g} have several sizes {sorted(shapes)}")
    labels = np.array([1 if r["label"] == "real" else 0 for r in kept], dtype=np.int8)
    return CropSet(
        images=np.stack(images),
        labels=labels,
        species=[r.get("species", "") for r in kept],
        subjects=[r.get("subject", "") for r in kept],
        sessions=[r.get("session", "") for r in kept],
        sources=[r.get("source", "") for r in kept],
        splits=[r.get("split", "") for r in kept],
        crops=paths,
        scale=scale,
    )


def read_prepare_json(crops_dir: str | Path) -> dict:
    """``CROPS/prepare.json`` as a dict; ``{}`` when absent."""
    p = Path(crops_dir) / PREPARE_JSON
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"'{p}' is not valid JSON: {err}") from err


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
