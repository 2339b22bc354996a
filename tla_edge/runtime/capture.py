"""Live and video capture: a camera, the Raspberry Pi camera, a video file, a network stream.

Opened through :func:`tla_edge.runtime.sources.open_source`, which yields the
same :class:`~tla_edge.runtime.sources.Frame` records as image folders. A
camera or stream that does not open, or stops delivering frames, raises
:class:`~tla_edge.errors.UserError` within a few seconds instead of hanging:
every blocking read runs on a worker thread with a timeout.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from typing import Any, Callable, Iterator

import numpy as np

from tla_edge.errors import UserError
from tla_edge.runtime.native import quiet_native_logs
from tla_edge.runtime.sources import STILLS_FPS, Frame, FrameSource, bgr_to_rgb

# A camera that fails this many reads in a row, or delivers nothing for this
# long, is treated as gone: a demo on a kiosk must end, not hang.
MAX_FAILED_READS = 30
READ_TIMEOUT_S = 5.0


MAX_CAMERA_INDEX = 9999
"""Largest camera index passed to OpenCV (which reads larger ones as a backend code, or overflows)."""


def camera_index(index: int) -> int:
    """Checks a camera index: 0 to :data:`MAX_CAMERA_INDEX`.

    Raises:
      ValueError: names the index received.
    """
    if index < 0:
        raise ValueError(f"camera index {index} is negative; expected 0, 1, ...")
    if index > MAX_CAMERA_INDEX:
        raise ValueError(
            f"camera index {index} is larger than {MAX_CAMERA_INDEX}; expected the N of /dev/videoN (0, 1, ...)"
        )
    return int(index)



@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silences OpenCV's own log while a capture opens."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    old = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(old)


class TimedReader:
    """Runs blocking ``read()`` calls on one worker thread so a stuck device cannot hang us."""

    def __init__(self, read: Callable[[], tuple[bool, Any]]) -> None:
        self._read = read
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tla-edge-read")
        self.stuck = False

    def __call__(self, timeout_s: float) -> tuple[bool, Any]:
        """One read; ``(False, None)`` when it fails or takes longer than ``timeout_s``."""
        future = self._pool.submit(self._read)
        try:
            ok, image = future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            self.stuck = True
            return False, None
        except Exception:  # noqa: BLE001 - a driver error is one failed read
            return False, None
        return bool(ok), image

    def close(self) -> None:
        # A read that never returns keeps its thread; do not wait for it.
        self._pool.shutdown(wait=not self.stuck, cancel_futures=True)


class CaptureSource(FrameSource):
    """A camera index, a video file or a stream URL, read with ``cv2.VideoCapture``.

    Args:
      spec: camera index, or a video path or URL.
      loop: restart a video at its end (ignored for cameras).
      width, height: requested capture size (cameras only; the driver may pick another).
      capture: an already opened ``cv2.VideoCapture``-like object (tests, custom backends).
      max_failed_reads: consecutive failed camera or stream reads that end it.
      read_timeout_s: longest wait for one camera or network-stream frame
        (``rtsp://``, ``http://``, ...): a stalled source ends in one clear error.
    """

    def __init__(
        self,
        spec: str | int,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        *,
        capture: Any = None,
        max_failed_reads: int = MAX_FAILED_READS,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        import cv2

        self.is_camera = isinstance(spec, int)
        self.is_stream = not self.is_camera and "://" in str(spec)
        super().__init__(str(spec), loop and not self.is_camera and not self.is_stream)
        self.kind = "camera" if self.is_camera else "video"
        self.max_failed_reads = max_failed_reads
        self.read_timeout_s = read_timeout_s
        self._label = f"camera {spec}" if self.is_camera else f"video '{spec}'"
        self._reader = None
        self._cap = capture
        if self._cap is None:
            with _quiet_opencv():  # its multi-line backend warnings would bury our one line
                if self.is_camera:
                    self._cap = cv2.VideoCapture(spec)
                elif self.is_stream:
                    # FFmpeg's own open and read timeouts, where this OpenCV has them
                    ms = int(read_timeout_s * 1000)
                    params = [p for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC")
                              if hasattr(cv2, name) for p in (getattr(cv2, name), ms)]
                    # FFmpeg prints its own connection errors on fd 2; our one line says it
                    with quiet_native_logs():
                        self._cap = cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG, params)
                else:
                    self._cap = cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._release()
            if self.is_camera:
                raise UserError(
                    f"camera {spec} did not open; check that it is plugged in, not used by "
                    "another program, and that the index is right (ls /dev/video*)"
                )
            if self.is_stream:
                raise UserError(
                    f"cannot open stream '{spec}' (no answer or refused within {read_timeout_s:g} s); "
                    "check the address, the port and that the camera is streaming"
                )
            raise UserError(
                f"cannot open video '{spec}'; expected a video file OpenCV can decode "
                "(.mp4, .avi, .mkv, ...), an image folder, an image, a camera index or picamera2"
            )
        if self.is_camera and width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        if self.is_camera and height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        if not self.is_camera:
            count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.length = count if count > 0 else None
        live = self.is_camera or self.is_stream
        self._reader = TimedReader(self._cap.read) if live else None
        # The first frame is read now, so a camera that opens but delivers
        # nothing (or a file that is not really a video) fails here, clearly.
        self._first = self._read_first()

    def _read_first(self) -> np.ndarray:
        t0 = time.perf_counter()
        if self._reader is not None:
            deadline = t0 + self.read_timeout_s
            for _ in range(self.max_failed_reads):
                ok, image = self._reader(max(0.05, deadline - time.perf_counter()))
                if ok and image is not None:
                    break
                if self._reader.stuck or time.perf_counter() >= deadline:
                    break
            else:
                ok = False
            if not ok or image is None:
                self.close()
                if self.is_stream:
                    raise UserError(
                        f"stream '{self.spec}' opened but delivered no frame within "
                        f"{self.read_timeout_s:g} s; check the address and that the camera is streaming"
                    )
                raise UserError(
                    f"camera {self.spec} opened but delivered no frame within "
                    f"{self.read_timeout_s:g} s; check the camera, its cable and that no other "
                    "program uses it"
                )
        else:
            ok, image = self._cap.read()
            if not ok or image is None:
                self.close()
                raise UserError(f"cannot open video '{self.spec}': no frame could be decoded")
        self._first_ms = (time.perf_counter() - t0) * 1e3
        return image

    def _frames(self) -> Iterator[Frame]:
        return self._camera_frames() if self._reader is not None else self._video_frames()

    def _camera_frames(self) -> Iterator[Frame]:
        assert self._reader is not None
        name = f"camera:{self.spec}" if self.is_camera else self.spec
        what = f"camera {self.spec}" if self.is_camera else f"stream '{self.spec}'"
        start = time.monotonic()
        last_ts = -1
        index = 0
        image, decode_ms = self._first, self._first_ms
        self._first = None
        while not self._closed:
            if image is None:
                failed = 0
                t0 = time.perf_counter()
                while True:
                    ok, image = self._reader(max(0.05, t0 + self.read_timeout_s - time.perf_counter()))
                    if ok and image is not None:
                        break
                    failed += 1
                    waited = time.perf_counter() - t0
                    if failed >= self.max_failed_reads or waited >= self.read_timeout_s or self._reader.stuck:
                        raise UserError(
                            f"{what} stopped delivering frames after {index} frames "
                            f"({failed} failed reads in {waited:.1f} s)"
                        )
                    if self._closed:
                        return
                decode_ms = (time.perf_counter() - t0) * 1e3
            ts = max(last_ts + 1, int((time.monotonic() - start) * 1e3))
            last_ts = ts
            yield Frame(index, bgr_to_rgb(image), ts, name, decode_ms)
            image = None
            index += 1

    def _video_frames(self) -> Iterator[Frame]:
        import cv2

        base = os.path.basename(self.spec.rstrip("/")) or self.spec
        step_ms = 1000.0 / (self.fps or STILLS_FPS)
        index = 0
        image, decode_ms = self._first, self._first_ms
        self._first = None
        pos = 0
        while not self._closed:
            if image is None:
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                if not ok or image is None:
                    if not self.loop or pos == 0:
                        return
                    # Rewind; some containers refuse to seek, so reopen then.
                    pos = 0
                    if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        self._cap.release()
                        with _quiet_opencv():
                            self._cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG)
                    ok, image = self._cap.read()
                    if not ok or image is None:
                        raise UserError(f"video '{self.spec}' could not be read again from its start")
                decode_ms = (time.perf_counter() - t0) * 1e3
            yield Frame(index, bgr_to_rgb(image), int(round(index * step_ms)), f"{base}#{pos}", decode_ms)
            image = None
            index += 1
            pos += 1

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        """Releases the capture; safe to call twice."""
        super().close()
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
            if reader.stuck:
                # Releasing a capture while its read is blocked can crash the
                # driver; leave it to the process exit.
                self._cap = None
        self._release()


class PiCameraSource(FrameSource):
    """The Raspberry Pi camera through picamera2 (libcamera).

    Args:
      width, height: capture size (default 640x480).
      max_failed_reads: consecutive failed captures that end the stream.
    """

    kind = "picamera2"

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        *,
        max_failed_reads: int = MAX_FAILED_READS,
    ) -> None:
        super().__init__("picamera2")
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise UserError(
                "picamera2 is not installed; on Raspberry Pi OS run 'sudo apt install "
                "python3-picamera2' and create the venv with --system-site-packages, "
                "or use --source 0 for a USB camera"
            ) from None
        self.max_failed_reads = max_failed_reads
        size = (int(width or 640), int(height or 480))
        try:
            self._cam = Picamera2()
            # picamera2's "RGB888" is B, G, R in memory: the same order as OpenCV.
            config = self._cam.create_preview_configuration(main={"size": size, "format": "RGB888"})
            self._cam.configure(config)
            self._cam.start()
        except Exception as err:  # noqa: BLE001 - libcamera raises many types
            self._cam = None
            raise UserError(f"the Pi camera did not open ({err}); check the ribbon cable and 'libcamera-hello'") from err

    @property
    def camera_properties(self) -> dict[str, Any]:
        """picamera2's ``camera_properties`` (``Model``, ``PixelArraySize``...); empty once closed."""
        return dict(self._cam.camera_properties) if self._cam is not None else {}

    def _frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        last_ts = -1
        index = 0
        failed = 0
        while not self._closed:
            t0 = time.perf_counter()
            try:
                image = self._cam.capture_array()
            except Exception as err:  # noqa: BLE001
                failed += 1
                if failed >= self.max_failed_reads:
                    raise UserError(
                        f"the Pi camera stopped delivering frames after {index} frames ({err})"
                    ) from err
                continue
            failed = 0
            if image.ndim == 3 and image.shape[2] == 4:  # XRGB8888 layouts
                image = image[:, :, :3]
            decode_ms = (time.perf_counter() - t0) * 1e3
            ts = max(last_ts + 1, int((time.monotonic() - start) * 1e3))
            last_ts = ts
            yield Frame(index, bgr_to_rgb(image), ts, "picamera2", decode_ms)
            index += 1

    def close(self) -> None:
        """Stops and releases the camera; safe to call twice."""
        super().close()
        if getattr(self, "_cam", None) is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
