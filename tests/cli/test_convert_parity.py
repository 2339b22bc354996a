"""tla-edge convert's parity gate end to end: a broken int8 conversion is refused by default,
``--parity report`` writes it with its verdict recorded, a healthy one passes either way.

A tiny CNN (32x32) trained for a few seconds on bright "real" and dark
"attack" synthetic crops stands for the model; the broken conversion is the
int8 conversion of the same network with its logit negated (an inverted
output, as a sign or label mix-up in a converter would give).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")
pytestmark = pytest.mark.slow  # every test here runs the converter

from tla_edge import cli  # noqa: E402
from tla_edge.converters import export as export_lib  # noqa: E402
from tla_edge.runtime import metadata as metadata_lib  # noqa: E402

SIZE = 32
COLUMNS = "crop,source,label,species,subject,session,split,scale,box_x,box_y,box_w,box_h,det_score".split(",")


def synthetic_crops(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright noisy "real" crops and dark "attack" crops, alternating."""
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * (n // 2), np.int64)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, y in enumerate(labels):
        lo, hi = (110, 256) if y == 1 else (0, 146)
        images[i] = rng.integers(lo, hi, (SIZE, SIZE, 3))
    return images, labels


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory) -> Path:
    """64 crops in the tla-edge prepare layout (PNGs + manifest.csv), scale 3."""
    folder = tmp_path_factory.mktemp("crops")
    (folder / "s3.0").mkdir()
    images, labels = synthetic_crops(64, seed=1)
    rows = []
    for i, (im, y) in enumerate(zip(images, labels)):
        name = f"s3.0/{i:04d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        rows.append({"crop": name, "source": f"src/{i:04d}.jpg", "label": "real" if y else "attack",
                     "species": "" if y else "print", "subject": f"{1 + i % 3:04d}", "session": "01",
                     "split": "train", "scale": "3", "box_x": 10, "box_y": 10, "box_w": 20, "box_h": 20,
                     "det_score": 0.9})
    with (folder / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A trained tiny CNN saved as MODEL_DIR/model.keras + metadata.json (logit output, threshold 0.5)."""
    import keras

    from tla_edge.runtime import preprocess

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(x), name="tiny")
    images, labels = synthetic_crops(128, seed=7)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(preprocess.normalize(images), labels.astype("float32"), epochs=30, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    meta = metadata_lib.ModelMetadata(input_size=(SIZE, SIZE), crop_scale=3.0, threshold=0.5,
                                      architecture="tiny", extra={"thresholds": {"eer": 0.5}})
    (folder / "metadata.json").write_text(json.dumps(meta.to_dict()))
    return folder


@pytest.fixture
def inverted_conversion(monkeypatch):
    """Every conversion turns out the int8 model of the network with its logit negated."""
    import keras

    original = export_lib.convert_job

    def broken(model, *args, **kwargs):
        inverted = keras.Model(model.inputs, keras.layers.Rescaling(-1.0)(model.outputs[0]))
        return original(inverted, *args, **kwargs)

    monkeypatch.setattr(export_lib, "convert_job", broken)


def convert(*argv) -> int:
    return cli.main(["convert", *map(str, argv)])


def test_broken_conversion_is_refused_by_default(model_dir, crops_dir, tmp_path, capsys, inverted_conversion):
    out = tmp_path / "m_int8.tflite"
    report = tmp_path / "r.json"
    assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--report", report) == 1
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if "degraded" in line]
    assert len(err) == 1 and err[0].startswith("tla-edge convert: error: int8 model is degraded: ")
    assert "its scores do not follow the float model's (Pearson r -" in err[0]
    assert err[0].endswith("not written (check the calibration crops, or pass --parity report to write it "
                           "with this verdict recorded)")
    assert "tla-edge convert: error: failed: int8" in captured.err
    assert "int8: DEGRADED, NOT SAVED (--parity enforce)" in captured.out
    assert not out.exists() and not metadata_lib.sidecar_path(out).exists()
    row = json.loads(report.read_text())["models"][0]
    assert (row["written"], row["parity_gate"], row["parity"]["verdict"]) == (False, "enforce", "degraded")
    assert row["parity"]["pearson"] < -0.9


def test_parity_report_writes_and_records_the_verdict(model_dir, crops_dir, tmp_path, capsys,
                                                      inverted_conversion):
    out = tmp_path / "m_int8.tflite"
    report = tmp_path / "r.json"
    assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--report", report,
                   "--parity", "report") == 0
    captured = capsys.readouterr()
    warn = [line for line in captured.err.splitlines() if "degraded" in line]
    assert len(warn) == 1 and warn[0].startswith("tla-edge convert: warning: int8 model is degraded: ")
    assert warn[0].endswith("; written anyway (--parity report), the verdict recorded in its metadata")
    assert "error" not in captured.err
    assert "int8: DEGRADED, written (--parity report)" in captured.out
    meta = metadata_lib.load(out)
    assert meta.extra["parity"]["verdict"] == "degraded" and meta.extra["parity"]["gate"] == "report"
    assert meta.extra["degraded"] == meta.extra["parity"]["degraded"] and "do not follow" in meta.extra["degraded"]
    assert metadata_lib.read_embedded(out).extra["parity"]["verdict"] == "degraded"  # in the file too
    row = json.loads(report.read_text())["models"][0]
    assert (row["written"], row["parity_gate"], row["parity"]["verdict"]) == (True, "report", "degraded")


def test_healthy_conversion_passes_under_either_mode(model_dir, crops_dir, tmp_path, capsys):
    for mode in ("enforce", "report"):
        out = tmp_path / f"{mode}_int8.tflite"
        assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--parity", mode) == 0, \
            capsys.readouterr().err
        parity = metadata_lib.load(out).extra["parity"]
        assert parity["verdict"] == "pass" and parity["gate"] == mode and parity["degraded"] is None
        assert parity["pearson"] >= 0.9 and parity["agreement_clear_ci"][1] >= 0.9
        assert "degraded" not in metadata_lib.load(out).extra
