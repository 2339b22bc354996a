"""The frame loop integrators call: frames through the pipeline, with hooks and outputs.

    from tla_edge.runtime.loop import pipeline_for_source, run_loop
    from tla_edge.runtime.sources import open_source

    with open_source("0") as source, pipeline_for_source(source) as pipeline:
        summary = run_loop(pipeline, source, on_result=lambda frame, result: result.is_live)

Per frame, :func:`result_record` is the JSON line ``tla-edge demo --headless`` prints:

    {"frame": 0, "name": "img.jpg", "timestamp_ms": 0, "faces": [[x, y, w, h, score]],
     "score": 0.93, "raw_score": 0.91, "decision": "live", "is_live": true, "error": null,
     "ms": {"decode": 3.1, "detect": 4.2, "crop": 0.3, "invoke": 6.0, "total": 13.6}}

(``total`` is decode plus the pipeline's own total).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import math
import os
import sys
import time
from typing import IO, Any, Callable, NamedTuple, Sequence

import numpy as np

from tla_edge.runtime import overlay
from tla_edge.runtime.cpu import check_num_threads
from tla_edge.runtime.pipeline import DEFAULT_LIVE_FRAMES
from tla_edge.runtime.stream import judge_stream

STAGES = ("decode", "detect", "crop", "invoke", "total")

# Frame-rate smoothing: weight of the newest frame in the moving average.
FPS_ALPHA = 0.1
# Per-stage medians cover the last frames only, so a long run uses constant memory.
RECENT_FRAMES = 1000


class LoopSummary(NamedTuple):
    """What :func:`run_loop` did."""

    frames: int
    """Frames judged."""
    decisions: dict[str, int]
    """Count of frames per decision (``live``, ``pending``, ``spoof``, ``no_face``, ...;
    see :data:`tla_edge.runtime.pipeline.DECISIONS`)."""
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


def smooth_fps(previous: float | None, frame_s: float, alpha: float = FPS_ALPHA) -> float | None:
    """Exponential moving average of the frame rate; None until a frame time is known."""
    if frame_s <= 0:
        return previous
    current = 1.0 / frame_s
    return current if previous is None else (1 - alpha) * previous + alpha * current


def check_options(threshold: float | None = None, **counts: int | None) -> None:
    """Checks the loop's options; each message names the option as its flag.

    Args:
      threshold: None, or a number strictly between 0 and 1.
      **counts: options that must be None or >= 1, e.g. ``smoothing=5``,
        ``live_frames=3``, ``max_frames=None`` (``live_frames`` is ``--live-frames``).

    Raises:
      ValueError: ``--threshold 1.5 is not strictly between 0 and 1``, ``--smoothing 0 is not >= 1``.
    """
    if threshold is not None and not (0.0 < threshold < 1.0 and math.isfinite(threshold)):
        raise ValueError(f"--threshold {threshold} is not strictly between 0 and 1")
    if counts.get("threads") is not None:
        check_num_threads(counts["threads"], "--threads")
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value} is not >= 1")


def pipeline_for_source(
    source: Any,
    models: Sequence[str | os.PathLike] = (),
    *,
    threshold: float | None = None,
    smoothing: int | None = None,
    live_frames: int | None = None,
    num_threads: int | None = None,
    edgetpu: bool = False,
    detector: str = "short",
    detector_backend: str = "auto",
    members: str = "auto",
) -> Any:
    """The :class:`~tla_edge.runtime.pipeline.Pipeline` that suits ``source``.

    Several ``models`` are fused by averaging; none means the bundled model.
    One still image gets an image-mode detector and is judged alone
    (smoothing 1, one live frame, unless given); streams and folders get a
    video-mode one, 5 frames of smoothing and ``DEFAULT_LIVE_FRAMES``.

    Args:
      source: an open source (its ``kind`` is read: ``image``, ``folder``, ``camera``, ...).
      models: liveness ``.tflite`` files (empty: the bundled model).
      threshold: live iff score >= this; None: the model's own.
      smoothing: frames averaged per face; None: the default for the source.
      live_frames: consecutive live frames before a face is live; None: the default for the source.
      num_threads: CPU threads per interpreter; None: the runtime's choice.
      edgetpu: run the liveness model on a Coral Edge TPU.
      detector: ``short`` or ``full`` range face detector.
      detector_backend: ``auto``, ``mediapipe`` or ``litert``.
      members: how several models run: ``auto``, ``sequential`` or ``concurrent`` (see the Pipeline).
    """
    from tla_edge.runtime.pipeline import Pipeline

    models = list(models) or [None]
    still = source.kind == "image"
    if smoothing is None:
        smoothing = 1 if still else 5
    if live_frames is None:
        live_frames = 1 if still else DEFAULT_LIVE_FRAMES
    return Pipeline(
        models if len(models) > 1 else models[0],
        threshold=threshold,
        smoothing=smoothing,
        live_frames=live_frames,
        num_threads=num_threads,
        edgetpu=edgetpu,
        detector_model=detector,
        video=not still,
        detector_backend=detector_backend,
        members=members,
    )


# --- the loop -----------------------------------------------------------------


class _Tally:
    """Decisions, per-stage sums and recent values, and the smoothed frame rate of a loop."""

    def __init__(self) -> None:
        self.decisions: collections.Counter[str] = collections.Counter()
        self.sums = dict.fromkeys(STAGES, 0.0)
        self.recent = {stage: collections.deque(maxlen=RECENT_FRAMES) for stage in STAGES}
        self.frames = 0
        self.fps: float | None = None
        self.start = time.perf_counter()
        self._prev = self.start

    def add(self, frame, result) -> None:
        """Counts one judged frame."""
        self.frames += 1
        self.decisions[result.decision] += 1
        for stage, value in frame_timings(frame, result).items():
            self.sums[stage] += value
            self.recent[stage].append(value)
        now = time.perf_counter()
        self.fps = smooth_fps(self.fps, now - self._prev)
        self._prev = now

    def summary(self, stopped: str, skipped: Sequence[tuple[str, str]]) -> LoopSummary:
        """The :class:`LoopSummary` so far."""
        n = self.frames
        return LoopSummary(
            frames=n,
            decisions=dict(self.decisions),
            wall_s=time.perf_counter() - self.start,
            mean_ms={k: (v / n if n else 0.0) for k, v in self.sums.items()},
            median_ms={k: (float(np.median(v)) if v else 0.0) for k, v in self.recent.items()},
            stopped=stopped,
            skipped=tuple(skipped),
        )


def _emit(frame, result, fps: float | None, json_out: IO[str] | None, show: bool, video) -> bool:
    """Writes one frame's outputs (JSON line, overlay video, window); True when q or Esc was pressed."""
    if json_out is not None:
        json_out.write(json.dumps(result_record(frame, result)) + "\n")
        json_out.flush()
    if not show and video is None:
        return False
    bgr = overlay.draw_overlay(frame.rgb, result, fps)
    if video is not None:
        video.write(bgr)
    return show and (overlay.show_frame(bgr) & 0xFF) in overlay.QUIT_KEYS


