"""The one loop that runs a dataset's records through the device pipeline.

``tla-edge evaluate`` (raw datasets) and ``tla-edge calibrate`` judge every
frame exactly as a device would: the face detector in image mode keeping the
largest face, the shared crop, the ``.tflite`` model(s), no smoothing (each
frame decides alone). Both call :func:`score_records`.
"""

from __future__ import annotations

import collections
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from tla_edge.data.datasets import Record, read_image_rgb
from tla_edge.progress import Progress
from tla_edge.runtime.faces import FaceDetector
from tla_edge.runtime.interpreter import LivenessModel
from tla_edge.runtime.pipeline import SCORED, LivenessResult, Pipeline


class ScoredFrame(NamedTuple):
    """One record judged by the device pipeline."""

    record: Record
    """The dataset record (path, label, species, subject, session, split)."""
    result: LivenessResult | None
    """The pipeline's result; None when the image could not be decoded."""


class Scored(NamedTuple):
    """Per-frame results of a dataset run through the device pipeline, as arrays."""

    records: list
    """The :class:`~tla_edge.data.datasets.Record` of every frame read."""
    scores: np.ndarray
    """Live probability, NaN where no usable face was found."""
    decisions: list[str]
    """The pipeline's decision per frame (``live``, ``spoof``, ``no_face``, ...)."""
    unreadable: list[str]
    """Images that could not be decoded."""


def prefetch(fn: Callable[[Any], Any], items: Iterable[Any], depth: int = 4) -> Iterator[tuple[Any, Any]]:
    """Yields ``(item, fn(item))`` in order, computing up to ``depth`` ahead in a thread.

    Decoding the next images while the current one is judged keeps the
    interpreter busy; the order of ``items`` is kept.
    """
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


def score_records(
    records: Sequence[Record],
    models: Sequence[str | Path | LivenessModel],
    *,
    threshold: float | None = None,
    num_threads: int | None = None,
    detector: str = "short",
    detector_backend: str = "auto",
    detector_threads: int | None = None,
    desc: str = "score",
    show_progress: bool = True,
) -> list[ScoredFrame]:
    """Runs every record through the device pipeline (image-mode detector, no smoothing).

    Args:
      records: the frames to judge, in order.
      models: liveness models (paths, or open :class:`LivenessModel` objects,
        which stay open); several are fused as the device fuses them.
      threshold: the decision threshold (None: the model metadata's, or the
        fused one of several models).
      num_threads: interpreter CPU threads of the models opened from paths.
      detector: ``short``, ``full`` or a detector model path.
      detector_backend: ``auto``, ``mediapipe`` or ``litert``.
      detector_threads: the face detector's CPU threads (None: its default).
      desc: label of the progress bar (e.g. the command's name).
      show_progress: draw a progress bar on stderr.

    Returns:
      One :class:`ScoredFrame` per record, in order; ``result`` is None for an
      image that could not be decoded. A non-response (no usable face, a model
      error) is a result with no score, never a score of 0.

    Raises:
      ValueError: a model or detector that cannot be used.
    """
    frames: list[ScoredFrame] = []
    non_responses = 0
    face_detector = FaceDetector(detector, mode="image", policy="largest", num_threads=detector_threads,
                                 backend=detector_backend)
    pipe = None
    try:
        # Each frame is judged alone (smoothing 1, one live frame, a reset per
        # frame): live or spoof by its own score, never pending.
        pipe = Pipeline(list(models), face_detector, threshold=threshold, smoothing=1, live_frames=1,
                        num_threads=num_threads)
        with Progress(len(records), desc, unit="img", enabled=show_progress) as bar:
            for rec, rgb in prefetch(lambda r: read_image_rgb(r.path), records):
                if rgb is None:
                    frames.append(ScoredFrame(rec, None))
                    bar.update()
                    continue
                pipe.reset()
                result = pipe.process(rgb)
                frames.append(ScoredFrame(rec, result))
                non_responses += result.decision not in SCORED
                bar.update(postfix=f"no response {non_responses}")
    finally:
        if pipe is not None:
            pipe.close()
        face_detector.close()
    return frames


def raw_scores(frames: Sequence[ScoredFrame]) -> Scored:
    """The frames as arrays: the readable records, their raw scores (NaN: no usable face), decisions."""
    kept = [f for f in frames if f.result is not None]
    scores = [np.nan if f.result.raw_score is None else float(f.result.raw_score) for f in kept]
    return Scored(
        [f.record for f in kept],
        np.asarray(scores, np.float64),
        [f.result.decision for f in kept],
        [str(f.record.path) for f in frames if f.result is None],
    )
