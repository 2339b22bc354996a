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
Integrators reuse :func:`run_loop` with an ``on_result(frame, result)`` hook.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, NamedTuple, Sequence

import numpy as np

from tla_edge.errors import UserError
from tla_edge.fileio import check_writable
from tla_edge.runtime.pipeline import DEFAULT_LIVE_FRAMES

WINDOW_NAME = "tla-edge demo"
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
STAGES = ("decode", "detect", "crop", "invoke", "total")
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc

# BGR colours of the overlay.
GREEN = (0, 200, 0)
RED = (0, 0, 235)
YELLOW = (0, 215, 255)
WHITE = (255, 255, 255)
GREY = (160, 160, 160)

# Frame-rate smoothing: weight of the newest frame in the moving average.
FPS_ALPHA = 0.1
# Per-stage medians cover the last frames only, so a long run uses constant memory.
RECENT_FRAMES = 1000


class LoopSummary(NamedTuple):
    """What :func:`run_loop` did."""

    frames: int
    """Frames judged."""
    decisions: dict[str, int]
    """Count of frames per decision (``live``, ``spoof``, ``no_face``, ...)."""
    wall_s: float
    """Seconds from the first read to the end of the loop."""
    mean_ms: dict[str, float]
    """Mean milliseconds per stage (:data:`STAGES`) over all frames."""
    median_ms: dict[str, float]
    """Median milliseconds per stage over the last :data:`RECENT_FRAMES` frames."""
    stopped: str
    """Why it ended: ``end``, ``max_frames``, ``quit``, ``callback``, ``interrupted``, ``broken_pipe``."""
    skipped: tuple[tuple[str, str], ...]
    """``(name, reason)`` of images the source could not read."""

    @property
    def fps(self) -> float:
        """Mean frames per second over the whole loop."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


# --- pure helpers --------------------------------------------------------------


def result_record(frame, result) -> dict[str, Any]:
    """The JSON-ready record of one judged frame (one ``--headless`` line).

    Args:
      frame: the :class:`~tla_edge.runtime.sources.Frame`.
      result: its :class:`~tla_edge.runtime.pipeline.LivenessResult`.

    Returns:
      A dict with ``frame``, ``name``, ``timestamp_ms``, ``faces``, ``score``,
      ``raw_score``, ``decision``, ``is_live``, ``error`` and ``ms``.
    """
    ms = frame_timings(frame, result)
    return {
        "frame": int(frame.index),
        "name": frame.name,
        "timestamp_ms": int(frame.timestamp_ms),
        "faces": [
            [round(float(f.x), 1), round(float(f.y), 1), round(float(f.width), 1),
             round(float(f.height), 1), round(float(f.score), 4)]
            for f in result.faces
        ],
        "score": _round(result.score),
        "raw_score": _round(result.raw_score),
        "decision": result.decision,
        "is_live": bool(result.is_live),
        "error": result.error,
        "ms": {k: round(v, 3) for k, v in ms.items()},
    }


def frame_timings(frame, result) -> dict[str, float]:
    """Milliseconds per stage of :data:`STAGES`; ``total`` = decode + the pipeline's total."""
    t = result.timings
    return {
        "decode": float(frame.decode_ms),
        "detect": float(t.get("detect", 0.0)),
        "crop": float(t.get("crop", 0.0)),
        "invoke": float(t.get("invoke", 0.0)),
        "total": float(frame.decode_ms) + float(t.get("total", 0.0)),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def label_of(result) -> tuple[str, tuple[int, int, int]]:
    """Overlay text and BGR colour for a result: ``("LIVE 0.93", green)``, ``("NO FACE", yellow)``."""
    if result.decision == "live":
        return f"LIVE {result.score:.2f}", GREEN
    if result.decision == "spoof":
        return f"SPOOF {result.score:.2f}", RED
    return result.decision.replace("_", " ").upper(), YELLOW


def smooth_fps(previous: float | None, frame_s: float, alpha: float = FPS_ALPHA) -> float | None:
    """Exponential moving average of the frame rate; None until a frame time is known."""
    if frame_s <= 0:
        return previous
    current = 1.0 / frame_s
    return current if previous is None else (1 - alpha) * previous + alpha * current


def draw_overlay(rgb: np.ndarray, result, fps: float | None = None) -> np.ndarray:
    """Draws the result on a BGR copy of the frame, for display or a video file.

    Args:
      rgb: the frame, ``(H, W, 3)`` uint8 RGB (left untouched).
      result: its :class:`~tla_edge.runtime.pipeline.LivenessResult`.
      fps: the smoothed frame rate to show, or None.

    Returns:
      A new ``(H, W, 3)`` uint8 BGR image.
    """
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # display only: the pipeline saw RGB
    h, w = bgr.shape[:2]
    thick = max(1, int(round(min(h, w) / 240)))
    font_scale = max(0.4, min(h, w) / 640)
    text, colour = label_of(result)
    for face in result.faces:
        if result.face is not None and face == result.face:
            continue
        p0, p1 = _corners(face)
        cv2.rectangle(bgr, p0, p1, GREY, thick)
    if result.face is not None:
        p0, p1 = _corners(result.face)
        cv2.rectangle(bgr, p0, p1, colour, 2 * thick)
        anchor = (p0[0], max(p0[1] - 8, 20))
    else:
        anchor = (10, int(40 * font_scale) + 10)
    _text(bgr, text, anchor, colour, font_scale, thick)
    if fps is not None:
        _text(bgr, f"{fps:.1f} FPS", (10, h - 12), WHITE, font_scale * 0.8, thick)
    return bgr


def _corners(face) -> tuple[tuple[int, int], tuple[int, int]]:
    x, y, w, h = (float(v) for v in face[:4])
    return (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))


