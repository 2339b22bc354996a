"""Recordings: frames of a camera (or video, or image folder) kept as a dataset (``tla-edge record``).

Frames go into the project's folder layout, ``DATA/real/<subject>/`` and
``DATA/attack/<species>/<subject>/``, and one row per frame is appended to
``DATA/manifest.csv`` (path, label, species, subject, session, split, source,
camera, resolution, time, frame). ``prepare``, ``train``, ``evaluate --raw``
and ``calibrate`` read DATA as a CSV dataset, so subject and session are kept
and validation can hold people and sessions out.

Nothing is ever overwritten: every run writes new file names, each image is
written to a temporary name and renamed, and its manifest row is appended
right after, so a run stopped with Ctrl-C loses at most the frame in flight;
the same command run again adds more (:class:`Recorder` resumes).
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tla_edge import fileio
from tla_edge.data.datasets import parse_label as parse_csv_label
from tla_edge.data.recording_folder import COLUMNS, MANIFEST_NAME, lock_folder, repair_manifest
from tla_edge.errors import UserError
from tla_edge.runtime import preprocess

FORMATS = ("jpg", "png")
JPEG_QUALITY = 95
NO_FACE, SEVERAL_FACES = "no_face", "several_faces"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- pure helpers ---------------------------------------------------------------


def parse_label(text: str) -> tuple[str, str]:
    """``--label`` -> ``(label, species)``: ``real`` -> ``("real", "")``, ``print`` -> ``("attack", "print")``.

    Raises:
      UserError: the text is empty or cannot be a folder name.
    """
    value = text.strip().lower()
    # The CSV reader's vocabulary, so a label is read back as it was meant: ``1`` is
    # real there, so it is real here too (it was filed as attack species "1").
    try:
        label, species = parse_csv_label(value)
    except ValueError:
        label, species = "attack", value
    if label == "real":
        return "real", ""
    value = species or "attack"
    if not _SAFE_ID.match(value):
        raise UserError(
            f"--label {text!r} is not real or an attack species; expected real, print, replay or "
            "another species name of letters, digits, '_', '-' or '.'"
        )
    return "attack", value


def check_id(flag: str, value: str) -> str:
    """Checks a ``--subject`` or ``--session`` value (it becomes part of a path); ``""`` is allowed.

    Raises:
      UserError: the value has characters other than letters, digits, ``_``, ``-`` and ``.``.
    """
    if value and not _SAFE_ID.match(value):
        raise UserError(
            f"{flag} {value!r} is not a plain name; expected letters, digits, '_', '-' or '.' "
            "(it names a folder and a manifest column)"
        )
    return value


def frame_problem(faces: Sequence[Sequence[float]], frame_shape: Sequence[int]) -> str | None:
    """Why a frame is not kept, or None when it shows exactly one usable face.

    Args:
      faces: the detector's boxes ``(x, y, w, h)``, any order.
      frame_shape: ``(H, W, ...)``.

    Returns:
      ``"no_face"``, ``"several_faces"``, ``"face_too_small"``, ``"face_cut_off"`` or None.
      The size and cut-off limits are those of the device pipeline
      (:func:`tla_edge.runtime.preprocess.face_problem`'s defaults).
    """
    if len(faces) == 0:
        return NO_FACE
    if len(faces) > 1:
        return SEVERAL_FACES
    return preprocess.face_problem(faces[0], frame_shape)


def class_folder(label: str, species: str, subject: str) -> Path:
    """``real/<subject>`` or ``attack/<species>/<subject>`` (no subject folder when ``subject`` is empty)."""
    base = Path("real") if label == "real" else Path("attack") / species
    return base / subject if subject else base


def manifest_line(row: dict[str, Any]) -> str:
    """One CSV line (with its newline) of a manifest row, columns in :data:`COLUMNS` order."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in COLUMNS])
    return buf.getvalue()


def skipped_text(skipped: dict[str, int]) -> str:
    """``"no_face 3, several_faces 1"``; ``""`` when nothing was skipped."""
    return ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))


def camera_name(source: Any) -> str:
    """A human name of the device or file behind a source, for the manifest."""
    kind = getattr(source, "kind", "")
    spec = str(getattr(source, "spec", ""))
    if kind == "camera":
        sysfs = Path(f"/sys/class/video4linux/video{spec}/name")
        try:
            return f"{sysfs.read_text().strip()} (camera {spec})"
        except OSError:
            return f"camera {spec}"
    if kind == "picamera2":
        try:
            return str(source.camera_properties.get("Model", "picamera2"))
        except Exception:  # noqa: BLE001 - the name is informative only
            return "picamera2"
    return Path(spec.rstrip("/")).name or spec


