"""Threshold rules and Clopper-Pearson intervals: the maths of ``tla-edge calibrate`` (NumPy only).

A frame is accepted iff its live score is at or above the threshold. The rules:

- ``bpcer``: the strictest threshold rejecting at most a fraction B of the
  bona fide frames (works on bona fide frames alone);
- ``apcer``: the most permissive threshold accepting at most a fraction A of
  each attack species;
- ``eer``: the threshold at the equal error rate.

Error rates come with an exact (Clopper-Pearson) interval over the frames.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from tla_edge import metrics
from tla_edge.errors import UserError

RULES = ("bpcer", "apcer", "eer")
DEFAULT_TARGET_BPCER = 0.01
DEFAULT_FLOOR = 0.1
DEFAULT_MAX_ERROR = 0.10
CAVEAT = (
    "intervals count frames as independent; frames of one person and one session are alike, "
    "so the true uncertainty is wider, closer to what the number of people allows"
)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i[:-1]) - np.log(i[1:])))) if k > 0 else np.zeros(1)
    logs = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def clopper_pearson(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial proportion.

    Args:
      errors: number of events (e.g. bona fide frames rejected), 0..n.
      n: number of trials, >= 1.
      confidence: e.g. 0.95.

    Returns:
      ``(lower, upper)`` in [0, 1].

    Raises:
      ValueError: ``n`` < 1, ``errors`` outside 0..n, or confidence outside (0, 1).
    """
    if n < 1 or not 0 <= errors <= n:
        raise ValueError(f"errors {errors} of n {n} is not a count in 0..n with n >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} is not in (0, 1)")
    tail = (1.0 - confidence) / 2.0

    def solve(f, level: float) -> float:  # f decreasing in p; the root of f(p) = level
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2.0
            if f(mid) > level:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    upper = 1.0 if errors == n else solve(lambda p: _binom_cdf(errors, n, p), tail)
    # lower: P(X >= errors; p) = tail, i.e. cdf(errors - 1; p) = 1 - tail
    lower = 0.0 if errors == 0 else solve(lambda p: _binom_cdf(errors - 1, n, p), 1.0 - tail)
    return lower, upper


def threshold_at_bpcer(real_scores: Sequence[float] | np.ndarray, target: float) -> float:
    """The highest threshold rejecting at most ``target`` of the bona fide scores.

    A frame is accepted iff ``score >= threshold``; the result is one of the
    scores, so exactly ``floor(target * n)`` or fewer (with ties) are rejected.

    Raises:
      ValueError: no scores, or ``target`` outside [0, 1).
    """
    s = np.sort(np.asarray(real_scores, np.float64).reshape(-1))
    if s.size == 0:
        raise ValueError("no bona fide scores; expected at least one")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"BPCER target {target!r} is not in [0, 1)")
    k = int(math.floor(target * s.size + 1e-9))
    return float(s[min(k, s.size - 1)])


def centre_in_gap(threshold: float, scores: Sequence[float] | np.ndarray) -> float:
    """Moves a threshold to the middle of the gap between the scores around it.

    The scores just below and at-or-above ``threshold`` bound an interval in
    which every threshold takes the same decisions on these frames; its middle
    keeps the same error rates on the recording and leaves a margin on both
    sides (a quantized model's scores pile up on a few values, and a threshold
    equal to one of them rejects a frame one step lower). Without a score on
    either side the threshold is returned as it is.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    above, below = s[s >= threshold], s[s < threshold]
    if above.size == 0 or below.size == 0:
        return float(threshold)
    hi, lo = float(above.min()), float(below.max())
    mid = (lo + hi) / 2.0
    return mid if lo < mid <= hi else hi


class Rate(NamedTuple):
    """An error rate measured on a recording, with its interval."""

    rate: float
    """Errors over trials."""
    errors: int
    """Frames wrongly decided."""
    n: int
    """Frames of that class scored."""
    ci: tuple[float, float]
    """Clopper-Pearson interval at the report's confidence."""


