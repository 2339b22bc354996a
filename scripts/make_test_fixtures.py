#!/usr/bin/env python
"""Writes tests/fixtures/: the tiny liveness-shaped models the tests run on.

    python scripts/make_test_fixtures.py [--out DIR] [--force]

The models are committed so that the runtime tests need no TensorFlow (a
device installs the runtime extra only). Run this once after changing the
recipe below, and commit the result. It writes, for a 32x32x3 image -> one
logit network with seeded random weights:

- ``tiny_float.tflite``, ``tiny_int8.tflite``, ``tiny_uint8.tflite`` (full
  integer models with int8 / uint8 input and output), each with its metadata
  sidecar (``.tflite.json``: crop_scale 2.0, threshold 0.5);
- ``tiny.keras``, the same weights, for the tests that load the Keras model;
- ``MANIFEST.json``: the TensorFlow and Keras versions that wrote them and the
  SHA-256 of each file. With the same versions the output is byte-identical
  (except ``tiny.keras``, a zip that carries its save date); with others only the
  tensors' shapes, types and quantization layout are expected to match
  (tests/test_fixtures.py checks both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SIZE = 32
SEED = 0
KINDS = ("float", "int8", "uint8")


def build_model(size: int = SIZE, seed: int = SEED):
    """The tiny Keras model: Conv2D(4) -> global average pool -> Dense(1), seeded weights."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(1)(x))


def convert(model, kind: str, size: int = SIZE, seed: int = SEED) -> bytes:
    """``model`` as a TFLite flatbuffer: ``float``, or full integer with ``int8``/``uint8`` I/O."""
    import numpy as np
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "float":
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(8):
                yield [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]

        io_type = tf.int8 if kind == "int8" else tf.uint8
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    return conv.convert()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_fixtures(out: Path, size: int = SIZE, seed: int = SEED) -> dict[str, Path]:
    """Writes the fixtures into ``out`` and returns their paths by kind (``float``, ``int8``, ``uint8``, ``keras``)."""
    import keras
    import tensorflow as tf

    from tla_edge.runtime import metadata

    out.mkdir(parents=True, exist_ok=True)
    model = build_model(size, seed)
    meta = metadata.ModelMetadata(input_size=(size, size), crop_scale=2.0, threshold=0.5, architecture="tiny")
    paths = {}
    for kind in KINDS:
        path = out / f"tiny_{kind}.tflite"
        path.write_bytes(convert(model, kind, size, seed))
        metadata.sidecar_path(path).write_text(json.dumps(meta.to_dict()))
        paths[kind] = path
    paths["keras"] = out / "tiny.keras"
    model.save(paths["keras"])
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != "MANIFEST.json")
    manifest = {"tensorflow": tf.__version__, "keras": keras.__version__, "size": size, "seed": seed,
                "sha256": {p.name: sha256(p) for p in files}}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder to write (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="overwrite fixtures already there")
    args = ap.parse_args(argv)
    if (args.out / "MANIFEST.json").exists() and not args.force:
        print(f"{args.out} already holds fixtures; pass --force to overwrite", file=sys.stderr)
        return 2
    for kind, path in write_fixtures(args.out).items():
        print(f"{kind:6s} {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
