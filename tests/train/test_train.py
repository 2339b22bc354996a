"""tla-edge train: validation splits, augmentation, and smoke runs on tiny synthetic crops."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tla_edge import cli

from tla_edge.runtime import preprocess
from tla_edge.data.crops import MANIFEST_COLUMNS
from tla_edge.errors import UserError
from tla_edge.train.split import check_classes, class_weights, split_validation

tf = pytest.importorskip("tensorflow")


def make_crops(root: Path, size: int = 32, per_group: int = 6, classes=("real", "attack"), scale: float = 2.7,
               rule: str = "pad") -> Path:
    """A crops folder following the prepare convention: 2 sessions x 2 subjects.

    Real crops are reddish, attacks bluish (plus noise): separable by colour.
    """
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    sub = f"s{scale:.1f}" + ("" if rule == "pad" else f"_{rule}")
    (root / sub).mkdir(exist_ok=True)
    for label in classes:
        for session in ("01", "02"):
            for subject in ("0001", "0002"):
                for i in range(per_group):
                    base = np.array([200, 60, 60] if label == "real" else [60, 60, 200], np.float32)
                    img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                    name = f"{sub}/{label}_{subject}_{session}_{i}.png"
                    cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                    rows.append({
                        "crop": name, "source": f"{label}/{subject}_{session}_{i}.jpg", "label": label,
                        "species": "print" if label == "attack" else "", "subject": subject,
                        "session": session, "split": "train", "scale": scale, "box_x": 10, "box_y": 10,
                        "box_w": 20, "box_h": 20, "det_score": 0.9, "crop_rule": rule,
                    })
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(MANIFEST_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    (root / "prepare.json").write_text(json.dumps({"scales": [scale], "size": size}))
    return root


# --- pure helpers ---------------------------------------------------------------


def test_split_default_holds_out_last_session():
    sessions = ["01", "01", "02", "02", "03"]
    tr, va, desc = split_validation(sessions, ["a"] * 5)
    assert va.tolist() == [4] and tr.tolist() == [0, 1, 2, 3]
    assert "session 03" in desc


def test_split_by_session_matches_numbers_loosely():
    tr, va, _ = split_validation(["01", "02", "02"], ["a", "a", "b"], val_session="1")
    assert va.tolist() == [0] and tr.tolist() == [1, 2]


def test_split_by_subject_when_one_session():
    subjects = ["0001", "0002", "0003", "0004", "0005", "0001"]
    tr, va, desc = split_validation([""] * 6, subjects)
    assert va.tolist() == [4] and "0005" in desc
    tr, va, _ = split_validation([""] * 6, subjects, val_subjects="0001,2")
    assert va.tolist() == [0, 1, 5]


def test_split_errors_name_what_exists():
    with pytest.raises(UserError, match=r"--val-session '07' is not in the crops; sessions are \['01', '02'\]"):
        split_validation(["01", "02"], ["a", "b"], val_session="07")
    with pytest.raises(UserError, match="pass --val-random"):
        split_validation(["01", "01"], ["a", "a"])


def test_split_random_is_seeded_and_sized():
    a = split_validation(["01"] * 100, ["a"] * 100, val_random=0.2, seed=3)
    b = split_validation(["01"] * 100, ["a"] * 100, val_random=0.2, seed=3)
    assert len(a[1]) == 20 and a[1].tolist() == b[1].tolist()
    assert "leaks" in a[2]


def test_check_classes_and_weights():
    with pytest.raises(UserError, match=r"has only real crops \(3\) and no attack crops"):
        check_classes(np.array([1, 1, 1]), "x")
    w = class_weights(np.array([1, 0, 0, 0]))
    assert w == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}


def test_tf_normalize_matches_preprocess():
    from tla_edge.train.recipe import tf_normalize

    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    np.testing.assert_array_equal(tf_normalize(tf, x).numpy(), preprocess.normalize(x, "mobilenet_v2"))


def test_augment_is_seeded_uint8_and_varies():
    from tla_edge.train.augment import augment

    img = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    a = augment(tf.constant(img), tf.constant([1, 2], tf.int64)).numpy()
    b = augment(tf.constant(img), tf.constant([1, 2], tf.int64)).numpy()
    c = augment(tf.constant(img), tf.constant([5, 9], tf.int64)).numpy()
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, img)


# --- smoke runs through the CLI ---------------------------------------------------


def test_train_data_carries_the_crop_rule(tmp_path):
    from tla_edge.train.split import load_train_data

    crops = make_crops(tmp_path / "crops", rule="shift")
    data = load_train_data(crops)
    assert data.crops.crop_rule == "shift" and data.summary["crop_rule"] == "shift"
    with pytest.raises(UserError, match=r"has no 'pad' crops at scale 2.7 \(it holds shift\)"):
        load_train_data(crops, crop_rule="pad")


def _train(crops: Path, out: Path, *extra: str) -> int:
    return cli.main([
        "train", str(crops), "--out", str(out), "--arch", "mobilenetv2", "--alpha", "0.35",
        "--weights", "none", "--epochs", "3", "--batch-size", "8", "--patience", "5", *extra,
    ])


@pytest.mark.slow
def test_train_from_scratch_writes_everything(tmp_path, capsys):
    crops = make_crops(tmp_path / "crops")
    out = tmp_path / "model"
    assert _train(crops, out, "--lr", "3e-3") == 0
    for name in ("model.keras", "metadata.json", "history.csv", "learning_curves.png", "validation_scores.csv"):
        assert (out / name).is_file(), name
    from tla_edge.runtime import metadata

    meta = metadata.load(out / "model.keras")
    assert meta.input_size == (32, 32) and meta.crop_scale == pytest.approx(2.7)
    assert (meta.output, meta.live_index, meta.normalization, meta.architecture) == (
        "logit", 0, "mobilenet_v2", "mobilenetv2")
    assert 0.0 <= meta.threshold <= 1.0
    assert set(meta.extra["thresholds"]) == {"eer", "apcer_0.05"}
    assert "session 02" in meta.extra["validation"]["split"]
    assert meta.extra["data"]["train"]["sessions"] == {"01": {"real": 12, "attack": 12}}
    assert meta.extra["phases"]["scratch"]["epochs_run"] == 3
    assert meta.extra["phases"]["scratch"]["best_epoch"] in (1, 2, 3)
    assert meta.extra["early_stopping"] == {"monitor": "val_loss", "patience": 5, "restore_best": True}
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learns
    assert "ACER" in capsys.readouterr().out

    # refuses to overwrite without --force, with the path in the message
    assert _train(crops, out) == 2
    assert f"output '{out}' already exists; pass --force" in capsys.readouterr().err


@pytest.mark.slow
def test_train_on_shift_crops_stores_the_rule_in_the_model(tmp_path):
    from tla_edge.runtime import metadata

    crops = make_crops(tmp_path / "crops", rule="shift", per_group=3)
    assert _train(crops, tmp_path / "model", "--epochs", "1", "--crop-rule", "shift") == 0
    meta = metadata.load(tmp_path / "model" / "model.keras")
    assert meta.crop_rule == "shift" and meta.extra["data"]["crop_rule"] == "shift"
    assert json.loads((tmp_path / "model" / "metadata.json").read_text())["crop_rule"] == "shift"


def test_train_with_a_colour_normalisation_saves_it_in_the_model(tmp_path):
    import keras

    from tla_edge.runtime import metadata

    crops = make_crops(tmp_path / "crops", per_group=3)
    assert _train(crops, tmp_path / "model", "--epochs", "1", "--colour", "greyworld") == 0
    meta = metadata.load(tmp_path / "model" / "model.keras")
    assert meta.extra["colour"] == "greyworld"
    model = keras.models.load_model(tmp_path / "model" / "model.keras")
    assert [layer.name for layer in model.layers[:3]] == ["image", "colour_mean", "colour_greyworld"]
    x = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 32, 32, 3)).astype(np.float32)
    cast = x + np.array([0.2, 0.0, -0.3], np.float32)  # another white balance of the same picture
    a, b = (np.asarray(model(v, training=False), np.float64) for v in (x, cast))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_unknown_colour_is_one_line(tmp_path, capsys):
    from tla_edge.train.options import Recipe, check_recipe

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--colour", "sepia"])
    assert exit_info.value.code == 2
    assert "--colour: invalid choice: 'sepia'" in capsys.readouterr().err
    with pytest.raises(UserError, match="^--colour 'sepia' is not one of rgb, grey, greyworld, greynorm, greyhp$"):
        check_recipe(Recipe(colour="sepia"), tmp_path)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_transfer_two_phases_from_weights_file(tmp_path):
    from tla_edge.runtime import metadata
    from tla_edge.train import models

    crops = make_crops(tmp_path / "crops")
    donor = models.build_mobilenetv2(32, 0.35, None)
    wfile = tmp_path / "base.weights.h5"
    donor.get_layer("base").save_weights(str(wfile))
    out = tmp_path / "model"
    rc = cli.main([
        "train", str(crops), "--out", str(out), "--alpha", "0.35", "--weights", str(wfile),
        "--epochs", "2", "--fine-tune-epochs", "1", "--fine-tune-at", "140", "--batch-size", "8",
        "--val-session", "01", "--monitor", "val_auc",
    ])
    assert rc == 0
    meta = metadata.load(out / "model.keras")
    phases = meta.extra["phases"]
    assert phases["phase1_features"]["images"] == 24 * 2 + 24  # clean + one augmented copy, + val
    assert phases["phase1_head"]["epochs_run"] == 2
    assert phases["phase2_fine_tune"]["epochs_run"] == 1
    assert (out / "checkpoints" / "phase2-best.weights.h5").is_file()
    assert "session 01" in meta.extra["validation"]["split"]
    assert meta.extra["early_stopping"]["monitor"] == "val_auc"


def test_single_class_crops_fail_with_one_line(tmp_path, capsys):
    crops = make_crops(tmp_path / "crops", per_group=1, classes=("real",))
    assert _train(crops, tmp_path / "model") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tla-edge train: error: crops folder")
    assert "has only real crops (4) and no attack crops" in err
    assert "\n" not in err


def test_bad_flags_fail_before_loading(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    assert "crops folder" in capsys.readouterr().err
    crops = make_crops(tmp_path / "crops", per_group=1)
    assert cli.main(["train", str(crops), "--out", str(tmp_path / "m"), "--arch", "resnet34"]) == 2
    assert "not available for resnet34" in capsys.readouterr().err
    assert cli.main(["train", str(crops), "--out", str(tmp_path / "m"), "--weights", "x.h5"]) == 2
    assert "weights file 'x.h5' not found" in capsys.readouterr().err
    assert cli.main(["train", str(crops), "--out", str(tmp_path / "m"), "--label-smoothing", "1.5"]) == 2
    assert "--label-smoothing 1.5 is not in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_on_one_session_only(tmp_path):
    """--sessions keeps the other session out of training and validation (the protocol's test set)."""
    from tla_edge.runtime import metadata

    crops = make_crops(tmp_path / "crops")
    out = tmp_path / "model"
    assert cli.main(["train", str(crops), "--out", str(out), "--alpha", "0.35", "--weights", "none",
                     "--sessions", "02", "--val-subjects", "0002", "--epochs", "1", "--batch-size", "8",
                     "--label-smoothing", "0.2"]) == 0
    meta = metadata.load(out / "model.keras")
    assert meta.extra["label_smoothing"] == 0.2
    assert meta.extra["data"]["train"]["sessions"] == {"02": {"real": 6, "attack": 6}}
    assert meta.extra["data"]["val"]["sessions"] == {"02": {"real": 6, "attack": 6}}
    with open(out / "validation_scores.csv") as f:
        assert {(r["session"], r["subject"]) for r in csv.DictReader(f)} == {("02", "0002")}


@pytest.mark.parametrize("extra,message", [
    (["--weights", "none"], "--epochs 0 trains nothing; expected at least one epoch"),
    (["--weights", "base.weights.h5", "--fine-tune-epochs", "0"],
     "--epochs 0 with --fine-tune-epochs 0 trains nothing; expected at least one epoch"),
])
def test_zero_epochs_is_refused_and_writes_nothing(tmp_path, capsys, extra, message):
    from tla_edge import cli as cli_lib

    out = tmp_path / "models" / "m"
    code = cli_lib.main(["train", str(tmp_path), "--epochs", "0", *extra, "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"tla-edge train: error: {message}"
    assert not out.exists() and not out.parent.exists()


def test_val_subjects_refuses_a_subject_it_does_not_have():
    with pytest.raises(UserError, match=r"^--val-subjects names 'nobody', in none of the 4 crops; expected some of: 0001, 0002$"):
        split_validation(["01", "01", "02", "02"], ["0001", "0002", "0001", "0002"], val_subjects="0001,nobody")


def test_a_failed_or_interrupted_run_leaves_no_model_folder(tmp_path, monkeypatch, capsys):
    from tla_edge.train import recipe as recipe_lib

    crops = make_crops(tmp_path / "crops")
    out = tmp_path / "model"
    calls = []

    def interrupted(run):  # phase work after build() made MODEL_DIR/checkpoints
        calls.append(sorted(p.name for p in run.out.iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe_lib, "train_from_scratch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recipe_lib.train(crops, out, recipe_lib.Recipe(arch="mobilenetv2", weights="none", epochs=1, input_size=32))
    assert calls == [["checkpoints"]] and not out.exists()  # the re-run is not refused
    # a folder that existed before (--force) is left as the user had it
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        recipe_lib.train(crops, out, recipe_lib.Recipe(arch="mobilenetv2", weights="none", epochs=1, input_size=32),
                         force=True)
    assert (out / "keep.txt").read_text() == "mine"
