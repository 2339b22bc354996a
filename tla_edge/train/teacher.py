"""Silent-Face's two MiniFASNet models as a teacher and a comparison row (workstation side).

    from tla_edge.train.teacher import SilentFaceTeacher

    with SilentFaceTeacher() as teacher:                    # the two ONNX files, from a local folder
        p = teacher.score_faces(rgb, faces)                  # RGB frame + FaceBoxes -> (N, 3) fused
        p_live = p[:, LIVE_CLASS]                            # P(real) per face

The models and their contract are described in the shared folder's README
(``../shared/weights/teachers/silent-face/README.md``): MiniFASNetV2 on a crop
of 2.7x the face box and MiniFASNetV1SE on a crop of 4.0x, each 80x80, **BGR,
0-255 floats, NCHW**, three-class logits with **index 1 = real**; upstream
(minivision-ai/Silent-Face-Anti-Spoofing ``test.py``) adds the two softmaxes,
calls a face real iff class 1 wins the argmax, and the binary score is the
fused ``p[1] / 2``.

The crop is Silent-Face's own (:func:`crop_box`, upstream ``CropImage``), not
tla-edge's padded square: the scale is capped so the box fits the frame, the
box is scaled about its centre keeping its aspect ratio, shifted back inside
the frame (never padded) and stretched to 80x80. Frames enter as RGB (the
project's convention) and are flipped to BGR once, in :func:`teacher_inputs`.

The files are read from a local folder only (:func:`teacher_dir`), never
downloaded; their SHA-256 are checked against the README's. onnxruntime (the
``teacher`` extra) is imported inside :class:`SilentFaceTeacher`. The models'
training data is undisclosed: whether a dataset overlaps it is unknown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge.errors import UserError, missing_extra
from tla_edge.fileio import sha256_file

TEACHER_DIR_ENV = "TLA_EDGE_TEACHER_DIR"
"""Environment variable naming the folder that holds the two ONNX files."""
INPUT_SIZE = 80
LIVE_CLASS = 1
"""Index of the real (bona fide) class; 0 and 2 are attack classes (undocumented kinds)."""
N_CLASSES = 3


class TeacherModel(NamedTuple):
    """One member of the fused teacher."""

    file: str
    scale: float
    sha256: str


MODELS = (
    TeacherModel("MiniFASNetV2_scale2.7.onnx", 2.7,
                 "3e55b52934b4d92b6fb37126cf4bedccf5ef81a73264224a59ad2cd4fb23e7aa"),
    TeacherModel("MiniFASNetV1SE_scale4.0.onnx", 4.0,
                 "e3771b2f60caefde24f107e98957aa9b73cb9e83e146c6ee6c2a85c50447393f"),
)
"""The two members, in upstream's order, with the SHA-256 the shared README lists."""
SOURCE = {
    "repo": "minivision-ai/Silent-Face-Anti-Spoofing",
    "commit": "b6d5f04ad78778917853b25c778acef6d5626d15",
    "licence": "Apache-2.0 (weights converted to ONNX, BatchNorm folded)",
    "training_data": "undisclosed (overlap with any evaluated dataset unknown)",
}


def teacher_dir() -> Path:
    """The folder holding the ONNX files.

    ``$TLA_EDGE_TEACHER_DIR``, else ``~/.cache/tla-edge/weights/teachers/silent-face``;
    nothing is ever downloaded.
    """
    if os.environ.get(TEACHER_DIR_ENV):
        return Path(os.environ[TEACHER_DIR_ENV]).expanduser()
    return Path.home() / ".cache" / "tla-edge" / "weights" / "teachers" / "silent-face"


# --- Silent-Face's crop rule (pure geometry) ------------------------------------


class CropBox(NamedTuple):
    """Silent-Face's crop window: inclusive integer corners inside the frame."""

    x1: int
    y1: int
    x2: int
    """Right edge, inclusive (the slice is ``[x1:x2 + 1]``)."""
    y2: int
    """Bottom edge, inclusive."""
    scale: float
    """The scale applied: the one asked for, capped so the box fits the frame."""
    shifted: bool
    """True when the scaled box crossed a border and was moved back inside."""