def encode_image(rgb: np.ndarray, fmt: str) -> bytes:
    """An RGB frame as the bytes of a ``jpg`` (at :data:`JPEG_QUALITY`) or ``png`` file."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # for the image file only
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpg" else []
    ok, buf = cv2.imencode(f".{fmt}", bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} frame as {fmt}")
    return buf.tobytes()


class Recorder:
    """Writes kept frames and their manifest rows into one recording folder.

    The folder and manifest are created with the first kept frame, so a run
    that keeps nothing leaves nothing behind; a folder that already holds a
    recording is appended to under new file names.
    """

    def __init__(self, out: Path, label: str, species: str, subject: str, session: str,
                 source_spec: str, camera: str, fmt: str = "jpg") -> None:
        self.out = out
        self.label, self.species, self.subject, self.session = label, species, subject, session
        self.source_spec, self.camera, self.fmt = source_spec, camera, fmt
        self.folder = class_folder(label, species, subject)
        # To the millisecond plus a random tag: two runs started in the same second
        # (even on two machines writing one share) never pick the same file names.
        now = datetime.now(timezone.utc)
        self.run_id = f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z{secrets.token_hex(2)}"
        self.written = 0
        self._seq = 0
        self._manifest = out / MANIFEST_NAME
        self._lock: Any = None

    def _start(self) -> None:
        (self.out / self.folder).mkdir(parents=True, exist_ok=True)
        if self._manifest.is_file():
            repair_manifest(self._manifest)
        else:
            fileio.write_text_atomic(self._manifest, manifest_line({c: c for c in COLUMNS}))

    def _new_name(self) -> Path:
        prefix = f"{self.session}_" if self.session else ""
        while True:
            self._seq += 1
            rel = self.folder / f"{prefix}{self.run_id}_{self._seq:05d}.{self.fmt}"
            if not (self.out / rel).exists():
                return rel

    def write(self, rgb: np.ndarray, frame_name: str) -> Path:
        """Writes one frame (temporary name, then rename) and appends its manifest row; returns its path."""
        if self._lock is None:  # held from the first frame until close(); record() closes at its end
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock = lock_folder(self.out)
        if self.written == 0:
            self._start()
        rel = self._new_name()
        fileio.write_bytes_atomic(self.out / rel, encode_image(rgb, self.fmt))
        row = {
            "path": rel.as_posix(),
            "label": self.label,
            "species": self.species,
            "subject": self.subject,
            "session": self.session,
            "split": "",
            "source": self.source_spec,
            "camera": self.camera,
            "resolution": f"{rgb.shape[1]}x{rgb.shape[0]}",
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "frame": frame_name,
        }
        # One write of a whole line, flushed and synced: a kill leaves whole rows only.
        with self._manifest.open("a", encoding="utf-8", newline="") as f:
            f.write(manifest_line(row))
            f.flush()
            os.fsync(f.fileno())
        self.written += 1
        return rel

    def close(self) -> None:
        """Releases the folder's writer lock. Safe to call twice."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()


# --- the recording loop -----------------------------------------------------------


