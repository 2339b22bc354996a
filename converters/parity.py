"""Parity of a converted model with its Keras source, on the same validation crops.

The Keras model runs through ``model.predict`` and the converted one through
:class:`tla_edge.runtime.interpreter.LivenessModel`, the runtime's own wrapper, so the
figures describe what the device will compute. :func:`compare` is pure NumPy
over two score arrays; the metrics come from :mod:`tla_edge.metrics`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge import metrics
from tla_edge.runtime.metadata import ModelMetadata
from tla_edge.progress import Progress

DEFAULT_MIN_AGREEMENT = 0.9
DEFAULT_MIN_SCORE_STD = 0.01


class ParityReport(NamedTuple):
    """How closely a converted model follows its float source on the same crops."""

    n: int
    """Validation crops scored by both models."""
    n_real: int
    """Of which bona fide."""
    n_attack: int
    """Of which attacks."""
    pearson: float
    """Pearson correlation of the two score arrays (NaN when one is constant)."""
    agreement: float
    """Fraction of crops on which both models decide alike at the source threshold."""
    agreement_own: float
    """Same, with the converted model at its own re-derived threshold."""
    max_abs_diff: float
    """Largest absolute score difference."""
    mean_abs_diff: float
    """Mean absolute score difference."""
    float_std: float
    """Standard deviation of the float model's scores."""
    converted_std: float
    """Standard deviation of the converted model's scores."""
    threshold: float
    """The source model's threshold."""
    threshold_rule: str
    """How thresholds are derived: ``"eer"`` or ``"apcer_<target>"``."""
    converted_threshold: float
    """The converted model's threshold, re-derived on its own scores by ``threshold_rule``
    (the source threshold when the crops hold one class only)."""
    float_metrics: dict[str, Any] | None
    """ACER/EER/... of the float model at its threshold (None with one class)."""
    converted_metrics: dict[str, Any] | None
    """Same for the converted model at the source threshold."""
    converted_own_metrics: dict[str, Any] | None
    """Same for the converted model at its own threshold."""
    thresholds: dict[str, float]
    """The converted model's thresholds at every rule of the source's metadata."""
    degraded: str | None
    """Why the converted model counts as collapsed, or None."""

    @property
    def delta_acer(self) -> float | None:
        """Converted ACER (own threshold) minus float ACER, in fractions; None with one class."""
        if not self.float_metrics or not self.converted_own_metrics:
            return None
        return float(self.converted_own_metrics["acer"] - self.float_metrics["acer"])

    @property
    def delta_eer(self) -> float | None:
        """Converted EER minus float EER; None with one class."""
        if not self.float_metrics or not self.converted_metrics:
            return None
        return float(self.converted_metrics["eer"] - self.float_metrics["eer"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (metrics reduced to their headline numbers)."""

        def short(m: dict[str, Any] | None) -> dict[str, Any] | None:
            if m is None:
                return None
            keys = ("threshold", "apcer", "bpcer", "acer", "eer", "eer_threshold", "auc", "accuracy")
            return {k: _finite(m.get(k)) for k in keys}

        return {
            "n": self.n,
            "n_real": self.n_real,
            "n_attack": self.n_attack,
            "pearson": _finite(self.pearson),
            "agreement": self.agreement,
            "agreement_own_threshold": self.agreement_own,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "float_std": self.float_std,
            "converted_std": self.converted_std,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "converted_threshold": self.converted_threshold,
            "delta_acer": self.delta_acer,
            "delta_eer": self.delta_eer,
            "float": short(self.float_metrics),
            "converted": short(self.converted_metrics),
            "converted_own_threshold": short(self.converted_own_metrics),
            "thresholds": self.thresholds,
            "degraded": self.degraded,
        }


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def threshold_rule(meta: ModelMetadata) -> str:
    """Which named threshold of the source's ``extra["thresholds"]`` its ``threshold`` is.

    Returns:
      That name (``"eer"``, ``"apcer_0.05"``...), or ``"eer"`` when none matches.
    """
    named = (meta.extra or {}).get("thresholds") or {}
    for name, value in named.items():
        try:
            if abs(float(value) - float(meta.threshold)) <= 1e-9 and _rule_target(name) is not None:
                return str(name)
        except (TypeError, ValueError):
            continue
    return "eer"


def _rule_target(rule: str) -> float | None:
    """``"eer"`` -> 0.0 marker; ``"apcer_0.05"`` or ``"apcer_5"`` -> 0.05; None if unknown."""
    if rule == "eer":
        return 0.0
    if rule.startswith("apcer_"):
        try:
            v = float(rule[len("apcer_"):])
        except ValueError:
            return None
        return v / 100.0 if v > 1.0 else v
    return None


def derive_threshold(
    scores: np.ndarray, labels: np.ndarray, species: Sequence[str] | None, rule: str = "eer"
) -> float:
    """A threshold on ``scores`` by ``rule``: the EER point, or the lowest meeting an APCER target.

    Raises:
      ValueError: an unknown rule, or a class is missing.
    """
    target = _rule_target(rule)
    if target is None:
        raise ValueError(f"threshold rule {rule!r} is not 'eer' or 'apcer_<target>'")
    if rule == "eer":
        return float(metrics.eer(scores, labels)[1])
    return float(metrics.threshold_at_apcer(scores, labels, species, target))


def compare(
    float_scores: np.ndarray,
    converted_scores: np.ndarray,
    labels: np.ndarray,
    species: Sequence[str] | None,
    meta: ModelMetadata,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_score_std: float = DEFAULT_MIN_SCORE_STD,
) -> ParityReport:
    """Compares two models' scores on the same crops.

    Args:
      float_scores: the Keras model's P(live), ``(N,)``.
      converted_scores: the converted model's P(live), ``(N,)``.
      labels: 1 bona fide, 0 attack, ``(N,)``.
      species: attack species per crop (None: all ``"attack"``).
      meta: the source model's metadata (threshold and threshold rules).
      min_agreement: below this decision agreement the model is degraded.
      min_score_std: below this score standard deviation it is collapsed.

    Returns:
      The :class:`ParityReport`.

    Raises:
      ValueError: the arrays differ in length or are empty.
    """
    a = np.asarray(float_scores, np.float64).reshape(-1)
    b = np.asarray(converted_scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if not (a.size == b.size == y.size) or a.size == 0:
        raise ValueError(
            f"parity needs equal non-empty score arrays; got {a.size} float scores, "
            f"{b.size} converted scores and {y.size} labels"
        )
    thr = float(meta.threshold)
    rule = threshold_rule(meta)
    both = bool((y == 1).any() and (y == 0).any())
    float_m = conv_m = own_m = None
    thresholds: dict[str, float] = {}
    own_thr = thr
    if both:
        float_m = metrics.compute_metrics(a, y, species, thr)
        conv_m = metrics.compute_metrics(b, y, species, thr)
        names = list(((meta.extra or {}).get("thresholds") or {}).keys()) or ["eer"]
        for name in dict.fromkeys(["eer", *names]):
            if _rule_target(str(name)) is not None:
                thresholds[str(name)] = derive_threshold(b, y, species, str(name))
        own_thr = thresholds.get(rule, thresholds["eer"])
        own_m = metrics.compute_metrics(b, y, species, own_thr)
    pearson = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    agree = float(np.mean((a >= thr) == (b >= thr)))
    agree_own = float(np.mean((a >= thr) == (b >= own_thr)))
    diff = np.abs(a - b)
    report = ParityReport(
        n=int(a.size),
        n_real=int((y == 1).sum()),
        n_attack=int((y == 0).sum()),
        pearson=pearson,
        agreement=agree,
        agreement_own=agree_own,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        float_std=float(a.std()),
        converted_std=float(b.std()),
        threshold=thr,
        threshold_rule=rule,
        converted_threshold=float(own_thr),
        float_metrics=float_m,
        converted_metrics=conv_m,
        converted_own_metrics=own_m,
        thresholds=thresholds,
        degraded=None,
    )
    return report._replace(degraded=degraded_reason(report, min_agreement, min_score_std))


def degraded_reason(report: ParityReport, min_agreement: float, min_score_std: float) -> str | None:
    """Says why a converted model counts as collapsed, or None.

    Collapsed: its scores barely vary (std below ``min_score_std``) or it
    decides differently from the float model too often (agreement at the
    source threshold below ``min_agreement``).
    """
    problems = []
    if report.converted_std < min_score_std:
        problems.append(
            f"its scores barely vary (std {report.converted_std:.4f} < {min_score_std:g}; "
            f"float model {report.float_std:.4f})"
        )
    if report.agreement < min_agreement:
        problems.append(
            f"it agrees with the float model on {report.agreement:.1%} of {report.n} crops "
            f"(< {min_agreement:.0%})"
        )
    return "; ".join(problems) or None


# --- scoring ---------------------------------------------------------------------




def tflite_scores(
    model_path: str | Path,
    crops: np.ndarray,
    meta: ModelMetadata | None = None,
    desc: str = "parity tflite",
) -> np.ndarray:
    """P(live) of a ``.tflite`` model through :class:`tla_edge.runtime.interpreter.LivenessModel`.

    Args:
      model_path: the converted file.
      crops: ``(N, H, W, 3)`` uint8 RGB.
      meta: metadata to use (None: the file's own).
      desc: progress label.

    Returns:
      ``(N,)`` float64 scores.
    """
    from tla_edge.runtime.interpreter import LivenessModel

    model = LivenessModel(model_path, meta=meta)
    out = np.empty(len(crops), np.float64)
    with Progress(len(crops), desc, unit="img") as bar:
        for i, crop in enumerate(crops):
            out[i] = model.score(crop)
            bar.update()
    return out
