"""Resuming ``prepare``: what an earlier run left in the crops folder, and the journal a run keeps.

A crop is written under a temporary name and renamed into place, so a crop
under its final name is always whole. Once all of an image's crops are in
place (or the image is skipped), the run appends that image's manifest rows
(box, detection score, label, species, subject, session, split, crop rule,
scale; or the skip and its reason) to ``OUT/prepare.partial.csv``, the
journal, and flushes it at once. The journal's first line holds the run's
settings. The manifest and ``prepare.json`` are written at the end (also on
Ctrl-C, SIGTERM, SIGHUP), and the journal is then removed.

A run killed before that (SIGKILL, out of memory, a native abort) leaves its
crops and the journal; the re-run reads the journal's lines as manifest rows
(after those of an earlier ``manifest.csv``, which they override) and
computes only the images it lacks. A journal line is reused only when its crop
is on disk and its source image still has the size and modification time it
had; otherwise that image is computed again. A crop on disk without a journal
line (the kill came between the rename and the line) is computed again.

Settings: a journal made with another crop size, detector, min score,
dataset or crop implementation is refused in one line naming both values,
exactly like a crops folder whose ``prepare.json`` differs (``force``
recomputes everything and starts a new journal). Other scales or another
crop rule are no mismatch: their crops live in their own scale folders, and
their rows are kept, as a manifest's are.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from tla_edge import fileio
from tla_edge.data import crops as crops_lib
from tla_edge.data import datasets
from tla_edge.errors import UserError

JOURNAL_NAME = "prepare.partial.csv"
JOURNAL_MAGIC = "#tla-edge-prepare-journal/1"
"""The first line of a journal: this, a space, and the run's settings as JSON."""
JOURNAL_COLUMNS = crops_lib.MANIFEST_COLUMNS + ("skip_reason", "skip_detail", "source_size", "source_mtime_ns")
"""A crop row has ``crop`` and empty ``skip_*``; a skipped image has an empty ``crop``."""
CHECKED_SETTINGS = ("size", "detector", "min_score", "dataset")


# --- an earlier run's settings ------------------------------------------------------


def same_setting(key: str, old: Any, new: Any, root: Path | None) -> bool:
    """True when an earlier run's setting equals this run's (a dataset may be named another way)."""
    if old == new:
        return True
    if key != "dataset" or old is None or root is None or str(old).startswith("<DIR>/"):
        return False
    # The same folder named another way ("data" and "./data"), or an absolute
    # path written before prepare.json stored portable ones.
    return Path(old).resolve() == root.resolve()


def check_settings(what: str, old_settings: dict[str, Any], settings: dict[str, Any], root: Path | None) -> None:
    """Refuses to resume ``what`` (``"crops folder 'X'"``) made with other settings, in one line naming both.

    Raises:
      UserError: another crop implementation, another version of this run's
        crop rule, or another size, detector, min score or dataset.
    """
    if old_settings.get("crop_fingerprint") != settings["crop_fingerprint"]:
        raise UserError(
            f"{what} was made by another version of the crop "
            f"(crop_fingerprint {old_settings.get('crop_fingerprint')!r}, now {settings['crop_fingerprint']!r}); "
            "its crops would differ from the runtime's: pass --force to recompute them, or use another --out"
        )
    rule, fingerprint = next(iter(settings["crop_rules"].items()))
    old_fingerprint = (old_settings.get("crop_rules") or {}).get(rule)
    if old_fingerprint is not None and old_fingerprint != fingerprint:
        raise UserError(
            f"{what} holds '{rule}' crops made by another version of that rule "
            f"(fingerprint {old_fingerprint!r}, now {fingerprint!r}); pass --force to recompute them, or use another --out"
        )
    for key in CHECKED_SETTINGS:
        if key in old_settings and not same_setting(key, old_settings[key], settings[key], root):
            raise UserError(
                f"{what} was prepared with {key}={old_settings[key]!r} but this run asks "
                f"{key}={settings[key]!r}; use the same settings to resume, another --out, or --force"
            )


def only_crop_folders(out: Path) -> bool:
    """True when ``out`` holds nothing but what prepare writes before its manifest.

    That is ``s<scale>[_shift]/`` folders of PNGs, the journal, and temporary files a kill left behind.
    """
    for entry in out.iterdir():
        if not (entry.is_dir() and re.fullmatch(r"s\d+(\.\d+)?(_shift)?", entry.name)):
            if entry.is_file() and (entry.name == JOURNAL_NAME
                                    or (entry.name.startswith(".") and entry.name.endswith(".tmp"))):
                continue
            return False
        for f in entry.rglob("*"):
            if f.is_file() and f.suffix.lower() != ".png" and not f.name.endswith(".tmp"):
                return False
    return True


