"""The one crop and preprocessing contract, shared by every stage.

Training (``prepare``), calibration (``convert``), evaluation and the device
runtime all call :func:`crop_face` and :func:`normalize` from here; nothing
else in the project crops a face or scales pixels. A model that sees
different pixels in training and on the device is the most common silent
failure in this field.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; BGR is converted once
where frames enter (see :func:`tla_edge.runtime.sources.bgr_to_rgb`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

# The crop side as a multiple of the face box's longer side: the bundled
# default model's. On the cross-session protocol (benchmarks/README.md, recipe
# table; ImageNet-started MobileNetV2) 2.0x and 2.7x ranked alike and 3.5x and
# 4.0x worse; 2.7x keeps some of the paper edge and fingers in view.
DEFAULT_SCALE = 2.7
DEFAULT_INPUT_SIZE = 160
# Faces rolled further than this (eye line vs horizontal) are not judged: the
# model never saw them, and NUAA spoofs turned 90 degrees scored 0.85-0.999 live.
DEFAULT_MAX_ROLL = 30.0
PAD_VALUE = 0
# How the square window meets the frame's edges (see :func:`crop_region`):
# "pad" keeps it centred on the face and pads what leaves the frame; "shift"
# shrinks it to fit and moves it inside the frame, never padding.
CROP_RULES = ("pad", "shift")
DEFAULT_CROP_RULE = "pad"

# name -> (multiplier, offset): x_float = x_uint8 * multiplier + offset
NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "mobilenet_v2": (1.0 / 127.5, -1.0),  # [-1, 1], keras.applications.mobilenet_v2
    "unit": (1.0 / 255.0, 0.0),  # [0, 1]
    "raw": (1.0, 0.0),  # [0, 255], normalisation inside the model
    "greynorm": (1.0 / 127.5, -1.0),  # as mobilenet_v2, then standardised per crop (STANDARDISED)
}

STANDARDISED: dict[str, float] = {"greynorm": 0.5}
"""Normalizations that go on per crop after the pixel step: the mean of the three channels, minus its
mean over the crop, over ``sqrt(variance + STANDARD_EPSILON)``, times this scale, in all three channels.
What ``train --colour greynorm`` computes inside the model, taken out of it by ``convert`` (exact
float statistics instead of int8 ones, and an RGB model's ops)."""
STANDARD_EPSILON = 1e-3


class CropRegion(NamedTuple):
    """A square crop window in frame pixels; under the ``"pad"`` rule it may extend past the frame."""

    x0: int
    """Left edge (inclusive), may be negative (``"pad"`` only)."""
    y0: int
    """Top edge (inclusive), may be negative (``"pad"`` only)."""
    side: int
    """Side length in pixels (>= 1)."""
    outside_fraction: float
    """Fraction of the window's area that lies outside the frame (padded); 0 under ``"shift"``."""


def check_crop_rule(rule: object, where: str = "crop rule") -> str:
    """Returns ``rule`` when it is one of :data:`CROP_RULES`.

    Raises:
      ValueError: one line naming ``where``, the value received and the rules expected.
    """
    if not isinstance(rule, str) or rule not in CROP_RULES:
        raise ValueError(f"{where} {rule!r} is not one of {', '.join(repr(r) for r in CROP_RULES)}")
    return rule


def crop_region(
    box: Sequence[float], scale: float, frame_shape: Sequence[int], rule: str = DEFAULT_CROP_RULE
) -> CropRegion:
    """Computes the square window around a face box.

    The window's side is ``scale`` times the box's longer side, centred on the
    box centre. Where that window leaves the frame, the crop rule decides:

    - ``"pad"`` (the default, and every model's without a ``crop_rule`` in its
      metadata): the window is never moved; parts outside the frame are
      padded with :data:`PAD_VALUE` by :func:`crop_face`, so the face stays
      centred exactly as in training.
    - ``"shift"``: the side shrinks to ``min(scale x longer side, frame height,
      frame width)`` and the window moves the least distance that puts it
      inside the frame; nothing is padded, the face may be off-centre.
      Silent-Face's rule is the same idea but keeps the box's aspect; this
      one stays square.

    Either way a face whose *box* leaves the frame is refused before any crop
    (``face_cut_off``, :func:`face_problem`).

    Args:
      box: ``(x, y, width, height)`` in pixels (a FaceBox works).
      scale: side of the window over the box's longer side, > 0.
      frame_shape: the frame's shape, ``(H, W, ...)``.
      rule: one of :data:`CROP_RULES`.

    Returns:
      The CropRegion.

    Raises:
      ValueError: a non-positive scale or box size, or an unknown rule.
    """
    x, y, w, h = (float(v) for v in box[:4])
    if not scale > 0:
        raise ValueError(f"crop scale {scale!r} is not > 0")
    if not (w > 0 and h > 0):
        raise ValueError(f"face box size {w}x{h} is not positive")
    check_crop_rule(rule)
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    side = max(1, int(round(max(w, h) * scale)))
    cx, cy = x + w / 2.0, y + h / 2.0
    if rule == "shift":
        side = max(1, min(side, frame_h, frame_w))
        x0 = min(max(int(round(cx - side / 2.0)), 0), frame_w - side)
        y0 = min(max(int(round(cy - side / 2.0)), 0), frame_h - side)
        return CropRegion(x0, y0, side, 0.0)
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    inside_w = max(0, min(x0 + side, frame_w) - max(x0, 0))
    inside_h = max(0, min(y0 + side, frame_h) - max(y0, 0))
    outside = 1.0 - (inside_w * inside_h) / float(side * side)
    return CropRegion(x0, y0, side, outside)


def crop_face(
    rgb: np.ndarray,
    box: Sequence[float],
    scale: float = DEFAULT_SCALE,
    size: int | Sequence[int] = DEFAULT_INPUT_SIZE,
    rule: str = DEFAULT_CROP_RULE,
) -> np.ndarray:
    """Crops the square window around a face and resizes it to the model's input.

    The resize is integer arithmetic throughout, so an ARM device cuts the
    same bytes as the x86 machine that prepared the training crops: while the
    window is at least twice the output it is halved by exact 2x2 means (its
    centre first trimmed to a multiple of the halving factor, under that many
    pixels), then OpenCV's bit-exact bilinear (``INTER_LINEAR_EXACT``: 8-bit
    fixed-point weights, pixel centre to pixel centre) shrinks it by less than
    2x to the output. OpenCV's plain ``INTER_LINEAR`` rounds its weights
    through float arithmetic that compilers contract differently: under arm64
    emulation 16 % of a 96 px crop's values were one grey level off and 2 of
    10 sample decisions flipped (``benchmarks/results/arm64_qemu_proof.json``
    of round 5). The means first (round 7) cost 0.5-0.7x round 6's bilinear
    step to twice the output followed by one mean, on NUAA's faces.

    Args:
      rgb: the frame, ``(H, W, 3)`` uint8 RGB.
      box: ``(x, y, width, height)`` in pixels (a FaceBox works).
      scale: window side over the box's longer side (see :data:`DEFAULT_SCALE`).
      size: output side, or ``(height, width)``.
      rule: ``"pad"`` or ``"shift"``, how the window meets the frame's edges
        (see :func:`crop_region`); a model's is its metadata's ``crop_rule``.

    Returns:
      The crop, ``(size, size, 3)`` uint8 RGB; under ``"pad"``, pixels outside
      the frame are :data:`PAD_VALUE`; under ``"shift"`` every pixel is the frame's.

    Raises:
      ValueError: the frame is not HxWx3 uint8, or the box, scale or rule is invalid.
    """
    check_frame(rgb)
    return crop_face_trusted(rgb, box, scale, size, rule)


def crop_face_trusted(
    rgb: np.ndarray,
    box: Sequence[float],
    scale: float = DEFAULT_SCALE,
    size: int | Sequence[int] = DEFAULT_INPUT_SIZE,
    rule: str = DEFAULT_CROP_RULE,
) -> np.ndarray:
    """:func:`crop_face` for a frame its caller has checked with :func:`check_frame`.

    The pipeline checks each frame once at its boundary; the box, scale and
    rule are still checked here (:func:`crop_region`).
    """
    import cv2  # the runtime extra's OpenCV

    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else size
    region = crop_region(box, scale, rgb.shape, rule)
    window = _window(rgb, region)  # a view of the frame where it lies inside
    halvings = _halvings(region.side, max(out_h, out_w))
    if halvings:
        window = _halve(window, halvings)  # a new array
    if window.shape[:2] == (out_h, out_w):
        return window if halvings else window.copy()
    return _bilinear_exact(window, out_w, out_h)


def _bilinear_exact(window: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """OpenCV's bit-exact bilinear (``INTER_LINEAR_EXACT``) of an RGB window, run on four channels.

    The same bytes as resizing the three channels directly (the fixed-point
    arithmetic is per channel; a test checks it on hundreds of shapes), at
    0.6-0.85x the time: OpenCV vectorises its bit-exact resize for four
    channels, not for three, and the two colour conversions around it cost a
    few microseconds at these sizes.
    """
    import cv2

    rgba = cv2.resize(cv2.cvtColor(window, cv2.COLOR_RGB2RGBA), (out_w, out_h), interpolation=cv2.INTER_LINEAR_EXACT)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


def _halvings(side: int, out: int) -> int:
    """How many exact 2x2 means a window of ``side`` pixels takes before its bilinear step to ``out``.

    As many as leave at least ``out`` pixels: the bilinear step then shrinks
    by less than 2x (never skipping a source pixel between two taps), and the
    means before it filter what would alias (print dots, screen pixels).
    """
    halvings = 0
    while (side >> (halvings + 1)) >= out:
        halvings += 1
    return halvings


def _halve(window: np.ndarray, halvings: int) -> np.ndarray:
    """The window's centre, trimmed to a multiple of ``2**halvings``, halved that many times by exact 2x2 means.

    Each mean is OpenCV's integer area resize at exactly half the size,
    ``(a + b + c + d + 2) >> 2`` per channel: the same bytes on every CPU, at a
    fraction of a bilinear step on the full window. The trim (under
    ``2**halvings`` pixels, split between the two sides) keeps the window centred.
    """
    import cv2

    side = window.shape[0]
    kept = (side >> halvings) << halvings
    off = (side - kept) // 2
    window = window[off:off + kept, off:off + kept]
    for _ in range(halvings):
        half = window.shape[0] // 2
        window = cv2.resize(window, (half, half), interpolation=cv2.INTER_AREA)
    return window


def _window(rgb: np.ndarray, region: CropRegion) -> np.ndarray:
    """The square window's pixels: a view where it lies inside the frame (always, under ``"shift"``), else padded."""
    import cv2

    x0, y0, side = region.x0, region.y0, region.side
    h, w = rgb.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return rgb[y0:y0 + side, x0:x0 + side]
    inner = rgb[max(y0, 0):max(min(y0 + side, h), 0), max(x0, 0):max(min(x0 + side, w), 0)]
    if inner.size == 0:
        return np.full((side, side, 3), PAD_VALUE, np.uint8)
    top, left = max(-y0, 0), max(-x0, 0)
    return cv2.copyMakeBorder(inner, top, side - top - inner.shape[0], left, side - left - inner.shape[1],
                              cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))


def resize_crops(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes prepared ``(N, H, W, 3)`` uint8 crops to ``size`` x ``size``.

    For experiments only (e.g. a crop-scale sweep at a small input size from
    160 px crops). The device crops straight to the model's input size with
    :func:`crop_face`, so a model meant for deployment is trained on crops
    prepared at its own size (``tla-edge prepare --size``).
    """
    import cv2

    if images.shape[1] == size and images.shape[2] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def normalize(crop: np.ndarray, normalization: str = "mobilenet_v2") -> np.ndarray:
    """Scales uint8 pixels the way the model expects (a :data:`STANDARDISED` one per crop).

    Args:
      crop: ``(..., H, W, 3)`` uint8 RGB (one crop or a batch).
      normalization: a key of :data:`NORMALIZATIONS`.

    Returns:
      float32 array of the same shape.

    Raises:
      ValueError: an unknown normalization name.
    """
    try:
        mul, off = NORMALIZATIONS[normalization]
    except KeyError:
        raise ValueError(
            f"unknown normalization {normalization!r}; expected one of {sorted(NORMALIZATIONS)}"
        ) from None
    x = crop.astype(np.float32) * np.float32(mul) + np.float32(off)
    if normalization in STANDARDISED:
        g = x.mean(axis=-1, dtype=np.float64)
        mean = g.mean(axis=(-2, -1), keepdims=True)
        var = ((g - mean) ** 2).mean(axis=(-2, -1), keepdims=True)
        plane = (STANDARDISED[normalization] * (g - mean) / np.sqrt(var + STANDARD_EPSILON)).astype(np.float32)
        x = np.repeat(plane[..., None], 3, axis=-1)
    return x


def check_frame(rgb: np.ndarray) -> None:
    """Raises ValueError unless ``rgb`` is an ``(H, W, 3)`` uint8 array."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"frame of type {type(rgb).__name__} is not a numpy HxWx3 uint8 array")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"frame shape {rgb.shape} dtype {rgb.dtype} is not HxWx3 uint8")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"frame shape {rgb.shape} is empty")


def face_roll(keypoints: Sequence[Sequence[float]]) -> float | None:
    """In-plane rotation of a face in degrees, from its eye keypoints; None without them.

    Args:
      keypoints: BlazeFace keypoints ``(x, y)`` in pixels, the person's right
        eye first, then the left eye (the right eye is on the image's left for
        an upright, unmirrored face).

    Returns:
      The angle of the line from the right eye to the left eye, in
      (-180, 180]: 0 upright, +90 when the face is turned clockwise by a
      quarter turn in the image (y down), 180 upside down.
    """
    if len(keypoints) < 2:
        return None
    (rx, ry), (lx, ly) = keypoints[0][:2], keypoints[1][:2]
    if rx == lx and ry == ly:
        return None
    return math.degrees(math.atan2(float(ly) - float(ry), float(lx) - float(rx)))


def face_problem(
    box: Sequence[float],
    frame_shape: Sequence[int],
    min_face: float = 40.0,
    max_cut_off: float = 0.15,
    max_roll: float = DEFAULT_MAX_ROLL,
) -> str | None:
    """Says why a face cannot be judged, or None when it can.

    ``face_cut_off`` is decided on the face *box* itself, never on the crop
    window, under both crop rules (:func:`crop_region`): more than
    ``max_cut_off`` of the box's area outside the frame. Under ``"pad"`` the
    window around a face near an edge may leave the frame (that part is
    padded, as in training) and the face is still judged; under ``"shift"``
    the window is moved inside the frame, so only the face's own missing part
    can make it unjudgeable. The same rule serves both: a face cut off by the
    frame is a face the model cannot see, whatever surrounds it.

    Args:
      box: ``(x, y, width, height)`` in pixels, or a ``FaceBox`` (whose eye
        keypoints, when present, give the face's roll).
      frame_shape: ``(H, W, ...)``.
      min_face: smallest accepted box side in pixels.
      max_cut_off: largest accepted fraction of the face box outside the frame.
      max_roll: largest accepted in-plane rotation in degrees; liveness models
        are trained on upright faces and score rolled ones at random.

    Returns:
      ``"face_too_small"``, ``"face_cut_off"``, ``"face_rotated"`` or None.
    """
    x, y, w, h = (float(v) for v in box[:4])
    if min(w, h) < min_face:
        return "face_too_small"
    frame_h, frame_w = float(frame_shape[0]), float(frame_shape[1])
    inside_w = max(0.0, min(x + w, frame_w) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, frame_h) - max(y, 0.0))
    if 1.0 - (inside_w * inside_h) / (w * h) > max_cut_off:
        return "face_cut_off"
    roll = face_roll(getattr(box, "keypoints", ()) or ())
    if roll is not None and abs(roll) > max_roll:
        return "face_rotated"
    return None
