"""Inspect a .tflite model: inputs and outputs with quantization, op histogram,
float tensors, tla-edge metadata, file size and the Edge TPU verdict with reasons.

The report is :func:`tla_edge.runtime.modelinfo.describe` (read through
LiteRT's schema bindings: no interpreter or TensorFlow is needed, and a model
compiled for the Edge TPU can be inspected without one); this module holds the
flags and the text layout.

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
import json
from typing import Any

from tla_edge.cli import argtypes
from tla_edge.runtime import modelinfo
from tla_edge.runtime.modelinfo import describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``info`` flags."""
    parser.add_argument("model", type=argtypes.path, metavar="MODEL.tflite",
                        help="the TFLite model to inspect; 'short' or 'full' for a bundled face detector")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--check-edgetpu",
        action="store_true",
        help="exit with code 1 when the model is not ready for the Edge TPU compiler",
    )


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
                f"  {modelinfo.short_name(t['name'], 44):44s} {t['dtype']:8s} {str(shape):18s}{sig} {_quant(t)}"
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
        rule = f", crop_rule {meta['crop_rule']}" if meta.get("crop_rule", "pad") != "pad" else ""  # "pad": as before
        lines.append(
            f"metadata   {meta.get('format', '?')} ({d['metadata_source']}): input {h}x{w}, "
            f"crop_scale {meta['crop_scale']}{rule}, normalization {meta['normalization']}, "
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