def check_out_dir(out: Path, force: bool, settings: dict[str, Any],
                  dataset_root: Path | None = None) -> tuple[list[dict], dict[str, dict]]:
    """Checks the output folder; returns the old manifest rows and skipped entries to resume from.

    A folder without a manifest but with only what a killed run leaves
    (:func:`only_crop_folders`) is resumed from its journal (:func:`load_journal`).

    Raises:
      UserError: ``out`` is a file, a foreign non-empty folder, or crops made
        with other settings (without ``force``).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"output '{out}' is a file; expected a folder for the crops")
    if not out.exists():
        fileio.check_writable(out, force=False)
        return [], {}
    manifest = out / datasets.MANIFEST_NAME
    if not manifest.is_file():
        if any(out.iterdir()) and not force and not only_crop_folders(out):
            raise UserError(
                f"output folder '{out}' exists, is not empty and holds no {datasets.MANIFEST_NAME}; "
                "expected a new or a tla-edge crops folder (pass --force to write into it)"
            )
        return [], {}
    if force:
        return [], {}
    old = crops_lib.read_prepare_json(out)
    check_settings(f"crops folder '{out}'", old.get("settings", {}), settings, dataset_root)
    rows = crops_lib.read_manifest(out)
    skipped = {s["source"]: s for s in old.get("skipped", []) if "source" in s}
    return rows, skipped


# --- the journal ------------------------------------------------------------------


def source_path(source: str, root: Path | None) -> Path:
    """The image a manifest ``source`` names (relative to the dataset folder, or absolute)."""
    p = Path(source)
    if p.is_absolute() or root is None:
        return p
    return (root.parent if root.is_file() else root) / p


def source_stamp(path: Path) -> tuple[str, str]:
    """``(size, mtime_ns)`` of a source image as text; ``("", "")`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return "", ""
    return str(st.st_size), str(st.st_mtime_ns)


def read_journal(out: Path) -> tuple[dict[str, Any], list[dict[str, str]]] | None:
    """``(settings, lines)`` of ``OUT/prepare.partial.csv``; None when there is none.

    A last line cut short by the kill (no line end) is left out.

    Raises:
      UserError: the file is not a journal tla-edge prepare wrote.
    """
    path = out / JOURNAL_NAME
    if not path.is_file():
        return None
    raw = path.read_bytes()
    raw = raw[: raw.rfind(b"\n") + 1]  # whole lines only
    text = raw.decode("utf-8", errors="replace")
    first, _, body = text.partition("\n")
    magic, _, settings_json = first.partition(" ")
    try:
        settings = json.loads(settings_json) if magic == JOURNAL_MAGIC else None
    except json.JSONDecodeError:
        settings = None
    reader = csv.DictReader(io.StringIO(body))
    if not isinstance(settings, dict) or tuple(reader.fieldnames or ()) != JOURNAL_COLUMNS:
        raise UserError(f"'{path}' is not a journal of tla-edge prepare (first line {first[:60]!r}); expected "
                        f"'{JOURNAL_MAGIC} {{settings}}' and its columns: remove it, or pass --force")
    return settings, [line for line in reader if line.get("source")]


def load_journal(out: Path, settings: dict[str, Any], root: Path | None,
                 force: bool) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The journal lines still valid (their source unchanged), and the journal's settings.

    Raises:
      UserError: the journal was made with other settings (see :func:`check_settings`), or is not a journal.
    """
    found = None if force else read_journal(out)
    if found is None:
        return [], {}
    old_settings, lines = found
    check_settings(f"unfinished run in '{out}' ({JOURNAL_NAME})", old_settings, settings, root)
    stamps: dict[str, tuple[str, str]] = {}
    kept = []
    for line in lines:
        source = line["source"]
        if source not in stamps:
            stamps[source] = source_stamp(source_path(source, root))
        if stamps[source] != ("", "") and stamps[source] == (line["source_size"], line["source_mtime_ns"]):
            kept.append(line)
    return kept, old_settings


def merge_journal(old_rows: list[dict], old_skipped: dict[str, dict],
                  lines: Sequence[dict[str, str]]) -> tuple[list[dict], dict[str, dict]]:
    """An earlier manifest's rows and skips with the journal's lines over them (a later line wins)."""
    key = lambda r: (r["source"], crops_lib.scale_dir_name(float(r["scale"]), crops_lib.row_rule(r)))  # noqa: E731
    rows = {key(r): r for r in old_rows}
    skipped = dict(old_skipped)
    for line in lines:
        if line["crop"]:
            skipped.pop(line["source"], None)
            rows[key(line)] = {c: line[c] for c in crops_lib.MANIFEST_COLUMNS}
        else:
            skipped[line["source"]] = {"source": line["source"], "label": line["label"],
                                       "reason": line["skip_reason"], "detail": line["skip_detail"]}
    return list(rows.values()), skipped


class Journal:
    """The append-only ``OUT/prepare.partial.csv`` of a running ``prepare``: one flush per finished image.

    Opening it rewrites it (atomically) as this run's settings and the lines
    kept from the last one, so it never grows stale lines or a cut-off end.
    """

    def __init__(self, out: Path, settings: dict[str, Any], kept: Sequence[dict[str, str]] = ()) -> None:
        self.path = out / JOURNAL_NAME
        head = io.StringIO()
        head.write(f"{JOURNAL_MAGIC} {json.dumps(settings, sort_keys=True)}\n")
        writer = csv.DictWriter(head, fieldnames=JOURNAL_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        fileio.write_text_atomic(self.path, head.getvalue())
        self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace", newline="")

    def record(self, work: Any, item: tuple[datasets.Record, str, list[float]]) -> None:
        """Appends what ``work`` now holds for one image (its new crop rows, or its skip) and flushes."""
        rec, source, missing = item
        size, mtime = source_stamp(rec.path)
        stamp = {"source_size": size, "source_mtime_ns": mtime}
        skip = work.skipped.get(source)
        if skip is not None:
            lines = [{"crop": "", "source": source, "label": rec.label, "skip_reason": skip["reason"],
                      "skip_detail": " ".join(str(skip.get("detail", "")).split()), **stamp}]
        else:
            lines = [{**work.rows[(source, crops_lib.scale_dir_name(s, work.crop_rule))], **stamp} for s in missing]
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=JOURNAL_COLUMNS, lineterminator="\n", extrasaction="ignore").writerows(lines)
        self._file.write(buf.getvalue())  # one write per image: a kill cuts at most its last line
        self._file.flush()

    def close(self) -> None:
        """Closes the file (it stays on disk until :func:`remove_journal`)."""
        self._file.close()


def remove_journal(out: Path) -> None:
    """Removes the journal once the manifest and ``prepare.json`` hold everything it said."""
    (out / JOURNAL_NAME).unlink(missing_ok=True)
