"""The decision set of the frame path, in one place: what :meth:`tla_edge.runtime.pipeline.Pipeline.process` can say about a frame.

``tla_edge.runtime.pipeline`` re-exports every name here (``pipeline.LIVE``,
``pipeline.LivenessResult``, ...). Only :data:`LIVE` is live; every other
decision fails closed.
"""

from __future__ import annotations

from typing import NamedTuple

from tla_edge.runtime.faces import FaceBox

LIVE = "live"
"""A usable face whose own score is at or above the threshold on this frame and on
the ``live_frames`` - 1 frames of the same face before it, with the smoothed
score at or above it too. The only decision with ``is_live`` True."""
PENDING = "pending"
"""A usable face whose own score is at or above the threshold, not live yet: fewer
than ``live_frames`` consecutive such frames (or the smoothed score still under
the threshold). Never live, and not a spoof: it becomes ``live`` if it holds."""
SPOOF = "spoof"
"""A usable face whose own score on this frame is under the threshold."""
NO_FACE = "no_face"
"""The detector found no face."""
FACE_TOO_SMALL = "face_too_small"
"""The largest face's box is smaller than ``min_face`` pixels."""
FACE_CUT_OFF = "face_cut_off"
"""More than ``max_cut_off`` of the face box lies outside the frame."""
FACE_ROTATED = "face_rotated"
"""The face is rolled beyond ``max_roll`` degrees (from the eye keypoints)."""
ERROR = "error"
"""The detector or the liveness model failed; :attr:`LivenessResult.error` says why."""
DECISIONS = (LIVE, PENDING, SPOOF, NO_FACE, FACE_TOO_SMALL, FACE_CUT_OFF, FACE_ROTATED, ERROR)
"""Every decision :meth:`tla_edge.runtime.pipeline.Pipeline.process` returns, each documented at its constant
above. Only :data:`LIVE` is live; every other decision fails closed."""
SCORED = (LIVE, PENDING, SPOOF)
"""Decisions with a liveness score: the system processed the presentation."""
NON_RESPONSES = (NO_FACE, FACE_TOO_SMALL, FACE_CUT_OFF, FACE_ROTATED, ERROR)
"""Decisions without a liveness score: the system did not process the presentation."""

STAGES = ("detect", "crop", "invoke", "total")


class LivenessResult(NamedTuple):
    """The pipeline's verdict on one frame."""

    decision: str
    """One of :data:`DECISIONS`; only ``"live"`` means live (``"pending"`` is not yet)."""
    is_live: bool
    """True only when a usable face scored at or above the threshold on this frame
    and on the ``live_frames`` - 1 frames before it."""
    score: float | None
    """Live probability averaged over recent frames of the same face (for display: the
    decision also needs this frame's own score and ``live_frames`` consecutive frames
    at or above the threshold); None without a score."""
    raw_score: float | None
    """This frame's own live probability; None without a score."""
    face: FaceBox | None
    """The face that was judged (the largest), or None."""
    faces: tuple[FaceBox, ...]
    """Every face the detector found."""
    timings: dict[str, float]
    """Milliseconds per stage: ``detect``, ``crop`` (crop + preprocess; members
    cutting their own crops concurrently: the longest), ``invoke`` (liveness
    models alone: the sum of their runs when sequential, from start to the last
    one's end, less that crop, when concurrent), ``total``; also
    ``detect_invoke`` when the detector reports it."""
    error: str | None = None
    """Why the decision is ``"error"``, else None."""


def decide(raw_score: float, threshold: float, is_live: bool) -> str:
    """The decision for a scored face: :data:`LIVE`, :data:`PENDING` or :data:`SPOOF`.

    Args:
      raw_score: this frame's own live probability.
      threshold: the decision threshold.
      is_live: whether the smoother (streak and mean) let this frame be live.
    """
    if is_live and raw_score >= threshold:
        return LIVE
    return PENDING if raw_score >= threshold else SPOOF
