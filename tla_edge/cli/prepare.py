"""Detect and crop the faces of a dataset into a crops folder with a manifest.

Every image is read once and searched once by the MediaPipe face detector
(image mode, largest face); the face is then cropped at every ``--scales``
value by the shared :func:`tla_edge.runtime.preprocess.crop_face` and written as a PNG
under ``OUT/s<scale>/`` (``--crop-rule pad``, the default: a square centred on
the face, padded where it leaves the frame) or ``OUT/s<scale>_shift/``
(``--crop-rule shift``: shrunk to fit and moved inside the frame, never padded). ``OUT/manifest.csv`` has one row per image per scale;
``OUT/prepare.json`` keeps the settings, the summary and every skipped image
with its reason. Unreadable images and frames without a face are skipped and
counted, never fatal. A second run into the same folder keeps the crops it
finds and computes only what is missing; --force recomputes everything. A
run killed before its manifest (SIGKILL, out of memory) leaves the journal
``OUT/prepare.partial.csv`` of the images it finished; the re-run keeps those
and refuses, in one line naming both values, a journal made with another size,
detector, min score or dataset.

Example:
  tla-edge prepare ../shared/data/nuaa-train --out crops/nuaa --scales 2.7,4.0
  tla-edge prepare ../shared/data/msu-mfsd --out crops/msu --crop-rule shift
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tla_edge.cli import argtypes
from tla_edge.data import datasets
from tla_edge.runtime import preprocess
from tla_edge.runtime.faces import DEFAULT_MIN_SCORE
from tla_edge.train import prepare as prepare_lib
from tla_edge.train.prepare import shown_path
from tla_edge.train.prepare_output import format_summary


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
    parser.add_argument("data", type=argtypes.path, metavar="DATA", help="dataset folder or CSV manifest")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="CROPS", help="crops folder to write")
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
    parser.add_argument(
        "--crop-rule", type=str, choices=preprocess.CROP_RULES, default=preprocess.DEFAULT_CROP_RULE,
        help="where the crop leaves the frame: pad (centred on the face, padded) or shift (shrunk and moved "
        "inside the frame, never padded); a model trained on these crops crops the same way on the device",
    )
    parser.add_argument("--size", type=parse_size, default=preprocess.DEFAULT_INPUT_SIZE,
                        help=f"crop side in pixels, {MIN_SIZE} to {MAX_SIZE}")
    parser.add_argument(
        "--detector", type=str, default="short", metavar="short|full|PATH", help="face detector model"
    )
    parser.add_argument(
        "--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
        help="face detector backend: auto (LiteRT), litert, or mediapipe (the opt-in 'mediapipe' extra)",
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
    if records.missing:
        shown = ", ".join(f"'{shown_path(p)}'" for p in records.missing_paths[:3])
        print(f"tla-edge prepare: warning: {records.missing} files named by the dataset's lists are missing "
              f"on disk and were skipped, e.g. {shown} (listed in prepare.json)", file=sys.stderr)
    plan = prepare_lib.plan_dataset(records, args.data, split=args.split, limit=args.limit)
    for rec in plan.names_not_utf8:
        print(f"tla-edge prepare: warning: skipping '{shown_path(rec.path)}': its file name is not valid UTF-8; "
              "rename it to include it", file=sys.stderr)
    prepare_lib.check_plan(plan, args.split)
    result = prepare_lib.prepare(
        plan.records,
        args.out,
        scales=args.scales,
        size=args.size,
        detector=args.detector,
        min_score=args.min_score,
        force=args.force,
        detector_backend=args.detector_backend,
        crop_rule=args.crop_rule,
        dataset_root=plan.root,
        dataset_info=plan.info,
        show_progress=not args.quiet,
    )
    print(format_summary(result["summary"], args.out))
    return 0
