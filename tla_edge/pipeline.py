"""Frame -> face -> crop -> score -> smoothed decision: the Python API integrators call.

    from tla_edge.pipeline import Pipeline

    with Pipeline() as pipe:                     # bundled detector + int8 model
        result = pipe.process(rgb_frame)         # HxWx3 uint8 RGB
        if result.is_live:
            unlock()

A spoof, a missing face or a model error is a result, never an exception, and
never ``is_live``: decisions fail closed.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from tla_edge import preprocess
from tla_edge.faces import FaceBox, FaceDetector
from tla_edge.interpreter import LivenessModel, scores_from_output

LIVE = "live"
SPOOF = "spoof"
NO_FACE = "no_face"
FACE_TOO_SMALL = "face_too_small"
FACE_CUT_OFF = "face_cut_off"
ERROR = "error"
DECISIONS = (LIVE, SPOOF, NO_FACE, FACE_TOO_SMALL, FACE_CUT_OFF, ERROR)

STAGES = ("detect", "crop", "invoke", "total")


class LivenessResult(NamedTuple):
    """The pipeline's verdict on one frame."""

    decision: str
    """One of :data:`DECISIONS`; only ``"live"`` means live."""
    is_live: bool
    """True only when a usable face scored at or above the threshold."""
    score: float | None
    """Live probability smoothed over recent frames of the same face; None without a score."""
    raw_score: float | None
    """This frame's own live probability; None without a score."""
    face: FaceBox | None
    """The face that was judged (the largest), or None."""
    faces: tuple[FaceBox, ...]
    """Every face the detector found."""
    timings: dict[str, float]
    """Milliseconds per stage: ``detect``, ``crop`` (crop + preprocess),
    ``invoke`` (liveness model alone), ``total``; also ``detect_invoke``
    when the detector reports it."""
    error: str | None = None
    """Why the decision is ``"error"``, else None."""


class Smoother:
    """Mean of the last ``window`` scores of one face; resets when the face is lost or changes."""

    def __init__(self, window: int = 5, min_iou: float = 0.3) -> None:
        if window < 1:
            raise ValueError(f"smoothing window {window!r} is not >= 1")
        self.window = window
        self.min_iou = min_iou
        self._scores: collections.deque[float] = collections.deque(maxlen=window)
        self._face: FaceBox | None = None

    def reset(self) -> None:
        """Forgets the current face and its scores."""
        self._scores.clear()
        self._face = None

    def update(self, face: FaceBox, score: float) -> float:
        """Adds this frame's score for ``face``; returns the smoothed score."""
        if self._face is not None and face.iou(self._face) < self.min_iou:
            self._scores.clear()
        self._face = face
        self._scores.append(float(score))
        return float(np.mean(self._scores))


