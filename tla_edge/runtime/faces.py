"""Face detection: MediaPipe's BlazeFace, bundled, returning :class:`FaceBox` records.

    from tla_edge.runtime.faces import FaceDetector

    with FaceDetector("short") as detector:      # bundled BlazeFace, faces within ~2 m
        faces = detector.detect(rgb)             # HxWx3 uint8 RGB -> [FaceBox]

Both bundled models, ``"short"`` (128x128 input) and ``"full"`` (192x192,
faces up to ~5 m), run on one of two backends:

- ``"mediapipe"``: MediaPipe's FaceDetector task (the default wherever it loads);
- ``"litert"``: the same model through LiteRT, with MediaPipe's graph around it
  written in NumPy (:mod:`tla_edge.runtime.blazeface`), for CPUs mediapipe 1.x cannot
  run on (the Raspberry Pi 4's Cortex-A72 and other ARMv8.0 cores).

``"auto"`` (the default) picks MediaPipe when it imports and runs on this CPU,
else LiteRT (:func:`resolve_backend`). MediaPipe is imported inside
:class:`FaceDetector`, so ``import tla_edge.runtime.faces`` costs only NumPy;
TensorFlow is never imported.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import logging
import numbers
import os
import platform
import subprocess
import sys
import time
import types
import weakref
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge.runtime import preprocess
from tla_edge.runtime.assets import ASSETS_DIR
from tla_edge.errors import UserError, missing_extra
from tla_edge.runtime.native import quiet_native_logs

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
BACKENDS = ("auto", "mediapipe", "litert")
"""Detector backends: ``auto`` picks ``mediapipe`` where it runs, else ``litert``."""
# The CPU features (/proc/cpuinfo names) mediapipe 1.x's arm64 library checks
# for when it loads: ARMv8.2 with crypto (aes, sha2, crc, lse, dotprod, fp16,
# rdm, rcpc). The Pi 5's Cortex-A76 has them all; ARMv8.0 cores (the Pi 4's
# Cortex-A72, the A53 of a Pi 3 or Zero 2 W) lack most, and it stops there
# with SIGILL.
ARMV82_FEATURES = frozenset(
    {"aes", "sha2", "crc32", "atomics", "asimddp", "fphp", "asimdhp", "asimdrdm", "lrcpc"}
)
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


def _face_from_detection(detection: Any, width: int, height: int) -> FaceBox:
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


class _MediaPipe(NamedTuple):
    """The MediaPipe names the detector uses, imported on first use."""

    base_options: Any
    face_detector: Any
    image: Any
    running_mode: Any


def _import_mediapipe() -> _MediaPipe:
    """Imports MediaPipe's FaceDetector task without importing TensorFlow.

    ``mediapipe.tasks.python.core.optional_dependencies`` imports TensorFlow's
    API-doc helpers whenever TensorFlow is installed (a training workstation),
    which costs seconds and ~600 MB for a decorator that does nothing at run
    time. Unless TensorFlow is loaded already, that module is replaced by the
    same no-op MediaPipe itself falls back to where TensorFlow is absent.

    Raises:
      UserError: mediapipe is not installed.
    """
    if importlib.util.find_spec("mediapipe") is None:
        raise missing_extra("mediapipe", "runtime")
    name = "mediapipe.tasks.python.core.optional_dependencies"
    if name not in sys.modules and "tensorflow" not in sys.modules:
        stub = types.ModuleType(name, "MediaPipe's optional dependencies, without TensorFlow.")
        stub.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)
        sys.modules[name] = stub
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.vision import face_detector
    from mediapipe.tasks.python.vision.core import image, vision_task_running_mode

    return _MediaPipe(base_options, face_detector, image, vision_task_running_mode)


def cpu_features(cpuinfo: str) -> frozenset[str]:
    """The feature flags in a Linux ``/proc/cpuinfo`` text (``Features`` on ARM, ``flags`` on x86)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("features", "flags"):
            return frozenset(value.split())
    return frozenset()


