"""Detect and crop the faces of a dataset into a crops folder with a manifest.

Every image is read once and searched once by the MediaPipe face detector
(image mode, largest face); the face is then cropped at every ``--scales``
value by the shared :func:`tla_edge.runtime.preprocess.crop_face` and written as a PNG
under ``OUT/s<scale>/``. ``OUT/manifest.csv`` has one row per image per scale;
``OUT/prepare.json`` keeps the settings, the summary and every skipped image
with its reason. Unreadable images and frames without a face are skipped and
counted, never fatal. A second run into the same folder keeps the crops it
finds and computes only what is missing; --force recomputes everything.

Example:
  tla-edge prepare ../shared/data/nuaa-train --out crops/nuaa --scales 2.7,4.0
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from tla_edge import __version__, fileio

from tla_edge.data import datasets

from tla_edge.runtime import preprocess
from tla_edge.cli import argtypes
from tla_edge.errors import UserError
from tla_edge.runtime.faces import DEFAULT_MIN_SCORE
from tla_edge.progress import Progress, format_duration

FORMAT = "tla-edge-crops/1"
MANIFEST_FLUSH_S = 30.0
NO_FACE = "no_face"
CORRUPT = "corrupt"
ERROR = "error"


MIN_SCALE, MAX_SCALE = 0.5, 10.0
"""Sane crop scales: under half the face box loses the face, over 10x is the whole scene."""
MIN_SIZE, MAX_SIZE = 16, 1024
"""Sane crop sides in pixels."""


def parse_size(text: str) -> int:
    """A crop side in pixels within [MIN_SIZE, MAX_SIZE].

    Raises:
      argparse.ArgumentTypeError: with the value received and what is expected.
    """
    value = argtypes.positive_int(text)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not in [{MIN_SIZE}, {MAX_SIZE}] pixels")
    return value


def parse_scales(text: str) -> list[float]:
    """``"2.7,4.0"`` -> ``[2.7, 4.0]``; rejects non-numbers and non-positive values.

    Raises:
      argparse.ArgumentTypeError: with the value received and what is expected.
    """
    out: list[float] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"scale {part!r} is not a number; expected comma-separated positive numbers like 2.7,4.0"
            ) from None
        if not value > 0 or not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"scale {part!r} is not > 0")
        if not MIN_SCALE <= value <= MAX_SCALE:
            raise argparse.ArgumentTypeError(
                f"scale {part!r} is not in [{MIN_SCALE:g}, {MAX_SCALE:g}] (crop side over the face box's side)"
            )
        if all(abs(value - v) > 1e-9 for v in out):
            out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"scales {text!r} is empty; expected e.g. 3.0 or 2.7,4.0")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``prepare`` flags."""
    parser.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    parser.add_argument("--out", type=Path, required=True, metavar="CROPS", help="crops folder to write")
    parser.add_argument(
        "--layout",
        type=str,
        default="auto",
        choices=("auto",) + datasets.LAYOUTS,
        help="dataset layout",
    )
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=[preprocess.DEFAULT_SCALE],
        metavar="S[,S...]",
        help="crop side over the face box's longer side; several values write one subfolder each",
    )
    parser.add_argument("--size", type=parse_size, default=preprocess.DEFAULT_INPUT_SIZE,
                        help=f"crop side in pixels, {MIN_SIZE} to {MAX_SIZE}")
    parser.add_argument(
        "--detector", type=str, default="short", metavar="short|full|PATH", help="face detector model"
    )
    parser.add_argument(
        "--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
        help="face detector backend: auto (MediaPipe where it runs on this CPU, else LiteRT), mediapipe or litert",
    )
    parser.add_argument("--min-score", type=argtypes.probability, default=DEFAULT_MIN_SCORE, help="smallest face detection score kept")
    parser.add_argument(
        "--split", type=str, default=None, help="keep only images of this split, e.g. train (None: every split)"
    )
    parser.add_argument(
        "--limit",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="prepare only N images, evenly spread over the dataset, for quick trials (None: all)",
    )
    parser.add_argument("--force", action="store_true", help="recompute every crop and rewrite the manifest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge prepare``; returns 0."""
    records = datasets.load_dataset(args.data, args.layout)
    summary = records.summary()
    if records.missing:
        shown = ", ".join(f"'{_shown(p)}'" for p in records.missing_paths[:3])
        print(f"tla-edge prepare: warning: {records.missing} files named by the dataset's lists are missing "
              f"on disk and were skipped, e.g. {shown} (listed in prepare.json)", file=sys.stderr)
    picked = select_records(records, split=args.split, limit=args.limit)
    picked, bad_names = split_undecodable(picked)
    for rec in bad_names:
        print(f"tla-edge prepare: warning: skipping '{_shown(rec.path)}': its file name is not valid UTF-8; "
              "rename it to include it", file=sys.stderr)
    what = f"dataset '{args.data}'" + (f" split {args.split!r}" if args.split else "")
    if args.split is not None and not picked:
        splits = sorted({r.split for r in records})
        raise UserError(f"{what} has no images; its splits are {splits}")
    datasets.check_two_classes(picked, what)
    result = prepare(
        picked,
        args.out,
        scales=args.scales,
        size=args.size,
        detector=args.detector,
        min_score=args.min_score,
        force=args.force,
        detector_backend=args.detector_backend,
        dataset_root=records.root,
        dataset_info={
            "path": str(args.data),
            "layout": records.layout,
            "split": args.split,
            "limit": args.limit,
            **{k: v for k, v in summary.items() if k in ("unlisted", "missing", "notes")},
            "missing_files": [_shown(p) for p in records.missing_paths],
            "names_not_utf8": [_shown(r.path) for r in bad_names],
        },
        show_progress=not args.quiet,
    )
    print(format_summary(result["summary"], args.out))
    return 0


def _shown(path: Path | str) -> str:
    """A path printable anywhere: bytes that are not UTF-8 shown as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


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
    if limit is not None and limit < len(out):
        idx = np.unique(np.linspace(0, len(out) - 1, limit).round().astype(int))
        out = [out[i] for i in idx]
    return out


# --- the work -----------------------------------------------------------------


def _source_key(path: Path, root: Path | None) -> str:
    """The image path relative to the dataset root, ``/``-separated; absolute if outside it."""
    if root is not None:
        base = root.parent if root.is_file() else root
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return path.resolve().as_posix()


def _crop_name(source: str, used: set[str]) -> str:
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


def _prefetch(fn: Callable[[Any], Any], items: Iterable[Any], depth: int = 4) -> Iterator[tuple[Any, Any]]:
    """Yields ``(item, fn(item))`` in order, computing up to ``depth`` ahead in a thread."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: collections.deque = collections.deque()
        for item in itertools.islice(it, depth):
            queue.append((item, pool.submit(fn, item)))
        while queue:
            item, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(fn, nxt)))
            yield item, fut.result()


