"""What the demo shows: the overlay drawn on a frame, the window, and the annotated video.

The overlay draws the judged face in green (live), blue (pending: scoring
live, not for enough frames yet), red (spoof) or yellow (no decision: no face,
too small, cut off, rotated, error) with its smoothed score and the frame rate. OpenCV is imported inside the functions that draw.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tla_edge.errors import UserError
from tla_edge.fileio import check_writable

WINDOW_NAME = "tla-edge demo"
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc

# BGR colours of the overlay.
GREEN = (0, 200, 0)
RED = (0, 0, 235)
BLUE = (235, 140, 0)
YELLOW = (0, 215, 255)
WHITE = (255, 255, 255)
GREY = (160, 160, 160)


def label_of(result) -> tuple[str, tuple[int, int, int]]:
    """Overlay text and BGR colour for a result: ``("LIVE 0.93", green)``, ``("PENDING 0.93", blue)``, ``("NO FACE", yellow)``."""
    if result.decision == "live":
        return f"LIVE {result.score:.2f}", GREEN
    if result.decision == "pending":
        return f"PENDING {result.score:.2f}", BLUE
    if result.decision == "spoof":
        return f"SPOOF {result.score:.2f}", RED
    return result.decision.replace("_", " ").upper(), YELLOW


def draw_overlay(rgb: np.ndarray, result, fps: float | None = None) -> np.ndarray:
    """Draws the result on a BGR copy of the frame, for display or a video file.

    Args:
      rgb: the frame, ``(H, W, 3)`` uint8 RGB (left untouched).
      result: its :class:`~tla_edge.runtime.pipeline.LivenessResult`.
      fps: the smoothed frame rate to show, or None.

    Returns:
      A new ``(H, W, 3)`` uint8 BGR image.
    """
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # display only: the pipeline saw RGB
    h, w = bgr.shape[:2]
    thick = max(1, int(round(min(h, w) / 240)))
    font_scale = max(0.4, min(h, w) / 640)
    text, colour = label_of(result)
    for face in result.faces:
        if result.face is not None and face == result.face:
            continue
        p0, p1 = _corners(face)
        cv2.rectangle(bgr, p0, p1, GREY, thick)
    if result.face is not None:
        p0, p1 = _corners(result.face)
        cv2.rectangle(bgr, p0, p1, colour, 2 * thick)
        anchor = (p0[0], max(p0[1] - 8, 20))
    else:
        anchor = (10, int(40 * font_scale) + 10)
    _text(bgr, text, anchor, colour, font_scale, thick)
    if fps is not None:
        _text(bgr, f"{fps:.1f} FPS", (10, h - 12), WHITE, font_scale * 0.8, thick)
    return bgr


def _corners(face) -> tuple[tuple[int, int], tuple[int, int]]:
    x, y, w, h = (float(v) for v in face[:4])
    return (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))


def _text(bgr: np.ndarray, text: str, org: tuple[int, int], colour, scale: float, thick: int) -> None:
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(bgr, text, org, font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)  # outline
    cv2.putText(bgr, text, org, font, scale, colour, thick, cv2.LINE_AA)


# --- display and video output -------------------------------------------------


def check_display() -> None:
    """Raises UserError when no window can be shown (e.g. over SSH without X)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise UserError(
            "no display found (DISPLAY and WAYLAND_DISPLAY are not set); pass --headless "
            "to print one JSON line per frame, optionally with --output annotated.mp4"
        )


def show_frame(bgr: np.ndarray) -> int:
    """Shows a frame in the demo window; returns the key pressed (-1 for none)."""
    import cv2

    try:
        cv2.imshow(WINDOW_NAME, bgr)
        return cv2.waitKey(1)
    except cv2.error as err:
        raise UserError(
            f"cannot open a window ({' '.join(str(err).split())[:120]}); pass --headless"
        ) from err


def close_window() -> None:
    """Closes the demo window, if one is open."""
    import cv2

    try:
        cv2.destroyWindow(WINDOW_NAME)
        cv2.waitKey(1)
    except cv2.error:
        pass


def readable_video(path: str | Path) -> bool:
    """True when OpenCV can open ``path`` as a video and decode its first frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        return bool(ok) and frame is not None
    finally:
        cap.release()


class VideoSink:
    """An annotated video written through a temporary name, renamed when finished.

    Args:
      path: the ``.mp4`` (or ``.avi``, ``.mov``, ``.mkv``, ``.m4v``) to write.
      fps: frame rate stored in the file.
      force: replace an existing file.
      fourcc: the OpenCV codec code.

    Raises:
      UserError: the file exists without ``force``, or its folder is not writable.
      ValueError: the name has no video suffix.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, force: bool = False, fourcc: str = "mp4v") -> None:
        path = Path(path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(
                f"output '{path}' is not a video file name; expected one ending in "
                f"{', '.join(VIDEO_SUFFIXES)}"
            )
        self.path = check_writable(path, force)
        self.fps = float(fps)
        self.fourcc = fourcc
        # The temporary name keeps the suffix: OpenCV picks the container from it.
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, bgr: np.ndarray) -> None:
        """Appends one BGR frame (resized to the first frame's size if it differs)."""
        import cv2

        h, w = bgr.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(
                str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size
            )
            if not self._writer.isOpened():
                self._writer = None
                self._remove_tmp()
                raise UserError(f"cannot write video '{self.path}' with codec {self.fourcc}")
        if (w, h) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def close(self, keep: bool = True) -> bool:
        """Finishes the file: renamed into place when ``keep`` and frames were written.

        Returns:
          True when ``path`` now holds the video.

        Raises:
          UserError: the finished file is not a readable video (OpenCV's writer
            reports no write error, e.g. on a full disk); the temporary file is
            removed and ``path`` left as it was.
        """
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if keep and self.frames > 0 and self.tmp.exists():
            if not readable_video(self.tmp):
                self._remove_tmp()
                raise UserError(
                    f"video '{self.path}' could not be written: the writer produced no readable video "
                    f"({self.frames} frames sent; disk full?); '{self.path}' left as it was"
                )
            os.replace(self.tmp, self.path)
            return True
        self._remove_tmp()
        return False

    def _remove_tmp(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()
