"""The benchmark's second pass: the two models alone on prepared inputs, without any glue.

Their times are the floor the pipeline's total is compared with (the overhead
ratio of :mod:`tla_edge.runtime.benchmark`).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from tla_edge.runtime.native import quiet_native_logs

FRAME_INTERVAL_MS = 33
"""Timestamp step of in-memory frames fed to the video-mode detector (30 fps)."""


def raw_invoke_times(pipe: Any, frames: Sequence[Any], faces: Sequence[Any], warmup: int, count: int) -> dict[str, list[float]]:
    """Times the two models alone on prepared inputs: no conversion, crop or decoding.

    Detector: a fresh MediaPipe FaceDetector task (same model, mode and
    score threshold as the pipeline's) timed around ``detect_for_video`` (or
    ``detect``) on ``mp.Image`` objects built before timing; with the LiteRT
    backend, a fresh :class:`~tla_edge.runtime.blazeface.BlazeFaceLiteRT` (same model,
    score threshold and threads) timed around ``detect`` on the frame: warp,
    invoke, decoding and NMS, as MediaPipe's call includes. Liveness: the
    pipeline's own interpreter timed around ``invoke()`` after ``set_tensor``
    of input tensors prepared before timing from the faces the pipeline found
    (a zero tensor when it found none: invoke time does not depend on values).

    Args:
      pipe: the configuration's Pipeline.
      frames: the frames of the configuration, warm-up ones first.
      faces: the face judged in each timed frame that had one, with its frame index.
      warmup: untimed calls first.
      count: timed calls.

    Returns:
      ``{"detector": [ms...], "liveness": [ms...]}``, ``count`` each.
    """
    from tla_edge.runtime import interpreter as interp_lib

    det = pipe.detector
    if det.backend == "litert":
        detector_ms = _raw_litert_detector_ms(det, frames, warmup, count)
    else:
        detector_ms = _raw_mediapipe_detector_ms(det, frames, warmup, count)

    # Every model of a fused set runs on each face: a call's time is their sum.
    prepared = []
    for model in pipe.models:
        interpreter = model.interpreter
        d = interp_lib.input_details(interpreter)
        tensors = [model.input_tensor(model.crop(frames[i].rgb, face)) for i, face in faces]
        prepared.append((interpreter, d["index"], tensors or [np.zeros(d["shape"], d["dtype"])]))
    liveness_ms = []
    for i in range(warmup + count):
        dt = 0.0
        for interpreter, index, tensors in prepared:
            interpreter.set_tensor(index, tensors[i % len(tensors)])
            t0 = time.perf_counter()
            interpreter.invoke()
            dt += (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            liveness_ms.append(dt)
    return {"detector": detector_ms, "liveness": liveness_ms}


def _raw_litert_detector_ms(det: Any, frames: Sequence[Any], warmup: int, count: int) -> list[float]:
    from tla_edge.runtime.blazeface import BlazeFaceLiteRT

    litert = BlazeFaceLiteRT(det.model_path, min_score=det.min_score, num_threads=det.num_threads)
    detector_ms = []
    try:
        for i in range(warmup + count):
            rgb = frames[i % len(frames)].rgb
            t0 = time.perf_counter()
            litert.detect(rgb)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                detector_ms.append(dt)
    finally:
        litert.close()
    return detector_ms


def _raw_mediapipe_detector_ms(det: Any, frames: Sequence[Any], warmup: int, count: int) -> list[float]:
    from tla_edge.runtime.mediapipe_backend import import_mediapipe

    mp = import_mediapipe()  # the detector's own import, which keeps TensorFlow out
    running_mode = mp.running_mode.VisionTaskRunningMode
    video = det.mode == "video"
    with quiet_native_logs():
        task = mp.face_detector.FaceDetector.create_from_options(
            mp.face_detector.FaceDetectorOptions(
                base_options=mp.base_options.BaseOptions(model_asset_path=str(det.model_path)),
                running_mode=running_mode.VIDEO if video else running_mode.IMAGE,
                min_detection_confidence=det.min_score,
            )
        )
    images = [
        mp.image.Image(image_format=mp.image.ImageFormat.SRGB, data=np.ascontiguousarray(f.rgb)) for f in frames
    ]
    detector_ms = []
    try:
        # One untimed call first: it prints LiteRT's alignment notice on fd 2.
        with quiet_native_logs():
            task.detect_for_video(images[0], 1) if video else task.detect(images[0])
        for i in range(warmup + count):
            image = images[i % len(images)]
            t0 = time.perf_counter()
            if video:
                task.detect_for_video(image, (i + 1) * FRAME_INTERVAL_MS)
            else:
                task.detect(image)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                detector_ms.append(dt)
    finally:
        with quiet_native_logs():
            task.close()
    return detector_ms
