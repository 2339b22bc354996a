"""Training-time augmentation in TensorFlow ops, on uint8 crops, seeded.

:func:`augment` takes one ``(H, W, 3)`` uint8 crop and a stateless seed
(``[2]`` int) and returns a uint8 crop of the same shape, so normalisation
(:func:`tla_edge.runtime.preprocess.normalize`'s constants) is applied afterwards
exactly as at inference. Every random choice comes from the seed: the same
seed gives the same pixels.

The colour jitter is deliberately hard. NUAA's two sessions differ in
lighting and white balance, and printed photos have a slightly different
mean colour than live faces; a model left to itself learns that shortcut and
fails on the next session. Brightness, contrast, saturation, hue and a
per-channel gain are therefore varied more than a generic recipe would.
Blur and JPEG re-compression stand for other webcams and compressed streams.

:data:`CAMERA` (``tla-edge train --camera-augment``) adds what changes with the
sensor rather than the scene, so that a threshold means the same on another
camera: a stronger white-balance gain, a gamma (tone curve) change, a lower
resolution (down- then up-sampling), sensor noise (Gaussian, stronger in the
dark as shot noise is), unsharp-mask sharpening as phone pipelines apply, and
harder JPEG. Each is applied to real and attack crops alike, so none of them
can become a cue for either class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tla_edge.errors import import_tensorflow


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation; the defaults are the training recipe."""

    flip: bool = True
    """Random horizontal flip."""
    brightness: float = 0.25
    """Max additive brightness change, in [0, 1] units of the pixel range."""
    contrast: tuple[float, float] = (0.6, 1.4)
    """Range of the contrast factor."""
    saturation: tuple[float, float] = (0.5, 1.5)
    """Range of the saturation factor."""
    hue: float = 0.06
    """Max hue shift (fraction of the colour wheel)."""
    channel_gain: float = 0.12
    """Max relative gain per RGB channel (a white-balance change)."""
    max_rotation_deg: float = 10.0
    """Max rotation either way, in degrees."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Range of the zoom factor (> 1 zooms in)."""
    max_shift: float = 0.05
    """Max translation as a fraction of the side."""
    blur_probability: float = 0.25
    """Chance of a Gaussian blur."""
    max_blur_sigma: float = 1.5
    """Largest blur sigma in pixels."""
    jpeg_probability: float = 0.3
    """Chance of JPEG re-compression."""
    jpeg_quality: tuple[int, int] = (40, 95)
    """JPEG quality range."""
    gamma: tuple[float, float] = (1.0, 1.0)
    """Range of the gamma exponent (1, 1: off)."""
    downscale_probability: float = 0.0
    """Chance of a resolution loss (down-sampling, then up-sampling back)."""
    downscale: tuple[float, float] = (0.35, 0.8)
    """Range of the down-sampling factor of a resolution loss."""
    noise_probability: float = 0.0
    """Chance of sensor noise."""
    max_noise: float = 0.03
    """Largest noise standard deviation (pixel range [0, 1]) at full brightness; shot-noise-like in the dark."""
    sharpen_probability: float = 0.0
    """Chance of unsharp-mask sharpening."""
    sharpen_amount: tuple[float, float] = (0.3, 1.2)
    """Range of the unsharp-mask amount."""
    zoom_in_probability: float = 0.0
    """Chance that a crop is shown zoomed in by a factor uniform in [1, :attr:`zoom_in_max`] instead of
    :attr:`scale`'s: the tighter view a ``shift`` crop gets when the face fills the frame (a 2.7x window
    shrunk to the frame, or a dataset of tight face crops)."""
    zoom_in_max: float = 2.0
    """Largest zoom-in factor: 2.0 shows a 2.7x crop as a 1.35x one."""


CAMERA = AugmentConfig(channel_gain=0.2, gamma=(0.7, 1.4), downscale_probability=0.35,
                       noise_probability=0.4, sharpen_probability=0.25, jpeg_probability=0.5,
                       jpeg_quality=(30, 95))
"""The camera-domain recipe (``--camera-augment``): the default plus sensor and pipeline changes."""


def augment_config(camera: bool = False, zoom_in: float = 0.0) -> AugmentConfig:
    """The training recipe's strengths: the default, or :data:`CAMERA` (``--camera-augment``), with
    ``zoom_in`` the chance of a zoomed-in view (``--zoom-in``; 0: off)."""
    base = CAMERA if camera else AugmentConfig()
    return replace(base, zoom_in_probability=float(zoom_in)) if zoom_in else base


def _seeds(tf: Any, seed: Any, n: int) -> list[Any]:
    """Splits one stateless seed into ``n`` independent ones."""
    split = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [split[i] for i in range(n)]


def _uniform(tf: Any, seed: Any, low: float, high: float) -> Any:
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high)


def _affine(tf: Any, image: Any, seeds: list[Any], cfg: AugmentConfig) -> Any:
    """Rotation, zoom and shift about the centre, edges filled by reflection."""
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    angle = _uniform(tf, seeds[0], -1.0, 1.0) * (cfg.max_rotation_deg * math.pi / 180.0)
    zoom = _uniform(tf, seeds[1], cfg.scale[0], cfg.scale[1])
    if cfg.zoom_in_probability:  # off by default: the default recipe draws exactly as before
        z = _seeds(tf, seeds[1], 2)
        zoom = tf.where(_uniform(tf, z[0], 0.0, 1.0) < cfg.zoom_in_probability,
                        _uniform(tf, z[1], 1.0, cfg.zoom_in_max), zoom)
    tx = _uniform(tf, seeds[2], -cfg.max_shift, cfg.max_shift) * w
    ty = _uniform(tf, seeds[3], -cfg.max_shift, cfg.max_shift) * h
    # The transform maps output coordinates to input coordinates.
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[tf.newaxis]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return out[0]


