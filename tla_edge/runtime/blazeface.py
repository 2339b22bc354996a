"""BlazeFace through LiteRT: MediaPipe's face-detection graph in NumPy.

For boards where mediapipe 1.x cannot run (the Raspberry Pi 4's Cortex-A72
and other ARMv8.0 cores stop with SIGILL): the bundled ``.tflite`` models run
through :func:`tla_edge.runtime.interpreter.make_interpreter`, and the steps of
MediaPipe Tasks' FaceDetector graph around the model are written once here:

1. ``ImageToTensorCalculator`` (keep aspect ratio, zero border): the frame is
   padded to the model's square input, centred, and warped bilinearly with
   the fixed-point arithmetic of the OpenCV inside MediaPipe's CPU converter
   (:func:`letterbox_roi`, :func:`image_to_tensor`; in :mod:`tla_edge.runtime.blazeface_warp`).
2. ``SsdAnchorsCalculator``: anchor centres (:func:`ssd_anchors`).
3. ``TensorsToDetectionsCalculator``: box and keypoint decoding, score
   clipping and sigmoid, the minimum score (:func:`decode_detections`).
4. ``NonMaxSuppressionCalculator``, weighted, IoU overlap 0.3
   (:func:`weighted_nms`).
5. ``DetectionProjectionCalculator`` and ``DetectionTransformationCalculator``:
   back to frame pixels, with MediaPipe's integer pixel box
   (:func:`project_to_frame`).

The pure steps take and return arrays (NumPy only);
:class:`BlazeFaceLiteRT` owns the interpreter, and warps through OpenCV's
``remap`` on fixed-point maps where OpenCV is installed (the same pixels,
faster). Agreement with MediaPipe on the NUAA training frames is measured
by ``scripts/detector_agreement.py``.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge.runtime import interpreter as interp
from tla_edge.runtime import preprocess, quant
from tla_edge.runtime.cpu import check_num_threads
from tla_edge.runtime.blazeface_warp import (
    Roi, image_to_tensor, image_to_tensor_remap, letterbox_roi, remap_maps,
)

_F32 = np.float32
# OpenCV comes with the runtime extra; without it the NumPy warp gives the same pixels, slower.
_HAVE_CV2 = importlib.util.find_spec("cv2") is not None


class BlazeFaceConfig(NamedTuple):
    """The graph options MediaPipe uses for one BlazeFace model."""

    input_size: int
    """Square model input, pixels (128 short range, 192 full range)."""
    strides: tuple[int, ...]
    """SSD layer strides; layers with equal strides share one feature map."""
    interpolated_scale_aspect_ratio: float
    """> 0 adds one anchor per layer (short range: 1.0); 0 adds none (full range)."""
    num_boxes: int
    """Anchors, and rows of the model's regressor and score outputs."""
    min_scale: float = 0.1484375
    """SsdAnchorsCalculator's ``min_scale`` (unused with fixed-size anchors; kept for the record)."""
    max_scale: float = 0.75
    """SsdAnchorsCalculator's ``max_scale`` (unused with fixed-size anchors)."""
    anchor_offset: float = 0.5
    """Anchor centre offset within a feature-map cell, in cells."""
    num_keypoints: int = 6
    """Keypoints per box, two values (x, y) each, after the four box values."""
    score_clipping: float = 100.0
    """Logits are clipped to [-this, this] before the sigmoid."""


SHORT_RANGE = BlazeFaceConfig(input_size=128, strides=(8, 16, 16, 16),
                              interpolated_scale_aspect_ratio=1.0, num_boxes=896)
"""``face_detection_short_range.tflite``: 16x16x2 + 8x8x6 anchors."""
FULL_RANGE = BlazeFaceConfig(input_size=192, strides=(4,),
                             interpolated_scale_aspect_ratio=0.0, num_boxes=2304)
"""``face_detection_full_range.tflite``: 48x48x1 anchors."""
CONFIGS = (SHORT_RANGE, FULL_RANGE)
MIN_SUPPRESSION_THRESHOLD = 0.3
"""MediaPipe FaceDetector's default NMS overlap (IoU) threshold."""


class Decoded(NamedTuple):
    """Detections in the model's normalized input coordinates ([0, 1] across the tensor)."""

    boxes: np.ndarray
    """``(N, 4)`` float32 ``xmin, ymin, width, height``."""
    keypoints: np.ndarray
    """``(N, K, 2)`` float32 ``x, y``."""
    scores: np.ndarray
    """``(N,)`` float32 sigmoid scores."""


# --- pure steps ---------------------------------------------------------------


