"""What ``prepare`` writes and prints: the run's state, manifest.csv, prepare.json, the summary."""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from tla_edge import __version__, fileio
from tla_edge.data import crops as crops_lib
from tla_edge.data import datasets
from tla_edge.progress import format_duration

FORMAT = "tla-edge-crops/1"
NO_FACE = "no_face"
CORRUPT = "corrupt"
ERROR = "error"

Rows = dict[tuple[str, str], dict[str, Any]]
"""Manifest rows keyed by ``(source, scale folder)``."""


@dataclasses.dataclass
class Work:
    """A run's state: the rows and skipped sources so far, and what is left to compute."""

    out: Path
    scales: list[float]
    crop_rule: str = "pad"
    """The rule of the crops this run writes (rows of other rules are kept as they are)."""
    rows: Rows = dataclasses.field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    todo: list[tuple[datasets.Record, str, list[float]]] = dataclasses.field(default_factory=list)
    """``(record, source, scales still missing)``."""
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """Crop file name (under a scale folder) per source."""


def postfix(skipped: dict[str, dict[str, str]]) -> str:
    """The progress bar's counts of skipped images, by reason."""
    c = collections.Counter(s["reason"] for s in skipped.values())
    return f"no face {c[NO_FACE]}  corrupt {c[CORRUPT]}" + (f"  errors {c[ERROR]}" if c[ERROR] else "")


def manifest_text(rows: Iterable[dict[str, Any]]) -> str:
    """The manifest CSV of ``rows`` (columns :data:`tla_edge.data.crops.MANIFEST_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=crops_lib.MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def _ordered(rows: Rows) -> list[dict[str, Any]]:
    return [rows[k] for k in sorted(rows, key=lambda k: (float(rows[k]["scale"]), crops_lib.row_rule(rows[k]), k[0]))]


def save_manifest(work: Work) -> None:
    """Writes ``manifest.csv`` of the rows so far (atomically)."""
    fileio.write_text_atomic(work.out / datasets.MANIFEST_NAME, manifest_text(_ordered(work.rows)))


def _per_scale(rows: Rows, scales: Sequence[float], rule: str) -> dict[str, int]:
    """Crops per scale folder name without its ``s`` (``"2.7"``, ``"2.7_shift"``), in scale order."""
    pairs = {(float(r["scale"]), crops_lib.row_rule(r)) for r in rows.values()} | {(s, rule) for s in scales}
    counts = collections.Counter(crops_lib.scale_dir_name(float(r["scale"]), crops_lib.row_rule(r))
                                 for r in rows.values())
    return {crops_lib.scale_dir_name(s, ru)[1:]: counts[crops_lib.scale_dir_name(s, ru)] for s, ru in sorted(pairs)}


def summarize(records: Sequence[datasets.Record], work: Work, elapsed: float) -> dict[str, Any]:
    """The ``summary`` of ``prepare.json``: counts per class, species, session and skip reason."""
    rows, skipped, counts, scales = work.rows, work.skipped, work.counts, work.scales
    by_source: dict[str, dict[str, Any]] = {}
    for r in rows.values():
        by_source.setdefault(r["source"], r)
    reasons = collections.Counter(s["reason"] for s in skipped.values())
    processed = counts["processed"]
    count = lambda key, items: dict(sorted(collections.Counter(key(r) for r in items).items()))  # noqa: E731
    return {
        "images": len(records),
        "processed": processed,
        "resumed": counts["resumed"] + counts["resumed_skipped"],
        "crops_written": counts["crops_written"],
        "crops_per_scale": _per_scale(rows, scales, work.crop_rule),
        "sources_with_crops": len(by_source),
        "no_face": reasons[NO_FACE],
        "corrupt": reasons[CORRUPT],
        "errors": reasons[ERROR],
        "per_class": count(lambda r: r["label"], by_source.values()),
        "per_species": count(lambda r: r["species"], [r for r in by_source.values() if r["label"] == "attack"]),
        "per_session": count(lambda r: r["session"], by_source.values()),
        "skipped_per_class": count(lambda s: s.get("label", ""), skipped.values()),
        "time_s": round(elapsed, 2),
        "img_per_s": round(processed / elapsed, 2) if elapsed > 0 and processed else None,
    }


def finish(records: Sequence[datasets.Record], work: Work, settings: dict[str, Any], dataset_info: dict | None,
           old_runs: list[dict], elapsed: float) -> dict[str, Any]:
    """Writes the manifest and ``prepare.json``; returns the latter's content.

    Runs even after an interruption: the crops written so far stay usable for a resume.
    """
    # Sources this run skipped lose any stale rows they had.
    for key in [k for k in work.rows if k[0] in work.skipped]:
        del work.rows[key]
    save_manifest(work)
    scales = sorted({float(r["scale"]) for r in work.rows.values()} | set(work.scales))
    result = {
        "format": FORMAT,
        "tla_edge_version": __version__,
        "settings": {**settings, "scales": scales},
        "data": dataset_info or {},
        "summary": summarize(records, work, elapsed),
        "skipped": sorted(work.skipped.values(), key=lambda s: s["source"]),
    }
    summary = result["summary"]
    # Each run's own figures, so a resume does not hide the first run's speed.
    result["runs"] = old_runs + [
        {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "scales": work.scales,
            "crop_rule": work.crop_rule,
            **{k: summary[k] for k in ("images", "processed", "resumed", "crops_written", "no_face",
                                       "corrupt", "errors", "time_s", "img_per_s")},
        }
    ]
    fileio.write_json_atomic(work.out / crops_lib.PREPARE_JSON, result)
    return result


def format_summary(summary: dict[str, Any], out: Path | str) -> str:
    """The one-screen text summary printed at the end of ``prepare``."""
    skipped_per_class = summary["skipped_per_class"]
    lines = [
        f"prepared {summary['images']} images into {out}",
        f"  computed now      {summary['processed']}  (kept from a previous run: {summary['resumed']})",
        "  crops per scale   "
        + ", ".join(f"{s}: {n}" for s, n in summary["crops_per_scale"].items()),
        f"  images with crops {summary['sources_with_crops']}  "
        + "  ".join(f"{k} {v}" for k, v in summary["per_class"].items()),
        "  attack species    " + (", ".join(f"{k} {v}" for k, v in summary["per_species"].items()) or "-"),
        "  sessions          " + (", ".join(f"{k or '?'}: {v}" for k, v in summary["per_session"].items()) or "-"),
        f"  skipped           no face {summary['no_face']}, corrupt {summary['corrupt']}, errors {summary['errors']}"
        + ("  (" + ", ".join(f"{k} {v}" for k, v in skipped_per_class.items()) + ")" if skipped_per_class else ""),
        f"  time              {format_duration(summary['time_s'])}"
        + (f"  ({summary['img_per_s']:.1f} img/s)" if summary["img_per_s"] else ""),
        f"  manifest          {Path(out) / datasets.MANIFEST_NAME}  (skipped files listed in prepare.json)",
    ]
    return "\n".join(lines)