def crop_box(box: Sequence[float], scale: float, frame_shape: Sequence[int]) -> CropBox:
    """Silent-Face's ``CropImage._get_new_box``: the window of one face at one scale.

    1. ``s' = min((H-1)/h, (W-1)/w, scale)``;
    2. the box scaled about its centre ``(x + w/2, y + h/2)`` to ``w*s' x h*s'``
       (its own aspect ratio, not made square);
    3. shifted back inside the frame where it crosses a border (left, top,
       right, bottom, in that order), never padded;
    4. corners truncated with ``int()``.

    Args:
      box: ``(x, y, width, height)`` in frame pixels (a FaceBox works); it may
        extend past the frame.
      scale: the crop scale (2.7 or 4.0 for the two members), > 0.
      frame_shape: ``(H, W, ...)``.

    Returns:
      The CropBox.

    Raises:
      ValueError: a non-positive scale, box size or frame size.
    """
    x, y, w, h = (float(v) for v in box[:4])
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    if not scale > 0:
        raise ValueError(f"crop scale {scale!r} is not > 0")
    if not (w > 0 and h > 0):
        raise ValueError(f"face box size {w}x{h} is not positive")
    if frame_h < 2 or frame_w < 2:
        raise ValueError(f"frame of {frame_w}x{frame_h} pixels is too small to crop")
    s = min((frame_h - 1) / h, (frame_w - 1) / w, float(scale))
    new_w, new_h = w * s, h * s
    cx, cy = x + w / 2, y + h / 2
    x1, y1, x2, y2 = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    shifted = False
    if x1 < 0:
        x1, x2, shifted = 0.0, x2 - x1, True
    if y1 < 0:
        y1, y2, shifted = 0.0, y2 - y1, True
    if x2 > frame_w - 1:
        x1, x2, shifted = x1 - (x2 - frame_w + 1), float(frame_w - 1), True
    if y2 > frame_h - 1:
        y1, y2, shifted = y1 - (y2 - frame_h + 1), float(frame_h - 1), True
    return CropBox(int(x1), int(y1), int(x2), int(y2), s, shifted)


def crop_teacher(bgr: np.ndarray, box: Sequence[float], scale: float, size: int = INPUT_SIZE) -> np.ndarray:
    """Silent-Face's crop of one face: the :func:`crop_box` slice, resized (bilinear) to ``size`` x ``size``.

    Args:
      bgr: the frame, ``(H, W, 3)`` uint8 (BGR for the teacher; the crop keeps
        whatever channel order it is given).
      box: ``(x, y, width, height)`` in pixels.
      scale: the crop scale.
      size: output side (80 for both members).

    Returns:
      ``(size, size, 3)`` uint8; a non-square window is stretched, as upstream does.
    """
    import cv2  # comes with the runtime extra (opencv)

    c = crop_box(box, scale, bgr.shape)
    return cv2.resize(bgr[c.y1:c.y2 + 1, c.x1:c.x2 + 1], (size, size))  # cv2's default: bilinear


