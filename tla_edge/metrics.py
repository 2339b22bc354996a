"""Presentation attack detection metrics (ISO/IEC 30107-3), NumPy only.

Conventions: ``scores`` are P(live) in [0, 1] (higher means more live);
``labels`` are 1 for bona fide (real, live) and 0 for attacks; a sample is
*accepted as live* iff ``score >= threshold``. ``species`` names the attack
instrument species of each sample (``"print"``, ``"replay"``, ...); it is
ignored for bona fide samples.

- APCER of a species: the fraction of its attacks accepted as live.
  ISO/IEC 30107-3 reports the worst species: ``apcer = max over species``.
- BPCER: the fraction of bona fide samples rejected.
- ACER = (APCER_max + BPCER) / 2 (common in the literature; the standard itself
  prefers reporting APCER and BPCER separately).
- HTER = (FAR + FRR) / 2 with every attack pooled (FAR) and FRR = BPCER.
- EER: where the pooled FAR(t) and FRR(t) curves cross. The curves are
  evaluated at every distinct score plus one threshold just above the
  highest score, and the crossing is linearly interpolated between the two
  consecutive thresholds where FAR - FRR changes sign (the same interpolation
  gives the EER threshold). Exact crossings need no interpolation.
- AUC: the probability that a bona fide sample scores above an attack, ties
  counted one half (the Mann-Whitney statistic, from average ranks).
- BPCER at APCER = x: BPCER at the lowest threshold whose (worst-species)
  APCER is <= x, i.e. the most permissive threshold meeting the attack target
  (``threshold_at_apcer``). ``bpcer_at_apcer`` keys are ``apcer_1``,
  ``apcer_5``, ``apcer_10`` for 1 %, 5 %, 10 %.
- Precision, recall and F1 are those of the live class (live = positive);
  a ratio whose denominator is zero is reported as 0.0.
- Confusion matrix ``[[TN, FP], [FN, TP]]``: rows true attack / true live,
  columns predicted attack / predicted live.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

APCER_TARGETS = {"apcer_1": 0.01, "apcer_5": 0.05, "apcer_10": 0.10}
DEFAULT_SPECIES = "attack"


def check_inputs(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    species: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates and converts inputs.

    Returns:
      ``(scores float64, labels int64, species str array)``; missing species
      become :data:`DEFAULT_SPECIES`, bona fide species ``""``.

    Raises:
      ValueError: shapes differ, labels are not 0/1, or a score is not finite.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels; expected one label per score")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite; expected numbers in [0, 1]")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = sorted(set(np.unique(y).tolist()) - {0, 1})
        raise ValueError(f"labels {bad[:5]} are not 0 (attack) or 1 (bona fide)")
    y = y.astype(np.int64)
    if species is None:
        sp = np.array([DEFAULT_SPECIES] * s.size, dtype=object)
    else:
        sp = np.array([str(v) if v else DEFAULT_SPECIES for v in species], dtype=object)
        if sp.size != s.size:
            raise ValueError(f"{sp.size} species for {s.size} scores; expected one per score")
    sp[y == 1] = ""
    return s, y, sp


def _need_both(y: np.ndarray) -> None:
    n_live, n_attack = int((y == 1).sum()), int((y == 0).sum())
    if n_live == 0 or n_attack == 0:
        raise ValueError(
            f"{n_live} bona fide and {n_attack} attack samples; expected at least one of each"
        )


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def apcer_per_species(scores, labels, species, threshold: float) -> dict[str, float]:
    """Fraction of each species' attacks accepted as live (``score >= threshold``)."""
    s, y, sp = check_inputs(scores, labels, species)
    out = {}
    for name in sorted(set(sp[y == 0].tolist())):
        mask = (y == 0) & (sp == name)
        out[name] = _ratio((s[mask] >= threshold).sum(), mask.sum())
    return out


def bpcer(scores, labels, threshold: float) -> float:
    """Fraction of bona fide samples rejected (``score < threshold``); 0.0 without any."""
    s, y, _ = check_inputs(scores, labels)
    return _ratio((s[y == 1] < threshold).sum(), (y == 1).sum())


