"""Face detection: MediaPipe's BlazeFace model, bundled, returning :class:`FaceBox` records.

    from tla_edge.runtime.faces import FaceDetector

    with FaceDetector("short") as detector:      # bundled BlazeFace, faces within ~2 m
        faces = detector.detect(rgb)             # HxWx3 uint8 RGB -> [FaceBox]

Both bundled models, ``"short"`` (128x128 input) and ``"full"`` (192x192,
faces up to ~5 m), run on one of two backends:

- ``"litert"``: the model through LiteRT, with MediaPipe's graph around it
  written in NumPy (:mod:`tla_edge.runtime.blazeface`); what ``"auto"`` (the
  default) means on every board, the Raspberry Pi 4 included;
- ``"mediapipe"``: MediaPipe's FaceDetector task, opt-in
  (``pip install 'tla-edge[runtime,mediapipe]'``; it cannot run on ARMv8.0
  cores such as the Pi 4's Cortex-A72), same boxes.

:func:`tla_edge.runtime.cpu.resolve_backend` turns the name into the backend
and says in one line when MediaPipe is asked for but absent. Each backend is one
object (:class:`LiteRTBackend`,
:class:`tla_edge.runtime.mediapipe_backend.MediaPipeBackend`) behind the
:class:`FaceDetector` facade. MediaPipe is imported inside the detector, so
``import tla_edge.runtime.faces`` costs only NumPy; TensorFlow is never imported.
"""

from __future__ import annotations

import atexit
import logging
import numbers
import os
import time
import weakref
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge.runtime import imagesize, preprocess
from tla_edge.runtime.assets import ASSETS_DIR
from tla_edge.runtime.cpu import check_num_threads, resolve_backend

_log = logging.getLogger(__name__)

BUNDLED_MODELS = {
    "short": "face_detection_short_range.tflite",
    "full": "face_detection_full_range.tflite",
}
"""Bundled model name -> file in ``tla_edge/runtime/assets``."""
# At 0.5 a hand or a shirt fold (score 0.50-0.57) is sometimes larger than the
# real face (~0.96) on NUAA frames; from 0.55 up that never happened (3,491 frames).
DEFAULT_MIN_SCORE = 0.6
MODES = ("image", "video")
POLICIES = ("largest", "all")
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth",
    "right_ear_tragion",
    "left_ear_tragion",
)
"""The six BlazeFace keypoints, in :attr:`FaceBox.keypoints` order. "Right" is
the person's right, which is on the left of an unmirrored image."""