def _text(bgr: np.ndarray, text: str, org: tuple[int, int], colour, scale: float, thick: int) -> None:
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(bgr, text, org, font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)  # outline
    cv2.putText(bgr, text, org, font, scale, colour, thick, cv2.LINE_AA)


# --- display and video output -------------------------------------------------


def check_display() -> None:
    """Raises UserError when no window can be shown (e.g. over SSH without X)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise UserError(
            "no display found (DISPLAY and WAYLAND_DISPLAY are not set); pass --headless "
            "to print one JSON line per frame, optionally with --output annotated.mp4"
        )


def show_frame(bgr: np.ndarray) -> int:
    """Shows a frame in the demo window; returns the key pressed (-1 for none)."""
    import cv2

    try:
        cv2.imshow(WINDOW_NAME, bgr)
        return cv2.waitKey(1)
    except cv2.error as err:
        raise UserError(
            f"cannot open a window ({' '.join(str(err).split())[:120]}); pass --headless"
        ) from err


def readable_video(path: str | Path) -> bool:
    """True when OpenCV can open ``path`` as a video and decode its first frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        return bool(ok) and frame is not None
    finally:
        cap.release()


class VideoSink:
    """An annotated video written through a temporary name, renamed when finished.

    Args:
      path: the ``.mp4`` (or ``.avi``, ``.mov``, ``.mkv``, ``.m4v``) to write.
      fps: frame rate stored in the file.
      force: replace an existing file.
      fourcc: the OpenCV codec code.

    Raises:
      UserError: the file exists without ``force``, or its folder is not writable.
      ValueError: the name has no video suffix.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, force: bool = False, fourcc: str = "mp4v") -> None:
        path = Path(path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(
                f"output '{path}' is not a video file name; expected one ending in "
                f"{', '.join(VIDEO_SUFFIXES)}"
            )
        self.path = check_writable(path, force)
        self.fps = float(fps)
        self.fourcc = fourcc
        # The temporary name keeps the suffix: OpenCV picks the container from it.
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, bgr: np.ndarray) -> None:
        """Appends one BGR frame (resized to the first frame's size if it differs)."""
        import cv2

        h, w = bgr.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(
                str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size
            )
            if not self._writer.isOpened():
                self._writer = None
                self._remove_tmp()
                raise UserError(f"cannot write video '{self.path}' with codec {self.fourcc}")
        if (w, h) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def close(self, keep: bool = True) -> bool:
        """Finishes the file: renamed into place when ``keep`` and frames were written.

        Returns:
          True when ``path`` now holds the video.

        Raises:
          UserError: the finished file is not a readable video (OpenCV's writer
            reports no write error, e.g. on a full disk); the temporary file is
            removed and ``path`` left as it was.
        """
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if keep and self.frames > 0 and self.tmp.exists():
            if not readable_video(self.tmp):
                self._remove_tmp()
                raise UserError(
                    f"video '{self.path}' could not be written: the writer produced no readable video "
                    f"({self.frames} frames sent; disk full?); '{self.path}' left as it was"
                )
            os.replace(self.tmp, self.path)
            return True
        self._remove_tmp()
        return False

    def _remove_tmp(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


# --- the loop -----------------------------------------------------------------


def run_loop(
    pipeline,
    source,
    *,
    max_frames: int | None = None,
    on_result: Callable[[Any, Any], bool | None] | None = None,
    show: bool = False,
    json_out: IO[str] | None = None,
    video: VideoSink | None = None,
) -> LoopSummary:
    """Runs the pipeline over a frame source until it ends, a limit, a key or Ctrl-C.

    Args:
      pipeline: a :class:`~tla_edge.runtime.pipeline.Pipeline` (anything with ``process(rgb, timestamp_ms)``).
      source: an iterable of :class:`~tla_edge.runtime.sources.Frame`, e.g. from
        :func:`~tla_edge.runtime.sources.open_source`.
      max_frames: stop after this many frames (None: until the source ends).
      on_result: called as ``on_result(frame, result)`` after each frame, e.g.
        to open a door on a live decision; returning True stops the loop.
      show: show the overlay in a window; q or Esc stops.
      json_out: a text stream for one JSON line per frame (None: no lines).
      video: a :class:`VideoSink` for the annotated frames.

    Returns:
      The :class:`LoopSummary`. Ctrl-C ends the loop cleanly with
      ``stopped="interrupted"``; errors from the source (a camera that stops)
      propagate.
    """
    decisions: collections.Counter[str] = collections.Counter()
    sums = dict.fromkeys(STAGES, 0.0)
    recent = {stage: collections.deque(maxlen=RECENT_FRAMES) for stage in STAGES}
    frames = 0
    fps: float | None = None
    stopped = "end"
    t_start = time.perf_counter()
    t_prev = t_start
    try:
        for frame in source:
            result = pipeline.process(frame.rgb, frame.timestamp_ms)
            frames += 1
            decisions[result.decision] += 1
            ms = frame_timings(frame, result)
            for stage, value in ms.items():
                sums[stage] += value
                recent[stage].append(value)
            now = time.perf_counter()
            fps = smooth_fps(fps, now - t_prev)
            t_prev = now
            if json_out is not None:
                json_out.write(json.dumps(result_record(frame, result)) + "\n")
                json_out.flush()
            if show or video is not None:
                bgr = draw_overlay(frame.rgb, result, fps)
                if video is not None:
                    video.write(bgr)
                if show and (show_frame(bgr) & 0xFF) in QUIT_KEYS:
                    stopped = "quit"
                    break
            if on_result is not None and on_result(frame, result):
                stopped = "callback"
                break
            if max_frames is not None and frames >= max_frames:
                stopped = "max_frames"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    except BrokenPipeError:
        # `tla-edge demo --headless | head`: the reader left; stop quietly.
        stopped = "broken_pipe"
        _silence_stdout()
    finally:
        if show:
            _close_window()
    wall_s = time.perf_counter() - t_start
    return LoopSummary(
        frames=frames,
        decisions=dict(decisions),
        wall_s=wall_s,
        mean_ms={k: (v / frames if frames else 0.0) for k, v in sums.items()},
        median_ms={k: (float(np.median(v)) if v else 0.0) for k, v in recent.items()},
        stopped=stopped,
        skipped=tuple(getattr(source, "skipped", ())),
    )


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _close_window() -> None:
    import cv2

    try:
        cv2.destroyWindow(WINDOW_NAME)
        cv2.waitKey(1)
    except cv2.error:
        pass


def format_summary(summary: LoopSummary, source_spec: str = "", output: str | None = None) -> str:
    """The end-of-run summary shown on stderr, a few lines long."""
    lines = [
        f"tla-edge demo: {summary.frames} frames in {summary.wall_s:.1f} s "
        f"({summary.fps:.1f} fps){f' from {source_spec!r}' if source_spec else ''}; "
        f"stopped: {summary.stopped}"
    ]
    if summary.decisions:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.decisions.items(), key=lambda kv: -kv[1]))
        lines.append(f"  decisions: {counts}")
    if summary.frames:
        lines.append(
            "  mean ms: " + ", ".join(f"{k} {summary.mean_ms[k]:.1f}" for k in STAGES)
        )
    if summary.skipped:
        name, reason = summary.skipped[0]
        lines.append(f"  skipped: {len(summary.skipped)} unreadable images (first: {name}: {reason})")
    else:
        lines.append("  skipped: 0 images")
    if output:
        lines.append(f"  output: {output}")
    return "\n".join(lines)


