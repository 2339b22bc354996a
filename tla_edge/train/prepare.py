"""Detect and crop the faces of a dataset into a crops folder with a manifest.

Every image is read once and searched once by the face detector (image mode,
largest face); the face is then cropped at every scale by the shared
:func:`tla_edge.runtime.preprocess.crop_face` with one crop rule and written as a PNG under
``OUT/s<scale>/`` (``"pad"``) or ``OUT/s<scale>_shift/`` (``"shift"``): crops of
two rules live side by side in one folder and never mix. ``OUT/manifest.csv`` has one row per image per scale;
``OUT/prepare.json`` keeps the settings, the summary and every skipped image
with its reason. Unreadable images and frames without a face are skipped and
counted, never fatal. A second run into the same folder keeps the crops it
finds and computes only what is missing; ``force`` recomputes everything. A
run killed before it writes its manifest (SIGKILL, out of memory) resumes
from the journal it keeps, ``OUT/prepare.partial.csv``
(:mod:`tla_edge.train.prepare_resume`).

The steps, in order: :func:`plan_dataset` and :func:`check_plan` (which
records, what to record about them), :func:`plan_work` (what is already done), :func:`crop_all`
(detect and crop), then the manifest and ``prepare.json``
(:func:`~tla_edge.train.prepare_output.finish`); :func:`prepare` runs the last three.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge import fileio
from tla_edge.data import datasets
from tla_edge.data import crops as crops_lib
from tla_edge.data.scoring import prefetch
from tla_edge.errors import UserError
from tla_edge.progress import Progress
from tla_edge.runtime import preprocess
from tla_edge.runtime.faces import DEFAULT_MIN_SCORE
from tla_edge.runtime.metadata import portable_path
from tla_edge.train import prepare_resume as resume
from tla_edge.train.prepare_output import CORRUPT, ERROR, NO_FACE, Work, finish, postfix
from tla_edge.train.prepare_resume import check_out_dir


# --- step 1: which records ------------------------------------------------------


def shown_path(path: Path | str) -> str:
    """A path printable anywhere: bytes that are not UTF-8 shown as ``\\xNN``."""
    return fileio.printable(path)


def split_undecodable(records: Sequence[datasets.Record]) -> tuple[list[datasets.Record], list[datasets.Record]]:
    """``(usable, not_utf8)``: records whose path is valid UTF-8, and those whose name is not.

    A name that is not UTF-8 cannot be written to the UTF-8 manifest, so it is
    skipped, named on the console and in ``prepare.json``; the run stays resumable.
    """
    good, bad = [], []
    for r in records:
        try:
            str(r.path).encode("utf-8")
        except UnicodeEncodeError:
            bad.append(r)
        else:
            good.append(r)
    return good, bad


def select_records(
    records: Sequence[datasets.Record], split: str | None = None, limit: int | None = None
) -> list[datasets.Record]:
    """Filters by split, then keeps ``limit`` records evenly spread over the list.

    Evenly spread (not the first N) so a small trial still sees both classes
    and every subject and session of a sorted dataset.
    """
    out = [r for r in records if split is None or r.split == split]
    return [out[i] for i in datasets.evenly_spread(len(out), limit)]


class PlannedData(NamedTuple):
    """The records a ``prepare`` run works on, and what it records about them."""

    records: list
    """The usable :class:`~tla_edge.data.datasets.Record` of the chosen split, spread to the limit."""
    root: Path
    """The dataset folder (sources are stored relative to it)."""
    names_not_utf8: list
    """Records skipped because their file name is not valid UTF-8."""
    what: str
    """The dataset and split, as messages name them."""
    splits: list
    """Every split of the dataset."""
    info: dict
    """What ``prepare.json`` keeps about the dataset (portable paths)."""


def plan_dataset(records: datasets.Dataset, data: Path, split: str | None = None,
                 limit: int | None = None) -> PlannedData:
    """Picks the records of a loaded dataset to prepare; :func:`check_plan` says whether they can be.

    Args:
      records: the dataset (:func:`tla_edge.data.datasets.load_dataset`).
      data: the dataset path as given (recorded, portable, in ``prepare.json``).
      split: keep only this split (None: every split).
      limit: keep this many records, evenly spread (None: all).
    """
    summary = records.summary()
    picked = select_records(records, split=split, limit=limit)
    picked, bad_names = split_undecodable(picked)
    root = Path(records.root)
    info = {
        "path": portable_path(data),
        "layout": records.layout,
        "split": split,
        "limit": limit,
        **{k: v for k, v in summary.items() if k in ("unlisted", "missing", "notes")},
        "missing_files": [shown_path(portable_path(p, root)) for p in records.missing_paths],
        "names_not_utf8": [shown_path(portable_path(r.path, root)) for r in bad_names],
    }
    what = f"dataset '{data}'" + (f" split {split!r}" if split else "")
    return PlannedData(picked, root, bad_names, what, sorted({r.split for r in records}), info)


def check_plan(plan: PlannedData, split: str | None) -> None:
    """Raises UserError when the chosen split has no images or the records lack a class."""
    if split is not None and not plan.records:
        raise UserError(f"{plan.what} has no images; its splits are {plan.splits}")
    datasets.check_two_classes(plan.records, plan.what)


# --- step 2: what is already done -------------------------------------------------


def source_key(path: Path, root: Path | None) -> str:
    """The image path relative to the dataset root, ``/``-separated; absolute if outside it."""
    if root is not None:
        base = root.parent if root.is_file() else root
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return path.resolve().as_posix()


def crop_name(source: str, used: set[str]) -> str:
    """A unique PNG name (relative to a scale folder) mirroring the source path."""
    p = Path(source)
    if p.is_absolute():
        digest = hashlib.sha1(source.encode()).hexdigest()[:10]
        rel = Path("_external") / f"{p.stem}_{digest}"
    else:
        rel = p.with_suffix("")
    name = rel.as_posix() + ".png"
    if name in used:
        name = rel.as_posix() + "_" + p.suffix.lstrip(".").lower() + ".png"
    used.add(name)
    return name


def crop_fingerprint(rule: str = preprocess.DEFAULT_CROP_RULE) -> str:
    """A hash of :func:`tla_edge.runtime.preprocess.crop_face` under one rule on fixed synthetic frames.

    It changes whenever the crop contract's pixels change (window geometry,
    padding, resampling), so a resumed ``prepare`` never mixes crops made by
    two implementations, and a crops folder says which one made it. The
    ``"pad"`` fingerprint is the one crops folders recorded before rules existed.
    """
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    parts = [
        preprocess.crop_face(frame, (250.5, 150.25, 120.0, 140.0), 3.0, 160, rule),  # large downscale
        preprocess.crop_face(frame, (300.0, 200.0, 50.0, 60.0), 2.7, 160, rule),  # upscale
        preprocess.crop_face(frame, (-20.0, 400.0, 90.0, 90.0), 1.5, 64, rule),  # padded (or shifted) corner
    ]
    if rule != "pad":
        parts.append(preprocess.crop_face(frame, (200.0, 100.0, 200.0, 240.0), 3.0, 96, rule))  # shrunk to fit
    return hashlib.sha1(b"".join(p.tobytes() for p in parts)).hexdigest()[:16]


def what_is_done(out: Path, force: bool, settings: dict[str, Any], root: Path | None
                 ) -> tuple[list[dict], dict[str, dict], list[dict], list[dict[str, str]]]:
    """What earlier runs left in ``out``: ``(rows, skipped, runs, journal lines)``.

    The rows and skips of ``manifest.csv`` and ``prepare.json`` with those of
    an unfinished run's journal over them (:mod:`tla_edge.train.prepare_resume`);
    ``settings["crop_rules"]`` gains the fingerprint of every rule whose crops are kept.

    Raises:
      UserError: the folder cannot be used, or was made with other settings (without ``force``).
    """
    old_rows, old_skipped = check_out_dir(out, force, settings, root)
    journal_lines, journal_settings = resume.load_journal(out, settings, root, force) if out.is_dir() else ([], {})
    old_rows, old_skipped = resume.merge_journal(old_rows, old_skipped, journal_lines)
    old = {} if force else crops_lib.read_prepare_json(out)
    # The fingerprint of every rule whose crops the folder keeps.
    kept_rules = {crops_lib.row_rule(r) for r in old_rows}
    old_rules = {"pad": settings["crop_fingerprint"], **(old.get("settings", {}).get("crop_rules") or {}),
                 **(journal_settings.get("crop_rules") or {})}
    crop_rule, fingerprint = next(iter(settings["crop_rules"].items()))
    settings["crop_rules"] = {**{r: old_rules[r] for r in sorted(kept_rules) if r in old_rules},
                              crop_rule: fingerprint}
    return old_rows, old_skipped, list(old.get("runs", [])), journal_lines


def plan_work(records: Sequence[datasets.Record], out: Path, scales: Sequence[float], root: Path | None,
              old_rows: list[dict], old_skipped: dict[str, dict], crop_rule: str = preprocess.DEFAULT_CROP_RULE) -> Work:
    """Splits the records into those done by an earlier run and those left to compute.

    Crops of another rule (another scale folder) never count as done.
    """
    work = Work(out, list(scales), crop_rule)
    old_by_key = {(r["source"], crops_lib.scale_dir_name(float(r["scale"]), crops_lib.row_rule(r))): r
                  for r in old_rows}
    used_names: set[str] = {r["crop"].split("/", 1)[1] for r in old_rows if "/" in r["crop"]}
    work.rows = dict(old_by_key)
    for rec in records:
        source = source_key(rec.path, root)
        if source in old_skipped:
            work.skipped[source] = old_skipped[source]
            work.counts["resumed_skipped"] += 1
            continue
        keys = {s: (source, crops_lib.scale_dir_name(s, crop_rule)) for s in scales}
        missing = [s for s in scales if keys[s] not in old_by_key or not (out / old_by_key[keys[s]]["crop"]).is_file()]
        if missing:
            work.todo.append((rec, source, missing))
        else:
            work.counts["resumed"] += 1
    old_names = {src: r["crop"].split("/", 1)[1] for (src, _), r in old_by_key.items() if "/" in r["crop"]}
    work.names = {source: old_names.get(source) or crop_name(source, used_names) for _, source, _ in work.todo}
    return work


# --- step 3: detect and crop ------------------------------------------------------


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 image as PNG through a temporary name and a rename."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode crop '{path}' as PNG")
    fileio.write_bytes_atomic(path, buf.tobytes())


def _skip(work: Work, rec: datasets.Record, source: str, reason: str, detail: str) -> None:
    work.skipped[source] = {"source": source, "label": rec.label, "reason": reason, "detail": detail}


def _manifest_row(rec: datasets.Record, source: str, rel: str, scale: float, face: Any,
                  rule: str) -> dict[str, Any]:
    return {
        "crop": rel,
        "source": source,
        "label": rec.label,
        "species": rec.species,
        "subject": rec.subject,
        "session": rec.session,
        "split": rec.split,
        "scale": crops_lib.scale_dir_name(scale)[1:],
        "box_x": f"{face.x:.2f}",
        "box_y": f"{face.y:.2f}",
        "box_w": f"{face.width:.2f}",
        "box_h": f"{face.height:.2f}",
        "det_score": f"{face.score:.4f}",
        "crop_rule": rule,
    }


def crop_one(work: Work, detector: Any, item: tuple[datasets.Record, str, list[float]], rgb: np.ndarray | None,
             size: int, min_score: float) -> None:
    """Detects the largest face of one image and writes its crops at the missing scales (or a skip)."""
    rec, source, missing = item
    work.counts["processed"] += 1
    if rgb is None:
        _skip(work, rec, source, CORRUPT, "cannot be decoded as an image")
        return
    try:
        faces = list(detector.detect(rgb))
    except Exception as err:  # noqa: BLE001 - one bad frame never stops the run
        _skip(work, rec, source, ERROR, f"detector: {err}")
        return
    if not faces:
        _skip(work, rec, source, NO_FACE, f"no face with score >= {min_score}")
        return
    face = max(faces, key=lambda f: f.width * f.height)
    for scale in missing:
        crop = preprocess.crop_face(rgb, face, scale, size, work.crop_rule)
        folder = crops_lib.scale_dir_name(scale, work.crop_rule)
        rel = f"{folder}/{work.names[source]}"
        write_png_atomic(work.out / rel, crop)
        work.counts["crops_written"] += 1
        work.rows[(source, folder)] = _manifest_row(rec, source, rel, scale, face, work.crop_rule)


def crop_all(work: Work, detector: Any, size: int, min_score: float, show_progress: bool = True,
             journal: resume.Journal | None = None) -> None:
    """Runs :func:`crop_one` over ``work.todo``, images decoded ahead; each finished image goes to ``journal``."""
    bar = Progress(len(work.todo), "prepare", unit="img", enabled=show_progress and bool(work.todo))
    try:
        for item, rgb in prefetch(lambda it: datasets.read_image_rgb(it[0].path), work.todo):
            crop_one(work, detector, item, rgb, size, min_score)
            if journal is not None:
                journal.record(work, item)
            bar.update(postfix=postfix(work.skipped))
    finally:
        bar.close()


# --- all steps --------------------------------------------------------------------


def prepare(
    records: Sequence[datasets.Record],
    out: str | Path,
    scales: Sequence[float] = (preprocess.DEFAULT_SCALE,),
    size: int = preprocess.DEFAULT_INPUT_SIZE,
    detector: Any = "short",
    min_score: float = DEFAULT_MIN_SCORE,
    force: bool = False,
    dataset_root: Path | None = None,
    dataset_info: dict[str, Any] | None = None,
    show_progress: bool = True,
    detector_backend: str = "auto",
    crop_rule: str = preprocess.DEFAULT_CROP_RULE,
) -> dict[str, Any]:
    """Detects, crops and writes every record's face at every scale, under one crop rule.

    Args:
      records: the images to prepare.
      out: the crops folder.
      scales: crop scales (see :func:`tla_edge.runtime.preprocess.crop_face`).
      size: crop side in pixels.
      detector: ``"short"``, ``"full"``, a model path, or a ready detector
        object with ``detect(rgb) -> list[FaceBox]`` (not closed here).
      min_score: smallest detection score kept.
      force: recompute everything instead of resuming (from a manifest or a killed run's journal).
      dataset_root: the dataset folder; sources are stored relative to it.
      dataset_info: what to record about the dataset in ``prepare.json``.
      show_progress: draw a progress bar on stderr.
      detector_backend: ``"auto"``, ``"mediapipe"`` or ``"litert"`` when
        ``detector`` is a name or path (both backends give the same boxes).
      crop_rule: ``"pad"`` or ``"shift"`` (:func:`tla_edge.runtime.preprocess.crop_region`);
        its crops go to their own scale folders, and a resume with another
        rule computes them anew beside the others.

    Returns:
      The content written to ``prepare.json`` (settings, summary, skipped).

    Raises:
      UserError: the output folder cannot be used (see the message).
      ValueError: an unknown crop rule.
    """
    out = Path(out)
    preprocess.check_crop_rule(crop_rule)
    scales = [float(s) for s in scales]
    root = Path(dataset_root) if dataset_root is not None else None
    settings: dict[str, Any] = {
        "size": int(size),
        "detector": str(detector if isinstance(detector, str) else type(detector).__name__),
        "min_score": float(min_score),
        "dataset": portable_path(root) if root is not None else None,
        "crop_fingerprint": crop_fingerprint(),
        "crop_rules": {crop_rule: crop_fingerprint(crop_rule)},
    }
    old_rows, old_skipped, old_runs, journal_lines = what_is_done(out, force, settings, root)
    out.mkdir(parents=True, exist_ok=True)
    work = plan_work(records, out, scales, root, old_rows, old_skipped, crop_rule)

    t0 = time.perf_counter()
    own_detector = journal = None
    if work.todo and isinstance(detector, str):
        from tla_edge.runtime.faces import FaceDetector

        own_detector = FaceDetector(detector, mode="image", min_score=min_score, policy="largest",
                                    backend=detector_backend)
    try:
        if work.todo:
            journal = resume.Journal(out, settings, journal_lines)
            crop_all(work, own_detector or detector, size, min_score, show_progress, journal)
    finally:
        if own_detector is not None:
            own_detector.close()
        if journal is not None:
            journal.close()
        result = finish(records, work, settings, dataset_info, old_runs, time.perf_counter() - t0)
        resume.remove_journal(out)  # the manifest and prepare.json now hold all it said
    return result
