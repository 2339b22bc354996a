"""Simulated presentation attacks: a real face crop re-rendered as a print or a screen replay, then re-captured.

    from tla_edge.train.simulate import simulate_print, simulate_replay, add_simulated_attacks

``tla-edge train --simulated-attacks F`` adds, for a fraction F of the real
training crops, one simulated attack each (half prints, half replays, chosen
by the seed), labelled attack; validation is untouched, so the kept epoch and
the threshold are still chosen on real attacks only. NumPy and OpenCV; every
random choice comes from one ``numpy.random.Generator``.

What each step stands for (the crop is RGB uint8, treated as linear-ish [0, 1]):

Print (an inkjet or laser print of the face, photographed):
  * **CMYK gamut round trip**: ink cannot reach the camera's saturated
    colours or deep blacks; saturation is compressed and the black point
    lifted (paper reflects 5-12 % where the screen of the original was black).
  * **paper tone**: the paper's white is not the scene's white; a slightly
    warm or cool tint multiplies the picture.
  * **halftone**: ink is laid as dots on a screen (e.g. 45 deg); a faint
    periodic modulation at 3-6 px, mostly lost again in the re-capture blur.
  * **re-capture**: the print is flat and lit once, so its shading is a smooth
    gradient across the sheet, and its detail is blurred by print and lens.

Replay (a phone or tablet screen showing the face, filmed):
  * **display gamma and gamut**: the screen's tone curve and its blue-ish white
    point (a gain per channel), with a raised black (backlight leakage).
  * **pixel grid**: the RGB sub-pixel stripes, a period-3 column pattern.
  * **moire**: the screen grid beats with the camera's sensor grid, a
    low-frequency sinusoid at a random angle.
  * **glare**: a reflection on the glass, an additive soft bright spot.

Blur, down-scaling and JPEG (both kinds) are left to the training
augmentation (:mod:`tla_edge.train.augment`), which every crop goes through.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

KINDS = ("print", "replay")


def _f(rgb: np.ndarray) -> np.ndarray:
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError("crop is not an (H, W, 3) uint8 RGB array")
    return rgb.astype(np.float32) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _saturation(x: np.ndarray, factor: float) -> np.ndarray:
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey[..., None] + factor * (x - grey[..., None])


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def simulate_print(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as a photographed print (see the module docstring); uint8 RGB of the same shape."""
    x = _f(rgb)
    h, w = x.shape[:2]
    # CMYK gamut: less saturation, lifted black, a little less contrast
    x = _saturation(x, rng.uniform(0.55, 0.85))
    black = rng.uniform(0.05, 0.12)
    x = black + (1.0 - black - rng.uniform(0.0, 0.08)) * np.clip(x, 0, 1)
    # paper tone
    x = x * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.86, 0.98)], np.float32)  # warm paper white
    # halftone screen at an angle
    yy, xx = _grid(h, w)
    period = rng.uniform(3.0, 6.0)
    angle = np.deg2rad(rng.choice([15.0, 45.0, 75.0]))
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * (2 * np.pi / period)
    x = x * (1.0 - rng.uniform(0.02, 0.07) * (0.5 + 0.25 * (np.cos(u) + np.cos(v))))[..., None]
    # flat sheet lit once: a smooth gradient; detail blurred by print and lens
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    shade = 1.0 + gx * (xx / max(w - 1, 1) - 0.5) + gy * (yy / max(h - 1, 1) - 0.5)
    x = x * shade[..., None]
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    return _u8(x)


def simulate_replay(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as a filmed screen replay (see the module docstring); uint8 RGB of the same shape."""
    x = _f(rgb)
    h, w = x.shape[:2]
    # display tone curve, blue-ish white point, backlight leakage
    x = np.power(np.clip(x, 0, 1), rng.uniform(0.75, 1.3))
    x = x * np.array([rng.uniform(0.88, 1.0), rng.uniform(0.95, 1.02), rng.uniform(1.0, 1.12)], np.float32)
    black = rng.uniform(0.03, 0.10)
    x = black + (1.0 - black) * x
    yy, xx = _grid(h, w)
    # sub-pixel stripes: columns lit R, G, B in turn
    stripes = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        stripes[:, c::3, c] = 1.0
    x = x * (1.0 - rng.uniform(0.03, 0.10) * (1.0 - stripes))
    # moire: screen grid beating with the sensor grid
    f = rng.uniform(0.03, 0.15)
    a = rng.uniform(0, np.pi)
    moire = np.cos(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 2 * np.pi))
    x = x * (1.0 + rng.uniform(0.03, 0.09) * moire)[..., None]
    # glare: a soft spot reflected on the glass (some replays have none)
    if rng.random() < 0.6:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.1, 0.35) * max(h, w)
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        x = x + rng.uniform(0.1, 0.35) * spot[..., None]
    return _u8(x)


SIMULATORS = {"print": simulate_print, "replay": simulate_replay}


class Simulated(NamedTuple):
    """Simulated attack crops and what they came from."""

    images: np.ndarray
    """``(N, H, W, 3)`` uint8."""
    kinds: list[str]
    """``"print"`` or ``"replay"`` per image."""
    source_rows: np.ndarray
    """Index of the real crop each was made from (in the array given)."""


def add_simulated_attacks(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> Simulated:
    """One simulated attack for each of ``round(fraction * n_real)`` real crops drawn without replacement.

    Args:
      images: ``(N, H, W, 3)`` uint8 training crops.
      labels: ``(N,)``, 1 real and 0 attack.
      fraction: in [0, 1]: the share of real crops that get a simulated twin.
      seed: seeds the draw and every simulation.

    Raises:
      ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"simulated-attack fraction {fraction!r} is not in [0, 1]")
    rng = np.random.default_rng(seed)
    real = np.flatnonzero(np.asarray(labels) == 1)
    n = int(round(fraction * len(real)))
    rows = np.sort(rng.choice(real, size=n, replace=False)) if n else np.zeros(0, np.int64)
    kinds = [KINDS[i % 2] for i in rng.permutation(n)] if n else []
    out = np.stack([SIMULATORS[k](images[r], rng) for r, k in zip(rows, kinds)]) if n else \
        np.zeros((0,) + images.shape[1:], np.uint8)
    return Simulated(out, kinds, rows)


def extend_training_part(data, fraction: float, seed: int):
    """A :class:`~tla_edge.train.split.TrainData` whose training part has the simulated attacks appended.

    The appended rows come after ``data.train_idx``'s (so per-row columns picked
    with ``data.pick(..., "train")`` still describe the first rows); validation
    is unchanged. ``summary["train"]["simulated_attacks"]`` counts them by kind.
    """
    if fraction <= 0:
        return data
    sim = add_simulated_attacks(data.x_train, data.y_train, fraction, seed)
    summary = dict(data.summary)
    summary["train"] = dict(summary["train"], simulated_attacks={
        "fraction_of_real": fraction, **{k: sim.kinds.count(k) for k in KINDS}})
    return data._replace(
        x_train=np.concatenate([data.x_train, sim.images]) if len(sim.images) else data.x_train,
        y_train=np.concatenate([data.y_train, np.zeros(len(sim.images), data.y_train.dtype)]),
        summary=summary,
    )