def to_input(crops_bgr: np.ndarray) -> np.ndarray:
    """The models' input tensor: ``(N, H, W, 3)`` (or one ``(H, W, 3)``) uint8 BGR -> ``(N, 3, H, W)`` float32, 0-255.

    No ``/255``, no mean or std: upstream's ``ToTensor`` only moves the
    channels first and casts to float.
    """
    x = np.asarray(crops_bgr)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"crops of shape {x.shape} are not (N, H, W, 3)")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def teacher_inputs(rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Every member's input for the faces of one RGB frame, by Silent-Face's own crop rule.

    Args:
      rgb: the frame, ``(H, W, 3)`` uint8 RGB (flipped to BGR here, once).
      boxes: face boxes ``(x, y, width, height)`` (FaceBoxes from the project's detector).

    Returns:
      One ``(N, 3, 80, 80)`` float32 array per member of :data:`MODELS`, in order.
    """
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError("frame is not an (H, W, 3) uint8 RGB array")
    bgr = rgb[..., ::-1]
    out = []
    for member in MODELS:
        crops = [crop_teacher(bgr, b, member.scale) for b in boxes]
        out.append(to_input(np.stack(crops)) if crops else np.zeros((0, 3, INPUT_SIZE, INPUT_SIZE), np.float32))
    return out


# --- scores ---------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fuse(member_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Upstream's fusion: the members' softmax vectors added, divided by their number (sums to 1)."""
    if not member_probs:
        raise ValueError("no member probabilities to fuse")
    return np.sum(np.stack([np.asarray(p, np.float64) for p in member_probs]), axis=0) / len(member_probs)


def live_probability(fused: np.ndarray) -> np.ndarray:
    """P(real) per face: the fused probability of :data:`LIVE_CLASS` (upstream's ``p[1] / 2``)."""
    return np.asarray(fused)[..., LIVE_CLASS]


def upstream_is_live(fused: np.ndarray) -> np.ndarray:
    """Upstream's decision: real iff class 1 wins the three-way argmax.

    Not ``P(real) > 0.5``: real can win with ``P(real) < 0.5`` when the attack
    mass splits between classes 0 and 2.
    """
    return np.argmax(np.asarray(fused), axis=-1) == LIVE_CLASS


# --- the loaded sessions -----------------------------------------------------------


class SilentFaceTeacher:
    """The two ONNX sessions, loaded from a local folder.

    Args:
      folder: the folder with the two files (None: :func:`teacher_dir`).
      num_threads: onnxruntime intra-op threads (None: its default).
      check_sha256: compare each file with the hash the shared README lists.

    Raises:
      UserError: onnxruntime is missing, a file is absent, or a hash differs.
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, num_threads: int | None = None,
                 check_sha256: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_extra("onnxruntime", "teacher") from None
        self.folder = Path(folder) if folder is not None else teacher_dir()
        self.paths = [self.folder / m.file for m in MODELS]
        missing = [p.name for p in self.paths if not p.is_file()]
        if missing:
            raise UserError(
                f"Silent-Face teacher files {', '.join(missing)} not found in '{self.folder}'; "
                f"copy them from ../shared/weights/teachers/silent-face or set {TEACHER_DIR_ENV} "
                "to the folder that holds them (they are never downloaded)")
        if check_sha256:
            for path, member in zip(self.paths, MODELS):
                digest = sha256_file(path)
                if digest != member.sha256:
                    raise UserError(f"'{path}' has SHA-256 {digest}; expected {member.sha256} "
                                    "(the file the shared README describes)")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        self._sessions: list[Any] | None = [
            ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
            for p in self.paths]

    def member_probabilities(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each member's softmax on its own input batch: ``(N, 3)`` float64 per member.

        Args:
          inputs: one ``(N, 3, 80, 80)`` float32 BGR 0-255 array per member
            (:func:`teacher_inputs`), in :data:`MODELS` order.
        """
        if self._sessions is None:
            raise RuntimeError("teacher is closed")
        if len(inputs) != len(self._sessions):
            raise ValueError(f"{len(inputs)} input batches for {len(self._sessions)} teacher models")
        out = []
        for sess, x in zip(self._sessions, inputs):
            x = np.ascontiguousarray(x, np.float32)
            if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
                raise ValueError(f"teacher input of shape {x.shape}; expected (N, 3, {INPUT_SIZE}, {INPUT_SIZE})")
            if not len(x):
                out.append(np.zeros((0, N_CLASSES)))
                continue
            out.append(softmax(sess.run(None, {"input": x})[0]))
        return out

    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Fused three-class probabilities ``(N, 3)`` (upstream's sum of softmaxes / 2)."""
        return fuse(self.member_probabilities(inputs))

    def score_faces(self, rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Fused ``(N, 3)`` probabilities of the faces of one RGB frame, through Silent-Face's crop rule."""
        return self.predict(teacher_inputs(rgb, boxes))

    def close(self) -> None:
        """Releases the sessions; further calls raise RuntimeError."""
        self._sessions = None

    def __enter__(self) -> "SilentFaceTeacher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sessions is None else "open"
        return f"SilentFaceTeacher({[p.name for p in self.paths]}, {state})"
