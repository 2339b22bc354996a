"""The quantization maths of a liveness model: pure functions over arrays (NumPy only).

quantize / dequantize with a tensor's own scale and zero point, the uint8 pixel
lookup table of a quantized input, the logistic function, and the checks that
turn raw model outputs into live probabilities (failing on a broken model
rather than reporting certainty).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime import preprocess


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float -> integer with a tensor's own scale and zero point, rounded and clipped.

    Rounds ``x / scale`` (float32) half to even, as the QUANTIZE op of the
    runtime's default kernels does (XNNPACK and LiteRT's optimized kernel,
    checked against the runtime in tests/test_interpreter.py); only LiteRT's
    reference kernel rounds halves away from zero. With a scale of 2/255
    (the bundled model's) 32 of the 256 grey levels land on a half and 16 of
    them round differently under the two rules.
    """
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer -> float; widens to int32 before subtracting the zero point."""
    return (np.asarray(q).astype(np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(
        scale
    )


def pixel_lut(normalization: str, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """The 256-entry table uint8 pixel -> quantized model input.

    Equal to ``quantize(normalize(pixel))`` for every pixel value, so a
    quantized model's input costs one table lookup per frame.
    """
    return quantize(
        preprocess.normalize(np.arange(256, dtype=np.uint8), normalization), scale, zero_point, dtype
    )


_THIRDS = np.full((1, 3), 1.0 / 3.0, np.float32)


class StandardisedInput:
    """``quantize(normalize(crop, normalization))`` of ``(H, W, 3)`` uint8 crops, for a :data:`STANDARDISED
    <tla_edge.runtime.preprocess.STANDARDISED>` normalization: one model's input writer.

    The crop's statistics change with every crop, so no table serves; OpenCV
    computes the grey plane, its mean and deviation, and the quantized plane in
    all three channels, in buffers kept from one crop to the next (allocating
    them per crop cost more than the arithmetic in the frame loop). Float32
    instead of :func:`~tla_edge.runtime.preprocess.normalize`'s float64: a value
    within rounding of a half step may differ by one (tests bound it). One call
    at a time (the buffers are shared), as a model's input is.
    """

    def __init__(self, normalization: str, scale: float, zero_point: int, dtype: Any,
                 size: tuple[int, int]) -> None:
        import cv2  # the runtime extra's OpenCV

        self._mul = preprocess.NORMALIZATIONS[normalization][0]
        self._std_scale = preprocess.STANDARDISED[normalization]
        self._scale, self._zero_point = float(scale), int(zero_point)
        self.dtype = np.dtype(dtype)
        self._depth = {np.dtype(np.int8): cv2.CV_8S, np.dtype(np.uint8): cv2.CV_8U}[self.dtype]
        h, w = size
        self._rgb = np.empty((h, w, 3), np.float32)
        self._grey = np.empty((h, w), np.float32)
        self._plane = np.empty((h, w), self.dtype)

    def __call__(self, crop: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """The quantized input of one crop, written into ``dst`` (``(H, W, 3)`` of the input dtype) when given."""
        import cv2

        np.copyto(self._rgb, crop)
        g = cv2.transform(self._rgb, _THIRDS, dst=self._grey)  # the mean of the three channels, 0-255
        mean, dev = cv2.meanStdDev(g)
        var = (float(dev[0, 0]) * self._mul) ** 2  # in the normalized units (mul per pixel level)
        a = self._std_scale * self._mul / math.sqrt(var + preprocess.STANDARD_EPSILON) / self._scale
        # q = (g - mean) * a + zero_point, rounded half to even and saturated (as quantize()) in one op
        plane = cv2.addWeighted(g, a, g, 0.0, self._zero_point - float(mean[0, 0]) * a, dst=self._plane,
                                dtype=self._depth)
        if dst is None:
            return cv2.merge([plane, plane, plane])
        written = cv2.merge([plane, plane, plane], dst=dst)
        if written is not dst:
            dst[...] = written
        return dst


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


MAX_ABS_LOGIT = 1e4
"""Largest raw logit accepted: sigmoid saturates long before (|x| > 40 is 0 or 1 in float64),
so a larger value (3.4e38, float32's maximum) is a broken model, not certainty."""


def check_raw_output(out: np.ndarray, meta: metadata_lib.ModelMetadata) -> None:
    """Raises ValueError unless raw outputs are finite and in range for ``meta.output``.

    Raises:
      ValueError: names the first offending value.
    """
    out = np.asarray(out, np.float64)
    bad = ~np.isfinite(out)
    if meta.output == "logit":
        bad |= np.abs(np.where(bad, 0.0, out)) > MAX_ABS_LOGIT
        expected = f"a finite logit within +-{MAX_ABS_LOGIT:g}"
    else:
        bad |= (np.where(bad, 0.5, out) < 0.0) | (np.where(bad, 0.5, out) > 1.0)
        expected = "a probability in [0, 1]"
    if bad.any():
        raise ValueError(f"model output {out.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]!r} is not {expected}")


def scores_from_output(out: np.ndarray, meta: metadata_lib.ModelMetadata) -> np.ndarray:
    """Turns raw model outputs ``(N, K)`` into live probabilities ``(N,)``.

    One output column is a logit or probability of *live*; two columns are
    class logits or probabilities, ``meta.live_index`` naming the live one.

    Raises:
      ValueError: a raw output is not finite, is not a plausible logit
        (``|x| > MAX_ABS_LOGIT``) or is a probability outside [0, 1]: checked
        before any sigmoid, which would turn +inf into a certain "live".
    """
    out = np.asarray(out, np.float64)
    out = out.reshape(out.shape[0] if out.ndim > 1 else 1, -1)
    check_raw_output(out, meta)
    if out.shape[1] == 1:
        col = out[:, 0]
        return sigmoid(col) if meta.output == "logit" else col
    if meta.output == "logit":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
    return out[:, meta.live_index]


def score_from_output(out: np.ndarray, meta: metadata_lib.ModelMetadata) -> float:
    """The live probability of one image: ``float(scores_from_output(out, meta)[0])``, bit for bit.

    The frame path's shortcut for the usual one-value output (a live logit or
    probability): the same checks and the same float64 operations on one
    number, without the batch machinery; any other output takes
    :func:`scores_from_output`.

    Raises:
      ValueError: as :func:`scores_from_output`, with the same message.
    """
    flat = np.asarray(out, np.float64).reshape(-1)
    if flat.size != 1:
        return float(scores_from_output(out, meta)[0])
    x = float(flat[0])
    if meta.output == "logit":
        if not (math.isfinite(x) and abs(x) <= MAX_ABS_LOGIT):
            check_raw_output(flat.reshape(1, 1), meta)
        e = np.exp(np.float64(-abs(x)))  # sigmoid's branches, on this one value
        return float(1.0 / (1.0 + e)) if x >= 0 else float(e / (1.0 + e))
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        check_raw_output(flat.reshape(1, 1), meta)
    return x
