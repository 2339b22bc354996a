"""The tiny model and synthetic crops of the convert tests, written once for all of them.

``tests/converters/test_convert.py`` (and ``test_qat.py`` through it) and
``tests/cli/test_convert_parity.py`` use them. The module sits in ``tests/``
(on ``sys.path`` through ``pythonpath = ["tests"]``) and is deliberately not
called ``converters*``: ``tests/converters/`` already shares its name with the
repository's top-level ``converters/`` package.

A test module takes the fixtures by binding them to module names::

    crops_dir = convert_helpers.crops_dir
    model_dir = convert_helpers.model_dir

which gives it module-scoped ``crops_dir`` and ``model_dir`` of its own (an
assignment rather than ``from convert_helpers import crops_dir``, which
pyflakes reports as an unused import redefined by every test's argument). Keras
and OpenCV are imported only when a crop folder or model is written, so
importing this module needs neither.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

SIZE = 32
"""Side of the tiny model's input and of the synthetic crops."""
COLUMNS = "crop,source,label,species,subject,session,split,scale,box_x,box_y,box_w,box_h,det_score".split(",")
"""The columns of a ``tla-edge prepare`` manifest.csv."""


def synthetic_crops(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bright noisy "real" crops and dark "attack" crops (print and replay), alternating, half each."""
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * (n // 2), np.int64)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    species = []
    for i, y in enumerate(labels):
        lo, hi = (110, 256) if y == 1 else (0, 146)
        images[i] = rng.integers(lo, hi, (SIZE, SIZE, 3))
        species.append("" if y == 1 else ("print" if i % 4 == 1 else "replay"))
    return images, labels, species


def write_crops(folder: Path, images: np.ndarray, labels, species, scale: float = 3.0) -> Path:
    """Writes a crops folder as tla-edge prepare does: PNGs + manifest.csv.

    Subjects 0001-0003 in turn; the first half of the crops is session 01, the second 02.
    """
    import cv2

    sub = folder / f"s{scale:.1f}"
    sub.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (im, y, sp) in enumerate(zip(images, labels, species)):
        name = f"s{scale:.1f}/{i:04d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        rows.append({
            "crop": name, "source": f"src/{i:04d}.jpg", "label": "real" if y == 1 else "attack",
            "species": sp, "subject": f"{1 + i % 3:04d}", "session": "01" if i < len(labels) // 2 else "02",
            "split": "train", "scale": f"{scale:g}", "box_x": 10, "box_y": 10, "box_w": 20, "box_h": 20,
            "det_score": 0.9,
        })
    with (folder / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return folder


def write_tiny_model(folder: Path) -> Path:
    """Trains the tiny CNN (a few seconds) and saves it as FOLDER/model.keras + metadata.json.

    Two strided 3x3 convolutions, global average pooling and one logit, trained
    30 epochs (seed 0) on 128 synthetic crops (seed 7); metadata: input 32x32,
    crop scale 3.0, threshold 0.5, ``thresholds: {"eer": 0.5}``.
    """
    import keras

    from tla_edge.runtime import metadata as metadata_lib
    from tla_edge.runtime import preprocess

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, name="logit")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    images, labels, _ = synthetic_crops(128, seed=7)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(preprocess.normalize(images), labels.astype("float32"), epochs=30, batch_size=32, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    meta = metadata_lib.ModelMetadata(
        input_size=(SIZE, SIZE), crop_scale=3.0, threshold=0.5, architecture="tiny",
        extra={"thresholds": {"eer": 0.5}},
    )
    (folder / "metadata.json").write_text(json.dumps(meta.to_dict()))
    return folder


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory) -> Path:
    """64 synthetic crops (seed 1) in the tla-edge prepare layout (PNGs + manifest.csv), scale 3."""
    images, labels, species = synthetic_crops(64, seed=1)
    return write_crops(tmp_path_factory.mktemp("crops"), images, labels, species)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A trained tiny CNN saved as MODEL_DIR/model.keras + metadata.json (logit output, threshold 0.5)."""
    return write_tiny_model(tmp_path_factory.mktemp("model"))