def config_for_input(height: int, width: int, num_boxes: int) -> BlazeFaceConfig:
    """The graph options for a model with this input size and this many boxes.

    Raises:
      ValueError: neither bundled BlazeFace has that input and box count.
    """
    for config in CONFIGS:
        if (height, width, num_boxes) == (config.input_size, config.input_size, config.num_boxes):
            return config
    known = ", ".join(f"{c.input_size}x{c.input_size} with {c.num_boxes} boxes" for c in CONFIGS)
    raise ValueError(
        f"face detector input {height}x{width} with {num_boxes} boxes is not a BlazeFace "
        f"layout this backend knows; expected {known}"
    )


def ssd_anchors(
    input_size: int,
    strides: Sequence[int],
    *,
    anchor_offset: float = 0.5,
    interpolated_scale_aspect_ratio: float = 1.0,
    aspect_ratios: Sequence[float] = (1.0,),
) -> np.ndarray:
    """Anchor centres as MediaPipe's SsdAnchorsCalculator makes them (fixed anchor size).

    Consecutive layers with the same stride share one feature map of
    ``ceil(input_size / stride)`` cells per side; each cell holds, row-major,
    ``len(aspect_ratios)`` anchors per layer plus one per layer when
    ``interpolated_scale_aspect_ratio > 0``. With ``fixed_anchor_size`` (as in
    BlazeFace) every anchor is 1x1, so only the centres matter.

    Args:
      input_size: square model input, pixels.
      strides: one stride per layer.
      anchor_offset: centre offset within a cell, in cells.
      interpolated_scale_aspect_ratio: > 0 adds the interpolated anchor.
      aspect_ratios: aspect ratios per layer.

    Returns:
      ``(N, 2)`` float32 ``x, y`` centres in [0, 1].

    Raises:
      ValueError: no strides, or a stride that is not a positive integer.
    """
    if not strides or any(int(s) != s or s <= 0 for s in strides):
        raise ValueError(f"strides {tuple(strides)!r} are not positive integers")
    per_layer = len(aspect_ratios) + (1 if interpolated_scale_aspect_ratio > 0.0 else 0)
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        cells = int(math.ceil(input_size / strides[layer]))
        per_cell = per_layer * (last - layer)
        # float32 as in the calculator: (index + offset) / feature map size.
        pos = (np.arange(cells, dtype=_F32) + _F32(anchor_offset)) / _F32(cells)
        ys, xs = np.meshgrid(pos, pos, indexing="ij")
        grid = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(centres).astype(_F32)


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    min_score: float,
    *,
    score_clipping: float = 100.0,
) -> Decoded:
    """Decodes raw regressors and logits as TensorsToDetectionsCalculator does.

    The regressors are ``x, y, w, h`` of the box centre and size followed by
    ``x, y`` per keypoint, all in input pixels relative to the anchor
    (``reverse_output_order``; scales = ``input_size``). Logits are clipped to
    ``[-score_clipping, score_clipping]`` and passed through a sigmoid; boxes
    scoring below ``min_score``, or with a negative or NaN size, are dropped.

    Args:
      raw_boxes: ``(N, 4 + 2K)`` regressors (a leading batch axis of 1 is accepted).
      raw_scores: ``(N,)`` or ``(N, 1)`` logits.
      anchors: ``(N, 2)`` anchor centres from :func:`ssd_anchors`.
      input_size: the model's square input size, pixels.
      min_score: smallest sigmoid score kept.
      score_clipping: logit clipping bound.

    Returns:
      The kept detections, in the order of the anchors.

    Raises:
      ValueError: the shapes do not agree.
    """
    boxes = np.asarray(raw_boxes, _F32).reshape(-1, np.shape(raw_boxes)[-1])
    logits = np.asarray(raw_scores, _F32).reshape(-1)
    anchors = np.asarray(anchors, _F32)
    n, coords = boxes.shape
    if logits.shape[0] != n or anchors.shape != (n, 2) or coords < 4 or coords % 2:
        raise ValueError(
            f"raw boxes {boxes.shape}, scores {logits.shape} and anchors {anchors.shape} "
            "do not describe the same boxes; expected (N, 4 + 2K), (N,), (N, 2)"
        )
    clip = _F32(score_clipping)
    with np.errstate(over="ignore"):  # exp(100) is inf in float32: the score is 0, as in C++
        scores = _F32(1.0) / (_F32(1.0) + np.exp(-np.clip(logits, -clip, clip)))
    scale = _F32(input_size)
    # Anchors are 1x1 (fixed size), so the anchor width/height factors are 1.
    cx = boxes[:, 0] / scale + anchors[:, 0]
    cy = boxes[:, 1] / scale + anchors[:, 1]
    w = boxes[:, 2] / scale
    h = boxes[:, 3] / scale
    half_w, half_h = w / _F32(2.0), h / _F32(2.0)
    xmin, ymin = cx - half_w, cy - half_h
    xmax, ymax = cx + half_w, cy + half_h
    width, height = xmax - xmin, ymax - ymin
    keypoints = boxes[:, 4:].reshape(n, -1, 2) / scale + anchors[:, None, :]
    with np.errstate(invalid="ignore"):
        keep = (scores >= _F32(min_score)) & (width >= 0) & (height >= 0)
    return Decoded(
        np.stack([xmin, ymin, width, height], axis=1)[keep],
        keypoints[keep].astype(_F32),
        scores[keep],
    )


