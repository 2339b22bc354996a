"""Per-face smoothing of liveness scores, which can delay ``live`` but never grant it.

:class:`~tla_edge.runtime.pipeline.Pipeline` keeps one :class:`Smoother` per
stream; the decision it feeds is :func:`tla_edge.runtime.pipeline.decide`.
Both names are importable from :mod:`tla_edge.runtime.pipeline` too.
"""

from __future__ import annotations

import collections
import math
from typing import NamedTuple

from tla_edge.runtime.faces import FaceBox

DEFAULT_LIVE_FRAMES = 3
"""Consecutive frames of one face at or above the threshold before it is live."""


class Smoothed(NamedTuple):
    """What :meth:`Smoother.update` knows after one frame of a face."""

    score: float
    """Mean of the face's last ``window`` scores (for display; never grants live)."""
    streak: int
    """Consecutive frames of this face, up to and including this one, at or above the threshold."""
    is_live: bool
    """This frame's own score, the streak and the mean all pass: live."""


class Smoother:
    """Per-face smoothing that can delay ``live`` but never grant it.

    A face is live on a frame only when that frame's own score is at or
    above the threshold, the last ``live_frames`` consecutive frames of the
    same face (box IoU >= ``min_iou``) all were, and the mean of the last
    ``window`` scores is too. A swapped-in photo scoring under the threshold
    is never lifted by the live frames before it, and the first frame of a
    new face never decides alone when ``live_frames`` > 1. Resets when the
    face is lost or changes.

    Args:
      window: frames averaged for :attr:`Smoothed.score` (1: no averaging).
      min_iou: smallest box overlap with the previous frame's face that is
        still the same face.
      live_frames: consecutive frames at or above the threshold needed for live (K).
    """

    def __init__(self, window: int = 5, min_iou: float = 0.3, live_frames: int = DEFAULT_LIVE_FRAMES) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"smoothing window {window!r} is not an integer >= 1")
        if isinstance(live_frames, bool) or not isinstance(live_frames, int) or live_frames < 1:
            raise ValueError(f"live_frames {live_frames!r} is not an integer >= 1")
        self.window = window
        self.min_iou = min_iou
        self.live_frames = live_frames
        self._scores: collections.deque[float] = collections.deque(maxlen=window)
        self._face: FaceBox | None = None
        self._streak = 0

    def reset(self) -> None:
        """Forgets the current face, its scores and its streak."""
        self._scores.clear()
        self._face = None
        self._streak = 0

    def update(self, face: FaceBox, score: float, threshold: float) -> Smoothed:
        """Adds this frame's own ``score`` for ``face``; returns the smoothed state and decision."""
        if self._face is not None and face.iou(self._face) < self.min_iou:
            self._scores.clear()
            self._streak = 0
        self._face = face
        score = float(score)
        self._scores.append(score)
        self._streak = self._streak + 1 if score >= threshold else 0
        mean = math.fsum(self._scores) / len(self._scores)  # the correctly rounded sum: no order to depend on
        is_live = score >= threshold and self._streak >= self.live_frames and mean >= threshold
        return Smoothed(mean, self._streak, bool(is_live))
