"""Inspect a .tflite model: inputs and outputs with quantization, op histogram,
float tensors, tla-edge metadata, file size and the Edge TPU verdict with reasons.

Reads the file's FlatBuffer directly: no TFLite runtime or TensorFlow is
needed, and a model compiled for the Edge TPU can be inspected without one.

A BlazeFace face detector (the bundled ``short`` and ``full`` can be named
as they are) gets a ``detector`` section: its layout, the backends that run
it, and what an Edge TPU detector would need.

Examples:
  tla-edge info model_int8.tflite
  tla-edge info short                               # the bundled face detector
  tla-edge info model_int8.tflite --json > model_int8.info.json
  tla-edge info model_int8.tflite --check-edgetpu   # exit 1 unless Edge TPU ready
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime import modelinfo as tflite_info
from tla_edge.runtime.assets import ASSETS_DIR
from tla_edge.runtime.faces import BUNDLED_MODELS as BUNDLED_DETECTORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``info`` flags."""
    parser.add_argument("model", type=Path, metavar="MODEL.tflite",
                        help="the TFLite model to inspect; 'short' or 'full' for a bundled face detector")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--check-edgetpu",
        action="store_true",
        help="exit with code 1 when the model is not ready for the Edge TPU compiler",
    )


def describe(path: str | Path) -> dict[str, Any]:
    """Everything ``tla-edge info`` reports about a model, JSON-ready.

    Args:
      path: the ``.tflite`` file.

    Returns:
      :meth:`ModelInfo.to_dict` plus ``sha256``, ``metadata`` (the tla-edge
      metadata dict or None), ``metadata_source``, ``edgetpu``
      (``{"ready", "reasons", "notes"}``) and ``detector`` (see
      :func:`detector_section`; None for a model that is not BlazeFace).

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is a directory, not a TFLite model, or damaged.
    """
    path = Path(path)
    if not path.exists() and str(path) in BUNDLED_DETECTORS:
        path = ASSETS_DIR / BUNDLED_DETECTORS[str(path)]
    if path.is_dir():
        raise ValueError(f"model '{path}' is a directory; expected a .tflite file")
    try:
        info = tflite_info.inspect_model(path)
    except ValueError as err:
        if path.suffix == ".keras":
            raise ValueError(f"{err}; convert a .keras model first with 'tla-edge convert'") from err
        raise
    verdict = tflite_info.edgetpu_readiness(info)
    out = info.to_dict()
    out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta, source = _metadata(path)
    out["metadata"] = meta
    out["metadata_source"] = source
    out["edgetpu"] = {"ready": verdict.ready, "reasons": verdict.reasons, "notes": verdict.notes}
    out["detector"] = detector_section(info, verdict.ready)
    return out


def detector_section(info: tflite_info.ModelInfo, edgetpu_ready: bool) -> dict[str, Any] | None:
    """What ``info`` says about a BlazeFace face detector; None for any other model.

    A model is BlazeFace when its input and its two outputs (regressors
    ``[1, N, 16]``, scores ``[1, N, 1]``) match a layout of
    :mod:`tla_edge.runtime.blazeface`.

    Returns:
      ``{"layout", "anchors", "backends", "full_integer", "edgetpu"}``:
      ``edgetpu`` says how the detector runs on a Coral, or what it would need.
    """
    from tla_edge.runtime import blazeface

    if len(info.inputs) != 1 or len(info.outputs) != 2:
        return None
    shape = tuple(info.inputs[0].shape)
    outs = sorted((tuple(t.shape) for t in info.outputs), key=lambda s: s[-1])
    for config in blazeface.CONFIGS:
        n, side = config.num_boxes, config.input_size
        if shape == (1, side, side, 3) and outs == [(1, n, 1), (1, n, 16)]:
            break
    else:
        return None
    full_integer = not info.float_activations and not info.float_constants
    fp16 = any(t.dtype == "float16" for t in info.tensors)
    name = "short range" if config == blazeface.SHORT_RANGE else "full range"
    if edgetpu_ready:
        edgetpu = ("ready for edgetpu_compiler; run the compiled model through LiteRT with the Edge TPU "
                   "delegate (tla_edge.runtime.blazeface.BlazeFaceLiteRT(..., edgetpu=True)): MediaPipe Tasks has no "
                   "Edge TPU delegate; anchors, decoding and NMS stay on the CPU")
    else:
        edgetpu = ("needs a full-integer model (int8 weights and activations, int8/uint8 input), which MediaPipe "
                   "does not publish: it ships BlazeFace as float"
                   + (" (float16 weights dequantized at run time)" if fp16 else "") + ". "
                   "Quantize the float model with calibration frames, compile it with edgetpu_compiler, then run "
                   "it through LiteRT with the Edge TPU delegate; until then the detector runs on the CPU "
                   "(mediapipe or litert backend) beside a liveness model on the Edge TPU")
    return {
        "layout": f"BlazeFace {name}: {side}x{side} RGB input, {n} SSD anchors "
                  f"(strides {', '.join(map(str, config.strides))}), 16 regressors + 1 score per anchor",
        "anchors": n,
        "backends": ["mediapipe", "litert"] if not full_integer else ["litert"],
        "full_integer": full_integer,
        "edgetpu": edgetpu,
    }


