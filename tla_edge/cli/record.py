"""Record frames of a camera (or video, or image folder) as a dataset for calibration and fine-tuning.

Frames go into the project's folder layout, ``DATA/real/<subject>/`` and
``DATA/attack/<species>/<subject>/``, and one row per frame is appended to
``DATA/manifest.csv`` (path, label, species, subject, session, split, source,
camera, resolution, time, frame). ``prepare``, ``train``, ``evaluate --raw``
and ``calibrate`` read DATA as a CSV dataset, so subject and session are kept
and validation can hold people and sessions out.

Only frames where the face detector finds exactly one usable face are kept
(``--all-frames`` keeps every frame). Nothing is ever overwritten; a run
stopped with Ctrl-C loses at most the frame in flight; run the same command
again to add more (the library: :mod:`tla_edge.data.recording`).

Example (one person, bona fide, then a print attack, on the kiosk's camera):
  tla-edge record --source 0 --label real --subject alice --session 01 --seconds 30 --out data/kiosk
  tla-edge record --source 0 --label print --subject alice --session 01 --seconds 30 --out data/kiosk
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tla_edge import fileio
from tla_edge.cli import argtypes
from tla_edge.data import recording, recording_folder
from tla_edge.data.datasets import MANIFEST_NAME
from tla_edge.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``record`` flags."""
    parser.add_argument("--source", type=str, default="0",
                        help="camera index, picamera2, a video file or URL, an image folder or an image")
    parser.add_argument("--label", type=str, required=True, metavar="real|print|replay|SPECIES",
                        help="what is presented: real (bona fide) or an attack species")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="DATA",
                        help="recording folder (created; appended to when it holds a recording)")
    parser.add_argument("--subject", type=str, default="", help="who is presented (a name or number; kept in the manifest)")
    parser.add_argument("--session", type=str, default="", help="capture session, e.g. 01 (light, day, place)")
    parser.add_argument("--every", type=argtypes.positive_int, default=1, metavar="K",
                        help="look at every K-th source frame only (neighbouring frames are near copies)")
    stop = parser.add_argument_group("when to stop (default: the source's end; a camera needs one of these)")
    stop.add_argument("--seconds", type=argtypes.number, default=None, help="stop after this many seconds")
    stop.add_argument("--frames", type=argtypes.positive_int, default=None, help="stop after keeping this many frames")
    parser.add_argument("--all-frames", action="store_true",
                        help="keep every frame, without checking for one usable face")
    parser.add_argument("--headless", action="store_true", help="no window; a progress line on stderr")
    parser.add_argument("--detector", type=str, default="short", metavar="short|full|PATH", help="face detector")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend: auto (LiteRT), litert, or mediapipe (the opt-in 'mediapipe' extra)")
    parser.add_argument("--camera-name", type=str, default=None,
                        help="camera name for the manifest (None: the device's own name, or the file name)")
    parser.add_argument("--width", type=argtypes.positive_int, default=None, help="requested camera width")
    parser.add_argument("--height", type=argtypes.positive_int, default=None, help="requested camera height")
    parser.add_argument("--format", type=str, choices=recording.FORMATS, default="jpg",
                        help=f"image files (jpg at quality {recording.JPEG_QUALITY}, or lossless png)")


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge record``; returns 0, or 130 when stopped by Ctrl-C (what was kept stays)."""
    label, species = recording.parse_label(args.label)
    subject = recording.check_id("--subject", args.subject.strip())
    session = recording.check_id("--session", args.session.strip())
    if args.seconds is not None and not args.seconds > 0:
        raise UserError(f"--seconds {args.seconds:g} is not > 0")
    fileio.check_distinct({"--out": args.out}, {"--source": args.source})
    appending = recording_folder.check_out_dir(args.out)
    if not args.headless:
        from tla_edge.runtime.overlay import check_display

        check_display()
    result = recording.record_source(
        args.source, args.out, label, species, subject, session, every=args.every, seconds=args.seconds,
        frames=args.frames, keep_all=args.all_frames, show=not args.headless, detector=args.detector,
        detector_backend=args.detector_backend, camera=args.camera_name, width=args.width, height=args.height,
        fmt=args.format,
    )
    reasons = recording.skipped_text(result["skipped"]) or "none"
    if result["kept"] == 0 and result["stopped"] != "interrupted":
        raise UserError(
            f"source '{args.source}' gave {result['looked_at']} frames but none with one usable face "
            f"(skipped: {reasons}); nothing was written to '{args.out}'; expected one face of at least "
            "40 px fully in view, or pass --all-frames"
        )
    print(format_summary(args.out, result, label, species, appending, reasons))
    return 130 if result["stopped"] == "interrupted" else 0


def format_summary(out: Path, result: dict[str, Any], label: str, species: str, appending: bool, reasons: str) -> str:
    """The one-screen summary of a recording run."""
    lines = [
        f"tla-edge record: kept {result['kept']} of {result['looked_at']} frames looked at "
        f"({result['seen']} read) as {species or label}; stopped: {result['stopped']}; "
        f"{result['wall_s']:.1f} s",
        f"  skipped: {reasons}",
    ]
    if (out / MANIFEST_NAME).is_file():
        s = recording_folder.recording_summary(out)
        per = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        lines.append(
            f"  {'appended to' if appending else 'wrote'} '{out}': now {s['frames']} frames ({per}); "
            f"{len(s['subjects'])} subjects, sessions {','.join(s['sessions']) or '-'}"
        )
    if result["stopped"] == "interrupted":
        lines.append("  interrupted: every kept frame is saved; run the same command again to add more")
    return "\n".join(lines)
