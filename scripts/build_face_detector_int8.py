#!/usr/bin/env python
"""A full-integer BlazeFace (short range) from the bundled float one, and its agreement.

MediaPipe publishes BlazeFace as float only (float16 weights), which the Edge
TPU cannot run. This script:

1. rebuilds the bundled ``face_detection_short_range.tflite`` as a Keras model,
   op by op, with its own weights (CONV_2D, DEPTHWISE_CONV_2D, ADD, RELU, PAD,
   MAX_POOL_2D, RESHAPE, CONCATENATION), and checks that it computes what the
   ``.tflite`` computes;
2. converts it with the project's converter (``tla_edge.converters.tflite.convert``,
   full-integer int8, int8 interface; score logits clipped to +-10 first, see
   :func:`keras_from_tflite`) calibrated on NUAA frames letterboxed
   exactly as the detector sees them (``tla_edge.runtime.blazeface.image_to_tensor``),
   drawn across class and attack species;
3. measures, on every other frame of the dataset, the int8 detector against
   the float one (both through :class:`tla_edge.runtime.blazeface.BlazeFaceLiteRT`):
   frames found, box IoU, keypoint distance, score difference.

The model is written (``--out``) only where the agreement holds (the same
criteria as the float backends: the same frames found, IoU >= 0.98 on every
frame, keypoints within 1 px); the measurement is written either way.

    python scripts/build_face_detector_int8.py --report benchmarks/results/detector_int8_agreement.json

Needs the ``train`` extra (TensorFlow) for the conversion.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common import REPO, data_dir

sys.path.insert(0, str(REPO))

from tla_edge import fileio  # noqa: E402

from tla_edge.runtime import blazeface  # noqa: E402

from tla_edge.data import datasets  # noqa: E402
from tla_edge.errors import UserError, import_tensorflow  # noqa: E402
from tla_edge.runtime.faces import bundled_detector_path  # noqa: E402
from tla_edge.progress import Progress  # noqa: E402

MIN_IOU = 0.98
MAX_KEYPOINT_PX = 1.0
DEFAULT_CALIBRATION = 300
SCORE_CLIP = 10.0


# --- .tflite -> Keras ------------------------------------------------------------


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def keras_from_tflite(path: Path, score_clip: float | None = None) -> Any:
    """Rebuilds a float BlazeFace ``.tflite`` as a Keras functional model with the same weights.

    Args:
      path: the float model.
      score_clip: clip the score logits to ``[-score_clip, score_clip]`` (None:
        not). Their range is dominated by anchors far from any face (logits
        down to -500), so an int8 score tensor calibrated on it keeps no step
        above 0 and finds nothing; past +-10 the sigmoid is 0 or 1 to 5
        decimals, so clipping there changes no decision.

    Raises:
      ValueError: an op or option this rebuild does not handle.
    """
    import keras
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    sg = model.subgraphs[0]
    names = _op_names()
    acts = {0: None, 1: "relu"}

    def const(i: int) -> np.ndarray:
        t = sg.tensors[i]
        data = model.buffers[t.buffer].data
        if data is None:
            raise ValueError(f"tensor {i} has no data")
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[t.type]
        return np.frombuffer(bytes(data), dtype=dtype).reshape(t.shape).astype(
            np.float32 if dtype != np.int32 else np.int32)

    x_in = keras.Input((128, 128, 3), batch_size=1, name="image")
    values: dict[int, Any] = {int(sg.inputs[0]): x_in}
    weights: dict[int, np.ndarray] = {}
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ins, out = [int(i) for i in op.inputs], int(op.outputs[0])
        o = op.builtinOptions
        if name == "DEQUANTIZE":
            weights[out] = const(ins[0])
            continue

        def w(i: int) -> np.ndarray:
            return weights[i] if i in weights else const(i)

        act = acts.get(getattr(o, "fusedActivationFunction", 0))
        if act is None and getattr(o, "fusedActivationFunction", 0) not in (0,):
            raise ValueError(f"{name}: fused activation {o.fusedActivationFunction} not handled")
        pad = {0: "same", 1: "valid"}.get(getattr(o, "padding", 0))
        if name == "CONV_2D":
            kernel, bias = w(ins[1]), w(ins[2])  # [out, kh, kw, in]
            layer = keras.layers.Conv2D(kernel.shape[0], kernel.shape[1:3], strides=(o.strideH, o.strideW),
                                        padding=pad, activation=act)
            y = layer(values[ins[0]])
            layer.set_weights([kernel.transpose(1, 2, 3, 0), bias])
        elif name == "DEPTHWISE_CONV_2D":
            kernel, bias = w(ins[1]), w(ins[2])  # [1, kh, kw, in * mult]
            c_in = int(values[ins[0]].shape[-1])
            mult = kernel.shape[-1] // c_in
            layer = keras.layers.DepthwiseConv2D(kernel.shape[1:3], strides=(o.strideH, o.strideW),
                                                 padding=pad, depth_multiplier=mult, activation=act)
            y = layer(values[ins[0]])
            layer.set_weights([kernel.reshape(*kernel.shape[1:3], c_in, mult), bias])
        elif name == "RELU":
            y = keras.layers.ReLU()(values[ins[0]])
        elif name == "ADD":
            y = keras.layers.Add()([values[ins[0]], values[ins[1]]])
            if act:
                y = keras.layers.ReLU()(y)
        elif name == "PAD":
            paddings = const(ins[1]).tolist()
            y = keras.layers.Lambda(lambda t, p=paddings: tf.pad(t, p))(values[ins[0]])
        elif name == "MAX_POOL_2D":
            y = keras.layers.MaxPooling2D((o.filterHeight, o.filterWidth), (o.strideH, o.strideW),
                                          padding=pad)(values[ins[0]])
        elif name == "RESHAPE":
            shape = [int(d) for d in sg.tensors[out].shape]
            y = keras.layers.Reshape(shape[1:])(values[ins[0]])
        elif name == "CONCATENATION":
            y = keras.layers.Concatenate(axis=o.axis)([values[i] for i in ins])
        else:
            raise ValueError(f"op {name} is not handled by this rebuild")
        values[out] = y
    outputs = [values[int(i)] for i in sg.outputs]  # regressors, classificators
    if score_clip is not None:
        outputs = [keras.layers.Lambda(lambda t, c=float(score_clip): tf.clip_by_value(t, -c, c))(o)
                   if int(o.shape[-1]) == 1 else o for o in outputs]
    return keras.Model(x_in, outputs)


# --- frames ----------------------------------------------------------------------------


def tensor_of(rgb: np.ndarray, size: int = 128) -> np.ndarray:
    """A frame as the detector's input: letterboxed, [-1, 1], (1, size, size, 3)."""
    h, w = rgb.shape[:2]
    return blazeface.image_to_tensor(rgb, blazeface.letterbox_roi(w, h, size, size), size, size)


