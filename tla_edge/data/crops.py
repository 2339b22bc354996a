"""Prepared crops (written by ``tla-edge prepare``): the manifest, and the crops read back into arrays.

A crops folder holds one subfolder per crop scale and rule (:func:`scale_dir_name`:
``s2.7`` padded, ``s2.7_shift`` shifted inside the frame), ``manifest.csv``
with one row per crop (:data:`MANIFEST_COLUMNS`) and ``prepare.json``
describing how they were made. A manifest without a ``crop_rule`` column
(written before the rule existed) holds ``"pad"`` crops.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tla_edge.data.datasets import MANIFEST_NAME, check_known_ids, id_in, id_list, read_image_rgb
from tla_edge.data.records import manifest_header
from tla_edge.errors import UserError
from tla_edge.runtime.preprocess import DEFAULT_CROP_RULE, check_crop_rule

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
    "crop_rule",
)


def scale_dir_name(scale: float, rule: str = DEFAULT_CROP_RULE) -> str:
    """The subfolder of one crop scale and rule: ``2.7`` -> ``"s2.7"``, ``3`` -> ``"s3.0"``;
    ``(2.7, "shift")`` -> ``"s2.7_shift"``, so crops of two rules never share a folder."""
    scale = float(scale)
    text = f"{scale:.1f}" if round(scale, 1) == scale else f"{scale:g}"
    return f"s{text}" if check_crop_rule(rule) == "pad" else f"s{text}_{rule}"


def row_rule(row: dict[str, str]) -> str:
    """The crop rule of a manifest row (``"pad"`` when the column is absent or empty)."""
    return row.get("crop_rule") or DEFAULT_CROP_RULE


def read_manifest(crops_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``CROPS/manifest.csv`` as dicts of strings.

    Raises:
      FileNotFoundError: no manifest.
      UserError: the manifest lacks the expected columns, or a label is not real or attack.
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
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise UserError(f"crops manifest '{manifest}' is not UTF-8 text (offset {err.start}); "
                        "expected the manifest.csv tla-edge prepare writes") from None
    # One label vocabulary: prepare writes real or attack; anything else is not silently an attack.
    for line_no, r in enumerate(rows, start=2):
        if r["label"] not in ("real", "attack"):
            raise UserError(f"crops manifest '{manifest}' line {line_no}: label {r['label']!r} is not real or "
                            "attack; expected the labels tla-edge prepare writes")
    return rows


def is_crops_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder written by ``tla-edge prepare`` (manifest with a crop column)."""
    header = manifest_header(Path(path) / MANIFEST_NAME, "crops manifest", "prepare")
    return header is not None and "crop" in header and "scale" in header


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
    crop_rule: str = DEFAULT_CROP_RULE
    """The crop rule of every row (:data:`tla_edge.runtime.preprocess.CROP_RULES`)."""

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
            self.crop_rule,
        )

    def summary(self) -> dict:
        """Counts per class, species and session."""
        return {
            "crops": len(self),
            "scale": self.scale,
            "crop_rule": self.crop_rule,
            "real": int((self.labels == 1).sum()),
            "attack": int((self.labels == 0).sum()),
            "species": dict(Counter(s for s, y in zip(self.species, self.labels) if y == 0)),
            "sessions": dict(sorted(Counter(self.sessions).items())),
        }


def _choose_scale(rows: Sequence[dict[str, str]], scale: float | None, crops_dir: Path) -> float:
    """The scale to read: the one asked for, or the folder's only one.

    Raises:
      UserError: an empty manifest, several scales and none chosen, or a scale not present.
    """
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
    if not any(abs(s - scale) < 1e-6 for s in scales):
        raise UserError(
            f"crops folder '{crops_dir}' has no crops at scale {scale:g}; it holds "
            f"{', '.join(f'{s:g}' for s in scales)}"
        )
    return scale


