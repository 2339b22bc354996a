"""Distillation: teacher targets files, soft targets, the train flags, and the camera augmentation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tla_edge import cli
from tla_edge.errors import UserError
from tla_edge.train import distill

from test_train import make_crops


def write_csv(path, rows, header=("source", "p_live", "teacher")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# --- targets files and the blend ----------------------------------------------------


def test_soft_targets_blend_labels_and_teacher_by_hand():
    targets = {"a.jpg": (0.8, "t"), "b.jpg": (0.1, "t"), "c.jpg": (0.6, "t")}
    got = distill.soft_targets(np.array([1, 0, 0]), ["a.jpg", "b.jpg", "c.jpg"], targets, 0.25)
    # 0.75 * label + 0.25 * p
    np.testing.assert_allclose(got, [0.95, 0.025, 0.15], rtol=1e-6)
    assert got.dtype == np.float32
    # a soft target never crosses 0.5 to the other side, whatever the teacher says
    extreme = distill.soft_targets(np.array([1, 0]), ["x", "y"], {"x": (0.0, ""), "y": (1.0, "")}, 0.49)
    assert extreme[0] > 0.5 > extreme[1]


@pytest.mark.parametrize("weight", [-0.1, 0.5, 0.9])
def test_weight_outside_the_half_open_range_is_refused(weight):
    with pytest.raises(UserError, match=rf"--distill {weight:g} is not in \[0, 0.5\)"):
        distill.check_weight(weight)


def test_targets_round_trip_and_merge(tmp_path):
    a = distill.write_targets(tmp_path / "a.csv", [("x/1.jpg", 0.25, "T"), ("x/2.jpg", 1.0, "T")])
    b = write_csv(tmp_path / "b.csv", [("y/1.jpg", "0.5", "U"), ("x/1.jpg", "0.25", "T")])
    got = distill.read_targets([a, b])
    assert got == {"x/1.jpg": (0.25, "T"), "x/2.jpg": (1.0, "T"), "y/1.jpg": (0.5, "U")}
    with pytest.raises(UserError, match="already exists"):
        distill.write_targets(a, [])


@pytest.mark.parametrize("rows, header, message", [
    ([("a", "0.5")], ("path", "score"), r"starts with \['path', 'score'\]; expected columns source,p_live"),
    ([("a", "1.5", "t")], None, r"line 2: p_live 1.5 is not in \[0, 1\]"),
    ([("a", "high", "t")], None, r"line 2: p_live 'high' is not a number"),
    ([("a",)], None, r"line 2 has 1 column\(s\)"),
    ([("a", "0.2", "t"), ("a", "0.9", "t")], None, r"line 3: source 'a' has p_live 0.9 here and 0.2 before"),
])
def test_bad_targets_files_are_named_in_one_line(tmp_path, rows, header, message):
    path = write_csv(tmp_path / "t.csv", rows, header or ("source", "p_live", "teacher"))
    with pytest.raises(UserError, match=message):
        distill.read_targets([path])


def test_missing_targets_are_counted_and_named():
    with pytest.raises(UserError, match=r"2 of 3 training crops have no teacher target \(e.g. 'b', 'c'\)"):
        distill.soft_targets(np.array([1, 0, 1]), ["a", "b", "c"], {"a": (0.5, "")}, 0.2)


# --- through tla-edge train -----------------------------------------------------------


def _targets_for(crops, path, p_of):
    with open(crops / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    write_csv(path, [(r["source"], f"{p_of(r):.6f}", "test-teacher") for r in rows])
    return rows


def test_flag_combinations_are_refused_in_one_line(tmp_path, capsys):
    tf = pytest.importorskip("tensorflow")  # noqa: F841
    crops = make_crops(tmp_path / "crops", per_group=2)
    base = ["train", str(crops), "--out", str(tmp_path / "m"), "--weights", "none", "--epochs", "1"]
    cases = [
        (["--distill", "0.3"], "--distill 0.3 needs --teacher-targets FILE"),
        (["--teacher-targets", str(tmp_path / "none.csv"), "--distill", "0.3"], "teacher targets '"),
        (["--camera-augment", "--no-augment"], "--camera-augment contradicts --no-augment"),
        (["--distill", "0.7", "--teacher-targets", "x.csv"], "--distill 0.7 is not in [0, 0.5)"),
        (["--zoom-in", "1.5"], "--zoom-in 1.5 is not in [0, 1]"),
        (["--zoom-in", "0.5", "--no-augment"], "--zoom-in contradicts --no-augment"),
    ]
    for extra, message in cases:
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_fits_the_blended_targets_and_records_them(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    from tla_edge.train import recipe

    crops = make_crops(tmp_path / "crops", per_group=3)
    # a teacher that is right about attacks and unsure about real faces: p = 0.6 real, 0.1 attack
    rows = _targets_for(crops, tmp_path / "t.csv", lambda r: 0.6 if r["label"] == "real" else 0.1)
    seen = []
    real_make = recipe.make_dataset

    def spy(tf, images, labels, *args, **kwargs):
        if kwargs.get("shuffle"):
            seen.append((np.array(labels), kwargs.get("camera"), kwargs.get("zoom_in")))
        return real_make(tf, images, labels, *args, **kwargs)

    monkeypatch.setattr(recipe, "make_dataset", spy)
    out = tmp_path / "model"
    assert cli.main(["train", str(crops), "--out", str(out), "--alpha", "0.35", "--weights", "none",
                     "--epochs", "1", "--batch-size", "8", "--teacher-targets", str(tmp_path / "t.csv"),
                     "--distill", "0.2", "--camera-augment", "--zoom-in", "0.5"]) == 0
    # the training part is session 01 (validation: session 02); expected targets from the manifest by hand
    train_rows = [r for r in rows if r["session"] == "01"]
    expected = [0.8 + 0.2 * 0.6 if r["label"] == "real" else 0.2 * 0.1 for r in train_rows]
    labels, camera, zoom_in = seen[0]
    np.testing.assert_allclose(sorted(labels), sorted(expected), rtol=1e-6)
    assert camera is True and zoom_in == 0.5
    meta = json.loads((out / "metadata.json").read_text())["extra"]
    assert meta["camera_augment"] is True and meta["zoom_in"] == 0.5
    d = meta["distill"]
    assert d["weight"] == 0.2 and d["teacher"] == ["test-teacher"] and d["train_crops"] == len(train_rows)
    # the teacher's 0.6 on real and 0.1 on attack agree with every label at 0.5
    assert d["teacher_agrees_at_0.5"] == 1.0
    assert d["mean_p_live"] == {"real": 0.6, "attack": 0.1}
    # the training metrics read the hard labels (soft targets made plain accuracy 0 and AUC 0 before)
    with open(out / "history.csv", newline="") as f:
        history_rows = list(csv.DictReader(f))
    assert history_rows and all(0.0 < float(row["accuracy"]) <= 1.0 for row in history_rows)
    assert all(0.0 < float(row["auc"]) <= 1.0 for row in history_rows)
    # and the saved model's compile config holds only Keras' own metrics: it loads compiled, anywhere
    import keras

    loaded = keras.saving.load_model(out / "model.keras")  # compile=True: a tla-edge metric class would fail here
    assert sorted((m["module"], m["class_name"]) for m in loaded.get_compile_config()["metrics"]) == [
        ("keras.metrics", "AUC"), ("keras.metrics", "BinaryAccuracy")]


def test_hard_label_metrics_read_the_label_a_soft_target_stands_for():
    keras = pytest.importorskip("keras")
    soft_targets = np.array([0.8 + 0.2 * 0.1, 0.8, 0.2 * 0.9, 0.0, 0.2 * 0.4], np.float32)  # real, real, attack x3
    logits = np.array([2.0, -1.0, -3.0, -0.5, -0.2], np.float32)  # right, wrong, right, right, right
    accuracy, auc = distill.training_metrics(keras, soft_targets=True)
    accuracy.update_state(soft_targets, logits)
    auc.update_state(soft_targets, logits)
    assert float(accuracy.result()) == pytest.approx(4 / 5)
    # AUC of the hard labels [1, 1, 0, 0, 0]: pairs (real, attack) ranked right: 2.0 beats all 3, -1.0 beats -3.0
    assert float(auc.result()) == pytest.approx(4 / 6, abs=0.01)
    plain_accuracy, _ = distill.training_metrics(keras)
    plain_accuracy.update_state(soft_targets, logits)
    assert float(plain_accuracy.result()) == pytest.approx(1 / 5)  # only the exact 0.0 target matches a decision
    assert distill.soft(soft_targets) and not distill.soft(np.array([0.0, 1.0, 1.0])) and not distill.soft(None)


# --- camera augmentation ---------------------------------------------------------------


def test_camera_augmentation_changes_what_a_sensor_changes():
    tf = pytest.importorskip("tensorflow")
    from tla_edge.train.augment import CAMERA, AugmentConfig, augment

    off = dict(flip=False, brightness=0.0, contrast=(1.0, 1.0001), saturation=(1.0, 1.0001), hue=0.0, channel_gain=0.0,
               max_rotation_deg=0.0, scale=(1.0, 1.0), max_shift=0.0, blur_probability=0.0, jpeg_probability=0.0)
    flat = np.full((32, 32, 3), 128, np.uint8)
    seed = tf.constant([3, 4], tf.int64)
    # nothing on: the image comes back unchanged
    assert np.array_equal(augment(tf.constant(flat), seed, AugmentConfig(**off)).numpy(), flat)
    # noise alone on a flat image: pixels spread around 128
    noisy = augment(tf.constant(flat), seed, AugmentConfig(**off, noise_probability=1.0, max_noise=0.05)).numpy()
    assert noisy.std() > 0.5 and abs(noisy.mean() - 128) < 2
    # gamma alone: a flat image stays flat, at 255 * (128/255) ** g for some g in the range
    g = augment(tf.constant(flat), seed, AugmentConfig(**off, gamma=(1.3, 1.4))).numpy()
    assert g.std() == 0 and 255 * (128 / 255) ** 1.4 - 1 <= g[0, 0, 0] <= 255 * (128 / 255) ** 1.3 + 1
    # resolution loss alone: a one-pixel checkerboard loses its contrast
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    low = augment(tf.constant(checker), seed, AugmentConfig(**off, downscale_probability=1.0)).numpy()
    assert low.astype(float).std() < 0.5 * checker.astype(float).std()
    # the recipe itself is seeded
    a = augment(tf.constant(checker), seed, CAMERA).numpy()
    assert np.array_equal(a, augment(tf.constant(checker), seed, CAMERA).numpy())


def test_zoom_in_shows_a_tighter_view_with_the_asked_chance():
    tf = pytest.importorskip("tensorflow")
    from tla_edge.train.augment import AugmentConfig, augment, augment_config

    off = dict(flip=False, brightness=0.0, contrast=(1.0, 1.0001), saturation=(1.0, 1.0001), hue=0.0, channel_gain=0.0,
               max_rotation_deg=0.0, scale=(1.0, 1.0), max_shift=0.0, blur_probability=0.0, jpeg_probability=0.0)
    # a horizontal ramp, 2 grey levels a column: a zoom z about the centre leaves slope 2 / z
    ramp = np.repeat(np.repeat((np.arange(96) * 2 + 30).astype(np.uint8)[None, :, None], 96, 0), 3, 2)
    cols = np.arange(24, 72)

    def zoom(cfg, seed):
        out = augment(tf.constant(ramp), tf.constant([seed, 7], tf.int64), cfg).numpy().astype(float)
        return 2.0 / np.polyfit(cols, out[48, cols, 0], 1)[0]

    always = [zoom(AugmentConfig(**off, zoom_in_probability=1.0, zoom_in_max=2.0), s) for s in range(40)]
    assert all(0.99 <= z <= 2.02 for z in always) and max(always) > 1.6 and np.mean(always) > 1.3
    never = [zoom(AugmentConfig(**off, zoom_in_probability=0.0), s) for s in range(10)]
    assert all(abs(z - 1.0) < 0.02 for z in never)
    half = [zoom(AugmentConfig(**off, zoom_in_probability=0.5, zoom_in_max=2.0), s) for s in range(60)]
    assert 15 <= sum(z > 1.02 for z in half) <= 45
    # the recipe's switch: off leaves the default strengths (so the default recipe draws as before)
    assert augment_config() == AugmentConfig() and augment_config(zoom_in=0.3).zoom_in_probability == 0.3
    assert augment_config(camera=True, zoom_in=0.3).noise_probability > 0