def calibration_indices(records: Sequence[Any], n: int, seed: int = 0) -> list[int]:
    """``n`` records drawn across class and attack species (the converter's own stratified draw)."""
    from tla_edge.converters.calibration import stratified_indices

    strata = [f"{r.label}/{r.species}" for r in records]
    return sorted(int(i) for i in stratified_indices(strata, n, seed))


def agreement(float_det: Any, int8_det: Any, records: Sequence[Any], root: Path, quiet: bool) -> dict[str, Any]:
    """The int8 detector against the float one on every record, largest face against largest face."""
    found = {"both": 0, "float_only": 0, "int8_only": 0, "neither": 0}
    ious, kps, scores = [], [], []
    differs, low = [], []
    with Progress(len(records), "agreement", unit="img", enabled=not quiet) as bar:
        for rec in records:
            bar.update()
            rgb = datasets.read_image_rgb(rec.path)
            if rgb is None:
                continue
            a, b = float_det.detect(rgb), int8_det.detect(rgb)
            key = "both" if a and b else "float_only" if a else "int8_only" if b else "neither"
            found[key] += 1
            name = Path(rec.path).resolve().relative_to(root).as_posix()
            if key in ("float_only", "int8_only"):
                differs.append(name)
            if key == "both":
                # the face the pipeline would judge: the largest of each
                (box_a, s_a, k_a), (box_b, s_b, k_b) = (max(f, key=lambda d: d[0][2] * d[0][3]) for f in (a, b))
                iou = _iou(box_a, box_b)
                ious.append(iou)
                kps.append(float(np.abs(np.subtract(k_a, k_b)).max()))
                scores.append(abs(s_a - s_b))
                if iou < MIN_IOU:
                    low.append(name)
    ious_a = np.asarray(ious)
    return {
        "frames": sum(found.values()),
        "found": found,
        "same_frames_found": not differs,
        "found_differs": differs[:20],
        "min_iou": round(float(ious_a.min()), 4) if ious else None,
        "median_iou": round(float(np.median(ious_a)), 4) if ious else None,
        "iou_percentiles": {str(p): round(float(np.percentile(ious_a, p)), 4) for p in (1, 5, 50)} if ious else None,
        "frames_iou_below_min": len(low),
        "max_keypoint_px": round(max(kps), 3) if kps else None,
        "median_keypoint_px": round(float(np.median(kps)), 3) if kps else None,
        "max_score_diff": round(max(scores), 4) if scores else None,
        "pass": bool(not differs and not low and kps and max(kps) <= MAX_KEYPOINT_PX),
    }


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    """Builds, converts, measures; one line and exit 2 on a user mistake."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?", default=None,
                        help="dataset for calibration and agreement (None: $TLA_EDGE_DATA/nuaa-train or "
                        "../shared/data/nuaa-train)")
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION, help="calibration frames")
    parser.add_argument("--report", type=Path, required=True, help="agreement JSON to write")
    parser.add_argument("--out", type=Path, default=None,
                        help="int8 .tflite to write when the agreement holds (None: do not keep it)")
    parser.add_argument("--force", action="store_true", help="replace --report / --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if args.calibration < 1:
            raise ValueError(f"--calibration {args.calibration} is not >= 1")
        fileio.check_writable(args.report, args.force)
        if args.out is not None:
            fileio.check_writable(args.out, args.force)
        data = args.data or data_dir()
        if not data.exists():
            raise FileNotFoundError(f"dataset '{data}' not found; pass its folder")
        root = Path(data).resolve()
        records = list(datasets.load_dataset(data))
        src = bundled_detector_path("short")

        import_tensorflow()  # the train extra; fails early with a clear message
        from tla_edge.converters import tflite as conv

        keras_model = keras_from_tflite(src)
        float_det = blazeface.BlazeFaceLiteRT(src, min_score=0.6)
        probe = [datasets.read_image_rgb(r.path) for r in records[:: max(1, len(records) // 8)][:8]]
        rebuild_err = 0.0
        for rgb in probe:
            t = tensor_of(rgb)
            want_boxes, want_logits = float_det.raw_outputs(t)
            got = keras_model(t, training=False)
            rebuild_err = max(rebuild_err, float(np.abs(np.asarray(got[0])[0] - want_boxes).max()),
                              float(np.abs(np.asarray(got[1]).reshape(-1) - want_logits).max()))
        if rebuild_err > 1e-2:
            raise ValueError(f"the Keras rebuild differs from the .tflite by {rebuild_err:.3g}; not converting")

        calib = calibration_indices(records, args.calibration)
        tensors = [tensor_of(datasets.read_image_rgb(records[i].path)) for i in calib]
        clipped = keras_from_tflite(src, score_clip=SCORE_CLIP)
        int8_bytes = conv.convert(clipped, "int8", representative=tensors, io="int8")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            int8_path = Path(tmp) / "face_detection_short_range_int8.tflite"
            int8_path.write_bytes(int8_bytes)
            int8_det = blazeface.BlazeFaceLiteRT(int8_path, min_score=0.6)
            summary = conv.tensor_summary(int8_bytes)
            used = set(calib)
            held_out = [r for i, r in enumerate(records) if i not in used]
            result = agreement(float_det, int8_det, held_out, root, args.quiet)
            from tla_edge.runtime.edgetpu_check import edgetpu_readiness
            from tla_edge.runtime.modelinfo import inspect_model

            ready = edgetpu_readiness(inspect_model(int8_path))
            kept = None
            if result["pass"] and args.out is not None:
                fileio.write_bytes_atomic(args.out, int8_bytes)
                kept = args.out.name
        report = {
            "what": "full-integer int8 BlazeFace short range (the bundled float model rebuilt in Keras, converted "
                    "by tla_edge.converters.tflite.convert) against the float model, both through LiteRT",
            "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dataset": data.name,
            "keras_rebuild_max_abs_diff": round(rebuild_err, 6),
            "score_logits_clipped_to": SCORE_CLIP,
            "calibration": {"frames": len(calib), "drawn": "stratified by class and attack species, seed 0",
                            "input": "letterboxed as the detector sees them (blazeface.image_to_tensor)"},
            "int8_model": {"bytes": len(int8_bytes), "input_dtype": summary.input_dtype,
                           "output_dtype": summary.output_dtype, "float_tensors": summary.float_tensors,
                           "edgetpu_ready": ready.ready, "edgetpu_reasons": ready.reasons[:5]},
            "criteria": {"same_frames_found": True, "min_iou": MIN_IOU, "max_keypoint_px": MAX_KEYPOINT_PX},
            "agreement_on_frames_not_used_for_calibration": result,
            "offered": bool(kept),
            "offered_as": "--detector short-int8" if kept else None,
        }
        fileio.write_json_atomic(args.report, report)
    except ImportError as err:
        print(f"build_face_detector_int8: error: {err}; install the 'train' extra", file=sys.stderr)
        return 2
    except (UserError, FileNotFoundError, ValueError) as err:
        print(f"build_face_detector_int8: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    r = report["agreement_on_frames_not_used_for_calibration"]
    print(f"int8 vs float on {r['frames']} frames: found {r['found']}, min IoU {r['min_iou']} "
          f"(median {r['median_iou']}), max keypoint {r['max_keypoint_px']} px, pass {r['pass']}; "
          f"Edge TPU ready {report['int8_model']['edgetpu_ready']}")
    print(f"wrote {args.report}" + (f" and {args.out}" if report["offered"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