def _choose_rule(rows: Sequence[dict[str, str]], rule: str | None, scale: float, crops_dir: Path) -> str:
    """The crop rule to read at one scale: the one asked for, or the only one there.

    Raises:
      UserError: several rules and none chosen, or the rule asked for is not there.
    """
    rules = sorted({row_rule(r) for r in rows})
    if rule is None:
        if len(rules) > 1:
            raise UserError(
                f"crops folder '{crops_dir}' holds crop rules {', '.join(rules)} at scale {scale:g}; "
                "choose one (crop_rule=... / --crop-rule)"
            )
        return rules[0]
    if rule not in rules:
        raise UserError(
            f"crops folder '{crops_dir}' has no '{rule}' crops at scale {scale:g} (it holds "
            f"{', '.join(rules)}); prepare them with --scales {scale:g} --crop-rule {rule}"
        )
    return rule


def _read_crop_images(paths: Sequence[Path], workers: int) -> list[np.ndarray]:
    """Decodes the crop files in threads, in order.

    Raises:
      FileNotFoundError: a crop file is missing or unreadable.
    """

    def read(p: Path) -> np.ndarray:
        rgb = read_image_rgb(p)
        if rgb is None:
            raise FileNotFoundError(f"crop '{p}' named in the manifest is missing or unreadable")
        return rgb

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(read, paths))


def load_crops(
    crops_dir: str | Path,
    scale: float | None = None,
    split: str | None = None,
    sessions: str | Iterable[str] | None = None,
    subjects: str | Iterable[str] | None = None,
    workers: int = 4,
    crop_rule: str | None = None,
) -> CropSet:
    """Reads prepared crops of one scale and one crop rule into arrays.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      scale: the crop scale to read; may be None only when the folder holds one scale.
      crop_rule: ``"pad"`` or ``"shift"`` (a model's metadata ``crop_rule``);
        may be None only when the folder holds one rule at that scale.
      split: keep only rows of this split (None: all).
      sessions: keep only these sessions (a list or a comma-separated string; ``"2"`` matches ``"02"``).
      subjects: keep only these subjects (same forms as ``sessions``).
      workers: threads decoding PNGs.

    Returns:
      The :class:`CropSet`, in manifest order.

    Raises:
      FileNotFoundError: no manifest, or a crop file it names is missing.
      UserError: several scales (or rules) and none chosen, a scale (or rule)
        not present, or no row left after filtering (the message lists what is there).
      ValueError: an unknown crop rule.
    """
    crops_dir = Path(crops_dir)
    if crop_rule is not None:
        check_crop_rule(crop_rule)
    rows = read_manifest(crops_dir)
    scale = _choose_scale(rows, scale, crops_dir)
    rows = [r for r in rows if abs(float(r["scale"]) - scale) < 1e-6]
    crop_rule = _choose_rule(rows, crop_rule, scale, crops_dir)
    rows = [r for r in rows if row_rule(r) == crop_rule]
    want_sessions = id_list(sessions)
    want_subjects = id_list(subjects)
    check_known_ids("--sessions", want_sessions, [r.get("session", "") for r in rows], "crops")
    check_known_ids("--subjects", want_subjects, [r.get("subject", "") for r in rows], "crops")
    kept = [
        r
        for r in rows
        if (split is None or r.get("split", "") == split)
        and id_in(r.get("session", ""), want_sessions)
        and id_in(r.get("subject", ""), want_subjects)
    ]
    if not kept:
        raise UserError(
            f"no '{crop_rule}' crops in '{crops_dir}' at scale {scale:g} match split={split!r} "
            f"sessions={want_sessions} subjects={want_subjects}; it has splits "
            f"{sorted({r.get('split', '') for r in rows})}, sessions "
            f"{sorted({r.get('session', '') for r in rows})}"
        )
    paths = [crops_dir / r["crop"] for r in kept]
    images = _read_crop_images(paths, workers)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise UserError(f"crops in '{crops_dir}' at scale {scale:g} have several sizes {sorted(shapes)}")
    return CropSet(
        images=np.stack(images),
        labels=np.array([1 if r["label"] == "real" else 0 for r in kept], dtype=np.int8),
        species=[r.get("species", "") for r in kept],
        subjects=[r.get("subject", "") for r in kept],
        sessions=[r.get("session", "") for r in kept],
        sources=[r.get("source", "") for r in kept],
        splits=[r.get("split", "") for r in kept],
        crops=paths,
        scale=scale,
        crop_rule=crop_rule,
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