class Pipeline:
    """MediaPipe face detection + the TFLite liveness model + smoothing + decision.

    Args:
      model: a ``.tflite`` path or a :class:`LivenessModel`, or several of them
        (their scores are averaged: two-scale fusion); None for the bundled int8 model.
      detector: a :class:`FaceDetector`; None to build one (``detector_model``, video mode).
      threshold: overrides the model metadata's threshold (the mean of them for several models).
      smoothing: frames averaged per face (1 disables smoothing).
      min_face: smallest face box side, in pixels, that is judged.
      max_cut_off: largest fraction of the face box outside the frame that is judged.
      num_threads: CPU threads for the liveness interpreter.
      edgetpu: run the liveness model on a Coral Edge TPU.
      detector_model: ``"short"`` (within ~2 m) or ``"full"`` (farther).
      video: detector in video mode (streams) rather than image mode (stills).
      detector_backend: ``"auto"`` (MediaPipe where it runs, else LiteRT),
        ``"mediapipe"`` or ``"litert"``; see :class:`FaceDetector`.
    """

    def __init__(
        self,
        model: str | Path | LivenessModel | Sequence[str | Path | LivenessModel] | None = None,
        detector: FaceDetector | None = None,
        *,
        threshold: float | None = None,
        smoothing: int = 5,
        min_face: float = 40.0,
        max_cut_off: float = 0.15,
        num_threads: int | None = None,
        edgetpu: bool = False,
        detector_model: str = "short",
        video: bool = True,
        detector_backend: str = "auto",
    ) -> None:
        if model is None:
            from tla_edge.assets import default_liveness_model

            model = default_liveness_model()
        specs = list(model) if isinstance(model, (list, tuple)) else [model]
        if not specs:
            raise ValueError("no liveness model given; expected at least one .tflite")
        self.models = [
            m if isinstance(m, LivenessModel) else LivenessModel(m, num_threads=num_threads, edgetpu=edgetpu)
            for m in specs
        ]
        self._own_detector = detector is None
        self.detector = detector or FaceDetector(
            detector_model, mode="video" if video else "image", num_threads=num_threads,
            backend=detector_backend,
        )
        # Several models (e.g. crops at 2.7x and 4x) are fused by averaging their
        # live probabilities; the default threshold is then the mean of theirs.
        self.threshold = float(
            np.mean([m.threshold for m in self.models]) if threshold is None else threshold
        )
        self.min_face = min_face
        self.max_cut_off = max_cut_off
        self.smoother = Smoother(smoothing)

    @property
    def model(self) -> LivenessModel:
        """The first (usually the only) liveness model."""
        return self.models[0]

    def process(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> LivenessResult:
        """Judges one RGB frame.

        Args:
          rgb: ``(H, W, 3)`` uint8 RGB.
          timestamp_ms: frame time for a video-mode detector (None: generated).

        Returns:
          The :class:`LivenessResult`; never raises for a spoof, no face or a model error.

        Raises:
          ValueError: ``rgb`` is not an HxWx3 uint8 array (a caller bug).
        """
        preprocess.check_frame(rgb)
        t0 = time.perf_counter()
        timings = {stage: 0.0 for stage in STAGES}
        try:
            faces = tuple(self.detector.detect(rgb, timestamp_ms))
        except Exception as err:  # noqa: BLE001 - fail closed on any detector failure
            self.smoother.reset()
            timings["detect"] = timings["total"] = (time.perf_counter() - t0) * 1e3
            return LivenessResult(ERROR, False, None, None, None, (), timings, f"detector: {err}")
        t1 = time.perf_counter()
        timings["detect"] = (t1 - t0) * 1e3
        detect_invoke = getattr(self.detector, "last_invoke_ms", None)
        if detect_invoke is not None:
            timings["detect_invoke"] = float(detect_invoke)

        if not faces:
            self.smoother.reset()
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return LivenessResult(NO_FACE, False, None, None, None, faces, timings)
        face = max(faces, key=lambda f: f.area)
        problem = preprocess.face_problem(face, rgb.shape, self.min_face, self.max_cut_off)
        if problem is not None:
            self.smoother.reset()
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return LivenessResult(problem, False, None, None, face, faces, timings)

        try:
            raw_scores = []
            for m in self.models:
                tc = time.perf_counter()
                x = m.input_tensor(m.crop(rgb, face))
                timings["crop"] += (time.perf_counter() - tc) * 1e3
                out = m.invoke_tensor(x)
                timings["invoke"] += m.last_invoke_ms
                raw_scores.append(float(scores_from_output(out, m.meta)[0]))
            raw = float(np.mean(raw_scores))
            if not np.isfinite(raw):
                raise ValueError(f"model returned a non-finite score {raw}")
        except Exception as err:  # noqa: BLE001 - fail closed on any model failure
            self.smoother.reset()
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return LivenessResult(ERROR, False, None, None, face, faces, timings, f"liveness model: {err}")
        smoothed = self.smoother.update(face, raw)
        is_live = smoothed >= self.threshold
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return LivenessResult(LIVE if is_live else SPOOF, is_live, smoothed, raw, face, faces, timings)

    def reset(self) -> None:
        """Forgets the smoothing state (e.g. between unrelated images)."""
        self.smoother.reset()

    def close(self) -> None:
        """Releases the detector if the pipeline created it."""
        if self._own_detector and self.detector is not None:
            self.detector.close()
            self.detector = None  # type: ignore[assignment]

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