def crop_fingerprint() -> str:
    """A hash of :func:`tla_edge.runtime.preprocess.crop_face` on fixed synthetic frames.

    It changes whenever the crop contract's pixels change (window geometry,
    padding, resampling), so a resumed ``prepare`` never mixes crops made by
    two implementations, and a crops folder says which one made it.
    """
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    parts = [
        preprocess.crop_face(frame, (250.5, 150.25, 120.0, 140.0), 3.0, 160),  # large downscale
        preprocess.crop_face(frame, (300.0, 200.0, 50.0, 60.0), 2.7, 160),  # upscale
        preprocess.crop_face(frame, (-20.0, 400.0, 90.0, 90.0), 1.5, 64),  # padded corner
    ]
    return hashlib.sha1(b"".join(p.tobytes() for p in parts)).hexdigest()[:16]


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 image as PNG through a temporary name and a rename."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode crop '{path}' as PNG")
    fileio.write_bytes_atomic(path, buf.tobytes())


def _manifest_text(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=datasets.MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def _check_out_dir(out: Path, force: bool, settings: dict[str, Any]) -> tuple[list[dict], dict[str, dict]]:
    """Checks the output folder; returns the old manifest rows and skipped entries to resume from."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output '{out}' is a file; expected a folder for the crops")
    if not out.exists():
        fileio.check_writable(out, force=False)
        return [], {}
    manifest = out / datasets.MANIFEST_NAME
    if not manifest.is_file():
        if any(out.iterdir()) and not force:
            raise UserError(
                f"output folder '{out}' exists, is not empty and holds no {datasets.MANIFEST_NAME}; "
                "expected a new or a tla-edge crops folder (pass --force to write into it)"
            )
        return [], {}
    if force:
        return [], {}
    old = datasets.read_prepare_json(out)
    old_settings = old.get("settings", {})
    if old_settings.get("crop_fingerprint") != settings["crop_fingerprint"]:
        raise UserError(
            f"crops folder '{out}' was made by another version of the crop "
            f"(crop_fingerprint {old_settings.get('crop_fingerprint')!r}, now {settings['crop_fingerprint']!r}); "
            "its crops would differ from the runtime's: pass --force to recompute them, or use another --out"
        )
    for key in ("size", "detector", "min_score", "dataset"):
        if key in old_settings and old_settings[key] != settings[key]:
            raise UserError(
                f"crops folder '{out}' was prepared with {key}={old_settings[key]!r} but this run asks "
                f"{key}={settings[key]!r}; use the same settings to resume, another --out, or --force"
            )
    rows = datasets.read_manifest(out)
    skipped = {s["source"]: s for s in old.get("skipped", []) if "source" in s}
    return rows, skipped


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
) -> dict[str, Any]:
    """Detects, crops and writes every record's face at every scale.

    Args:
      records: the images to prepare.
      out: the crops folder.
      scales: crop scales (see :func:`tla_edge.runtime.preprocess.crop_face`).
      size: crop side in pixels.
      detector: ``"short"``, ``"full"``, a model path, or a ready detector
        object with ``detect(rgb) -> list[FaceBox]`` (not closed here).
      min_score: smallest detection score kept.
      force: recompute everything instead of resuming.
      dataset_root: the dataset folder; sources are stored relative to it.
      dataset_info: what to record about the dataset in ``prepare.json``.
      show_progress: draw a progress bar on stderr.
      detector_backend: ``"auto"``, ``"mediapipe"`` or ``"litert"`` when
        ``detector`` is a name or path (both backends give the same boxes).

    Returns:
      The content written to ``prepare.json`` (settings, summary, skipped).

    Raises:
      UserError: the output folder cannot be used (see the message).
    """
    out = Path(out)
    scales = [float(s) for s in scales]
    detector_name = detector if isinstance(detector, str) else type(detector).__name__
    root = Path(dataset_root) if dataset_root is not None else None
    settings: dict[str, Any] = {
        "size": int(size),
        "detector": str(detector_name),
        "min_score": float(min_score),
        "dataset": str(root.resolve()) if root is not None else None,
        "crop_fingerprint": crop_fingerprint(),
    }
    old_rows, old_skipped = _check_out_dir(out, force, settings)
    old_runs = [] if force else list(datasets.read_prepare_json(out).get("runs", []))
    out.mkdir(parents=True, exist_ok=True)

    old_by_key = {(r["source"], datasets.scale_dir_name(float(r["scale"]))): r for r in old_rows}
    used_names: set[str] = {r["crop"].split("/", 1)[1] for r in old_rows if "/" in r["crop"]}
    rows: dict[tuple[str, str], dict[str, Any]] = dict(old_by_key)
    skipped: dict[str, dict[str, str]] = {}
    counts = collections.Counter()

    todo: list[tuple[datasets.Record, str, list[float]]] = []
    for rec in records:
        source = _source_key(rec.path, root)
        if source in old_skipped:
            skipped[source] = old_skipped[source]
            counts["resumed_skipped"] += 1
            continue
        missing = [
            s
            for s in scales
            if (source, datasets.scale_dir_name(s)) not in old_by_key
            or not (out / old_by_key[(source, datasets.scale_dir_name(s))]["crop"]).is_file()
        ]
        if missing:
            todo.append((rec, source, missing))
        else:
            counts["resumed"] += 1

    old_names = {src: r["crop"].split("/", 1)[1] for (src, _), r in old_by_key.items() if "/" in r["crop"]}
    names = {source: old_names.get(source) or _crop_name(source, used_names) for _, source, _ in todo}

    t0 = time.perf_counter()
    own_detector = None
    if todo:
        if isinstance(detector, str):
            from tla_edge.runtime.faces import FaceDetector

            own_detector = FaceDetector(detector, mode="image", min_score=min_score, policy="largest",
                                        backend=detector_backend)
            det = own_detector
        else:
            det = detector

    def save_manifest() -> None:
        fileio.write_text_atomic(out / datasets.MANIFEST_NAME, _manifest_text(_ordered(rows)))

    bar = Progress(len(todo), "prepare", unit="img", enabled=show_progress and bool(todo))
    last_flush = time.perf_counter()
    try:
        for (rec, source, missing), rgb in _prefetch(lambda item: datasets.read_image_rgb(item[0].path), todo):
            counts["processed"] += 1
            if rgb is None:
                skipped[source] = {"source": source, "label": rec.label, "reason": CORRUPT,
                                   "detail": "cannot be decoded as an image"}
                bar.update(postfix=_postfix(skipped))
                continue
            try:
                faces = list(det.detect(rgb))
            except Exception as err:  # noqa: BLE001 - one bad frame never stops the run
                skipped[source] = {"source": source, "label": rec.label, "reason": ERROR,
                                   "detail": f"detector: {err}"}
                bar.update(postfix=_postfix(skipped))
                continue
            if not faces:
                skipped[source] = {"source": source, "label": rec.label, "reason": NO_FACE,
                                   "detail": f"no face with score >= {min_score}"}
                bar.update(postfix=_postfix(skipped))
                continue
            face = max(faces, key=lambda f: f.width * f.height)
            for scale in missing:
                crop = preprocess.crop_face(rgb, face, scale, size)
                rel = f"{datasets.scale_dir_name(scale)}/{names[source]}"
                write_png_atomic(out / rel, crop)
                counts["crops_written"] += 1
                rows[(source, datasets.scale_dir_name(scale))] = {
                    "crop": rel,
                    "source": source,
                    "label": rec.label,
                    "species": rec.species,
                    "subject": rec.subject,
                    "session": rec.session,
                    "split": rec.split,
                    "scale": datasets.scale_dir_name(scale)[1:],
                    "box_x": f"{face.x:.2f}",
                    "box_y": f"{face.y:.2f}",
                    "box_w": f"{face.width:.2f}",
                    "box_h": f"{face.height:.2f}",
                    "det_score": f"{face.score:.4f}",
                }
            bar.update(postfix=_postfix(skipped))
            if time.perf_counter() - last_flush > MANIFEST_FLUSH_S:
                save_manifest()
                last_flush = time.perf_counter()
    finally:
        bar.close()
        if own_detector is not None:
            own_detector.close()
        elapsed = time.perf_counter() - t0
        # Sources this run skipped lose any stale rows they had.
        for key in [k for k in rows if k[0] in skipped]:
            del rows[key]
        # Even when interrupted, the crops written so far stay usable for a resume.
        save_manifest()
        result = {
            "format": FORMAT,
            "tla_edge_version": __version__,
            "settings": {**settings, "scales": sorted({float(r["scale"]) for r in rows.values()} | set(scales))},
            "data": dataset_info or {},
            "summary": _summary(records, rows, skipped, counts, scales, elapsed),
            "skipped": sorted(skipped.values(), key=lambda s: s["source"]),
        }
        summary = result["summary"]
        # Each run's own figures, so a resume does not hide the first run's speed.
        result["runs"] = old_runs + [
            {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "scales": scales,
                **{k: summary[k] for k in ("images", "processed", "resumed", "crops_written", "no_face",
                                           "corrupt", "errors", "time_s", "img_per_s")},
            }
        ]
        fileio.write_json_atomic(out / datasets.PREPARE_JSON, result)
    return result


def _postfix(skipped: dict[str, dict[str, str]]) -> str:
    c = collections.Counter(s["reason"] for s in skipped.values())
    return f"no face {c[NO_FACE]}  corrupt {c[CORRUPT]}" + (f"  errors {c[ERROR]}" if c[ERROR] else "")


def _ordered(rows: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [rows[k] for k in sorted(rows, key=lambda k: (float(rows[k]["scale"]), k[0]))]


def _summary(
    records: Sequence[datasets.Record],
    rows: dict[tuple[str, str], dict[str, Any]],
    skipped: dict[str, dict[str, str]],
    counts: collections.Counter,
    scales: Sequence[float],
    elapsed: float,
) -> dict[str, Any]:
    by_source: dict[str, dict[str, Any]] = {}
    for r in rows.values():
        by_source.setdefault(r["source"], r)
    reasons = collections.Counter(s["reason"] for s in skipped.values())
    processed = counts["processed"]
    return {
        "images": len(records),
        "processed": processed,
        "resumed": counts["resumed"] + counts["resumed_skipped"],
        "crops_written": counts["crops_written"],
        "crops_per_scale": {
            datasets.scale_dir_name(s)[1:]: sum(1 for r in rows.values() if abs(float(r["scale"]) - s) < 1e-9)
            for s in sorted({float(r["scale"]) for r in rows.values()} | set(scales))
        },
        "sources_with_crops": len(by_source),
        "no_face": reasons[NO_FACE],
        "corrupt": reasons[CORRUPT],
        "errors": reasons[ERROR],
        "per_class": dict(sorted(collections.Counter(r["label"] for r in by_source.values()).items())),
        "per_species": dict(
            sorted(collections.Counter(r["species"] for r in by_source.values() if r["label"] == "attack").items())
        ),
        "per_session": dict(sorted(collections.Counter(r["session"] for r in by_source.values()).items())),
        "skipped_per_class": dict(sorted(collections.Counter(s.get("label", "") for s in skipped.values()).items())),
        "time_s": round(elapsed, 2),
        "img_per_s": round(processed / elapsed, 2) if elapsed > 0 and processed else None,
    }


def format_summary(summary: dict[str, Any], out: Path | str) -> str:
    """The one-screen text summary printed at the end of ``prepare``."""
    lines = [
        f"prepared {summary['images']} images into {out}",
        f"  computed now      {summary['processed']}  (kept from a previous run: {summary['resumed']})",
        f"  crops per scale   "
        + ", ".join(f"{s}: {n}" for s, n in summary["crops_per_scale"].items()),
        f"  images with crops {summary['sources_with_crops']}  "
        + "  ".join(f"{k} {v}" for k, v in summary["per_class"].items()),
        f"  attack species    " + (", ".join(f"{k} {v}" for k, v in summary["per_species"].items()) or "-"),
        f"  sessions          " + (", ".join(f"{k or '?'}: {v}" for k, v in summary["per_session"].items()) or "-"),
        f"  skipped           no face {summary['no_face']}, corrupt {summary['corrupt']}, errors {summary['errors']}"
        + (
            "  (" + ", ".join(f"{k} {v}" for k, v in summary["skipped_per_class"].items()) + ")"
            if summary["skipped_per_class"]
            else ""
        ),
        f"  time              {format_duration(summary['time_s'])}"
        + (f"  ({summary['img_per_s']:.1f} img/s)" if summary["img_per_s"] else ""),
        f"  manifest          {Path(out) / datasets.MANIFEST_NAME}  (skipped files listed in prepare.json)",
    ]
    return "\n".join(lines)