def _metadata(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The model's tla-edge metadata and where it was found (``embedded``, ``sidecar ...``, ``none``)."""
    embedded = metadata_lib.read_embedded(path)
    if embedded is not None:
        return embedded.to_dict(), "embedded"
    side = metadata_lib.sidecar_path(path)
    if not side.is_file():
        return None, "none"
    try:
        meta = metadata_lib.load(path)
    except ValueError as err:  # report it, but still show the rest of the model
        return None, f"invalid sidecar '{side}': {' '.join(str(err).split())}"
    return (meta.to_dict() if meta else None), f"sidecar '{side}'"


def _quant(t: dict[str, Any]) -> str:
    q = t["quantization"]
    if q["channels"] == 0:
        return "not quantized"
    if q["channels"] > 1:
        return f"per-channel ({q['channels']} scales, axis {q['quantized_dimension']})"
    return f"scale {q['scale']:.6g} zero_point {q['zero_point']}"


def format_report(d: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe`'s output."""
    lines = [
        f"model      {d['path']}",
        f"size       {d['file_size']:,} bytes ({d['file_size'] / 1e6:.2f} MB), sha256 {d['sha256'][:16]}",
        f"structure  schema v{d['schema_version']}, {d['subgraphs']} subgraph(s), {d['tensors']} tensors, "
        f"{d['operators']} ops" + (f" ({d['description']})" if d["description"] else ""),
    ]
    for title in ("inputs", "outputs"):
        lines.append(f"{title}")
        for t in d[title]:
            shape = list(t["shape"])
            sig = "" if t["shape_signature"] == shape else f" (signature {t['shape_signature']})"
            lines.append(
                f"  {tflite_info.short_name(t['name'], 44):44s} {t['dtype']:8s} {str(shape):18s}{sig} {_quant(t)}"
            )
    lines.append("ops        " + ", ".join(f"{k} {v}" for k, v in d["op_histogram"].items()))
    lines.append("tensors    " + ", ".join(f"{k} {v}" for k, v in d["dtype_counts"].items()))
    f = d["float_tensors"]
    lines.append(f"float      {f['activations']} activations, {f['constants']} constants")
    lines.append(f"shapes     {'static' if d['static_shapes'] else 'DYNAMIC (a -1 in a shape signature)'}")
    meta = d["metadata"]
    if meta is None:
        lines.append(f"metadata   none ({d['metadata_source']})")
    else:
        h, w = meta["input_size"]
        lines.append(
            f"metadata   {meta.get('format', '?')} ({d['metadata_source']}): input {h}x{w}, "
            f"crop_scale {meta['crop_scale']}, normalization {meta['normalization']}, "
            f"output {meta['output']} (live_index {meta['live_index']}), threshold {meta['threshold']:.4g}, "
            f"architecture {meta['architecture']}"
        )
    tpu = d["edgetpu"]
    lines.append(f"Edge TPU   {'ready' if tpu['ready'] else 'NOT ready'}")
    lines += [f"  - {r}" for r in tpu["reasons"]]
    lines += [f"  note: {n}" for n in tpu["notes"]]
    det = d.get("detector")
    if det is not None:
        lines.append(f"detector   {det['layout']}; backends: {', '.join(det['backends'])}")
        lines.append(f"  Edge TPU: {det['edgetpu']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge info``; returns 0, or 1 with --check-edgetpu on a model that is not ready."""
    d = describe(args.model)
    print(json.dumps(d, indent=2) if args.json else format_report(d))
    return 1 if args.check_edgetpu and not d["edgetpu"]["ready"] else 0
