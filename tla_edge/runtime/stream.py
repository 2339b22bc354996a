"""A stream of frames through one Pipeline, the next frame's face detection overlapping this frame's liveness.

    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.runtime.sources import open_source

    with open_source("video.mp4") as source, Pipeline() as pipe:
        for frame, result in pipe.stream(source):      # in order, one result per frame
            print(frame.name, result.decision)

Per frame the pipeline detects faces, then crops and scores the chosen face.
In a stream the two halves can overlap: a thread of the stream's own reads and
detects frame N+1 (and decodes it, when the frames come from a source) while
the calling thread crops, scores, smooths and decides frame N. Results come in
frame order and are the same as :meth:`~tla_edge.runtime.pipeline.Pipeline.process`
frame by frame, bit for bit: only the detector runs ahead, on its own thread,
and every smoothing step stays on the calling thread, in order.

It pays where the pipeline, not the camera, sets the pace: a video file, a
folder, a slow board. It does not shorten a frame's own latency (detection then
liveness), and at a camera's 30 fps on a machine that judges a frame in a few
milliseconds there is nothing to gain (benchmarks/README.md, round 8).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterable, Iterator

import numpy as np

from tla_edge.runtime import preprocess
from tla_edge.runtime.decisions import STAGES

_END = object()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def frame_parts(item: Any) -> tuple[np.ndarray, int | None]:
    """``(rgb, timestamp_ms)`` of one stream item: an RGB array, or a frame with ``rgb`` and ``timestamp_ms``."""
    if isinstance(item, np.ndarray):
        return item, None
    return item.rgb, getattr(item, "timestamp_ms", None)


def judge_stream(pipeline: Any, frames: Iterable[Any], *, overlap: bool = True) -> Iterator[tuple[Any, Any]]:
    """Yields ``(item, result)`` for each item of ``frames``, in order.

    Args:
      pipeline: the :class:`~tla_edge.runtime.pipeline.Pipeline`. While a
        stream runs, do not call its :meth:`process` from elsewhere: the
        stream's thread owns its detector.
      frames: RGB ``(H, W, 3)`` uint8 arrays, or frames with ``rgb`` and
        ``timestamp_ms`` (a :mod:`tla_edge.runtime.sources` source).
      overlap: detect frame N+1 on the stream's thread while frame N is
        judged; False judges each frame with ``process`` in turn.

    Yields:
      ``(item, LivenessResult)``; a spoof, no face or a model error is a
      result. With ``overlap``, ``timings["total"]`` runs from the start of
      the frame's detection to its decision, any wait for the calling thread
      in between included.

    Raises:
      ValueError: an item that is not an HxWx3 uint8 frame (a caller bug), at its turn.
      Exception: whatever iterating ``frames`` raised (a camera that stops), at its turn.

    Closing the generator early (a ``break`` in the caller's loop, an
    exception) stops the thread: at most the one frame it had read ahead is
    detected and dropped; it is never judged.
    """
    if not overlap:
        for item in frames:
            rgb, ts = frame_parts(item)
            yield item, pipeline.process(rgb, ts)
        return
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)  # one frame ahead, no more
    stop = threading.Event()

    def put(message: Any) -> bool:
        """Hands one message over; False once the consumer has gone."""
        while not stop.is_set():
            try:
                handoff.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def detect_ahead() -> None:
        try:
            for item in frames:
                if stop.is_set():
                    return
                rgb, ts = frame_parts(item)
                preprocess.check_frame(rgb)
                t0 = time.perf_counter()
                timings = {stage: 0.0 for stage in STAGES}
                detected = pipeline._detect(rgb, ts, timings, t0)
                if not put((item, rgb, detected, timings, t0)):
                    return
        except BaseException as err:  # noqa: BLE001 - raised in the consumer, at this frame's turn
            put(_Raised(err))
            return
        put(_END)

    thread = threading.Thread(target=detect_ahead, name="tla-edge-detect-ahead", daemon=True)
    thread.start()
    try:
        while True:
            message = handoff.get()
            if message is _END:
                return
            if isinstance(message, _Raised):
                raise message.error
            item, rgb, detected, timings, t0 = message
            yield item, pipeline._judge(rgb, detected, timings, t0)
    finally:
        stop.set()
        thread.join()
