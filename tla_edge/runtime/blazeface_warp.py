"""Step 1 of MediaPipe's face-detection graph in NumPy: the frame onto the model input.

MediaPipe Tasks' ``ImageToTensorCalculator`` (keep aspect ratio, zero border):
the frame is padded to the model's square input, centred, and warped bilinearly
with the fixed-point arithmetic of the OpenCV inside MediaPipe's CPU converter
(:func:`letterbox_roi`, :func:`image_to_tensor`), or through OpenCV's ``remap``
on the same fixed-point maps (:func:`remap_maps`, :func:`image_to_tensor_remap`).
The rest of the graph is :mod:`tla_edge.runtime.blazeface`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_F32 = np.float32


class Roi(NamedTuple):
    """The frame region warped onto the model input, in frame pixels (may extend past the frame)."""

    center_x: float
    """Centre x, pixels."""
    center_y: float
    """Centre y, pixels."""
    width: float
    """Width, pixels, padded to the input's aspect ratio."""
    height: float
    """Height, pixels, padded to the input's aspect ratio."""



def letterbox_roi(frame_width: int, frame_height: int, input_width: int, input_height: int) -> Roi:
    """The whole frame, padded equally on two sides to the input's aspect ratio (ImageToTensor's PadRoi)."""
    width, height = float(frame_width), float(frame_height)
    tensor_aspect = input_height / input_width
    if tensor_aspect > height / width:
        height = width * tensor_aspect
    else:
        width = height / tensor_aspect
    return Roi(frame_width / 2.0, frame_height / 2.0, width, height)


INTER_BITS = 5
"""Sub-pixel bits of OpenCV's fixed-point bilinear warp: source positions in 1/32 pixel."""
_TAB = 1 << INTER_BITS
_COEF_BITS = 15  # the four weights sum to 2**15


def sample_grid(roi: Roi, input_width: int, input_height: int) -> tuple[np.ndarray, ...]:
    """Where each output column and row samples the frame, as OpenCV's fixed-point warp computes it.

    The ROI's corners map onto the output's corners: output pixel ``u``
    samples ``roi left + u * roi width / input width``, rounded half to even
    to 1/32 pixel (``cvRound``), then split into a whole pixel and 1/32 steps.

    Returns:
      ``(ix, fx, iy, fy)``: int64 whole source column per output column and
      its fraction in 1/32 (``(input_width,)`` each), the same for rows.
    """
    x0, y0 = roi.center_x - roi.width / 2.0, roi.center_y - roi.height / 2.0
    u = np.arange(input_width, dtype=np.float64)
    v = np.arange(input_height, dtype=np.float64)
    sx = np.rint((u * (roi.width / input_width) + x0) * _TAB).astype(np.int64)
    sy = np.rint((v * (roi.height / input_height) + y0) * _TAB).astype(np.int64)
    return sx >> INTER_BITS, sx & (_TAB - 1), sy >> INTER_BITS, sy & (_TAB - 1)


def image_to_tensor(rgb: np.ndarray, roi: Roi, input_width: int, input_height: int) -> np.ndarray:
    """Warps the ROI of a frame onto the model input, zero outside the frame, scaled to [-1, 1].

    MediaPipe's CPU ImageToTensor converter maps the ROI's corners onto the
    corners of the output (not pixel centres onto pixel centres) with
    OpenCV's ``warpPerspective`` (bilinear, uint8, zero border), then
    computes ``pixel * 2/255 - 1``. The warp is reproduced here bit for bit,
    OpenCV's fixed-point arithmetic included (source positions rounded to
    1/32 pixel, integer weights summing to 2**15, rounded shift), which
    newer OpenCV builds no longer use: at a fractional scale (640 px onto
    192) exact bilinear weights shift scores enough to move a box by a pixel.

    Args:
      rgb: ``(H, W, 3)`` uint8 RGB frame.
      roi: the region from :func:`letterbox_roi` (unrotated).
      input_width: model input width.
      input_height: model input height.

    Returns:
      ``(1, input_height, input_width, 3)`` float32.
    """
    height, width = rgb.shape[:2]
    ix, fx, iy, fy = sample_grid(roi, input_width, input_height)
    # A neighbour outside the frame is 0 (BORDER_CONSTANT): its weight is set to 0.
    xs, ys = np.stack([ix, ix + 1]), np.stack([iy, iy + 1])  # (2, out W), (2, out H)
    wx = (np.stack([_TAB - fx, fx]) * ((xs >= 0) & (xs < width))).astype(_F32)
    wy = (np.stack([_TAB - fy, fy]) * ((ys >= 0) & (ys < height))).astype(_F32)
    rows = rgb[np.clip(ys, 0, height - 1).ravel()]  # (2 * out H, W, 3)
    cols = np.clip(xs, 0, width - 1)
    # Integer sums, exact in float32 (at most 32 * 32 * 255 < 2**24). OpenCV's
    # weights are these products times 2**(15 - 10) (summing to 2**15), and its
    # result (sum + 2**14) >> 15; dividing both by 2**5 gives (sum + 2**9) >> 10.
    horizontal = rows[:, cols[0]] * wx[0][None, :, None] + rows[:, cols[1]] * wx[1][None, :, None]
    horizontal = horizontal.reshape(2, input_height, input_width, 3)
    acc = horizontal[0] * wy[0][:, None, None] + horizontal[1] * wy[1][:, None, None]
    shift = 2 * INTER_BITS
    warped = np.floor((acc + _F32(1 << (shift - 1))) * _F32(1.0 / (1 << shift)))
    return (warped * _F32(2.0 / 255.0) + _F32(-1.0))[None]


def remap_maps(roi: Roi, input_width: int, input_height: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`sample_grid` as OpenCV's fixed-point remap maps, for :func:`image_to_tensor_remap`.

    Returns:
      ``(map1, map2)``: int16 ``(H, W, 2)`` whole source pixels and uint16
      ``(H, W)`` interpolation-table indices (``fy * 32 + fx``); None when a
      source position does not fit in int16 (a frame over 32,767 pixels).
    """
    ix, fx, iy, fy = sample_grid(roi, input_width, input_height)
    limit = np.iinfo(np.int16)
    if min(ix.min(), iy.min()) < limit.min or max(ix.max(), iy.max()) + 1 > limit.max:
        return None
    map1 = np.empty((input_height, input_width, 2), np.int16)
    map1[..., 0] = ix[None, :]
    map1[..., 1] = iy[:, None]
    map2 = (fy[:, None] * _TAB + fx[None, :]).astype(np.uint16)
    return map1, map2


def image_to_tensor_remap(rgb: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`image_to_tensor` through ``cv2.remap`` on fixed-point maps: the same values, ~5x faster.

    OpenCV's remap with integer maps and table indices still runs the
    fixed-point bilinear kernel (32x32 integer weight tables), so it gives
    exactly :func:`image_to_tensor`'s pixels (checked by the tests).
    """
    import cv2  # the runtime extra's OpenCV

    warped = cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (warped.astype(_F32) * _F32(2.0 / 255.0) + _F32(-1.0))[None]