def overlap_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``xmin, ymin, width, height`` box with each of ``boxes`` (0 where they do not touch)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0.0, inter / union, 0.0)


def weighted_nms(decoded: Decoded, threshold: float = MIN_SUPPRESSION_THRESHOLD) -> Decoded:
    """Weighted non-maximum suppression as MediaPipe's NonMaxSuppressionCalculator (WEIGHTED, IoU).

    The highest-scoring remaining box gathers every remaining box (itself
    included) whose IoU with it is above ``threshold``; the output box and
    keypoints are those boxes' score-weighted mean, with the top box's score.
    Repeats until no box remains.

    Args:
      decoded: detections from :func:`decode_detections`.
      threshold: IoU above which a box joins the top box's cluster.

    Returns:
      One detection per cluster, highest score first.
    """
    order = np.argsort(-decoded.scores, kind="stable")
    boxes = decoded.boxes[order].astype(np.float64)
    keypoints = decoded.keypoints[order].astype(np.float64)
    scores = decoded.scores[order]
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    remaining = np.arange(len(scores))
    out_boxes, out_keypoints, out_scores = [], [], []
    while remaining.size:
        top = remaining[0]
        similar = overlap_iou(boxes[top], boxes[remaining]) > threshold
        if not similar.any():
            # An empty top box overlaps nothing, not even itself: MediaPipe
            # keeps it unweighted and stops there.
            out_boxes.append(list(boxes[top]))
            out_keypoints.append(keypoints[top])
            out_scores.append(scores[top])
            break
        members = remaining[similar]
        weights = scores[members].astype(np.float64)
        total = weights.sum()
        mean_corners = (corners[members] * weights[:, None]).sum(axis=0) / total
        out_boxes.append([*mean_corners[:2], *(mean_corners[2:] - mean_corners[:2])])
        out_keypoints.append((keypoints[members] * weights[:, None, None]).sum(axis=0) / total)
        out_scores.append(scores[top])
        remaining = remaining[~similar]
    k = decoded.keypoints.shape[1] if decoded.keypoints.ndim == 3 else 0
    return Decoded(
        np.asarray(out_boxes, _F32).reshape(-1, 4),
        np.asarray(out_keypoints, _F32).reshape(-1, k, 2),
        np.asarray(out_scores, _F32),
    )


def project_to_frame(
    decoded: Decoded, roi: Roi, frame_width: int, frame_height: int
) -> list[tuple[tuple[int, int, int, int], float, tuple[tuple[float, float], ...]]]:
    """Model-input coordinates -> frame pixels, as MediaPipe's FaceDetector reports them.

    A point ``(u, v)`` of the input maps to ``roi corner + (u, v) * roi size``.
    The box is then MediaPipe's integer pixel box: each of ``xmin``, ``ymin``,
    ``width``, ``height`` is truncated toward zero and bounded to
    ``[0, frame size]`` (so a box cut off at the left or top starts at 0 with
    its width unchanged). Keypoints stay float.

    Returns:
      Per detection: ``((x, y, width, height), score, keypoints)``.
    """
    sx, sy = _F32(roi.width / frame_width), _F32(roi.height / frame_height)
    tx = _F32((roi.center_x - roi.width / 2.0) / frame_width)
    ty = _F32((roi.center_y - roi.height / 2.0) / frame_height)
    fw, fh = _F32(frame_width), _F32(frame_height)
    out = []
    for box, kps, score in zip(decoded.boxes, decoded.keypoints, decoded.scores):
        xmin, ymin = box[0] * sx + tx, box[1] * sy + ty
        xmax, ymax = (box[0] + box[2]) * sx + tx, (box[1] + box[3]) * sy + ty
        pixel_box = (
            _bounded(xmin * fw, frame_width),
            _bounded(ymin * fh, frame_height),
            _bounded((xmax - xmin) * fw, frame_width),
            _bounded((ymax - ymin) * fh, frame_height),
        )
        points = tuple(
            (float(kx * sx + tx) * frame_width, float(ky * sy + ty) * frame_height)
            for kx, ky in kps
        )
        out.append((pixel_box, float(score), points))
    return out


def _bounded(value: float, upper: int) -> int:
    # C++ float -> int conversion truncates toward zero; then bounded to [0, upper].
    return min(max(int(value), 0), upper)


# --- the interpreter -----------------------------------------------------------


