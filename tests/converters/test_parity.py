"""The parity gate's maths on hand-made score arrays: Wilson bounds, crops clear of the threshold, verdicts.

No TensorFlow: :func:`tla_edge.converters.parity.compare` is NumPy over two
score arrays. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tla_edge.converters import parity as parity_lib
from tla_edge.converters.export import ParityGate
from tla_edge.errors import UserError
from tla_edge.runtime.metadata import ModelMetadata

THR = 0.957  # a high threshold, as the bundled model's (0.957)
META = ModelMetadata(threshold=THR, extra={"thresholds": {"eer": THR}})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


L_THR = math.log(THR / (1 - THR))  # 3.1030...


# --- Wilson interval ------------------------------------------------------------------------


@pytest.mark.parametrize("k,n,low,high", [
    # 9/10, z = 1.96: z^2 = 3.8416, denominator 1 + 0.38416 = 1.38416,
    # centre (0.9 + 0.19208) / 1.38416 = 0.78898,
    # half 1.96 / 1.38416 * sqrt(0.9 * 0.1 / 10 + 3.8416 / 400) = 1.41602 * 0.13640 = 0.19314
    (9, 10, 0.59585, 0.98212),
    # 2/4: centre 0.5, half 1.96 / 1.9604 * sqrt(0.0625 + 3.8416 / 64) = 0.99980 * 0.35003 = 0.34996
    (2, 4, 0.15004, 0.84996),
    # 50/100: centre 0.5, half 1.96 / 1.038416 * sqrt(0.0025 + 3.8416 / 40000) = 1.88749 * 0.050951 = 0.096170
    (50, 100, 0.40383, 0.59617),
    # 139/156 (89.1 %): centre (0.891026 + 0.012313) / 1.024626 = 0.881622,
    # half 1.96 / 1.024626 * sqrt(0.891026 * 0.108974 / 156 + 3.8416 / 97344) = 1.91289 * 0.025764 = 0.049284
    (139, 156, 0.83241, 0.93084),
    # 70/100: centre (0.7 + 0.019208) / 1.038416 = 0.692608,
    # half 1.88749 * sqrt(0.0021 + 0.00009604) = 1.88749 * 0.046862 = 0.088452
    (70, 100, 0.60416, 0.78105),
])
def test_wilson_interval_hand_computed(k, n, low, high):
    lo, hi = parity_lib.wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_ends():
    assert parity_lib.wilson_interval(0, 0) == (0.0, 1.0)  # nothing counted: anything is possible
    lo, hi = parity_lib.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + 1.959963984540054 ** 2))  # n / (n + z^2)
    assert parity_lib.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"wilson_interval needs 0 <= k <= n; got k=11, n=10"):
        parity_lib.wilson_interval(11, 10)


def test_logit_is_finite_at_saturated_scores():
    assert parity_lib.logit(0.5) == pytest.approx(0.0)
    assert parity_lib.logit(THR) == pytest.approx(L_THR)
    assert parity_lib.logit(np.array([0.0, 1.0])) == pytest.approx([-math.log(1e6 - 1), math.log(1e6 - 1)])


# --- a small recording with many near-threshold scores ------------------------------------------


def near_threshold_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """156 crops: 100 clear of the threshold, 56 bona fide within 0.2 logit of it.

    The converted model follows the float one to 0.1 logit on the clear crops,
    and moves 17 near-threshold crops 0.4 logit across the threshold: 139 of
    156 decisions agree (89.1 %), every clear one does.
    """
    attacks = np.linspace(-4.0, -1.5, 60)                    # scores 0.018 .. 0.18
    clear_real = np.linspace(5.3, 6.9, 40)                   # scores 0.995 .. 0.999
    near = L_THR + np.where(np.arange(56) % 2 == 0, 0.2, -0.2)
    float_logits = np.concatenate([attacks, clear_real, near])
    wiggle = np.where(np.arange(100) % 2 == 0, 0.1, -0.1)
    moved = near.copy()
    moved[:17] -= 0.4 * np.sign(near[:17] - L_THR)           # 17 crops pushed across the threshold
    conv_logits = np.concatenate([attacks + wiggle[:60], clear_real + wiggle[60:], moved])
    labels = np.concatenate([np.zeros(60), np.ones(96)]).astype(int)
    return sigmoid(float_logits), sigmoid(conv_logits), labels


def test_near_threshold_flips_on_a_small_set_are_not_degraded():
    a, b, y = near_threshold_set()
    r = parity_lib.compare(a, b, y, None, META)
    assert r.n == 156 and r.agreement == pytest.approx(139 / 156)  # 89.1 %: the old raw rule stopped here
    assert r.agreement < parity_lib.DEFAULT_MIN_AGREEMENT
    assert r.agreement_ci == pytest.approx((0.83241, 0.93084), abs=5e-5)  # its Wilson interval reaches 90 %
    assert r.n_clear == 100 and r.agreement_clear == 1.0
    assert r.pearson > 0.99
    assert r.degraded is None
    note = parity_lib.near_threshold_note(r)
    assert note == ("agreement 89.1% of 156 crops is under 90%, but on the 100 crops clear of the threshold it "
                    f"is 100.0% (95% interval up to 100.0%) and Pearson r is {r.pearson:.3f}: flips near the "
                    "threshold, judged not degraded")
    d = r.to_dict()
    assert d["verdict"] == "pass" and d["n_clear"] == 100 and d["criteria"]["min_pearson"] == 0.9


def test_no_crop_clear_of_the_threshold_leaves_the_scores_to_judge():
    a = sigmoid(L_THR + np.array([0.3, -0.3, 0.2, -0.2, 0.1, -0.1]))
    b = sigmoid(L_THR + np.array([-0.3, 0.3, -0.2, 0.2, -0.1, 0.1]))  # every decision flips, mirrored
    y = np.array([1, 0, 1, 0, 1, 0])
    r = parity_lib.compare(a, b, y, None, META, parity_lib.Criteria(min_score_std=0.001))  # std 0.009
    assert r.agreement == 0.0 and r.n_clear == 0 and math.isnan(r.agreement_clear)
    assert r.agreement_clear_ci == (0.0, 1.0) and r.to_dict()["agreement_clear"] is None
    assert r.pearson < -0.98  # mirrored in logits, nearly mirrored in scores
    assert r.degraded == f"its scores do not follow the float model's (Pearson r {r.pearson:.3f} < 0.9)"


# --- broken conversions are still caught ------------------------------------------------------------


def test_inverted_model_is_degraded_at_any_size():
    a, _, y = near_threshold_set()
    r = parity_lib.compare(a, 1.0 - a, y, None, META)
    assert r.pearson == pytest.approx(-1.0)
    assert "its scores do not follow the float model's (Pearson r -1.000 < 0.9)" in r.degraded
    assert "clear of the threshold" in r.degraded and r.to_dict()["verdict"] == "degraded"
    small = parity_lib.compare(a[::20], 1.0 - a[::20], y[::20], None, META)  # 8 crops
    assert small.n == 8 and small.degraded is not None


def test_constant_model_is_degraded():
    a, _, y = near_threshold_set()
    r = parity_lib.compare(a, np.full(a.size, 0.99), y, None, META)
    assert r.degraded.startswith("its scores barely vary (std 0.0000 < 0.01; float model ")
    assert "Pearson r undefined < 0.9" in r.degraded


def test_mismatched_model_is_degraded():
    a, _, y = near_threshold_set()
    other = np.random.default_rng(0).permutation(a)  # another model's scores on other crops
    r = parity_lib.compare(a, other, y, None, META)
    assert abs(r.pearson) < 0.3 and "do not follow" in r.degraded


def test_clear_crops_deciding_differently_are_degraded_even_when_scores_correlate():
    """70 of 100 clear crops agree: Wilson upper end 78.1 % < 90 %, although Pearson r stays above 0.9."""
    attacks = np.linspace(-6.0, -3.0, 50)
    real = np.linspace(6.0, 8.0, 50)
    float_logits = np.concatenate([attacks, real])
    conv_logits = float_logits.copy()
    conv_logits[50:80] = L_THR - 0.5  # 30 clear bona fide crops fall just under the threshold
    a, b = sigmoid(float_logits), sigmoid(conv_logits)
    y = np.array([0] * 50 + [1] * 50)
    r = parity_lib.compare(a, b, y, None, META)
    assert r.pearson >= 0.9 and r.n_clear == 100 and r.agreement_clear == pytest.approx(0.7)
    assert r.degraded == ("it agrees with the float model on 70.0% of 100 crops (< 90%), and on 70.0% of the "
                          "100 clear of the threshold (by 1 logit; 95% interval up to 78.1%)")


def test_criteria_are_checked():
    a, b, y = near_threshold_set()
    with pytest.raises(ValueError, match=r"parity criteria out of range: min_pearson 1.5 \(expected in \[-1, 1\]\), "
                                         r"margin_logit -1.0 \(expected >= 0\)"):
        parity_lib.compare(a, b, y, None, META, parity_lib.Criteria(min_pearson=1.5, margin_logit=-1.0))
    with pytest.raises(UserError, match=r"^parity criteria out of range: min_agreement 2 \(expected in \[0, 1\]\)$"):
        ParityGate(min_agreement=2).criteria()
    with pytest.raises(UserError, match=r"^parity mode 'lenient' is not one of enforce, report$"):
        ParityGate(mode="lenient").criteria()
    assert ParityGate().criteria() == parity_lib.Criteria(0.9, 0.01, 0.9, 1.0)
