"""Parity of a converted model with its Keras source, on the same validation crops.

The Keras model runs through ``model.predict`` and the converted one through
:class:`tla_edge.runtime.interpreter.LivenessModel`, the runtime's own wrapper, so the
figures describe what the device will compute. :func:`compare` is pure NumPy
over two score arrays; the metrics come from :mod:`tla_edge.metrics`.

When a converted model counts as degraded (:func:`degraded_reason`, the rule of
``tla-edge convert``'s parity gate), any of:

1. **collapsed**: its scores barely vary (standard deviation under
   ``min_score_std``): a constant output decides nothing.
2. **scores that do not follow**: the Pearson correlation of its scores with
   the float model's, crop by crop, is under ``min_pearson`` (0.9; healthy
   int8 conversions of the project's models reach 0.99 and more, an inverted
   or mismatched model sits near -1 or 0). This is judged on every crop,
   the near-threshold ones included, and does not depend on the threshold.
3. **decisions that differ beyond noise**: decision agreement at the source
   threshold is counted on the crops *clear of the threshold*, those whose
   float score lies at least ``margin_logit`` (1.0) from it in logit units
   (odds at least e times the threshold's odds, or below 1/e of them), and
   the model is degraded only when the upper end of the 95 % Wilson interval
   of that agreement is under ``min_agreement`` (0.9).

Why not the raw agreement on every crop, as before: on a small recording
(a few hundred crops of a few held-out people, often with many bona fide
scores just above a high threshold), int8 rounding flips crops the float
model itself is unsure of: the project's models output a logit, which int8
stores with a fixed step, so conversion noise is additive in logit units and
a crop near the threshold's logit flips without anything being wrong. The
threshold of an int8 model is re-derived on its own scores anyway. A flip on
a crop far from the threshold, by contrast, is what a broken conversion
does, and the interval keeps one unlucky person from deciding: 139 of 156
crops (89.1 %) has a Wilson upper end of 93.0 %, so it passes, while 70 of
100 (upper end 78.1 %) or an inverted model fails at any size. A broken
conversion (constant, inverted, mismatched output) fails rule 1 or 2 on any
number of crops, and rule 3 as soon as a handful of crops are clear of the
threshold. The raw agreement is still reported, and printed when it is
under ``min_agreement``, so a near-threshold model is never silent.
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
"""Agreement on the crops clear of the threshold whose interval must reach this."""
DEFAULT_MIN_SCORE_STD = 0.01
"""Converted scores varying less: collapsed."""
DEFAULT_MIN_PEARSON = 0.9
"""Score correlation with the float model under this: the scores do not follow it."""
DEFAULT_MARGIN_LOGIT = 1.0
"""A crop is clear of the threshold when its float logit is at least this far from the threshold's."""
WILSON_Z = 1.959963984540054
"""Normal quantile of a two-sided 95 % interval."""
_LOGIT_CLIP = 1e-6


class Criteria(NamedTuple):
    """When a converted model counts as degraded (see the module's docstring)."""

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    """The Wilson upper end of agreement on clear crops must reach this."""
    min_score_std: float = DEFAULT_MIN_SCORE_STD
    """Converted scores varying less: collapsed."""
    min_pearson: float = DEFAULT_MIN_PEARSON
    """Score correlation under this: the scores do not follow the float model's."""
    margin_logit: float = DEFAULT_MARGIN_LOGIT
    """Logit distance from the threshold beyond which a crop counts for the decision check."""

    def check(self) -> "Criteria":
        """Returns itself.

        Raises:
          ValueError: a value out of range, named with what was expected.
        """
        bad = []
        if not 0.0 <= self.min_agreement <= 1.0:
            bad.append(f"min_agreement {self.min_agreement!r} (expected in [0, 1])")
        if not self.min_score_std >= 0.0:
            bad.append(f"min_score_std {self.min_score_std!r} (expected >= 0)")
        if not -1.0 <= self.min_pearson <= 1.0:
            bad.append(f"min_pearson {self.min_pearson!r} (expected in [-1, 1])")
        if not self.margin_logit >= 0.0:
            bad.append(f"margin_logit {self.margin_logit!r} (expected >= 0)")
        if bad:
            raise ValueError("parity criteria out of range: " + ", ".join(bad))
        return self


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
    agreement_ci: tuple[float, float]
    """95 % Wilson interval of ``agreement`` (every crop)."""
    n_clear: int
    """Crops whose float score is at least ``criteria.margin_logit`` from the threshold, in logits."""
    agreement_clear: float
    """Decision agreement at the source threshold on those crops (NaN when there are none)."""
    agreement_clear_ci: tuple[float, float]
    """Its 95 % Wilson interval ((0, 1) when there are none)."""
    criteria: Criteria
    """The rule the verdict was reached by."""
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
            "agreement_ci": list(self.agreement_ci),
            "n_clear": self.n_clear,
            "agreement_clear": _finite(self.agreement_clear),
            "agreement_clear_ci": list(self.agreement_clear_ci),
            "criteria": self.criteria._asdict(),
            "verdict": "degraded" if self.degraded else "pass",
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