def far(scores, labels, threshold: float) -> float:
    """Fraction of all attacks (pooled) accepted as live; 0.0 without any."""
    s, y, _ = check_inputs(scores, labels)
    return _ratio((s[y == 0] >= threshold).sum(), (y == 0).sum())


def confusion_matrix(scores, labels, threshold: float) -> list[list[int]]:
    """``[[TN, FP], [FN, TP]]`` with live as the positive class."""
    s, y, _ = check_inputs(scores, labels)
    pred = s >= threshold
    tn = int(((y == 0) & ~pred).sum())
    fp = int(((y == 0) & pred).sum())
    fn = int(((y == 1) & ~pred).sum())
    tp = int(((y == 1) & pred).sum())
    return [[tn, fp], [fn, tp]]


def candidate_thresholds(scores) -> np.ndarray:
    """Every distinct score, ascending, plus one threshold just above the highest.

    At the first every sample is accepted; at the last none is.
    """
    u = np.unique(np.asarray(scores, np.float64))
    if u.size == 0:
        return np.array([0.0])
    return np.append(u, np.nextafter(u[-1], np.inf))


class RocCurve(NamedTuple):
    """Pooled error rates at every candidate threshold (ascending thresholds)."""

    thresholds: np.ndarray
    """Ascending thresholds (see :func:`candidate_thresholds`)."""
    far: np.ndarray
    """Attacks accepted at each threshold (non-increasing)."""
    frr: np.ndarray
    """Bona fide rejected at each threshold (non-decreasing); equals BPCER."""


