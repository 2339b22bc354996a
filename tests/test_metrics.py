"""Metrics against small cases computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tla_edge import metrics

# Two species with different APCER, threshold 0.5.
#   live:   0.9 0.8 0.4          (0.4 rejected)
#   print:  0.7 0.3              (0.7 accepted)
#   replay: 0.2 0.1 0.55 0.05    (0.55 accepted)
TWO_SCORES = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1, 0.55, 0.05]
TWO_LABELS = [1, 1, 1, 0, 0, 0, 0, 0, 0]
TWO_SPECIES = ["", "", "", "print", "print", "replay", "replay", "replay", "replay"]


def test_two_species_with_different_apcer():
    m = metrics.compute_metrics(TWO_SCORES, TWO_LABELS, TWO_SPECIES, threshold=0.5)
    # APCER print = 1/2, replay = 1/4; the worst is reported.
    assert m["apcer_per_species"] == {"print": 0.5, "replay": 0.25}
    assert m["apcer"] == 0.5
    # BPCER = 1 of 3 bona fide rejected.
    assert m["bpcer"] == pytest.approx(1 / 3)
    # ACER = (0.5 + 1/3) / 2 = 5/12
    assert m["acer"] == pytest.approx(5 / 12)
    # pooled FAR = 2 of 6 attacks accepted; HTER = (1/3 + 1/3) / 2 = 1/3
    assert m["apcer_pooled"] == pytest.approx(1 / 3)
    assert m["far"] == pytest.approx(1 / 3)
    assert m["frr"] == pytest.approx(1 / 3)
    assert m["hter"] == pytest.approx(1 / 3)
    # TN 4 (0.3 0.2 0.1 0.05), FP 2 (0.7 0.55), FN 1 (0.4), TP 2 (0.9 0.8)
    assert m["confusion_matrix"] == [[4, 2], [1, 2]]
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    # F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    assert m["f1"] == pytest.approx(4 / 7)
    # AUC: 0.9 and 0.8 beat all 6 attacks, 0.4 beats 0.3 0.2 0.1 0.05 -> (6+6+4)/18
    assert m["auc"] == pytest.approx(16 / 18)
    # At t=0.55: FAR = 2/6 (0.55, 0.7), FRR = 1/3 (0.4): an exact crossing.
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["eer_threshold"] == pytest.approx(0.55)
    assert m["n_real"] == 3 and m["n_attack"] == 6
    assert m["threshold"] == 0.5
    json.dumps(m)  # JSON-ready


def test_bpcer_at_apcer_uses_the_worst_species():
    # APCER <= 5 % for both species needs t above 0.7; the lowest candidate is 0.8,
    # where 0.4 is rejected: BPCER 1/3.
    at = metrics.bpcer_at_apcer(TWO_SCORES, TWO_LABELS, TWO_SPECIES)
    assert set(at) == {"apcer_1", "apcer_5", "apcer_10"}
    assert at["apcer_5"] == {"target": 0.05, "threshold": 0.8, "apcer": 0.0, "bpcer": pytest.approx(1 / 3)}
    # Target 50 %: at t=0.4 print keeps 0.7 (1/2), replay keeps 0.55 (1/4): worst 1/2 <= 1/2;
    # at t=0.3 print would be 2/2. Nothing live is rejected at 0.4.
    assert metrics.threshold_at_apcer(TWO_SCORES, TWO_LABELS, TWO_SPECIES, 0.5) == 0.4
    half = metrics.bpcer_at_apcer(TWO_SCORES, TWO_LABELS, TWO_SPECIES, {"half": 0.5})["half"]
    assert half["apcer"] == 0.5 and half["bpcer"] == 0.0
    # Pooled, target 1/3 is met at 0.4 (2 of 6); per species print stays at 1/2
    # until 0.7 is rejected, so the lowest threshold is the next candidate, 0.8.
    assert metrics.threshold_at_apcer(TWO_SCORES, TWO_LABELS, None, 1 / 3) == 0.4
    assert metrics.threshold_at_apcer(TWO_SCORES, TWO_LABELS, TWO_SPECIES, 1 / 3) == 0.8


def test_ties_count_half_in_auc_and_accept_at_equality():
    # live 0.5 0.5 ; attack 0.5 0.2
    scores, labels = [0.5, 0.5, 0.5, 0.2], [1, 1, 0, 0]
    # pairs: (0.5,0.5) x2 ties -> 0.5 each; (0.5,0.2) x2 wins -> 1 each: (1 + 2) / 4
    assert metrics.auc(scores, labels) == pytest.approx(0.75)
    m = metrics.compute_metrics(scores, labels, threshold=0.5)
    # score >= threshold is live: the attack at 0.5 is accepted, no live is rejected.
    assert m["apcer"] == 0.5 and m["bpcer"] == 0.0
    assert m["apcer_per_species"] == {"attack": 0.5}
    # thresholds 0.2, 0.5, 0.5+: FAR 1, 1/2, 0; FRR 0, 0, 1; FAR-FRR 1, 1/2, -1.
    # Between 0.5 and 0.5+: a = 0.5 / 1.5 = 1/3, EER = 1/2 + 1/3 * (0 - 1/2) = 1/3.
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["eer_threshold"] == pytest.approx(0.5)


def test_all_correct():
    m = metrics.compute_metrics([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], ["", "", "print", "print"], 0.5)
    assert (m["apcer"], m["bpcer"], m["acer"], m["hter"]) == (0.0, 0.0, 0.0, 0.0)
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"], m["auc"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert m["confusion_matrix"] == [[2, 0], [0, 2]]
    # FAR-FRR at 0.1, 0.2, 0.8: 1, 1/2, 0 -> every threshold in (0.2, 0.8] gives 0;
    # the middle of that gap in logit space is logit^-1((logit .2 + logit .8) / 2) = 0.5
    assert m["eer"] == 0.0 and m["eer_threshold"] == pytest.approx(0.5)


def test_all_wrong():
    m = metrics.compute_metrics([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0], None, 0.5)
    assert (m["apcer"], m["bpcer"], m["acer"], m["hter"]) == (1.0, 1.0, 1.0, 1.0)
    # TP 0, FP 2: precision 0/2; recall 0/2; F1's denominator is 0 -> 0.0
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"], m["auc"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert m["confusion_matrix"] == [[0, 2], [2, 0]]
    # thresholds .1 .2 .8: FAR 1 1 1, FRR 0 1/2 1 -> exact crossing on (0.2, 0.8], EER 1, middle 0.5
    assert m["eer"] == 1.0 and m["eer_threshold"] == pytest.approx(0.5)


def test_single_species_and_missing_species_names():
    m = metrics.compute_metrics([0.9, 0.3, 0.6], [1, 0, 0], ["", "print", ""], 0.5)
    # an attack without a species name falls under "attack"
    assert m["apcer_per_species"] == {"attack": 1.0, "print": 0.0}
    assert m["apcer"] == 1.0
    m = metrics.compute_metrics([0.9, 0.3, 0.6], [1, 0, 0], ["", "print", "print"], 0.5)
    assert m["apcer_per_species"] == {"print": 0.5} and m["apcer"] == m["apcer_pooled"] == 0.5


def test_interpolated_eer():
    # live 0.8 0.6 ; attack 0.7 0.2 ; thresholds .2 .6 .7 .8 .8+
    # FAR:  1, 1/2, 1/2, 0, 0   FRR: 0, 0, 1/2, 1/2, 1   FAR-FRR: 1, 1/2, 0 -> exact on (0.6, 0.7],
    # whose middle in logit space is logit^-1((logit .6 + logit .7) / 2)
    rate, thr = metrics.eer([0.8, 0.6, 0.7, 0.2], [1, 1, 0, 0])
    assert rate == 0.5 and thr == pytest.approx(1 / (1 + np.sqrt((0.4 / 0.6) * (0.3 / 0.7))))
    # live 0.8 0.6 0.55 ; attack 0.7 0.2 ; thresholds .2 .55 .6 .7 .8 .8+
    # FAR: 1, 1/2, 1/2, 1/2, 0   FRR: 0, 0, 1/3, 2/3, 2/3
    # d:   1, 1/2, 1/6, -1/6  -> between 0.6 and 0.7, a = (1/6) / (1/3) = 1/2:
    # EER = 1/2 + 1/2 * 0 = 1/2, threshold = 0.6 + 1/2 * 0.1 = 0.65
    rate, thr = metrics.eer([0.8, 0.6, 0.55, 0.7, 0.2], [1, 1, 1, 0, 0])
    assert rate == pytest.approx(0.5) and thr == pytest.approx(0.65)


def test_roc_curve_and_ranks():
    roc = metrics.roc_curve([0.8, 0.6, 0.7, 0.2], [1, 1, 0, 0])
    np.testing.assert_allclose(roc.thresholds[:4], [0.2, 0.6, 0.7, 0.8])
    assert roc.thresholds[4] > 0.8
    np.testing.assert_allclose(roc.far, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(roc.frr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(metrics.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])


def test_error_rates_with_one_class():
    r = metrics.error_rates([0.9, 0.2, 0.6], [0, 0, 0], ["print"] * 3, 0.5)
    assert r["apcer"] == pytest.approx(2 / 3) and r["bpcer"] is None and r["acer"] is None
    r = metrics.error_rates([0.9, 0.2], [1, 1], None, 0.5)
    assert r["bpcer"] == 0.5 and r["apcer"] is None and r["n_attack"] == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        metrics.compute_metrics([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"labels \[2\] are not 0 \(attack\) or 1"):
        metrics.compute_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="1 scores are not finite"):
        metrics.compute_metrics([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="0 bona fide and 2 attack samples; expected at least one of each"):
        metrics.compute_metrics([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="APCER target 5 is not in"):
        metrics.threshold_at_apcer([0.1, 0.9], [0, 1], None, 5)


def test_eer_threshold_sits_in_the_middle_of_a_gap():
    """Separated classes: the EER threshold is the gap's middle in logit space, not the lowest bona fide score."""
    attack, live = [0.01, 0.1, 0.3], [0.97, 0.99, 0.999]
    rate, thr = metrics.eer(attack + live, [0, 0, 0, 1, 1, 1])
    expected = 1 / (1 + np.exp(-(np.log(0.3 / 0.7) + np.log(0.97 / 0.03)) / 2))  # ~0.786
    assert rate == 0.0 and thr == pytest.approx(expected) and 0.3 < thr < 0.97


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_roc_and_eer_agree_with_scikit_learn(seed):
    sk = pytest.importorskip("sklearn.metrics", reason="the cross-check needs scikit-learn (the 'dev' extra)")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).round(2)  # rounded: many ties
    assert metrics.auc(scores, labels) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thr = sk.roc_curve(labels, scores, drop_intermediate=False)
    roc = metrics.roc_curve(scores, labels)
    for f, t, th in zip(fpr[1:], tpr[1:], thr[1:]):  # sklearn accepts score >= th, as we do
        i = int(np.flatnonzero(roc.thresholds == th)[0])
        assert roc.far[i] == pytest.approx(f) and roc.frr[i] == pytest.approx(1 - t)
    # EER from scikit-learn's curve: where FPR and FNR cross, interpolated linearly
    fnr = 1 - tpr
    d = fpr - fnr  # thresholds descending: from -1 (none accepted) up to +1
    j = int(np.flatnonzero(np.diff(np.sign(d)) != 0)[0])
    if d[j + 1] == 0:
        expected = fpr[j + 1]
    else:
        a = d[j] / (d[j] - d[j + 1])
        expected = fpr[j] + a * (fpr[j + 1] - fpr[j])
    assert metrics.eer(scores, labels)[0] == pytest.approx(expected, abs=1e-12)


