"""Shared fixtures: where the real NUAA frames are, and small generated models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_nuaa_dir() -> Path | None:
    """The NUAA training sessions: $TLA_EDGE_DATA/nuaa-train, else ../shared/data/nuaa-train."""
    candidates = []
    if os.environ.get("TLA_EDGE_DATA"):
        candidates.append(Path(os.environ["TLA_EDGE_DATA"]) / "nuaa-train")
    candidates.append(REPO.parent / "shared" / "data" / "nuaa-train")
    for c in candidates:
        if (c / "ClientRaw").is_dir() and (c / "ImposterRaw").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def nuaa_dir() -> Path:
    """Path of the NUAA training sessions; skips the test where the data is absent."""
    found = find_nuaa_dir()
    if found is None:
        pytest.skip(
            "NUAA frames not found: set TLA_EDGE_DATA to the folder holding nuaa-train/ "
            "(expected ../shared/data/nuaa-train next to the repository)"
        )
    return found


def build_tiny_tflite(out_dir: Path, size: int = 32, seed: int = 0) -> dict[str, Path]:
    """Builds a tiny liveness-shaped model and writes float32, int8 and uint8 TFLite files.

    The model maps a ``size``x``size``x3 image to one logit (the project's
    convention); its weights are random but seeded.
    """
    import numpy as np
    import tensorflow as tf

    from tla_edge.runtime import metadata

    keras = tf.keras
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1)(x)
    model = keras.Model(inp, out)

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]

    paths = {}
    for kind in ("float", "int8", "uint8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if kind != "float":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8 if kind == "int8" else tf.uint8
            conv.inference_output_type = tf.int8 if kind == "int8" else tf.uint8
        path = out_dir / f"tiny_{kind}.tflite"
        path.write_bytes(conv.convert())
        paths[kind] = path
    meta = metadata.ModelMetadata(input_size=(size, size), crop_scale=2.0, threshold=0.5, architecture="tiny")
    for path in paths.values():
        metadata.sidecar_path(path).write_text(__import__("json").dumps(meta.to_dict()))
    paths["keras"] = out_dir / "tiny.keras"
    model.save(paths["keras"])
    return paths


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> dict[str, Path]:
    """Paths of a tiny generated model: ``float``, ``int8``, ``uint8`` (.tflite) and ``keras``.

    Input 32x32x3, one logit, metadata sidecars (crop_scale 2.0, threshold 0.5).
    """
    pytest.importorskip("tensorflow", reason="building test models needs the 'train' extra")
    return build_tiny_tflite(tmp_path_factory.mktemp("tiny_models"))