def roc_curve(scores, labels) -> RocCurve:
    """FAR and FRR at every candidate threshold.

    Raises:
      ValueError: bad inputs or a class is missing.
    """
    s, y, _ = check_inputs(scores, labels)
    _need_both(y)
    t = candidate_thresholds(s)
    live = np.sort(s[y == 1])
    attack = np.sort(s[y == 0])
    # searchsorted 'left' counts samples strictly below t, i.e. rejected at t.
    frr = np.searchsorted(live, t, side="left") / live.size
    far_ = 1.0 - np.searchsorted(attack, t, side="left") / attack.size
    return RocCurve(t, far_, frr)


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and its threshold, interpolated on the ROC (see the module doc).

    Returns:
      ``(eer, threshold)``.

    Raises:
      ValueError: bad inputs or a class is missing.
    """
    roc = roc_curve(scores, labels)
    d = roc.far - roc.frr  # starts at 1 (all accepted), ends at -1 (all rejected)
    exact = np.flatnonzero(d == 0)
    if exact.size:
        # Every threshold in (t[i0 - 1], t[i1]] gives these rates (classes that
        # separate leave a gap). Take the middle of that interval, not its edge:
        # at the edge the least live-looking bona fide sample sits on the
        # threshold, and any new one a little lower is rejected.
        i0, i1 = int(exact[0]), int(exact[-1])
        thr = roc.thresholds[i1] if i0 == 0 else _midpoint(roc.thresholds[i0 - 1], roc.thresholds[i1])
        return float(roc.far[i0]), float(thr)
    i = int(np.flatnonzero((d[:-1] > 0) & (d[1:] < 0))[0])
    a = d[i] / (d[i] - d[i + 1])
    rate = roc.far[i] + a * (roc.far[i + 1] - roc.far[i])
    thr = roc.thresholds[i] + a * (roc.thresholds[i + 1] - roc.thresholds[i])
    return float(rate), float(thr)


def _midpoint(lo: float, hi: float) -> float:
    """Middle of (lo, hi]: in logit space when both are probabilities in (0, 1), else arithmetic."""
    if 0.0 < lo < 1.0 and 0.0 < hi < 1.0:
        z = (np.log(lo / (1.0 - lo)) + np.log(hi / (1.0 - hi))) / 2.0
        return float(1.0 / (1.0 + np.exp(-z)))
    return float((lo + hi) / 2.0)


def auc(scores, labels) -> float:
    """Area under the ROC: P(bona fide score > attack score), ties counting one half.

    Raises:
      ValueError: bad inputs or a class is missing.
    """
    s, y, _ = check_inputs(scores, labels)
    _need_both(y)
    ranks = average_ranks(s)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the mean of their ranks."""
    x = np.asarray(x, np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each group of equal values
    starts = ends - counts + 1
    return ((starts + ends) / 2.0)[inverse]


def threshold_at_apcer(scores, labels, species=None, target: float = 0.05) -> float:
    """The lowest threshold whose worst-species APCER is <= ``target``.

    The lowest such threshold rejects the fewest bona fide samples. Candidate
    thresholds are the distinct scores plus one just above the highest (where
    APCER is 0), so one always exists.

    Raises:
      ValueError: bad inputs, a class is missing, or ``target`` outside [0, 1].
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"APCER target {target!r} is not in [0, 1]")
    s, y, sp = check_inputs(scores, labels, species)
    _need_both(y)
    t = candidate_thresholds(s)
    worst = np.zeros_like(t)
    for name in set(sp[y == 0].tolist()):
        a = np.sort(s[(y == 0) & (sp == name)])
        worst = np.maximum(worst, 1.0 - np.searchsorted(a, t, side="left") / a.size)
    ok = np.flatnonzero(worst <= target + 1e-12)
    return float(t[ok[0]])


def bpcer_at_apcer(scores, labels, species=None, targets: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """BPCER at the thresholds meeting each APCER target.

    Returns:
      ``{"apcer_5": {"target": 0.05, "threshold": t, "apcer": achieved, "bpcer": b}, ...}``.
    """
    out = {}
    for key, target in (targets or APCER_TARGETS).items():
        thr = threshold_at_apcer(scores, labels, species, target)
        per = apcer_per_species(scores, labels, species, thr)
        out[key] = {
            "target": target,
            "threshold": thr,
            "apcer": max(per.values()) if per else 0.0,
            "bpcer": bpcer(scores, labels, thr),
        }
    return out


def error_rates(scores, labels, species=None, threshold: float = 0.5) -> dict[str, Any]:
    """Threshold metrics that stay defined when one class is absent (e.g. one session).

    Returns:
      ``n_real``, ``n_attack``, ``apcer`` (None without attacks),
      ``apcer_per_species``, ``bpcer`` (None without bona fide), ``acer``
      (None unless both), ``accuracy``, ``confusion_matrix``.
    """
    s, y, sp = check_inputs(scores, labels, species)
    n_real, n_attack = int((y == 1).sum()), int((y == 0).sum())
    per = apcer_per_species(s, y, sp, threshold) if n_attack else {}
    apcer = max(per.values()) if per else None
    b = bpcer(s, y, threshold) if n_real else None
    cm = confusion_matrix(s, y, threshold)
    return {
        "n_real": n_real,
        "n_attack": n_attack,
        "threshold": float(threshold),
        "apcer": apcer,
        "apcer_per_species": per,
        "bpcer": b,
        "acer": (apcer + b) / 2.0 if apcer is not None and b is not None else None,
        "accuracy": _ratio(cm[0][0] + cm[1][1], s.size),
        "confusion_matrix": cm,
    }


def compute_metrics(scores, labels, species=None, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric of the module at one threshold, plus the threshold-free ones.

    Args:
      scores: P(live) per sample.
      labels: 1 bona fide, 0 attack.
      species: attack species per sample (None: every attack is ``"attack"``).
      threshold: accept as live iff ``score >= threshold``.

    Returns:
      A JSON-ready dict with ``threshold``, ``n_real``, ``n_attack``,
      ``apcer`` (worst species), ``apcer_per_species``, ``apcer_pooled``,
      ``bpcer``, ``acer``, ``far``, ``frr``, ``hter``, ``eer``,
      ``eer_threshold``, ``auc``, ``accuracy``, ``precision``, ``recall``,
      ``f1``, ``confusion_matrix`` and ``bpcer_at_apcer``.

    Raises:
      ValueError: bad inputs, or fewer than one sample of either class.
    """
    s, y, sp = check_inputs(scores, labels, species)
    _need_both(y)
    base = error_rates(s, y, sp, threshold)
    (tn, fp), (fn, tp) = base["confusion_matrix"]
    far_ = _ratio(fp, tn + fp)
    frr = _ratio(fn, fn + tp)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    eer_rate, eer_thr = eer(s, y)
    return {
        "threshold": float(threshold),
        "n_real": base["n_real"],
        "n_attack": base["n_attack"],
        "apcer": base["apcer"],
        "apcer_per_species": base["apcer_per_species"],
        "apcer_pooled": far_,
        "bpcer": base["bpcer"],
        "acer": base["acer"],
        "far": far_,
        "frr": frr,
        "hter": (far_ + frr) / 2.0,
        "eer": eer_rate,
        "eer_threshold": eer_thr,
        "auc": auc(s, y),
        "accuracy": base["accuracy"],
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "confusion_matrix": base["confusion_matrix"],
        "bpcer_at_apcer": bpcer_at_apcer(s, y, sp),
    }


# --- non-response (ISO/IEC 30107-3) --------------------------------------------

NON_RESPONSE_REASONS = ("no_face", "face_too_small", "face_cut_off", "face_rotated", "error")
"""Why a presentation got no liveness score: the system did not process it."""


def non_response_rates(labels, reasons: Sequence[str | None]) -> dict[str, dict[str, Any]]:
    """Attack and bona fide presentation non-response rates, overall and by reason.

    Args:
      labels: 1 bona fide, 0 attack, per presentation.
      reasons: per presentation, None when it was processed (scored), else
        why not (e.g. one of :data:`NON_RESPONSE_REASONS`).

    Returns:
      ``{"attack": {...}, "bona_fide": {...}}``, each with ``presentations``,
      ``non_responses``, ``rate`` (non-responses / presentations; 0.0 without
      presentations) and ``by_reason`` (``{reason: {"count", "rate"}}`` for every
      reason of :data:`NON_RESPONSE_REASONS` and any other seen).

    Raises:
      ValueError: lengths differ or labels are not 0/1.
    """
    y = np.asarray(labels).reshape(-1)
    if y.size != len(reasons):
        raise ValueError(f"{len(reasons)} reasons for {y.size} labels; expected one per label")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]} are not 0 (attack) or 1 (bona fide)")
    seen = sorted({r for r in reasons if r is not None} - set(NON_RESPONSE_REASONS))
    out = {}
    for name, value in (("attack", 0), ("bona_fide", 1)):
        mine = [r for r, v in zip(reasons, y) if v == value]
        n = len(mine)
        by = {reason: sum(1 for r in mine if r == reason) for reason in (*NON_RESPONSE_REASONS, *seen)}
        k = sum(1 for r in mine if r is not None)
        out[name] = {
            "presentations": n,
            "non_responses": k,
            "rate": _ratio(k, n),
            "by_reason": {r: {"count": c, "rate": _ratio(c, n)} for r, c in by.items()},
        }
    return out


