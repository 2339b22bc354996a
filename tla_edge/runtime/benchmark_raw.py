"""The benchmark's raw series: the two models alone on prepared inputs, without any glue.

Their times are the floor the pipeline's total is compared with (the overhead
ratio of :mod:`tla_edge.runtime.benchmark`). They are taken side by side with the
pipeline, frame by frame (:class:`RawTimer`: after the pipeline judged a frame,
the raw detector on the same frame, then the raw liveness models on the face
it judged), so a change of load during a run (a busy machine) weighs on both
alike; timed in separate passes, one burst could move the ratio by 0.3.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tla_edge.runtime.native import quiet_native_logs

FRAME_INTERVAL_MS = 33
"""Timestamp step of in-memory frames fed to the video-mode detector (30 fps)."""


class RawTimer:
    """Times the two models alone on prepared inputs: no conversion, crop or decoding.

    Detector: a fresh MediaPipe FaceDetector task (same model, mode and
    score threshold as the pipeline's) timed around ``detect_for_video`` (or
    ``detect``) on an ``mp.Image`` built before timing; with the LiteRT
    backend, a fresh :class:`~tla_edge.runtime.blazeface.BlazeFaceLiteRT` (same
    model, score threshold and threads) timed around ``detect`` on the frame:
    warp, invoke, decoding and NMS, as MediaPipe's call includes.

    Liveness: the pipeline's own interpreters timed around ``invoke()`` after
    ``set_tensor`` of input tensors prepared before timing from the face the
    pipeline judged (the last such face on a frame without one, a zero tensor
    before any: invoke time does not depend on values); a fused set the way
    the pipeline ran it (``pipe.members``): one after another (the sum of the
    invokes), or concurrently (started together, one thread each, on a
    :class:`~tla_edge.runtime.members.MemberRunner`: wall time to the last end).

    Args:
      pipe: the configuration's Pipeline.
    """

    def __init__(self, pipe: Any) -> None:
        from tla_edge.runtime import interpreter as interp_lib
        from tla_edge.runtime.members import MemberRunner

        self._detector = _fresh_detector(pipe.detector)
        self._models = list(pipe.models)
        self._interpreters = [m.interpreter for m in self._models]
        self._inputs = []
        for interpreter in self._interpreters:
            d = interp_lib.input_details(interpreter)
            self._inputs.append((d["index"], np.zeros(d["shape"], d["dtype"])))
        self._runner = MemberRunner(len(self._models), getattr(pipe, "members", "sequential") == "concurrent")

    def detector_ms(self, rgb: np.ndarray, timestamp_ms: int) -> float:
        """Milliseconds of the raw detector on one frame."""
        return self._detector(rgb, timestamp_ms)

    def liveness_ms(self, rgb: np.ndarray, face: Any | None) -> float:
        """Milliseconds of the liveness models alone on ``face`` of ``rgb`` (None: the last face's inputs)."""
        if face is not None:
            self._inputs = [(index, model.input_tensor(model.crop(rgb, face)))
                            for model, (index, _) in zip(self._models, self._inputs)]
        for interpreter, (index, tensor) in zip(self._interpreters, self._inputs):
            interpreter.set_tensor(index, tensor)
        if not self._runner.concurrent:
            dt = 0.0
            for interpreter in self._interpreters:
                t0 = time.perf_counter()
                interpreter.invoke()
                dt += (time.perf_counter() - t0) * 1e3
            return dt
        t0 = time.perf_counter()
        self._runner.map(_bare_invoke, self._interpreters)
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        """Releases the fresh detector and the worker threads. Safe to call twice."""
        self._runner.close()
        close, self._detector = getattr(self._detector, "close", None), _closed
        if close is not None:
            close()

    def __enter__(self) -> "RawTimer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bare_invoke(interpreter: Any) -> None:
    interpreter.invoke()


def _closed(rgb: np.ndarray, timestamp_ms: int) -> float:
    raise RuntimeError("raw timer is closed")


def _fresh_detector(det: Any):
    """A callable ``(rgb, timestamp_ms) -> ms`` timing a fresh detector like ``det``, with ``close``."""
    if det.backend == "litert":
        return _LiteRTDetector(det)
    return _MediaPipeDetector(det)


class _LiteRTDetector:
    def __init__(self, det: Any) -> None:
        from tla_edge.runtime.blazeface import BlazeFaceLiteRT

        self._litert = BlazeFaceLiteRT(det.model_path, min_score=det.min_score, num_threads=det.num_threads)

    def __call__(self, rgb: np.ndarray, timestamp_ms: int) -> float:
        t0 = time.perf_counter()
        self._litert.detect(rgb)
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        self._litert.close()


class _MediaPipeDetector:
    def __init__(self, det: Any) -> None:
        from tla_edge.runtime.mediapipe_backend import import_mediapipe

        self._mp = mp = import_mediapipe()  # the detector's own import, which keeps TensorFlow out
        running_mode = mp.running_mode.VisionTaskRunningMode
        self._video = det.mode == "video"
        self._last_ts = 0
        self._warm = False
        with quiet_native_logs():
            self._task = mp.face_detector.FaceDetector.create_from_options(
                mp.face_detector.FaceDetectorOptions(
                    base_options=mp.base_options.BaseOptions(model_asset_path=str(det.model_path)),
                    running_mode=running_mode.VIDEO if self._video else running_mode.IMAGE,
                    min_detection_confidence=det.min_score,
                )
            )

    def __call__(self, rgb: np.ndarray, timestamp_ms: int) -> float:
        mp = self._mp
        image = mp.image.Image(image_format=mp.image.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if not self._warm:  # one untimed call first: it prints LiteRT's alignment notice on fd 2
            with quiet_native_logs():
                self._detect(image, timestamp_ms)
            self._warm = True
        t0 = time.perf_counter()
        self._detect(image, timestamp_ms)
        return (time.perf_counter() - t0) * 1e3

    def _detect(self, image: Any, timestamp_ms: int) -> None:
        if not self._video:
            self._task.detect(image)
            return
        self._last_ts = max(int(timestamp_ms), self._last_ts + 1)  # video mode: timestamps must increase
        self._task.detect_for_video(image, self._last_ts)

    def close(self) -> None:
        with quiet_native_logs():
            self._task.close()
