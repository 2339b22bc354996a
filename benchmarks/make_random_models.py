"""Builds the MobileNetV2-160 liveness models the latency benchmark runs.

    python benchmarks/make_random_models.py OUT_DIR [--data ../shared/data/nuaa-train]

Writes ``OUT_DIR/mnv2_160_float32.tflite`` and ``OUT_DIR/mnv2_160_int8.tflite``
(int8 input and output): MobileNetV2 (alpha 1.0, random weights, ``weights=None``)
with the project's Dense(1) logit head, tla-edge metadata embedded and as a
sidecar. Latency does not depend on the weights' values, only on the graph and
the number format, so an untrained model times exactly like a trained one.

The int8 model is calibrated on about 50 real NUAA face crops made by the
shared :func:`tla_edge.runtime.preprocess.crop_face` (faces found by
:class:`tla_edge.runtime.faces.FaceDetector`), so activation ranges match real frames;
without the data or the detector it falls back to seeded random inputs and
says so. Both models have a fixed batch of 1: a dynamic batch dimension would
make the Edge TPU compiler refuse the model.

Needs the 'train' extra (TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # scripts/common.py: the shared data folder

from common import data_dir  # noqa: E402
from tla_edge.runtime import metadata as metadata_lib  # noqa: E402
from tla_edge.runtime import preprocess  # noqa: E402
from tla_edge.errors import UserError, import_tensorflow  # noqa: E402
from tla_edge.fileio import check_writable, write_bytes_atomic, write_json_atomic  # noqa: E402

SEED = 0
INPUT_SIZE = 160
CALIBRATION_CROPS = 50


def _tf() -> Any:
    return import_tensorflow("train")


def build_model(input_size: int = INPUT_SIZE, seed: int = SEED) -> Any:
    """MobileNetV2 (alpha 1.0, random weights) + the project's Dense(1) logit head."""
    tf = _tf()
    from tla_edge.train.models import build_mobilenetv2

    tf.keras.utils.set_random_seed(seed)
    return build_mobilenetv2(input_size, alpha=1.0, weights=None)


def calibration_crops(
    data_dir: Path | None, count: int = CALIBRATION_CROPS, size: int = INPUT_SIZE, seed: int = SEED
) -> tuple[np.ndarray, str]:
    """Up to ``count`` uint8 face crops from NUAA (half real, half attack), made by crop_face.

    Returns:
      ``(crops (N, size, size, 3) uint8, description)``; random uint8 images
      and a description saying so when the data or the detector is missing.
    """
    rng = np.random.default_rng(seed)
    why = ""
    if data_dir is None or not (data_dir / "ClientRaw").is_dir():
        why = f"NUAA data not found at '{data_dir}'"
    else:
        try:
            from tla_edge.runtime.faces import FaceDetector
            from tla_edge.runtime.sources import read_image_bgr, bgr_to_rgb
        except ImportError as err:
            why = f"face detector unavailable ({err})"
    if why:
        print(f"calibration: {why}; using {count} seeded random images", file=sys.stderr)
        return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), f"random ({why})"

    paths = []
    for sub in ("ClientRaw", "ImposterRaw"):
        files = sorted((data_dir / sub).rglob("*.jpg"))
        picks = rng.choice(len(files), size=min(len(files), count // 2 + 5), replace=False)
        paths += [files[i] for i in sorted(picks)]
    crops = []
    with FaceDetector("short", mode="image") as detector:
        for path in paths:
            rgb = bgr_to_rgb(read_image_bgr(path))
            faces = detector.detect(rgb)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.area)
            crops.append(preprocess.crop_face(rgb, face, preprocess.DEFAULT_SCALE, size))
            if len(crops) == count:
                break
    if not crops:
        print("calibration: no face found; using random images", file=sys.stderr)
        return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), "random (no face found)"
    return np.stack(crops), f"{len(crops)} NUAA face crops (crop_face scale {preprocess.DEFAULT_SCALE})"


def convert(model: Any, crops: np.ndarray | None, normalization: str = "mobilenet_v2") -> bytes:
    """float32 when ``crops`` is None, else full int8 (int8 input and output) calibrated on them.

    Uses the project's converter library (batch 1, static shapes, weights frozen).
    """
    from tla_edge.converters.tflite import convert as convert_model
    from tla_edge.converters.tflite import representative_dataset

    if crops is None:
        return convert_model(model, "float32")
    return convert_model(model, "int8", representative_dataset(crops, normalization), io="int8")


def main(argv: list[str] | None = None) -> int:
    """Builds the models; returns the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the .tflite files into")
    parser.add_argument("--data", type=Path, default=data_dir(), help="NUAA folder for calibration crops")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_CROPS, help="calibration crops")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (UserError, FileNotFoundError, ValueError, OSError) as err:
        print(f"make_random_models: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    outputs = {kind: args.out_dir / f"mnv2_{INPUT_SIZE}_{kind}.tflite" for kind in ("float32", "int8")}
    for path in outputs.values():
        check_writable(path, args.force)
        check_writable(metadata_lib.sidecar_path(path), args.force)
    if args.calibration < 1:
        raise ValueError(f"--calibration {args.calibration} is not >= 1")
    t0 = time.perf_counter()
    model = build_model()
    print(f"built MobileNetV2-{INPUT_SIZE} alpha 1.0 (random weights): {model.count_params():,} parameters",
          file=sys.stderr)
    crops, calib = calibration_crops(args.data, args.calibration)
    print(f"calibration: {calib}", file=sys.stderr)
    converted = {kind: convert(model, None if kind == "float32" else crops) for kind in outputs}
    for kind, path in outputs.items():
        data = converted[kind]
        meta = metadata_lib.ModelMetadata(
            input_size=(INPUT_SIZE, INPUT_SIZE),
            architecture="mobilenetv2",
            extra={
                "weights": f"random (seed {SEED}), untrained: for latency benchmarks only",
                "quantization": "float32" if kind == "float32" else "full int8 (int8 input and output)",
                "calibration": None if kind == "float32" else calib,
                "made_by": "benchmarks/make_random_models.py",
            },
        )
        write_bytes_atomic(path, metadata_lib.embed(data, meta))
        write_json_atomic(metadata_lib.sidecar_path(path), meta.to_dict())
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