class FaceBox(NamedTuple):
    """One detected face, in the pixel coordinates of the frame it was found in."""

    x: float
    """Left edge in pixels from the frame's left; may be negative (face cut off)."""
    y: float
    """Top edge in pixels from the frame's top; may be negative (face cut off)."""
    width: float
    """Box width in pixels; the box may extend past the frame's right edge."""
    height: float
    """Box height in pixels; the box may extend past the frame's bottom edge."""
    score: float = 1.0
    """Detector confidence in [0, 1] (1.0 for a hand-made box)."""
    keypoints: tuple[tuple[float, float], ...] = ()
    """``(x, y)`` pixels of the six :data:`KEYPOINT_NAMES`: right eye, left eye,
    nose tip, mouth, right ear tragion, left ear tragion; may lie outside the frame."""

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for an empty box)."""
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return (self.x + self.width / 2.0, self.y + self.height / 2.0)

    def iou(self, other: Sequence[float]) -> float:
        """Intersection over union with another box.

        Args:
          other: a FaceBox or any ``(x, y, width, height)`` sequence, in pixels.

        Returns:
          IoU in [0, 1]; 0 when both boxes are empty.
        """
        ox, oy, ow, oh = (float(v) for v in other[:4])
        ix = max(0.0, min(self.x + self.width, ox + ow) - max(self.x, ox))
        iy = max(0.0, min(self.y + self.height, oy + oh) - max(self.y, oy))
        inter = ix * iy
        union = self.area + max(ow, 0.0) * max(oh, 0.0) - inter
        return inter / union if union > 0.0 else 0.0


def bundled_detector_path(model: str) -> Path:
    """The file of a bundled face detector.

    Args:
      model: ``"short"`` or ``"full"``.

    Returns:
      Path of the ``.tflite`` in ``tla_edge/runtime/assets``.

    Raises:
      ValueError: ``model`` is not a bundled model's name.
      FileNotFoundError: the package was installed without its assets.
    """
    if model not in BUNDLED_MODELS:
        allowed = ", ".join(map(repr, BUNDLED_MODELS))
        raise ValueError(f"unknown bundled face detector {model!r}; expected one of {allowed}")
    path = ASSETS_DIR / BUNDLED_MODELS[model]
    if not path.is_file():
        raise FileNotFoundError(
            f"face detector model '{path}' not found; reinstall tla-edge or run "
            "scripts/build_face_detector.py"
        )
    return path


def resolve_model(model: str | os.PathLike) -> Path:
    """Turns a bundled name (``"short"``, ``"full"``) or a path into an existing file.

    Raises:
      ValueError: ``model`` is neither a bundled name nor something path-like.
      FileNotFoundError: the file does not exist.
    """
    if isinstance(model, str) and model in BUNDLED_MODELS:
        return bundled_detector_path(model)
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            f"face detector model {model!r} is not 'short', 'full' or a path to a .tflite file"
        )
    text = os.fspath(model)
    path = Path(text)
    if path.is_file():
        return path
    looks_like_path = (
        isinstance(model, os.PathLike) or text.endswith(".tflite") or "/" in text or os.sep in text
    )
    if looks_like_path:
        raise FileNotFoundError(f"face detector model '{text}' not found")
    raise ValueError(
        f"unknown face detector model {text!r}; "
        "expected 'short', 'full' or a path to a .tflite file"
    )


def select_faces(faces: Sequence[FaceBox], policy: str = "largest") -> list[FaceBox]:
    """Orders faces by area, largest first, and applies the policy.

    Args:
      faces: detected faces, any order.
      policy: ``"largest"`` keeps only the largest face; ``"all"`` keeps every face.

    Returns:
      The selected faces, sorted by area descending.

    Raises:
      ValueError: an unknown policy.
    """
    _check_choice("face policy", policy, POLICIES)
    ordered = sorted(faces, key=lambda f: f.area, reverse=True)
    return ordered[:1] if policy == "largest" else ordered


def _check_choice(what: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(map(repr, allowed))}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


KEYPOINT_CENTRE_DY = 0.08
"""A BlazeFace box's centre lies this many box heights below the mean of its eyes, nose tip and
mouth, and level with it across (NUAA frames, both backends: 0.08 +- 0.03 down, 0.01 +- 0.04 across)."""


def restore_edge_box(face: FaceBox) -> FaceBox:
    """Puts back a box that the detector moved inside the frame at its left or top edge.

    Both backends (MediaPipe's C++, and the LiteRT backend, which mirrors it)
    clamp a box's left and top at 0 and keep its size, while past the right
    and bottom edges the box simply extends: a face cut off at the left looked
    whole and was judged on a shifted crop. A box touching the left (top) edge
    is moved out to where its keypoints centre it, never further in, so
    ``face_cut_off`` judges all four edges alike. A box without keypoints, or
    away from those edges, is returned as it is.
    """
    if len(face.keypoints) < 4 or (face.x > 0 and face.y > 0):
        return face
    centre = np.asarray(face.keypoints[:4], np.float64).mean(axis=0)
    x = min(face.x, float(centre[0]) - face.width / 2.0) if face.x <= 0 else face.x
    y = min(face.y, float(centre[1]) + KEYPOINT_CENTRE_DY * face.height - face.height / 2.0) if face.y <= 0 else face.y
    return face._replace(x=float(x), y=float(y))


class LiteRTBackend:
    """The ``litert`` backend: :class:`~tla_edge.runtime.blazeface.BlazeFaceLiteRT` returning FaceBoxes."""

    def __init__(self, model_path: Path, *, min_score: float, num_threads: int | None) -> None:
        from tla_edge.runtime.blazeface import BlazeFaceLiteRT

        self._runner = BlazeFaceLiteRT(model_path, min_score=min_score, num_threads=num_threads)
        self.last_invoke_ms: float | None = None

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None) -> list[FaceBox]:
        """Faces in a checked ``(H, W, 3)`` uint8 frame, highest score first (timestamps unused)."""
        faces = [
            FaceBox(float(x), float(y), float(w), float(h), score, keypoints)
            for (x, y, w, h), score, keypoints in self._runner.detect_trusted(rgb)
        ]
        self.last_invoke_ms = self._runner.last_invoke_ms
        return faces

    def close(self, quiet: bool = True) -> None:
        """Drops the interpreter. Safe to call twice."""
        self._runner.close()


# Detectors not closed yet. MediaPipe's task closes itself in __del__, which
# raises when it runs during interpreter shutdown; closing them at exit instead
# keeps that traceback away from users who forget close().
_OPEN_DETECTORS: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


@atexit.register
def _close_open_detectors() -> None:
    for detector in list(_OPEN_DETECTORS):
        detector.close()


class FaceDetector:
    """BlazeFace through LiteRT (the default), or through MediaPipe's FaceDetector task when asked for.

    Args:
      model: ``"short"`` (bundled, 128x128, faces within ~2 m), ``"full"``
        (bundled, 192x192, faces up to ~5 m) or a path to a ``.tflite`` face
        detector with MediaPipe metadata (``litert``: with either bundled
        model's input size and outputs).
      mode: ``"image"`` for unrelated stills, ``"video"`` for frames of one
        stream (timestamps must increase).
      min_score: smallest detection score kept, in [0, 1].
      policy: ``"largest"`` returns at most the largest face; ``"all"`` every face.
      num_threads: interpreter threads with the ``litert`` backend; accepted
        but not applied with ``mediapipe``, whose Tasks API has no thread
        setting and runs XNNPACK with its own default.
      backend: ``"auto"`` (LiteRT; see :func:`tla_edge.runtime.cpu.auto_backend`),
        ``"litert"`` or ``"mediapipe"`` (the opt-in extra). Both give the same
        boxes (``benchmarks/results/detector_agreement.json``).

    Raises:
      ValueError: a bad ``model``, ``mode``, ``policy``, ``min_score``,
        ``num_threads`` or ``backend`` value, or a model file the backend cannot load.
      FileNotFoundError: the model file does not exist.
      UserError: the backend's package is not installed (mediapipe: names the
        ``mediapipe`` extra), or mediapipe was asked for on a CPU it cannot run on.
    """

    def __init__(
        self,
        model: str | os.PathLike = "short",
        *,
        mode: str = "image",
        min_score: float = DEFAULT_MIN_SCORE,
        policy: str = "largest",
        num_threads: int | None = None,
        backend: str = "auto",
    ) -> None:
        self._backend: LiteRTBackend | Any = None
        _check_choice("detector mode", mode, MODES)
        _check_choice("face policy", policy, POLICIES)
        if not _is_number(min_score) or not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score {min_score!r} is not a number in [0, 1]")
        check_num_threads(num_threads)
        self.model_path = resolve_model(model)
        self.mode = mode
        self.policy = policy
        self.min_score = float(min_score)
        self.last_invoke_ms: float | None = None
        """Milliseconds inside the backend for the last frame (resize, inference, decoding)."""
        self._last_timestamp_ms: int | None = None
        self.num_threads = num_threads
        """Interpreter threads asked for (applied by the ``litert`` backend only)."""
        self.backend = resolve_backend(backend)
        """The backend in use: ``"mediapipe"`` or ``"litert"`` (``"auto"`` resolved)."""
        if self.backend == "litert":
            self._backend = LiteRTBackend(self.model_path, min_score=self.min_score, num_threads=num_threads)
        else:
            from tla_edge.runtime.mediapipe_backend import MediaPipeBackend

            if num_threads is not None:
                _log.debug("num_threads=%d not applied: MediaPipe Tasks choose their own", num_threads)
            self._backend = MediaPipeBackend(self.model_path, video=mode == "video", min_score=self.min_score)
        _OPEN_DETECTORS.add(self)

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> list[FaceBox]:
        """Finds faces in one frame.

        Args:
          rgb: the frame, ``(H, W, 3)`` uint8 RGB.
          timestamp_ms: video mode: the frame's time in milliseconds, greater
            than the previous frame's; None generates increasing ones from a
            monotonic clock. Ignored in image mode.

        Returns:
          Faces sorted by area, largest first; at most one when the policy is
          ``"largest"``. Boxes are the detector's, in frame pixels, not
          clipped to the frame.

        Raises:
          ValueError: ``rgb`` is not HxWx3 uint8, larger than
            :data:`~tla_edge.runtime.imagesize.MAX_SIDE` px a side or
            :data:`~tla_edge.runtime.imagesize.MAX_PIXELS`, or a timestamp does not increase.
          RuntimeError: the detector is closed.
        """
        preprocess.check_frame(rgb)
        # Before any native code: MediaPipe aborts the process on a side of 32,767 px.
        imagesize.check_size(rgb.shape[1], rgb.shape[0])
        return self.detect_trusted(rgb, timestamp_ms)

    def detect_trusted(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> list[FaceBox]:
        """:meth:`detect` of a frame its caller has checked (:func:`~tla_edge.runtime.preprocess.check_frame`).

        The pipeline checks each frame once at its boundary, shape and size
        (:meth:`tla_edge.runtime.pipeline.Pipeline.process`), and calls this.
        """
        if self._backend is None:
            raise RuntimeError("face detector is closed")
        ts = self._next_timestamp(timestamp_ms) if self.mode == "video" else None
        faces = [restore_edge_box(f) for f in self._backend.detect(rgb, ts)]
        self.last_invoke_ms = self._backend.last_invoke_ms
        return select_faces(faces, self.policy)

    def _next_timestamp(self, timestamp_ms: int | None) -> int:
        last = self._last_timestamp_ms
        if timestamp_ms is None:
            ts = int(time.monotonic() * 1000)
            if last is not None and ts <= last:
                ts = last + 1
        else:
            if not _is_integer(timestamp_ms):
                raise ValueError(f"timestamp_ms {timestamp_ms!r} is not an integer")
            ts = int(timestamp_ms)
            if last is not None and ts <= last:
                raise ValueError(
                    f"timestamp_ms {ts} is not greater than the previous frame's ({last}); "
                    "video-mode timestamps must increase"
                )
        self._last_timestamp_ms = ts
        return ts

    def close(self, quiet: bool = True) -> None:
        """Releases the backend; further :meth:`detect` calls raise. Safe to call twice.

        Args:
          quiet: silence MediaPipe's closing lines on fd 2 (never from a finalizer).
        """
        backend, self._backend = getattr(self, "_backend", None), None
        if backend is not None:
            _OPEN_DETECTORS.discard(self)
            backend.close(quiet)

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # During normal runtime, release the native task with the object;
        # at exit _close_open_detectors has already done it. A finalizer runs
        # at any moment in any thread: it never redirects standard error.
        try:
            self.close(quiet=False)
        except Exception:  # noqa: BLE001 - nothing to report to during teardown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._backend is None else "open"
        return (
            f"FaceDetector('{self.model_path}', mode={self.mode!r}, "
            f"min_score={self.min_score}, policy={self.policy!r}, backend={self.backend!r}, {state})"
        )