def _overlay(rgb: np.ndarray, faces: Sequence[Any], problem: str | None, text: str) -> np.ndarray:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # display only
    colour = (0, 200, 0) if problem is None else (0, 0, 230)
    for face in faces:
        x, y, w, h = (int(round(float(v))) for v in face[:4])
        cv2.rectangle(bgr, (x, y), (x + w, y + h), colour, 2)
    scale = max(0.5, min(bgr.shape[:2]) / 640)
    for i, line in enumerate((text, problem or "kept")):
        org = (10, int(30 * scale) * (i + 1))
        cv2.putText(bgr, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(bgr, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2, cv2.LINE_AA)
    return bgr


def _show(rgb: np.ndarray, recorder: Recorder, faces: Sequence[Any], problem: str | None) -> bool:
    """Draws the frame in the window; True when q or Esc was pressed."""
    from tla_edge.runtime.overlay import QUIT_KEYS, show_frame

    text = f"{recorder.label}{' ' + recorder.species if recorder.species else ''}: kept {recorder.written}"
    return show_frame(_overlay(rgb, faces, problem, text)) & 0xFF in QUIT_KEYS


def _keep(rgb: np.ndarray, name: str, recorder: Recorder, detector: Any | None) -> tuple[list, str | None]:
    """Writes the frame when it shows one usable face (or there is no detector); ``(faces, problem)``."""
    faces: list = []
    problem = None
    if detector is not None:
        faces = detector.detect(rgb)
        problem = frame_problem(faces, rgb.shape)
    if problem is None:
        recorder.write(rgb, name)
    return faces, problem


def record(
    source: Any,
    recorder: Recorder,
    detector: Any | None,
    every: int = 1,
    seconds: float | None = None,
    frames: int | None = None,
    show: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Reads a source and writes its kept frames.

    Args:
      source: an opened :class:`~tla_edge.runtime.sources.FrameSource` (or any iterable of Frames).
      recorder: where frames go.
      detector: a :class:`~tla_edge.runtime.faces.FaceDetector` (policy ``"all"``); None keeps every frame.
      every: look at every ``every``-th source frame only.
      seconds: stop after this many seconds (None: at the source's end).
      frames: stop after this many kept frames (None: no limit).
      show: draw the overlay window (q or Esc stops).
      progress: a :class:`~tla_edge.progress.Progress` to advance per frame looked at, or None.

    Returns:
      ``{"seen", "looked_at", "kept", "skipped": {reason: n}, "stopped": why, "wall_s"}``.
      KeyboardInterrupt is caught: ``stopped`` is ``"interrupted"``.
    """
    t0 = time.monotonic()
    seen = looked = 0
    skipped: Counter[str] = Counter()
    stopped = "end of source"
    try:
        for frame in source:
            seen += 1
            if seconds is not None and time.monotonic() - t0 >= seconds:
                stopped = f"{seconds:g} s"
                break
            if frame.index % every:
                continue
            looked += 1
            faces, problem = _keep(frame.rgb, frame.name, recorder, detector)
            if problem is not None:
                skipped[problem] += 1
            if progress is not None:
                progress.update(1, postfix=f"kept {recorder.written}" + "".join(f", {k} {v}" for k, v in sorted(skipped.items())))
            if show and _show(frame.rgb, recorder, faces, problem):
                stopped = "key"
                break
            if frames is not None and recorder.written >= frames:
                stopped = f"{frames} frames"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    except UserError as err:  # a camera or stream that stopped delivering
        if recorder.written == 0:
            raise
        raise UserError(f"{err}; the {recorder.written} frames kept before it are saved in '{recorder.out}' "
                        "(run the same command again to add more)") from err
    finally:
        recorder.close()
    return {
        "seen": seen,
        "looked_at": looked,
        "kept": recorder.written,
        "skipped": dict(skipped),
        "stopped": stopped,
        "wall_s": round(time.monotonic() - t0, 2),
    }


def record_source(
    source_spec: str,
    out: Path,
    label: str,
    species: str = "",
    subject: str = "",
    session: str = "",
    *,
    every: int = 1,
    seconds: float | None = None,
    frames: int | None = None,
    keep_all: bool = False,
    show: bool = False,
    detector: str = "short",
    detector_backend: str = "auto",
    camera: str | None = None,
    width: int | None = None,
    height: int | None = None,
    fmt: str = "jpg",
) -> dict[str, Any]:
    """Opens a source, records its frames into ``out`` and closes it; see :func:`record`.

    Args:
      source_spec: camera index, ``picamera2``, a video file or URL, an image folder or an image.
      out: the recording folder (see :func:`~tla_edge.data.recording_folder.check_out_dir`).
      label, species: from :func:`parse_label`.
      subject, session: checked by :func:`check_id`.
      every, seconds, frames, show: see :func:`record`; without ``show`` a progress line goes to stderr.
      keep_all: keep every frame, without looking for one usable face.
      detector, detector_backend: the face detector.
      camera: the camera name for the manifest (None: :func:`camera_name`).
      width, height: requested camera size.
      fmt: ``jpg`` or ``png``.

    Returns:
      :func:`record`'s dict.

    Raises:
      UserError: a camera with no way to stop (no window, no ``seconds``, no ``frames``), or a source that cannot be opened.
    """
    from tla_edge.progress import Progress
    from tla_edge.runtime.sources import open_source

    source = open_source(source_spec, width=width, height=height)
    face_detector = None
    try:
        live = source.kind in ("camera", "picamera2")
        if live and seconds is None and frames is None and not show:
            raise UserError(f"source '{source_spec}' is a camera: pass --seconds or --frames to say when to stop")
        if not keep_all:
            from tla_edge.runtime.faces import FaceDetector

            face_detector = FaceDetector(detector, mode="image", policy="all", backend=detector_backend)
        recorder = Recorder(out, label, species, subject, session, str(source_spec),
                            camera or camera_name(source), fmt)
        total = None if live else -(-(source.length or 0) // every) or None
        with Progress(total, f"record {species or label}", unit="frame", enabled=not show) as bar:
            return record(source, recorder, face_detector, every, seconds, frames, show=show, progress=bar)
    finally:
        if face_detector is not None:
            face_detector.close()
        source.close()
        if show:
            from tla_edge.runtime.overlay import close_window

            close_window()