class BlazeFaceLiteRT:
    """A bundled BlazeFace model on a LiteRT interpreter, with MediaPipe's graph around it.

    Args:
      model_path: ``face_detection_short_range.tflite``, ``..._full_range.tflite``
        or a model with the same input and output layout (float or quantized).
      min_score: smallest detection score kept, in [0, 1].
      num_threads: interpreter CPU threads (None: the runtime's default).
      edgetpu: run through the Edge TPU delegate (an ``edgetpu_compiler`` model).
      min_suppression_threshold: NMS IoU threshold.

    Raises:
      FileNotFoundError: the model file does not exist.
      ValueError: not a TFLite model, or not a BlazeFace layout this backend
        knows; ``num_threads`` not None or an integer in [1, 64].
      UserError: no TFLite runtime, or the Edge TPU library is missing.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        min_score: float = 0.5,
        num_threads: int | None = None,
        edgetpu: bool = False,
        min_suppression_threshold: float = MIN_SUPPRESSION_THRESHOLD,
    ) -> None:
        check_num_threads(num_threads)
        self.model_path = Path(model_path)
        self.min_score = float(min_score)
        self.min_suppression_threshold = float(min_suppression_threshold)
        self._interpreter = interp.make_interpreter(model_path, num_threads=num_threads, edgetpu=edgetpu)
        interp.check_image_input(self._interpreter, model_path)
        self.input_height, self.input_width = interp.input_size(self._interpreter)
        outputs = self._interpreter.get_output_details()
        by_width = {int(d["shape"][-1]): d for d in outputs}
        if len(outputs) != 2 or 1 not in by_width or len(by_width) != 2:
            shapes = [tuple(int(v) for v in d["shape"]) for d in outputs]
            raise ValueError(
                f"face detector '{model_path}' outputs {shapes} are not BlazeFace's "
                "(regressors [1, N, 16] and scores [1, N, 1])"
            )
        self._scores = by_width.pop(1)
        self._boxes = next(iter(by_width.values()))
        num_boxes = int(self._boxes["shape"][-2])
        self.config = config_for_input(self.input_height, self.input_width, num_boxes)
        self.anchors = ssd_anchors(
            self.config.input_size, self.config.strides,
            anchor_offset=self.config.anchor_offset,
            interpolated_scale_aspect_ratio=self.config.interpolated_scale_aspect_ratio,
        )
        self.last_invoke_ms: float | None = None
        """Milliseconds of the last frame: warp, inference, decoding and NMS."""
        self._frame_size: tuple[int, int] | None = None
        self._roi: Roi | None = None
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def raw_outputs(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Runs the model on one input tensor; returns ``(regressors (N, 16), logits (N,))`` as float."""
        interp.set_input(self._interpreter, tensor)
        self._interpreter.invoke()
        return self._output(self._boxes), self._output(self._scores).reshape(-1)

    def _output(self, details: dict[str, Any]) -> np.ndarray:
        out = self._interpreter.get_tensor(details["index"])
        if interp.is_quantized(details):
            return quant.dequantize(out, *interp.quantization_params(details))[0]
        return out.astype(_F32)[0]

    def detect(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float,
                                                     tuple[tuple[float, float], ...]]]:
        """Finds faces in one ``(H, W, 3)`` uint8 RGB frame.

        Returns:
          Per face, highest score first: ``((x, y, width, height), score, keypoints)``
          in frame pixels, as :func:`project_to_frame` gives them.

        Raises:
          ValueError: ``rgb`` is not HxWx3 uint8.
        """
        preprocess.check_frame(rgb)
        return self.detect_trusted(rgb)

    def detect_trusted(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float,
                                                             tuple[tuple[float, float], ...]]]:
        """:meth:`detect` for a frame its caller has checked (the FaceDetector facade does)."""
        t0 = time.perf_counter()
        height, width = rgb.shape[:2]
        if self._frame_size != (height, width):  # the warp depends on the frame size only
            self._roi = letterbox_roi(width, height, self.input_width, self.input_height)
            self._maps = remap_maps(self._roi, self.input_width, self.input_height) if _HAVE_CV2 else None
            self._frame_size = (height, width)
        roi = self._roi
        if self._maps is not None:
            tensor = image_to_tensor_remap(rgb, self._maps)
        else:
            tensor = image_to_tensor(rgb, roi, self.input_width, self.input_height)
        raw_boxes, logits = self.raw_outputs(tensor)
        decoded = decode_detections(raw_boxes, logits, self.anchors, self.config.input_size,
                                    self.min_score, score_clipping=self.config.score_clipping)
        faces = project_to_frame(weighted_nms(decoded, self.min_suppression_threshold), roi, width, height)
        self.last_invoke_ms = (time.perf_counter() - t0) * 1e3
        return faces

    def close(self) -> None:
        """Drops the interpreter. Safe to call twice."""
        self._interpreter = None
