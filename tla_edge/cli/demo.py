"""Liveness on a camera, video or image folder, shown in a window, as JSON lines, or as a video.

    tla-edge demo                                 # camera 0, overlay window, q or Esc quits
    tla-edge demo --source clip.mp4 --headless    # one JSON line per frame on stdout
    tla-edge demo --source frames/ --headless --output annotated.mp4

The overlay draws the judged face in green (live), red (spoof) or yellow (no
decision: no face, too small, cut off, rotated, error) with its smoothed score and the
frame rate. ``--headless`` prints, per frame:

    {"frame": 0, "name": "img.jpg", "timestamp_ms": 0, "faces": [[x, y, w, h, score]],
     "score": 0.93, "raw_score": 0.91, "decision": "live", "is_live": true, "error": null,
     "ms": {"decode": 3.1, "detect": 4.2, "crop": 0.3, "invoke": 6.0, "total": 13.6}}

(``total`` is decode plus the pipeline's own total), and a summary on stderr.
Integrators reuse :func:`tla_edge.runtime.loop.run_loop` with an ``on_result(frame, result)`` hook;
the overlay, window and video sink are :mod:`tla_edge.runtime.overlay`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tla_edge.cli import argtypes
from tla_edge.runtime.fused_set import expand_models
from tla_edge.runtime.loop import check_options, format_summary, pipeline_for_source, run_loop
from tla_edge.runtime.overlay import VideoSink, check_display
from tla_edge.runtime.pipeline import DEFAULT_LIVE_FRAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``demo`` flags."""
    parser.add_argument(
        "--source", type=str, default="0",
        help="camera index, picamera2, a video file, a folder of images or one image",
    )
    parser.add_argument(
        "--model", type=str, action="append", default=None, metavar="TFLITE",
        help="liveness .tflite, repeatable (scores averaged: two-scale fusion), or a folder holding one model "
        "or one fused set (tla-edge calibrate --out DIR); None: the bundled int8 model",
    )
    parser.add_argument("--threshold", type=argtypes.number, default=None,
                        help="live iff score >= this, strictly between 0 and 1; None: the model's own "
                        "(required for a .tflite without tla-edge metadata, and for several --model "
                        "without a stored fusion threshold)")
    parser.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads per interpreter; None: the runtime's choice")
    parser.add_argument("--edgetpu", action="store_true", help="run the liveness model on a Coral Edge TPU")
    parser.add_argument("--detector", type=str, choices=("short", "full"), default="short",
                        help="face detector: short (within ~2 m) or full range")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend: auto (LiteRT BlazeFace), "
                        "litert, or mediapipe (the mediapipe extra)")
    parser.add_argument("--members", type=str, choices=("auto", "sequential", "concurrent"), default="auto",
                        help="how several --model (or the bundled pair) run on each face: sequential, "
                        "concurrent (one thread each, same scores), or auto: concurrent when there are "
                        "more CPUs than models x --threads")
    parser.add_argument("--overlap-frames", action="store_true",
                        help="read and detect the next frame on a thread of its own while this one is judged "
                        "(same decisions; more frames per second where the pipeline, not the camera, sets "
                        "the pace: a video file, a folder, a slow board)")
    parser.add_argument("--smoothing", type=argtypes.integer, default=None,
                        help="frames whose scores are averaged per face (shown; never grants live); "
                        "None: 5 for a camera, video, stream or folder, 1 for one still image")
    parser.add_argument("--live-frames", type=argtypes.integer, default=None, metavar="K",
                        help="consecutive frames of one face, each at or above the threshold, before it is "
                        f"live; None: {DEFAULT_LIVE_FRAMES} for a camera, video, stream or folder, 1 for one "
                        "still image")
    parser.add_argument("--headless", action="store_true", help="no window: one JSON line per frame on stdout")
    parser.add_argument("--output", type=str, default=None, metavar="VIDEO",
                        help="also write the annotated frames to this .mp4 (mp4v); None: no video")
    parser.add_argument("--max-frames", type=argtypes.integer, default=None, help="stop after this many frames; None: at the end of the source")
    parser.add_argument("--loop", action="store_true", help="repeat a video or image folder forever")
    parser.add_argument("--width", type=argtypes.integer, default=None, help="requested camera capture width; None: the driver's")
    parser.add_argument("--height", type=argtypes.integer, default=None, help="requested camera capture height; None: the driver's")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")