def _blur(tf: Any, image: Any, sigma: Any) -> Any:
    """Separable 5x5 Gaussian blur of a float image."""
    x = tf.range(-2.0, 3.0)
    k = tf.exp(-(x**2) / (2.0 * sigma**2))
    k = k / tf.reduce_sum(k)
    kh = tf.tile(tf.reshape(k, [1, 5, 1, 1]), [1, 1, 3, 1])
    kv = tf.tile(tf.reshape(k, [5, 1, 1, 1]), [1, 1, 3, 1])
    y = tf.pad(image[tf.newaxis], [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
    y = tf.nn.depthwise_conv2d(y, kh, [1, 1, 1, 1], "VALID")
    y = tf.nn.depthwise_conv2d(y, kv, [1, 1, 1, 1], "VALID")
    return y[0]


def _camera(tf: Any, x: Any, s: list[Any], cfg: AugmentConfig) -> Any:
    """Gamma, resolution loss, sensor noise and sharpening of a float [0, 1] image (each off by default)."""
    g = _uniform(tf, s[0], cfg.gamma[0], cfg.gamma[1])
    x = tf.pow(tf.maximum(x, 1e-6), g)
    h, w = tf.shape(x)[0], tf.shape(x)[1]
    f = _uniform(tf, s[1], cfg.downscale[0], cfg.downscale[1])
    small = tf.maximum(tf.cast(tf.cast(tf.stack([h, w]), tf.float32) * f, tf.int32), 8)

    def _resample() -> Any:
        return tf.image.resize(tf.image.resize(x, small, method="area"), tf.stack([h, w]), method="bilinear")

    x = tf.cond(_uniform(tf, s[2], 0.0, 1.0) < cfg.downscale_probability, _resample, lambda: x)
    sigma = _uniform(tf, s[3], 0.0, cfg.max_noise)
    noise = tf.random.stateless_normal(tf.shape(x), s[4]) * sigma * tf.sqrt(tf.maximum(x, 0.05))
    x = tf.cond(_uniform(tf, s[5], 0.0, 1.0) < cfg.noise_probability,
                lambda: tf.clip_by_value(x + noise, 0.0, 1.0), lambda: x)
    amount = _uniform(tf, s[6], cfg.sharpen_amount[0], cfg.sharpen_amount[1])
    x = tf.cond(_uniform(tf, s[7], 0.0, 1.0) < cfg.sharpen_probability,
                lambda: tf.clip_by_value(x + amount * (x - _blur(tf, x, 1.0)), 0.0, 1.0), lambda: x)
    return x


def augment(image: Any, seed: Any, config: AugmentConfig | None = None) -> Any:
    """Augments one crop.

    Args:
      image: ``(H, W, 3)`` uint8 tensor (RGB).
      seed: ``[2]`` integer tensor, the stateless seed of this sample.
      config: strengths; None for :class:`AugmentConfig`'s defaults.

    Returns:
      ``(H, W, 3)`` uint8 tensor.
    """
    tf = import_tensorflow()
    cfg = config or AugmentConfig()
    s = _seeds(tf, seed, 16)
    shape = tf.shape(image)
    x = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    if cfg.flip:
        x = tf.image.stateless_random_flip_left_right(x, s[0])
    x = _affine(tf, x, s[1:5], cfg)
    x = tf.image.stateless_random_brightness(x, cfg.brightness, s[5])
    x = tf.image.stateless_random_contrast(x, cfg.contrast[0], cfg.contrast[1], s[6])
    x = tf.image.stateless_random_saturation(x, cfg.saturation[0], cfg.saturation[1], s[7])
    x = tf.image.stateless_random_hue(x, cfg.hue, s[8])
    gain = tf.random.stateless_uniform(
        [3], s[9], minval=1.0 - cfg.channel_gain, maxval=1.0 + cfg.channel_gain
    )
    x = tf.clip_by_value(x * gain, 0.0, 1.0)
    if cfg.gamma != (1.0, 1.0) or cfg.downscale_probability or cfg.noise_probability or cfg.sharpen_probability:
        x = _camera(tf, x, _seeds(tf, s[14], 8), cfg)  # s[14] is free: the default recipe's pixels stay as they were
    sigma = _uniform(tf, s[10], 0.3, cfg.max_blur_sigma)
    do_blur = _uniform(tf, s[11], 0.0, 1.0) < cfg.blur_probability
    x = tf.cond(do_blur, lambda: _blur(tf, x, sigma), lambda: x)
    do_jpeg = _uniform(tf, s[12], 0.0, 1.0) < cfg.jpeg_probability
    x = tf.cond(
        do_jpeg,
        lambda: tf.image.stateless_random_jpeg_quality(
            x, cfg.jpeg_quality[0], cfg.jpeg_quality[1], s[13]
        ),
        lambda: x,
    )
    x = tf.reshape(tf.clip_by_value(x, 0.0, 1.0), shape)
    return tf.cast(tf.round(x * 255.0), tf.uint8)
