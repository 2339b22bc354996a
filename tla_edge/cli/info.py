"""Inspect a .tflite model: inputs and outputs with quantization, op histogram,
float tensors, tla-edge metadata, file size and the Edge TPU verdict with reasons.

The report is :func:`tla_edge.runtime.modelinfo.describe` (read through
LiteRT's schema bindings: no interpreter or TensorFlow is needed, and a model
compiled for the Edge TPU can be inspected without one); this module holds the
flags and the text layout.

A BlazeFace face detector (the bundled ``short`` and ``full`` can be named
as they are) gets a ``detector`` section: its layout, the backends that run
it, and what an Edge TPU detector would need.

A model that is a member of a fused set says so (``fusion``: its partners and
the fused threshold). A folder (``tla-edge calibrate --out DIR``, ``evaluate
--store-fusion DIR``) is the model or the set it holds, as ``--model DIR`` is
elsewhere: a set is reported member by member (primary first) after one line
saying whether its fused threshold matches the files; ``--check-edgetpu``
then asks it of every member.

Examples:
  tla-edge info model_int8.tflite
  tla-edge info short                               # the bundled face detector
  tla-edge info model_int8.tflite --json > model_int8.info.json
  tla-edge info model_int8.tflite --check-edgetpu   # exit 1 unless Edge TPU ready
  tla-edge info kiosk/                              # the set calibrate --out kiosk/ wrote
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pathlib import Path

from tla_edge.cli import argtypes
from tla_edge.errors import UserError
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime import modelinfo
from tla_edge.runtime.modelinfo import describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``info`` flags."""
    parser.add_argument("model", type=argtypes.path, metavar="MODEL.tflite",
                        help="the TFLite model to inspect; 'short' or 'full' for a bundled face detector; "
                             "a folder: the model or fused set it holds (calibrate --out DIR)")
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
        fusion = (meta.get("extra") or {}).get("fusion")
        if isinstance(fusion, dict) and fused_set.fusion_names_ok(fusion.get("models")):
            own = Path(d["path"]).name
            others = [n for n in fusion["models"] if n != own]
            role = "the primary" if fusion["models"][0] == own else "a partner"
            lines.append(f"fusion     {role} of a set of {len(fusion['models'])}, with {', '.join(others)}: "
                         f"fused threshold {fusion['threshold']:.4g} (run them together: --model each, or "
                         "their folder)")
    tpu = d["edgetpu"]
    lines.append(f"Edge TPU   {'ready' if tpu['ready'] else 'NOT ready'}")
    lines += [f"  - {r}" for r in tpu["reasons"]]
    lines += [f"  note: {n}" for n in tpu["notes"]]
    det = d.get("detector")
    if det is not None:
        lines.append(f"detector   {det['layout']}; backends: {', '.join(det['backends'])}")
        lines.append(f"  Edge TPU: {det['edgetpu']}")
    return "\n".join(lines)


def describe_set(folder: Path) -> dict[str, Any]:
    """What a set folder holds: ``{"path", "models", "fused_threshold", "fusion_ok", "fusion_problem",
    "members"}``, ``members`` being :func:`describe` of each model, primary first.

    ``fusion_ok`` says whether the folder's shared fusion record matches its files (hashes and
    metadata, as a pipeline loading the set checks); when it does not, ``fusion_problem`` says why
    and ``fused_threshold`` is None.

    Raises:
      UserError: a folder that holds no model, a ``tla-edge train`` folder, or models that are not one set.
    """
    try:
        files = fused_set.set_files(folder)
    except ValueError as err:
        raise UserError(str(err)) from err
    if files == [folder]:
        raise UserError(f"model folder '{folder}' is a tla-edge train folder (model.keras, no .tflite); "
                        "expected a .tflite model: convert it first with 'tla-edge convert'")
    out: dict[str, Any] = {"path": str(folder), "models": [f.name for f in files]}
    if len(files) > 1:
        try:
            threshold = fused_set.fused_threshold([(f, metadata_lib.load(f)) for f in files])
            out.update(fused_threshold=threshold, fusion_ok=True, fusion_problem=None)
        except ValueError as err:
            out.update(fused_threshold=None, fusion_ok=False, fusion_problem=str(err))
    out["members"] = [describe(f) for f in files]
    return out


def format_set_report(s: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe_set`'s output."""
    members = s["members"]
    if len(members) == 1:
        return f"folder     {s['path']}: one model\n" + format_report(members[0])
    head = f"set        {s['path']}: {len(members)} models fused by their mean score, primary first: " + \
        ", ".join(s["models"])
    if s["fusion_ok"]:
        head += f"\n  fused threshold {s['fused_threshold']:.4g} (its record matches the files)"
    else:
        head += f"\n  NO valid fused threshold: {s['fusion_problem']}"
    blocks = [head] + [f"member {i + 1} of {len(members)}" + (" (primary)" if i == 0 else "") + "\n"
                       + format_report(m) for i, m in enumerate(members)]
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge info``; returns 0, or 1 with --check-edgetpu on a model (any member) that is not ready."""
    if Path(args.model).is_dir():
        s = describe_set(Path(args.model))
        print(json.dumps(s, indent=2) if args.json else format_set_report(s))
        return 1 if args.check_edgetpu and not all(m["edgetpu"]["ready"] for m in s["members"]) else 0
    d = describe(args.model)
    print(json.dumps(d, indent=2) if args.json else format_report(d))
    return 1 if args.check_edgetpu and not d["edgetpu"]["ready"] else 0