def end_to_end_rates(scores, labels, species, processed, threshold: float) -> dict[str, Any]:
    """APCER, BPCER and ACER over every presentation, a non-response counting as a rejection.

    This is the system-level figure (what a door does), not the ISO/IEC
    30107-3 APCER/BPCER, which are over processed presentations only.

    Args:
      scores: P(live) per presentation; ignored where ``processed`` is False.
      labels: 1 bona fide, 0 attack.
      species: attack species per presentation (None: ``"attack"``).
      processed: True where the presentation got a score.
      threshold: accept iff processed and ``score >= threshold``.

    Returns:
      ``apcer`` (worst species), ``apcer_per_species``, ``bpcer``, ``acer``
      (None where a class is absent), ``n_real``, ``n_attack``.
    """
    done = np.asarray(processed, bool).reshape(-1)
    s = np.where(done, np.nan_to_num(np.asarray(scores, np.float64).reshape(-1), nan=0.0), -np.inf)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    sp = np.array([str(v) if v else DEFAULT_SPECIES for v in (species if species is not None else [None] * y.size)],
                  dtype=object)
    accepted = done & (s >= threshold)
    per = {name: _ratio((accepted & (y == 0) & (sp == name)).sum(), ((y == 0) & (sp == name)).sum())
           for name in sorted(set(sp[y == 0].tolist()))}
    apcer = max(per.values()) if per else None
    b = _ratio((~accepted & (y == 1)).sum(), (y == 1).sum()) if (y == 1).any() else None
    return {
        "threshold": float(threshold),
        "n_real": int((y == 1).sum()),
        "n_attack": int((y == 0).sum()),
        "apcer": apcer,
        "apcer_per_species": per,
        "bpcer": b,
        "acer": (apcer + b) / 2.0 if apcer is not None and b is not None else None,
    }