def error_rate(wrong: np.ndarray, confidence: float) -> Rate | None:
    """The :class:`Rate` of a boolean array of wrong decisions; None when it is empty."""
    n = int(wrong.size)
    if n == 0:
        return None
    k = int(wrong.sum())
    return Rate(k / n, k, n, clopper_pearson(k, n, confidence))


def choose_threshold(scores: np.ndarray, labels: np.ndarray, species: Sequence[str], rule: str, target: float | None) -> float:
    """The threshold of one rule (``bpcer``, ``apcer`` or ``eer``) on scored frames.

    Raises:
      UserError: the rule needs both classes and one is missing.
    """
    n_real, n_attack = int((labels == 1).sum()), int((labels == 0).sum())
    if rule == "bpcer":
        if n_real == 0:
            raise UserError(
                f"the calibration set has no bona fide frame with a usable face ({n_attack} attack frames); "
                "--target-bpcer needs bona fide (real) frames: record some with --label real"
            )
        return threshold_at_bpcer(scores[labels == 1], float(target))
    if n_real == 0 or n_attack == 0:
        have, missing = ("real", "attack") if n_attack == 0 else ("attack", "real")
        flag = "--at eer" if rule == "eer" else "--target-apcer"
        raise UserError(
            f"the calibration set has only {have} frames ({max(n_real, n_attack)}) and no {missing} frames; "
            f"{flag} needs both: record {missing} frames, or use --target-bpcer (bona fide only)"
        )
    if rule == "eer":
        return float(metrics.eer(scores, labels)[1])
    return float(metrics.threshold_at_apcer(scores, labels, species, float(target)))


def verdict(
    edge: float,
    rule: str,
    bpcer: Rate | None,
    apcer: Rate | None,
    auc: float | None,
    floor: float,
    max_error: float,
    threshold: float | None = None,
) -> list[str]:
    """Why no threshold serves; an empty list when the chosen one does.

    ``edge`` is the chosen threshold before :func:`centre_in_gap` (for the
    BPCER rule, the lowest bona fide score still accepted); ``threshold`` the
    one that would be written (None: ``edge``). Centring moves a threshold
    down, so the floor is checked on the lower of the two, and a threshold a
    model cannot hold (outside (0, 1): 1.0 makes no face live) never serves.
    """
    written = edge if threshold is None else threshold
    reasons = []
    if auc is not None and auc <= 0.5:
        reasons.append(f"bona fide frames score below the attack frames (AUC {auc:.3f} <= 0.5)")
    if min(edge, written) < floor:
        reasons.append(
            f"the threshold {min(edge, written):.4f} is below the floor {floor:g}: the model scores this camera's "
            "real faces as spoofs, and a threshold that low accepts most attacks"
        )
    if not 0.0 < written < 1.0:
        reasons.append(
            f"the threshold {written:.4f} is not strictly between 0 and 1 (at 1 no face is ever live): "
            "the scores leave no room for one, e.g. attacks scoring 1.0"
        )
    other = apcer if rule == "bpcer" else bpcer
    name = "APCER" if rule == "bpcer" else "BPCER"
    if other is not None and other.rate > max_error:
        reasons.append(f"{name} {other.rate:.1%} at this threshold exceeds --max-error {max_error:.0%}")
    return reasons


def resolve_rule(at: str | None = None, target_apcer: float | None = None,
                 target_bpcer: float | None = None) -> tuple[str, float | None]:
    """``(rule, target)`` from the mutually exclusive choices (``--at``, ``--target-apcer``, ``--target-bpcer``).

    ``at="eer"`` wins, then a ``target_apcer``; otherwise the BPCER rule at
    ``target_bpcer`` (None: :data:`DEFAULT_TARGET_BPCER`).

    Raises:
      UserError: a BPCER target of 1 or more.
    """
    if at == "eer":
        return "eer", None
    if target_apcer is not None:
        return "apcer", float(target_apcer)
    target = DEFAULT_TARGET_BPCER if target_bpcer is None else float(target_bpcer)
    if target >= 1.0:
        raise UserError(f"--target-bpcer {target:g} is not below 1; expected e.g. 0.01")
    return "bpcer", target