# --- the command --------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``demo`` flags."""
    parser.add_argument(
        "--source", type=str, default="0",
        help="camera index, picamera2, a video file, a folder of images or one image",
    )
    parser.add_argument(
        "--model", type=str, action="append", default=None, metavar="TFLITE",
        help="liveness .tflite, repeatable (scores averaged: two-scale fusion); None: the bundled int8 model",
    )
    parser.add_argument("--threshold", type=float, default=None,
                        help="live iff score >= this, strictly between 0 and 1; None: the model's own "
                        "(required for a .tflite without tla-edge metadata, and for several --model "
                        "without a stored fusion threshold)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per interpreter; None: the runtime's choice")
    parser.add_argument("--edgetpu", action="store_true", help="run the liveness model on a Coral Edge TPU")
    parser.add_argument("--detector", type=str, choices=("short", "full"), default="short",
                        help="face detector: short (within ~2 m) or full range")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend: auto (MediaPipe where it runs on this CPU, else LiteRT), "
                        "mediapipe or litert")
    parser.add_argument("--smoothing", type=int, default=None,
                        help="frames whose scores are averaged per face (shown; never grants live); "
                        "None: 5 for a camera, video, stream or folder, 1 for one still image")
    parser.add_argument("--live-frames", type=int, default=None, metavar="K",
                        help="consecutive frames of one face, each at or above the threshold, before it is "
                        f"live; None: {DEFAULT_LIVE_FRAMES} for a camera, video, stream or folder, 1 for one "
                        "still image")
    parser.add_argument("--headless", action="store_true", help="no window: one JSON line per frame on stdout")
    parser.add_argument("--output", type=str, default=None, metavar="VIDEO",
                        help="also write the annotated frames to this .mp4 (mp4v); None: no video")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames; None: at the end of the source")
    parser.add_argument("--loop", action="store_true", help="repeat a video or image folder forever")
    parser.add_argument("--width", type=int, default=None, help="requested camera capture width; None: the driver's")
    parser.add_argument("--height", type=int, default=None, help="requested camera capture height; None: the driver's")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")