def check_args(args: argparse.Namespace) -> None:
    """Validates flag values; raises ValueError naming the flag and the value received."""
    check_options(args.threshold, smoothing=args.smoothing, live_frames=getattr(args, "live_frames", None),
                  threads=args.threads, max_frames=args.max_frames, width=args.width, height=args.height)


def pipeline_from_args(args: argparse.Namespace, source: Any) -> Any:
    """The :class:`~tla_edge.runtime.pipeline.Pipeline` the ``demo`` flags describe, for ``source``.

    See :func:`tla_edge.runtime.loop.pipeline_for_source` for the defaults a source gets.
    """
    return pipeline_for_source(
        source,
        args.model or (),
        threshold=args.threshold,
        smoothing=args.smoothing,
        live_frames=getattr(args, "live_frames", None),
        num_threads=args.threads,
        edgetpu=args.edgetpu,
        detector=args.detector,
        detector_backend=getattr(args, "detector_backend", "auto"),
        members=getattr(args, "members", "auto"),
    )


def run(args: argparse.Namespace) -> int:
    """``tla-edge demo``: returns 0, or 130 when interrupted with Ctrl-C."""
    from tla_edge.runtime.sources import open_source

    check_args(args)
    if args.model:  # a folder (tla-edge calibrate --out DIR) stands for its model or fused set
        args.model = [str(m) for m in expand_models(args.model)]
    if not args.headless:
        check_display()
    if args.output:
        from tla_edge.fileio import check_distinct

        # Checked before the slow parts, so a refusal comes at once.
        check_distinct({"--output": args.output},
                       [("--source", args.source), *(("--model", m) for m in args.model or ())])
        VideoSink(args.output, force=args.force)
    for model in args.model or ():
        if not Path(model).is_file():
            raise FileNotFoundError(f"model file '{model}' not found")

    video: VideoSink | None = None
    with open_source(args.source, loop=args.loop, width=args.width, height=args.height) as source:
        with pipeline_from_args(args, source) as pipeline:
            if args.output:
                video = VideoSink(args.output, fps=source.fps or 30.0, force=args.force)
            progress_hook = _progress_hook(args, source)
            try:
                summary = run_loop(
                    pipeline,
                    source,
                    max_frames=args.max_frames,
                    on_result=progress_hook,
                    show=not args.headless,
                    json_out=sys.stdout if args.headless else None,
                    video=video,
                    overlap_frames=getattr(args, "overlap_frames", False),
                )
            except BaseException:
                if video is not None:
                    video.close(keep=False)
                raise
            finally:
                if progress_hook is not None:
                    progress_hook.bar.close()
    written = None
    if video is not None:
        written = (f"'{video.path}' ({video.frames} frames)" if video.close(keep=True)
                   else f"none (no frames; '{video.path}' not written)")
    print(format_summary(summary, str(args.source), written), file=sys.stderr)
    return 130 if summary.stopped == "interrupted" else 0


class _ProgressHook:
    """Advances a progress bar on stderr after each frame."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def __call__(self, frame, result) -> None:
        self.bar.update(postfix=result.decision)


def _progress_hook(args: argparse.Namespace, source) -> _ProgressHook | None:
    # Headless lines on a terminal are progress enough; into a pipe or file,
    # draw a bar on stderr so a long run still shows it is alive.
    if not args.headless or sys.stdout.isatty():
        return None
    from tla_edge.progress import Progress

    total = args.max_frames or (None if args.loop else source.length)
    return _ProgressHook(Progress(total, "demo", unit="frame"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tla_edge.cli.demo``: the same as ``tla-edge demo``."""
    from tla_edge import cli

    return cli.main(["demo", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