def wilson_interval(k: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` (95 % two-sided by default).

    Chosen over the normal (Wald) interval, which collapses to a point at 0 or
    ``n`` successes, and over the exact (Clopper-Pearson) one, which is
    conservative, i.e. lenient as a gate; Wilson's coverage stays near the
    nominal level at proportions near 0.9 and small ``n``.

    Returns:
      ``(low, high)`` within [0, 1]; ``(0.0, 1.0)`` when ``n`` is 0.

    Raises:
      ValueError: ``k`` outside ``[0, n]``.
    """
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n; got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def logit(p: np.ndarray | float) -> np.ndarray:
    """``log(p / (1 - p))``, with ``p`` clipped to [1e-6, 1 - 1e-6] (saturated scores stay finite)."""
    q = np.clip(np.asarray(p, np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(q) - np.log1p(-q)


def compare(
    float_scores: np.ndarray,
    converted_scores: np.ndarray,
    labels: np.ndarray,
    species: Sequence[str] | None,
    meta: ModelMetadata,
    criteria: Criteria = Criteria(),
) -> ParityReport:
    """Compares two models' scores on the same crops.

    Args:
      float_scores: the Keras model's P(live), ``(N,)``.
      converted_scores: the converted model's P(live), ``(N,)``.
      labels: 1 bona fide, 0 attack, ``(N,)``.
      species: attack species per crop (None: all ``"attack"``).
      meta: the source model's metadata (threshold and threshold rules).
      criteria: when the converted model counts as degraded.

    Returns:
      The :class:`ParityReport`.

    Raises:
      ValueError: the arrays differ in length or are empty, or a criterion is out of range.
    """
    criteria.check()
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
    same = (a >= thr) == (b >= thr)
    clear = np.abs(logit(a) - logit(thr)) >= criteria.margin_logit
    n_clear, k_clear = int(clear.sum()), int(same[clear].sum())
    diff = np.abs(a - b)
    report = ParityReport(
        n=int(a.size),
        n_real=int((y == 1).sum()),
        n_attack=int((y == 0).sum()),
        pearson=pearson,
        agreement=float(np.mean(same)),
        agreement_own=float(np.mean((a >= thr) == (b >= own_thr))),
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
        agreement_ci=wilson_interval(int(same.sum()), int(a.size)),
        n_clear=n_clear,
        agreement_clear=k_clear / n_clear if n_clear else float("nan"),
        agreement_clear_ci=wilson_interval(k_clear, n_clear),
        criteria=criteria,
        degraded=None,
    )
    return report._replace(degraded=degraded_reason(report))


def degraded_reason(report: ParityReport) -> str | None:
    """Says why a converted model counts as degraded by ``report.criteria``, or None.

    The three rules (collapse, score correlation, decisions on the crops clear
    of the threshold judged with their Wilson interval) and why they are these
    are in the module's docstring.
    """
    c = report.criteria
    problems = []
    if report.converted_std < c.min_score_std:
        problems.append(
            f"its scores barely vary (std {report.converted_std:.4f} < {c.min_score_std:g}; "
            f"float model {report.float_std:.4f})"
        )
    follows = math.isfinite(report.pearson) and report.pearson >= c.min_pearson
    if report.float_std > 0 and not follows:
        r = "undefined" if not math.isfinite(report.pearson) else f"{report.pearson:.3f}"
        problems.append(f"its scores do not follow the float model's (Pearson r {r} < {c.min_pearson:g})")
    if report.agreement_clear_ci[1] < c.min_agreement:
        problems.append(
            f"it agrees with the float model on {report.agreement:.1%} of {report.n} crops "
            f"(< {c.min_agreement:.0%}), and on {report.agreement_clear:.1%} of the {report.n_clear} "
            f"clear of the threshold (by {c.margin_logit:g} logit; 95% interval up to "
            f"{report.agreement_clear_ci[1]:.1%})"
        )
    return "; ".join(problems) or None


def near_threshold_note(report: ParityReport) -> str | None:
    """A line for a model that passes although its raw agreement is under the minimum, else None."""
    c = report.criteria
    if report.degraded or report.agreement >= c.min_agreement:
        return None
    clear = ("no crop is clear of the threshold" if not report.n_clear else
             f"on the {report.n_clear} crops clear of the threshold it is {report.agreement_clear:.1%} "
             f"(95% interval up to {report.agreement_clear_ci[1]:.1%})")
    return (f"agreement {report.agreement:.1%} of {report.n} crops is under {c.min_agreement:.0%}, but "
            f"{clear} and Pearson r is {report.pearson:.3f}: flips near the threshold, judged not degraded")


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