def check_args(args: argparse.Namespace) -> None:
    """Validates flag values; raises ValueError naming the flag and the value received."""
    if args.threshold is not None and not (0.0 < args.threshold < 1.0 and math.isfinite(args.threshold)):
        raise ValueError(f"--threshold {args.threshold} is not strictly between 0 and 1")
    for flag, value in (("--smoothing", args.smoothing), ("--live-frames", getattr(args, "live_frames", None)),
                        ("--threads", args.threads),
                        ("--max-frames", args.max_frames), ("--width", args.width), ("--height", args.height)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value} is not >= 1")



def pipeline_from_args(args: argparse.Namespace, source: Any) -> Any:
    """The :class:`~tla_edge.runtime.pipeline.Pipeline` the ``demo`` flags describe, for ``source``.

    Several ``--model`` are fused by averaging; none means the bundled model.
    One still image gets an image-mode detector and is judged alone
    (smoothing 1, one live frame, unless the flags say otherwise); streams and
    folders get a video-mode one, 5 frames of smoothing and ``DEFAULT_LIVE_FRAMES``.
    """
    from tla_edge.runtime.pipeline import Pipeline

    models = args.model or [None]
    still = source.kind == "image"
    smoothing = args.smoothing if args.smoothing is not None else (1 if still else 5)
    live_frames = getattr(args, "live_frames", None)
    if live_frames is None:
        live_frames = 1 if still else DEFAULT_LIVE_FRAMES
    return Pipeline(
        models if len(models) > 1 else models[0],
        threshold=args.threshold,
        smoothing=smoothing,
        live_frames=live_frames,
        num_threads=args.threads,
        edgetpu=args.edgetpu,
        detector_model=args.detector,
        video=source.kind != "image",
        detector_backend=getattr(args, "detector_backend", "auto"),
    )


def run(args: argparse.Namespace) -> int:
    """``tla-edge demo``: returns 0, or 130 when interrupted with Ctrl-C."""
    from tla_edge.runtime.sources import open_source

    check_args(args)
    if not args.headless:
        check_display()
    if args.output:
        # Checked before the slow parts, so a refusal comes at once.
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
