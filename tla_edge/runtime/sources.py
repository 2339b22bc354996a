"""Where frames come from: a camera, a video, an image folder, one image, a Pi camera.

Every source yields :class:`Frame` records whose ``rgb`` is an ``(H, W, 3)``
uint8 RGB array. OpenCV and picamera2 deliver BGR; :func:`bgr_to_rgb` converts
it here, exactly once, so nothing downstream ever sees BGR.

    from tla_edge.runtime.sources import open_source

    with open_source("0") as frames:             # camera 0
        for frame in frames:
            result = pipeline.process(frame.rgb, frame.timestamp_ms)

Cameras, the Pi camera, videos and streams are :mod:`tla_edge.runtime.capture`;
one that does not open, or stops delivering frames, raises
:class:`~tla_edge.errors.UserError` within a few seconds instead of hanging.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from tla_edge.errors import UserError
from tla_edge.runtime import imagesize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""The one list of image file extensions (any case), for sources and datasets alike: all read by OpenCV."""
PICAMERA_SPECS = ("picamera2", "picam")
HEADER_BYTES = 1 << 20
"""Bytes read for an image's declared size: a JPEG's frame header may follow a large EXIF block."""

# Nominal frame rate of stills, for timestamps when nothing better is known.
STILLS_FPS = 30.0


class Frame(NamedTuple):
    """One frame as it enters the pipeline."""

    index: int
    """0-based position in this source's stream (keeps counting across loops)."""
    rgb: np.ndarray
    """``(H, W, 3)`` uint8 RGB, converted from BGR once by :func:`bgr_to_rgb`."""
    timestamp_ms: int
    """Strictly increasing milliseconds: capture time for cameras, position for files."""
    name: str
    """Where it came from: ``"img_001.jpg"``, ``"video.mp4#123"``, ``"camera:0"``."""
    decode_ms: float
    """Milliseconds spent reading and decoding this frame."""


def bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    """Converts an OpenCV ``(H, W, 3)`` uint8 BGR image to a new RGB array.

    The one place BGR becomes RGB: every source calls it once per frame.

    Args:
      bgr: ``(H, W, 3)`` uint8, channels in B, G, R order.

    Returns:
      A new C-contiguous ``(H, W, 3)`` uint8 array in R, G, B order.

    Raises:
      ValueError: the input is not an HxWx3 uint8 array.
    """
    if not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        shape = getattr(bgr, "shape", None)
        dtype = getattr(bgr, "dtype", type(bgr).__name__)
        raise ValueError(f"BGR image shape {shape} dtype {dtype} is not HxWx3 uint8")
    import cv2

    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def is_image_file(path: str | Path) -> bool:
    """True when the file name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


def read_image_bgr(path: str | Path) -> np.ndarray:
    """Reads an image file as ``(H, W, 3)`` uint8 BGR (grey and alpha images converted).

    The size its header declares is checked before decoding, and the decoded
    size after: an image over :data:`~tla_edge.runtime.imagesize.MAX_SIDE` px a side or
    :data:`~tla_edge.runtime.imagesize.MAX_PIXELS` is refused, never decoded.

    Raises:
      ValueError: the file cannot be read or decoded, or is too large; the message says why.
    """
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths too
    except OSError as err:
        raise ValueError(f"cannot read: {err.strerror or err}") from err
    if data.size == 0:
        raise ValueError("empty file")
    declared = imagesize.header_size(data[:HEADER_BYTES].tobytes())
    if declared is not None:
        imagesize.check_size(*declared)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:  # a header OpenCV itself refuses (its own pixel limit, a corrupt size)
        raise ValueError(f"not a decodable image ({' '.join(str(err).split())[-120:]})") from None
    if bgr is None:
        raise ValueError("not a decodable image")
    imagesize.check_size(bgr.shape[1], bgr.shape[0])
    return bgr


class FrameSource:
    """Base class: an iterable of :class:`Frame` that owns a device or files.

    Attributes:
      spec: what was opened, as given.
      kind: ``"camera"``, ``"video"``, ``"folder"``, ``"image"`` or ``"picamera2"``.
      fps: the nominal frame rate when known, else None.
      length: frames in one pass (files and folders), None for live cameras.
      skipped: ``(name, reason)`` for every image that could not be read.
      loop: whether a video or folder restarts at its end.
    """

    kind = "source"

    def __init__(self, spec: str, loop: bool = False) -> None:
        self.spec = spec
        self.loop = loop
        self.fps: float | None = None
        self.length: int | None = None
        self.skipped: list[tuple[str, str]] = []
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        return self._frames()

    def _frames(self) -> Iterator[Frame]:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Releases the device or file; safe to call twice."""
        self._closed = True

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class ImageFilesSource(FrameSource):
    """A folder of images (sorted by name) or one image file.

    Unreadable images in a folder are skipped, listed in :attr:`skipped` and
    reported once on stderr; a folder where none can be read is an error.
    """

    def __init__(self, path: str | Path, loop: bool = False, warn: bool = True) -> None:
        path = Path(path)
        super().__init__(str(path), loop)
        self.path = path
        self.warn = warn
        if path.is_dir():
            self.kind = "folder"
            self.files = list_images(path)
            if not self.files:
                raise UserError(
                    f"image folder '{path}' has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
        else:
            self.kind = "image"
            self.files = [path]
        self.length = len(self.files)
        self._bad: set[Path] = set()

    def _frames(self) -> Iterator[Frame]:
        index = 0
        step_ms = 1000.0 / STILLS_FPS
        while not self._closed:
            delivered = 0
            for path in self.files:
                if self._closed:
                    return
                if path in self._bad:
                    continue
                t0 = time.perf_counter()
                try:
                    rgb = bgr_to_rgb(read_image_bgr(path))
                except ValueError as err:
                    if self.kind == "image":
                        raise UserError(f"cannot read image '{path}': {err}") from err
                    self._bad.add(path)
                    self.skipped.append((path.name, str(err)))
                    if self.warn:
                        print(f"warning: skipped image '{path}': {err}", file=sys.stderr)
                    continue
                decode_ms = (time.perf_counter() - t0) * 1e3
                yield Frame(index, rgb, int(round(index * step_ms)), path.name, decode_ms)
                index += 1
                delivered += 1
            if delivered == 0:
                raise UserError(
                    f"none of the {len(self.files)} images in folder '{self.path}' could be read "
                    f"(first: {self.skipped[0][0]}: {self.skipped[0][1]})"
                )
            if not self.loop:
                return


SAMPLES_SPEC = "samples"
"""Source name of the bundled, freely redistributable sample frames."""


def open_source(
    spec: str | int | os.PathLike,
    *,
    loop: bool = False,
    width: int | None = None,
    height: int | None = None,
) -> FrameSource:
    """Opens a frame source from what a user typed.

    Args:
      spec: a camera index (``0`` or ``"0"``), ``"picamera2"``/``"picam"``,
        ``"samples"`` (the bundled sample frames, unless a path of that name exists), a
        video file or stream URL, a folder of images (``.jpg``, ``.jpeg``,
        ``.png``, ``.bmp``, ``.webp``, ``.tif``, ``.tiff``, sorted by name) or one image file.
      loop: repeat a video or folder forever (soaks and benchmarks).
      width, height: requested capture size for cameras; files keep their size.

    Returns:
      The opened :class:`FrameSource`; use it as a context manager.

    Raises:
      FileNotFoundError: a path that does not exist.
      UserError: a camera that does not open or delivers no frame, a video
        that cannot be decoded, a folder without images, an unreadable image.
      ValueError: a non-positive width or height.
    """
    from tla_edge.runtime.capture import CaptureSource, PiCameraSource, camera_index

    for name, value in (("width", width), ("height", height)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
            raise ValueError(f"capture {name} {value!r} is not a positive integer")
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return CaptureSource(camera_index(spec), loop, width, height)
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if not text.strip():
        raise ValueError("source '' is empty; expected a camera index, picamera2, a video, a folder or an image")
    if text.isdigit():
        return CaptureSource(camera_index(int(text)), loop, width, height)
    if text.lower() in PICAMERA_SPECS:
        return PiCameraSource(width, height)
    if text == SAMPLES_SPEC and not Path(text).exists():
        from tla_edge.runtime.assets import sample_frames_dir

        return ImageFilesSource(sample_frames_dir(), loop)
    if "://" in text:  # rtsp://, http:// streams go to FFmpeg as they are
        return CaptureSource(text, loop)
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"source '{text}' not found; expected a camera index, picamera2, a video, "
            "an image folder or an image"
        )
    if path.is_dir() or is_image_file(path):
        return ImageFilesSource(path, loop)
    return CaptureSource(str(path), loop)