def mediapipe_cpu_verdict(system: str, machine: str, features: frozenset[str]) -> bool | None:
    """Whether mediapipe 1.x can run on a CPU, judged from its features without importing it.

    Args:
      system: ``platform.system()``.
      machine: ``platform.machine()``.
      features: :func:`cpu_features` of ``/proc/cpuinfo`` (empty where unknown).

    Returns:
      False for a 64-bit ARM core without the ARMv8.2 features mediapipe 1.x
      needs (Cortex-A72, A53: SIGILL); True for one with them, for Apple
      silicon and for x86-64 with AVX2; None where the features do not tell
      (then :func:`auto_backend` tries MediaPipe in a child process).
    """
    machine = machine.lower()
    if machine in ("aarch64", "arm64"):
        if system == "Darwin":
            return True
        if "asimd" not in features:
            # Not an ARM feature list: unreadable, or the host's x86 one seen
            # through an older qemu-user.
            return None
        return ARMV82_FEATURES <= features
    if machine in ("x86_64", "amd64"):
        if not features or "avx2" in features:
            return True
        return None
    return None


def _this_cpu_verdict() -> tuple[bool | None, str]:
    """:func:`mediapipe_cpu_verdict` for this machine, and its name for messages."""
    system, machine = platform.system(), platform.machine()
    features: frozenset[str] = frozenset()
    if system == "Linux":
        try:
            features = cpu_features(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            pass
    verdict = mediapipe_cpu_verdict(system, machine, features)
    if verdict is False:
        missing = ", ".join(sorted(ARMV82_FEATURES - features))
        return False, f"{machine} CPU without {missing}"
    return verdict, f"{machine} CPU"


# A detection on a blank frame in a child process: mediapipe's SIGILL ends the
# child, never the caller.
_PROBE = (
    "import numpy as np; from tla_edge.runtime.faces import FaceDetector; "
    "d = FaceDetector('short', backend='mediapipe'); d.detect(np.zeros((64, 64, 3), np.uint8)); d.close()"
)


def _probe_mediapipe_in_subprocess(timeout_s: float = 120.0) -> tuple[bool, str]:
    """Runs MediaPipe's detector once in a child process; ``(ran, why not)``."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"the mediapipe test run failed ({err})"
    if proc.returncode == 0:
        return True, ""
    if proc.returncode < 0:
        return False, f"the mediapipe test run was killed by signal {-proc.returncode}"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return False, f"the mediapipe test run exited {proc.returncode} {tail[0]}".rstrip()


@functools.lru_cache(maxsize=1)
def auto_backend() -> tuple[str, str]:
    """The backend ``"auto"`` means on this machine, decided once per process.

    MediaPipe when it is installed, this CPU can run it, and it imports;
    where the CPU's features do not tell, one detection in a child process
    decides (an illegal instruction ends the child, not this process).
    Otherwise LiteRT.

    Returns:
      ``(backend, reason)``: ``"mediapipe"`` or ``"litert"``, and why.
    """
    if importlib.util.find_spec("mediapipe") is None:
        return "litert", "mediapipe is not installed"
    verdict, cpu = _this_cpu_verdict()
    if verdict is False:
        return "litert", f"mediapipe 1.x cannot run on this {cpu}"
    if verdict is None:
        ran, why = _probe_mediapipe_in_subprocess()
        if not ran:
            return "litert", why
    try:
        _import_mediapipe()
    except Exception as err:  # noqa: BLE001 - any import failure means: use LiteRT
        return "litert", f"mediapipe does not import ({type(err).__name__}: {err})"
    return "mediapipe", f"mediapipe runs on this {cpu}"


def resolve_backend(backend: str = "auto") -> str:
    """Turns ``"auto"``, ``"mediapipe"`` or ``"litert"`` into the backend to use.

    Raises:
      ValueError: an unknown backend name.
      UserError: ``"mediapipe"`` asked for on a CPU it cannot run on.
    """
    _check_choice("detector backend", backend, BACKENDS)
    if backend == "auto":
        return auto_backend()[0]
    if backend == "mediapipe":
        verdict, cpu = _this_cpu_verdict()
        if verdict is False:
            raise UserError(
                f"mediapipe 1.x cannot run on this {cpu} (it stops with SIGILL); "
                "use --detector-backend litert (or auto)"
            )
    return backend


# Detectors not closed yet. MediaPipe's task closes itself in __del__, which
# raises when it runs during interpreter shutdown; closing them at exit instead
# keeps that traceback away from users who forget close().
_OPEN_DETECTORS: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


@atexit.register
def _close_open_detectors() -> None:
    for detector in list(_OPEN_DETECTORS):
        detector.close()


class FaceDetector:
    """BlazeFace through MediaPipe's FaceDetector task, or through LiteRT where MediaPipe cannot run.

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
      backend: ``"auto"`` (MediaPipe where it runs, else LiteRT; see
        :func:`auto_backend`), ``"mediapipe"`` or ``"litert"``. Both give the
        same boxes (``benchmarks/results/detector_agreement.json``).

    Raises:
      ValueError: a bad ``model``, ``mode``, ``policy``, ``min_score``,
        ``num_threads`` or ``backend`` value, or a model file the backend cannot load.
      FileNotFoundError: the model file does not exist.
      UserError: the backend's package is not installed, or mediapipe was
        asked for on a CPU it cannot run on.
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
        self._task = None
        self._litert = None
        _check_choice("detector mode", mode, MODES)
        _check_choice("face policy", policy, POLICIES)
        if not _is_number(min_score) or not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score {min_score!r} is not a number in [0, 1]")
        if num_threads is not None and not (_is_integer(num_threads) and num_threads >= 1):
            raise ValueError(f"num_threads {num_threads!r} is not a positive integer or None")
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
            from tla_edge.runtime.blazeface import BlazeFaceLiteRT

            self._litert = BlazeFaceLiteRT(self.model_path, min_score=self.min_score,
                                           num_threads=num_threads)
            _OPEN_DETECTORS.add(self)
            return
        if num_threads is not None:
            _log.debug("num_threads=%d not applied: MediaPipe Tasks choose their own", num_threads)

        self._mp = _import_mediapipe()
        running_mode = self._mp.running_mode.VisionTaskRunningMode
        options = self._mp.face_detector.FaceDetectorOptions(
            base_options=self._mp.base_options.BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=running_mode.VIDEO if mode == "video" else running_mode.IMAGE,
            min_detection_confidence=self.min_score,
        )
        try:
            with quiet_native_logs():
                self._task = self._mp.face_detector.FaceDetector.create_from_options(options)
        except (ValueError, RuntimeError, OSError) as err:
            # MediaPipe reports a model without metadata as FileNotFoundError
            # even though the file exists: say what it is.
            raise ValueError(
                f"face detector model '{self.model_path}' could not be loaded by MediaPipe: {err}"
            ) from err
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
          ValueError: ``rgb`` is not HxWx3 uint8, or a timestamp does not increase.
          RuntimeError: the detector is closed.
        """
        preprocess.check_frame(rgb)
        if self._task is None and self._litert is None:
            raise RuntimeError("face detector is closed")
        if self._litert is not None:
            if self.mode == "video":
                self._next_timestamp(timestamp_ms)  # the same rules as MediaPipe's video mode
            faces = [
                FaceBox(float(x), float(y), float(w), float(h), score, keypoints)
                for (x, y, w, h), score, keypoints in self._litert.detect(rgb)
            ]
            self.last_invoke_ms = self._litert.last_invoke_ms
            return select_faces(faces, self.policy)
        height, width = rgb.shape[:2]
        image_lib = self._mp.image
        image = image_lib.Image(
            image_format=image_lib.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)
        )
        # The first call prints LiteRT's memory-alignment notice on fd 2.
        quiet = quiet_native_logs() if self.last_invoke_ms is None else contextlib.nullcontext()
        t0 = time.perf_counter()
        with quiet:
            result = self._run(image, timestamp_ms)
        self.last_invoke_ms = (time.perf_counter() - t0) * 1e3
        faces = [_face_from_detection(d, width, height) for d in result.detections]
        return select_faces(faces, self.policy)

    def _run(self, image: Any, timestamp_ms: int | None) -> Any:
        if self.mode == "video":
            return self._task.detect_for_video(image, self._next_timestamp(timestamp_ms))
        return self._task.detect(image)

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
        litert, self._litert = getattr(self, "_litert", None), None
        if litert is not None:
            _OPEN_DETECTORS.discard(self)
            litert.close()
        task, self._task = getattr(self, "_task", None), None
        if task is not None:
            _OPEN_DETECTORS.discard(self)
            with quiet_native_logs() if quiet else contextlib.nullcontext():
                task.close()

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
        state = "closed" if self._task is None and self._litert is None else "open"
        return (
            f"FaceDetector('{self.model_path}', mode={self.mode!r}, "
            f"min_score={self.min_score}, policy={self.policy!r}, backend={self.backend!r}, {state})"
        )
