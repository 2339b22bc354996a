"""The opt-in ``mediapipe`` face detector backend: MediaPipe's FaceDetector task.

Installed by the ``mediapipe`` extra (``pip install 'tla-edge[runtime,mediapipe]'``)
and used only when asked for (``--detector-backend mediapipe``); the default
is the same BlazeFace through LiteRT (:mod:`tla_edge.runtime.blazeface`).

:func:`import_mediapipe` is the one way to import the task without pulling in
TensorFlow (the detector and the raw benchmark both use it);
:class:`MediaPipeBackend` is what :class:`tla_edge.runtime.faces.FaceDetector`
runs when its backend is ``mediapipe``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import types
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tla_edge.runtime.cpu import mediapipe_missing
from tla_edge.runtime.faces import FaceBox
from tla_edge.runtime.native import quiet_native_logs


class MediaPipeModules(NamedTuple):
    """The MediaPipe modules the detector uses, imported on first use."""

    base_options: Any
    face_detector: Any
    image: Any
    running_mode: Any


def import_mediapipe() -> MediaPipeModules:
    """Imports MediaPipe's FaceDetector task without importing TensorFlow.

    ``mediapipe.tasks.python.core.optional_dependencies`` imports TensorFlow's
    API-doc helpers whenever TensorFlow is installed (a training workstation),
    which costs seconds and ~600 MB for a decorator that does nothing at run
    time. Unless TensorFlow is loaded already, that module is replaced by the
    same no-op MediaPipe itself falls back to where TensorFlow is absent.

    Raises:
      UserError: mediapipe is not installed (names the mediapipe extra).
    """
    if importlib.util.find_spec("mediapipe") is None:
        raise mediapipe_missing()
    name = "mediapipe.tasks.python.core.optional_dependencies"
    if name not in sys.modules and "tensorflow" not in sys.modules:
        stub = types.ModuleType(name, "MediaPipe's optional dependencies, without TensorFlow.")
        stub.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)
        sys.modules[name] = stub
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.vision import face_detector
    from mediapipe.tasks.python.vision.core import image, vision_task_running_mode

    return MediaPipeModules(base_options, face_detector, image, vision_task_running_mode)


def face_from_detection(detection: Any, width: int, height: int) -> FaceBox:
    """Converts one MediaPipe Detection (pixel box, normalized keypoints) to a FaceBox."""
    box = detection.bounding_box
    keypoints = tuple(
        (float(k.x) * width, float(k.y) * height) for k in (detection.keypoints or ())
    )
    score = float(detection.categories[0].score) if detection.categories else 0.0
    return FaceBox(
        float(box.origin_x), float(box.origin_y), float(box.width), float(box.height),
        score, keypoints,
    )


class MediaPipeBackend:
    """MediaPipe's FaceDetector task on one model, in image or video mode.

    Raises:
      UserError: mediapipe is not installed.
      ValueError: MediaPipe cannot load the model.
    """

    def __init__(self, model_path: Path, *, video: bool, min_score: float) -> None:
        self._mp = import_mediapipe()
        self._video = video
        running_mode = self._mp.running_mode.VisionTaskRunningMode
        options = self._mp.face_detector.FaceDetectorOptions(
            base_options=self._mp.base_options.BaseOptions(model_asset_path=str(model_path)),
            running_mode=running_mode.VIDEO if video else running_mode.IMAGE,
            min_detection_confidence=min_score,
        )
        try:
            with quiet_native_logs():
                self._task = self._mp.face_detector.FaceDetector.create_from_options(options)
        except (ValueError, RuntimeError, OSError) as err:
            # MediaPipe reports a model without metadata as FileNotFoundError
            # even though the file exists: say what it is.
            raise ValueError(
                f"face detector model '{model_path}' could not be loaded by MediaPipe: {err}"
            ) from err
        self.last_invoke_ms: float | None = None

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None) -> list[FaceBox]:
        """Faces in a checked ``(H, W, 3)`` uint8 frame, unsorted; ``timestamp_ms`` in video mode."""
        height, width = rgb.shape[:2]
        image_lib = self._mp.image
        image = image_lib.Image(image_format=image_lib.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        # The first call prints LiteRT's memory-alignment notice on fd 2.
        quiet = quiet_native_logs() if self.last_invoke_ms is None else contextlib.nullcontext()
        t0 = time.perf_counter()
        with quiet:
            if self._video:
                result = self._task.detect_for_video(image, timestamp_ms)
            else:
                result = self._task.detect(image)
        self.last_invoke_ms = (time.perf_counter() - t0) * 1e3
        return [face_from_detection(d, width, height) for d in result.detections]

    def close(self, quiet: bool = True) -> None:
        """Closes the task (MediaPipe's closing lines on fd 2 silenced when ``quiet``). Safe twice."""
        task, self._task = self._task, None
        if task is not None:
            with quiet_native_logs() if quiet else contextlib.nullcontext():
                task.close()
