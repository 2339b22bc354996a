"""tla-edge calibrate: interval and threshold maths on hand-made scores, refusals, and the bundled model on NUAA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tla_edge import cli

from tla_edge import thresholds
from tla_edge.data import calibration, scoring

from tla_edge.data import datasets
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.errors import UserError

from conftest import nuaa_folder


# --- pure maths -------------------------------------------------------------------


def test_clopper_pearson_closed_forms_and_textbook_value():
    # no error in n: upper = 1 - (alpha/2)^(1/n); all errors: lower = (alpha/2)^(1/n)
    for n in (1, 10, 300):
        lo, hi = thresholds.clopper_pearson(0, n, 0.95)
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-9)
        lo, hi = thresholds.clopper_pearson(n, n, 0.95)
        assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / n), abs=1e-9)
    lo, hi = thresholds.clopper_pearson(5, 10, 0.95)  # the textbook 0.1871 - 0.8129
    assert (round(lo, 4), round(hi, 4)) == (0.1871, 0.8129)
    narrow = thresholds.clopper_pearson(5, 10, 0.80)
    assert lo < narrow[0] < narrow[1] < hi
    with pytest.raises(ValueError, match="is not a count"):
        thresholds.clopper_pearson(3, 2)


def test_threshold_at_bpcer_rejects_at_most_the_target():
    real = [0.9, 0.2, 0.5, 0.7, 0.3, 0.8, 0.6, 0.4, 0.95, 0.85]
    assert thresholds.threshold_at_bpcer(real, 0.0) == 0.2  # reject none
    assert thresholds.threshold_at_bpcer(real, 0.1) == 0.3  # reject exactly one
    assert thresholds.threshold_at_bpcer(real, 0.25) == 0.4  # floor(2.5) = 2 rejected
    tied = [0.5, 0.5, 0.5, 0.9]
    t = thresholds.threshold_at_bpcer(tied, 0.5)
    assert np.mean(np.array(tied) < t) <= 0.5  # ties are accepted together
    with pytest.raises(ValueError, match="not in"):
        thresholds.threshold_at_bpcer(real, 1.0)


def test_centre_in_gap_keeps_every_decision():
    scores = np.array([0.0, 0.1, 0.1, 0.6, 1.0, 1.0])
    assert thresholds.centre_in_gap(1.0, scores) == pytest.approx(0.8)
    assert thresholds.centre_in_gap(0.35, scores) == pytest.approx(0.35)  # already mid-gap
    assert thresholds.centre_in_gap(0.0, scores) == 0.0  # nothing below
    rng = np.random.default_rng(0)
    s = rng.random(200)
    for t in rng.random(20):
        assert np.array_equal(s >= thresholds.centre_in_gap(t, s), s >= t)


def _scored(real: list[float], attack: list[float], subjects=None) -> scoring.Scored:
    recs = []
    for i, _ in enumerate(real):
        subj = subjects[i % len(subjects)] if subjects else "a"
        recs.append(datasets.Record(Path(f"r{i}.jpg"), "real", "", subj, "01", ""))
    for i, _ in enumerate(attack):
        recs.append(datasets.Record(Path(f"a{i}.jpg"), "attack", "print", "a", "01", ""))
    scores = np.array(real + attack, np.float64)
    return scoring.Scored(recs, scores, ["live"] * len(recs), [])


def test_report_meets_the_bpcer_target_and_counts_errors():
    rng = np.random.default_rng(1)
    real = list(rng.uniform(0.5, 1.0, 200))
    attack = list(rng.uniform(0.0, 0.55, 100))
    rep = calibration.calibration_report(_scored(real, attack, ["p1", "p2"]), "bpcer", 0.05, previous=0.8)
    thr = rep["threshold"]
    assert np.mean(np.array(real) < thr) <= 0.05
    assert rep["bpcer"]["errors"] == int(np.sum(np.array(real) < thr)) and rep["bpcer"]["n"] == 200
    assert rep["apcer"]["errors"] == int(np.sum(np.array(attack) >= thr)) and rep["apcer"]["n"] == 100
    lo, hi = rep["bpcer"]["ci"]
    assert lo <= rep["bpcer"]["rate"] <= hi
    assert rep["serves"] and rep["subjects"] == ["a", "p1", "p2"] and set(rep["bpcer_per_subject"]) == {"p1", "p2"}
    eer = calibration.calibration_report(_scored(real, attack), "eer", None, previous=0.8)
    assert abs(eer["bpcer"]["rate"] - eer["apcer"]["rate"]) < 0.05
    ap = calibration.calibration_report(_scored(real, attack), "apcer", 0.0, previous=0.8)
    assert ap["apcer"]["errors"] == 0 and ap["threshold"] > max(attack)


def test_no_threshold_serves_when_real_scores_below_attacks_or_floor():
    rep = calibration.calibration_report(_scored([0.1, 0.2, 0.3], [0.7, 0.8, 0.9]), "bpcer", 0.01, previous=0.5)
    assert not rep["serves"]
    assert any("score below the attack frames" in r for r in rep["reasons"])
    rep = calibration.calibration_report(_scored([0.01, 0.05, 0.08], []), "bpcer", 0.01, previous=0.5)
    assert not rep["serves"] and "below the floor 0.1" in rep["reasons"][0]
    assert rep["apcer"] is None
    rep = calibration.calibration_report(_scored([0.01, 0.05, 0.08], []), "bpcer", 0.01, previous=0.5, floor=0.0)
    assert rep["serves"]


def test_the_floor_is_checked_on_the_threshold_written_after_centring():
    # the edge 0.1 meets the floor 0.1, but centring in the gap below it gave 0.0625, and that was written
    real = [0.025, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.96, 0.97, 0.98]
    rep = calibration.calibration_report(_scored(real, []), "bpcer", 0.1, previous=0.5, floor=0.1)
    assert (rep["threshold_edge"], rep["threshold"]) == (0.1, pytest.approx(0.0625))
    assert not rep["serves"]
    assert rep["reasons"][0].startswith("the threshold 0.0625 is below the floor 0.1")


def test_a_threshold_of_one_never_serves():
    # every frame scored 1.0: the threshold 1.0 was written, and the written model then could not load
    rep = calibration.calibration_report(_scored([1.0] * 20, []), "bpcer", 0.01, previous=0.5)
    assert rep["threshold"] == 1.0 and not rep["serves"]
    assert rep["reasons"] == ["the threshold 1.0000 is not strictly between 0 and 1 (at 1 no face is ever live): "
                              "the scores leave no room for one, e.g. attacks scoring 1.0"]


def test_the_summary_says_which_rows_named_missing_images():
    from tla_edge.cli.calibrate import format_summary

    rep = calibration.calibration_report(_scored([0.9] * 40, []), "bpcer", 0.01, previous=0.5)
    rep.update(data="rec", model="m.tflite", dataset_notes=[
        "1 CSV rows name files missing on disk and were skipped (first: line 42 'real/x.jpg')"])
    lines = format_summary(rep, Path("out.tflite")).splitlines()
    assert lines[0].startswith("tla-edge calibrate: 'm.tflite' on 'rec': 40 of 40 frames scored")
    assert lines[1] == "  dataset: 1 CSV rows name files missing on disk and were skipped (first: line 42 'real/x.jpg')"


def test_two_class_rules_need_both_classes():
    with pytest.raises(UserError, match=r"has only real frames \(3\) and no attack frames; --at eer needs both"):
        calibration.calibration_report(_scored([0.6, 0.7, 0.8], []), "eer", None, previous=0.5)
    with pytest.raises(UserError, match="--target-bpcer needs bona fide"):
        calibration.calibration_report(_scored([], [0.1]), "bpcer", 0.01, previous=0.5)


# --- the command --------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(nuaa_dir, tmp_path_factory) -> Path:
    """A recording of NUAA frames: subject 0001 session 01, 12 real and 12 print."""
    tmp = tmp_path_factory.mktemp("rec")
    out = tmp / "rec"
    for kind in ("real", "print"):
        src = nuaa_folder(nuaa_dir, tmp, kind, "0001", "01", 12)
        assert cli.main(["record", "--source", str(src), "--label", kind, "--subject", "0001",
                         "--session", "01", "--out", str(out), "--headless"]) == 0
    return out


def test_calibrate_bundled_model_on_a_recording(recording, tmp_path, capsys):
    from tla_edge.runtime.assets import DEFAULT_LIVENESS_MODEL
    from tla_edge.runtime.interpreter import LivenessModel
    from tla_edge.runtime.pipeline import Pipeline

    before = DEFAULT_LIVENESS_MODEL.read_bytes()
    out = tmp_path / "cal.tflite"
    rc = cli.main(["calibrate", str(recording), "--out", str(out), "--target-bpcer", "0.1",
                   "--report", str(tmp_path / "r.json"), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert DEFAULT_LIVENESS_MODEL.read_bytes() == before  # the input is never changed
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (rep["n_real"], rep["n_attack"], rep["subjects"]) == (12, 12, ["0001"])
    # the written model carries the threshold, embedded and in its sidecar ...
    meta = metadata_lib.read_embedded(out)
    assert meta.threshold == pytest.approx(rep["threshold"])
    assert json.loads(metadata_lib.sidecar_path(out).read_text())["threshold"] == pytest.approx(rep["threshold"])
    assert meta.extra["device_calibration"]["previous_threshold"] == pytest.approx(
        metadata_lib.load(DEFAULT_LIVENESS_MODEL).threshold)
    assert metadata_lib.strip_embedded(out.read_bytes()) == metadata_lib.strip_embedded(before)
    assert "fusion" not in meta.extra  # calibrated alone: no stale fused threshold
    # ... and the device pipeline with it rejects at most 10 % of the recording's bona fide frames
    with Pipeline(LivenessModel(out), smoothing=1, live_frames=1, video=False) as pipe:
        live = []
        for r in datasets.load_dataset(recording):
            if r.label == "real":
                pipe.reset()  # unrelated stills, one decision each
                live.append(pipe.process(datasets.read_image_rgb(r.path)).is_live)
    assert 1 - np.mean(live) <= 0.1
    assert f"wrote {out}" in text and "1 people" in text
    # refuses to overwrite
    assert cli.main(["calibrate", str(recording), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_one_class_recording_with_a_two_class_rule(nuaa_dir, tmp_path, capsys):
    src = nuaa_folder(nuaa_dir, tmp_path, "real", "0002", "01", 4)
    rec = tmp_path / "rec"
    assert cli.main(["record", "--source", str(src), "--label", "real", "--out", str(rec), "--headless"]) == 0
    capsys.readouterr()
    out = tmp_path / "cal.tflite"
    assert cli.main(["calibrate", str(rec), "--at", "eer", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("tla-edge calibrate: error: the calibration set has only real frames (4)")
    assert not out.exists()


def test_model_without_metadata_is_refused(tmp_path, capsys):
    from tla_edge.runtime.assets import DEFAULT_LIVENESS_MODEL

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(metadata_lib.strip_embedded(DEFAULT_LIVENESS_MODEL.read_bytes()))
    out = tmp_path / "cal.tflite"
    rc = cli.main(["calibrate", str(tmp_path), "--model", str(bare), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith(f"tla-edge calibrate: error: model '{bare}' has no tla-edge metadata")
    assert not out.exists()
    assert cli.main(["calibrate", str(tmp_path), "--model", str(bare), "--out", str(bare)]) == 2
    assert cli.main(["calibrate", str(tmp_path), "--model", str(tmp_path / "m.keras"), "--out", str(out)]) == 2
    assert "is not a .tflite" in capsys.readouterr().err


def test_calibrate_the_bundled_fused_set_into_a_folder(recording, tmp_path, capsys):
    from tla_edge.runtime.assets import default_liveness_models
    from tla_edge.runtime.interpreter import LivenessModel
    from tla_edge.runtime.pipeline import Pipeline

    members = default_liveness_models()
    if len(members) < 2:
        pytest.skip("the bundled default runs alone: no fused set to calibrate")
    before = [m.read_bytes() for m in members]
    out = tmp_path / "kiosk"
    rc = cli.main(["calibrate", str(recording), "--out", str(out), "--target-bpcer", "0.1",
                   "--report", str(tmp_path / "r.json"), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert [m.read_bytes() for m in members] == before  # the installed models are never changed
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["models"] == [str(m) for m in members]
    copies = [out / m.name for m in members]
    metas = [metadata_lib.load(c) for c in copies]
    for m, c, meta in zip(members, copies, metas):
        # same flatbuffer, same own threshold (for use alone), the new fused threshold in the record
        assert metadata_lib.strip_embedded(c.read_bytes()) == metadata_lib.strip_embedded(m.read_bytes())
        assert meta.threshold == pytest.approx(metadata_lib.load(m).threshold)
        assert meta.extra["fusion"]["threshold"] == pytest.approx(rep["threshold"])
        assert meta.extra["fusion"]["how"]["device_calibration"]["rule"] == "bpcer"
    assert fused_set.fused_threshold(list(zip(copies, metas))) == pytest.approx(rep["threshold"])
    assert rep["previous_threshold"] == pytest.approx(
        fused_set.fused_threshold([(m, metadata_lib.load(m)) for m in members]))
    # Independent check: the mean of the members' own scores, each model run alone on the recording's
    # real frames through its own pipeline, rejects at most 10 % at the written fused threshold.
    real = [r for r in datasets.load_dataset(recording) if r.label == "real"]
    per_model = []
    for c in copies:
        with Pipeline(LivenessModel(c), threshold=0.5, smoothing=1, live_frames=1, video=False) as pipe:
            scores = []
            for r in real:
                pipe.reset()
                scores.append(pipe.process(datasets.read_image_rgb(r.path)).raw_score)
        per_model.append(scores)
    means = np.mean(np.array(per_model, dtype=np.float64), axis=0)
    assert np.mean(means < rep["threshold"]) <= 0.1
    assert f"run them together: --model {out} (the folder is the set; or --model {copies[0]} --model {copies[1]})" \
        in text
    assert "fused threshold" in text
    # the set as copied runs fused with its new threshold, named file by file or by its folder
    for given in ([str(c) for c in copies], out):
        with Pipeline(given, smoothing=1, live_frames=1, video=False) as pipe:
            assert pipe.threshold == pytest.approx(rep["threshold"])
            assert [m.path for m in pipe.models] == copies
    # the folder calibrates again as the set (here at the equal-error rate), into another folder
    rc = cli.main(["calibrate", str(recording), "--model", str(out), "--out", str(tmp_path / "again"), "--at", "eer",
                   "--max-error", "0.5", "--report", str(tmp_path / "r2.json"), "--quiet"])
    text2 = capsys.readouterr().out
    assert rc == 0, text2
    assert json.loads((tmp_path / "r2.json").read_text())["models"] == [str(c) for c in copies]
    assert [p.name for p in fused_set.set_files(tmp_path / "again")] == [m.name for m in members]
    # refuses to overwrite the copies
    assert cli.main(["calibrate", str(recording), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_fused_calibration_refusals(recording, tmp_path, capsys):
    from tla_edge.runtime.assets import DEFAULT_LIVENESS_MODEL

    m = str(DEFAULT_LIVENESS_MODEL)
    cases = [
        (["--model", m, "--model", m, "--out", str(tmp_path / "set")], "are the same model or share a file name"),
        (["--model", m, "--model", str(tmp_path / "b.tflite"), "--out", str(tmp_path / "x.tflite")],
         "is a .tflite, but 2 --model form a fused set"),
        (["--out", str(DEFAULT_LIVENESS_MODEL.parent / "calibrated")], "is inside the installed package"),
    ]
    for extra, message in cases:
        assert cli.main(["calibrate", str(recording), *extra, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert not (tmp_path / "set").exists()
    assert not (DEFAULT_LIVENESS_MODEL.parent / "calibrated").exists()


def test_a_set_never_fused_gets_its_first_fused_threshold(recording, tmp_path, capsys):
    from tla_edge.runtime.assets import default_liveness_models

    members = default_liveness_models()
    if len(members) < 2:
        pytest.skip("the bundled default runs alone: no second model to fuse with")
    # copies of the two members under new names, their fusion records removed: no fused threshold
    bare = []
    for i, m in enumerate(members):
        meta = metadata_lib.load(m)
        meta = meta.replace(extra={k: v for k, v in meta.extra.items() if k != "fusion"})
        p = tmp_path / f"member{i}.tflite"
        p.write_bytes(metadata_lib.embed(metadata_lib.strip_embedded(m.read_bytes()), meta))
        bare.append(p)
    with pytest.raises(ValueError, match="no common fusion threshold"):
        fused_set.fused_threshold([(p, metadata_lib.load(p)) for p in bare])
    out = tmp_path / "set"
    rc = cli.main(["calibrate", str(recording), "--model", str(bare[0]), "--model", str(bare[1]),
                   "--out", str(out), "--at", "eer", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "(the set had no fused threshold)" in text
    copies = [out / p.name for p in bare]
    assert 0.0 < fused_set.fused_threshold([(c, metadata_lib.load(c)) for c in copies]) < 1.0