def run_loop(
    pipeline,
    source,
    *,
    max_frames: int | None = None,
    on_result: Callable[[Any, Any], bool | None] | None = None,
    show: bool = False,
    json_out: IO[str] | None = None,
    video: overlay.VideoSink | None = None,
    overlap_frames: bool = False,
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
      video: a :class:`~tla_edge.runtime.overlay.VideoSink` for the annotated frames.
      overlap_frames: read and detect the next frame on a thread of its own
        while this one is judged (:func:`tla_edge.runtime.stream.judge_stream`;
        ``pipeline`` must then be a Pipeline). Same results; more frames per
        second where the pipeline, not the source, sets the pace.

    Returns:
      The :class:`LoopSummary`. Ctrl-C ends the loop cleanly with
      ``stopped="interrupted"``; errors from the source (a camera that stops)
      propagate.
    """
    tally = _Tally()
    stopped = "end"
    # Overlapped, the stream reads one frame ahead: it never reads past max_frames.
    frames = itertools.islice(source, max_frames) if overlap_frames and max_frames is not None else source
    judged = contextlib.closing(judge_stream(pipeline, frames, overlap=overlap_frames))
    try:
        with judged as results:
            for frame, result in results:
                tally.add(frame, result)
                if _emit(frame, result, tally.fps, json_out, show, video):
                    stopped = "quit"
                    break
                if on_result is not None and on_result(frame, result):
                    stopped = "callback"
                    break
                if max_frames is not None and tally.frames >= max_frames:
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
            overlay.close_window()
    return tally.summary(stopped, getattr(source, "skipped", ()))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
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