def test_non_response_rates_by_class_and_reason():
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    reasons = [None, "no_face", "no_face", "error", None, None, "face_rotated", None, "face_too_small"]
    nr = metrics.non_response_rates(labels, reasons)
    assert nr["attack"]["presentations"] == 4 and nr["attack"]["non_responses"] == 3
    assert nr["attack"]["rate"] == 0.75
    assert nr["attack"]["by_reason"]["no_face"] == {"count": 2, "rate": 0.5}
    assert nr["attack"]["by_reason"]["error"] == {"count": 1, "rate": 0.25}
    assert nr["attack"]["by_reason"]["face_rotated"] == {"count": 0, "rate": 0.0}
    assert nr["bona_fide"]["non_responses"] == 2 and nr["bona_fide"]["rate"] == 0.4
    assert nr["bona_fide"]["by_reason"]["face_rotated"] == {"count": 1, "rate": 0.2}
    assert nr["bona_fide"]["by_reason"]["face_too_small"] == {"count": 1, "rate": 0.2}
    assert list(nr["bona_fide"]["by_reason"]) == list(metrics.NON_RESPONSE_REASONS)
    with pytest.raises(ValueError, match=r"2 reasons for 3 labels"):
        metrics.non_response_rates([0, 1, 1], [None, None])


def test_end_to_end_counts_a_non_response_as_a_rejection():
    # attacks: print 0.9 (accepted), print missed by the detector, replay 0.2; bona fide: 0.8, 0.3, no face
    scores = [0.9, np.nan, 0.2, 0.8, 0.3, np.nan]
    labels = [0, 0, 0, 1, 1, 1]
    species = ["print", "print", "replay", "", "", ""]
    processed = [True, False, True, True, True, False]
    e = metrics.end_to_end_rates(scores, labels, species, processed, 0.5)
    assert e["apcer_per_species"] == {"print": 0.5, "replay": 0.0} and e["apcer"] == 0.5
    assert e["bpcer"] == pytest.approx(2 / 3) and e["acer"] == pytest.approx((0.5 + 2 / 3) / 2)
    # ISO over processed presentations only: print 1 of 1 accepted, BPCER 1 of 2
    done = np.array(processed)
    iso = metrics.error_rates(np.array(scores)[done], np.array(labels)[done],
                              [s for s, d in zip(species, done) if d], 0.5)
    assert iso["apcer_per_species"] == {"print": 1.0, "replay": 0.0} and iso["bpcer"] == 0.5
