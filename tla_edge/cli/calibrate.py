"""Choose a model's decision threshold on a recording of the deployment camera; write a calibrated copy.

Every frame of DATA (a recording by ``tla-edge record``, or any dataset
layout) goes through the device pipeline: the face detector in image mode,
the shared crop, the ``.tflite`` model, no smoothing. The threshold is then
chosen on the scores:

- ``--target-bpcer B`` (default 0.01): the strictest threshold that rejects
  at most a fraction B of the bona fide frames; works on bona fide frames
  alone, and reports the APCER when attacks were recorded too;
- ``--at eer`` or ``--target-apcer A``: need bona fide and attack frames.

The model file is never changed: a copy with the new threshold in its
metadata is written to --out (embedded, and as the ``<out>.json`` sidecar).
The expected BPCER and APCER come with a Clopper-Pearson interval over the
frames scored, and the number of people they came from: frames of one person
are alike, so with few people the true uncertainty is wider.

When no threshold serves (bona fide frames score below the attacks, the
threshold would fall under --floor, or the other error rate exceeds
--max-error), nothing is written, the reasons are printed and the exit code
is 1: fine-tune on the recording (``tla-edge train ... --weights default``).

Example:
  tla-edge calibrate data/kiosk --out kiosk_int8.tflite                 # bundled model, BPCER 1 %
  tla-edge calibrate data/kiosk --model mine_int8.tflite --at eer --out mine_kiosk.tflite
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tla_edge import fileio
from tla_edge.cli import argtypes
from tla_edge.data import calibration
from tla_edge.errors import UserError
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.thresholds import DEFAULT_FLOOR, DEFAULT_MAX_ERROR, DEFAULT_TARGET_BPCER, resolve_rule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``calibrate`` flags."""
    parser.add_argument("data", type=argtypes.path, metavar="DATA", help="a recording (tla-edge record) or any dataset")
    parser.add_argument("--model", type=argtypes.path, default=None, metavar="MODEL.tflite",
                        help="the .tflite to calibrate, with tla-edge metadata (None: the bundled int8 model, "
                        "alone: the calibrated copy runs without a fusion partner)")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="CALIBRATED.tflite",
                        help="the calibrated copy (its metadata sidecar is written beside it)")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--target-bpcer", type=argtypes.probability, default=DEFAULT_TARGET_BPCER, metavar="B",
                      help="strictest threshold rejecting at most B of the bona fide frames")
    rule.add_argument("--target-apcer", type=argtypes.probability, default=None, metavar="A",
                      help="most permissive threshold accepting at most A of each attack species (needs attacks)")
    rule.add_argument("--at", type=str, choices=("eer",), default=None,
                      help="threshold at the equal error rate (needs attacks)")
    parser.add_argument("--sessions", type=str, default=None, help="use only these comma-separated sessions")
    parser.add_argument("--subjects", type=str, default=None, help="use only these comma-separated subjects")
    parser.add_argument("--floor", type=argtypes.probability, default=DEFAULT_FLOOR,
                        help="a threshold below this means no threshold serves")
    parser.add_argument("--max-error", type=argtypes.probability, default=DEFAULT_MAX_ERROR,
                        help="with attacks: the other error rate at the chosen threshold must not exceed this")
    parser.add_argument("--confidence", type=argtypes.number, default=0.95, help="confidence of the intervals")
    parser.add_argument("--detector", type=str, default="short", metavar="short|full|PATH",
                        help="face detector (the one the device runs)")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend: auto (LiteRT), litert, or mediapipe (the opt-in 'mediapipe' extra)")
    parser.add_argument("--num-threads", type=argtypes.threads, default=None, help="interpreter CPU threads")
    parser.add_argument("--report", type=argtypes.path, default=None, metavar="FILE.json", help="also write the report here")
    parser.add_argument("--force", action="store_true", help="overwrite --out, its sidecar and --report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge calibrate``; returns 0, or 1 when no threshold serves (nothing written)."""
    t0 = time.perf_counter()
    rule, target = resolve_rule(args.at, args.target_apcer, getattr(args, "target_bpcer", None))
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence {args.confidence:g} is not in (0, 1)")
    if args.model is None:
        from tla_edge.runtime.assets import default_liveness_model

        model = default_liveness_model()
    else:
        model = Path(args.model)
    meta = calibration.check_model(model)
    out = Path(args.out)
    sidecar = metadata_lib.sidecar_path(out)
    fileio.check_outputs(
        {"--out": out, "--out's sidecar": sidecar, "--report": args.report},
        {"--model": model, "--model's sidecar": metadata_lib.sidecar_path(model), "DATA": args.data},
        args.force,
    )

    report = calibration.calibrate_dataset(
        args.data, model, rule, target, float(meta.threshold), sessions=args.sessions, subjects=args.subjects,
        floor=args.floor, max_error=args.max_error, confidence=args.confidence, detector=args.detector,
        detector_backend=args.detector_backend, num_threads=args.num_threads, show_progress=not args.quiet,
    )
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.report is not None:
        fileio.write_json_atomic(args.report, report)
    if report["serves"]:
        new_meta = calibration.calibrated_metadata(meta, report)
        fileio.write_bytes_atomic(out, metadata_lib.embed(model.read_bytes(), new_meta))
        fileio.write_json_atomic(sidecar, new_meta.to_dict())
    print(format_summary(report, out if report["serves"] else None, args.report))
    return 0 if report["serves"] else 1


def _rate_text(r: dict[str, Any] | None, confidence: float) -> str:
    if r is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{r['rate']:.2%} ({r['errors']}/{r['n']}), {confidence:.0%} CI {lo:.2%}-{hi:.2%}"


def format_summary(report: dict[str, Any], written: Path | None, report_path: Path | None = None) -> str:
    """The one-screen summary."""
    if report["rule"] == "bpcer":
        rule_text = f"BPCER <= {report['target']:.2%} on this recording"
    elif report["rule"] == "apcer":
        rule_text = f"APCER <= {report['target']:.2%} for every species on this recording"
    else:
        rule_text = "the equal error rate on this recording"
    species = ", ".join(f"{k} {v['n']}" for k, v in report["apcer_per_species"].items())
    lines = [
        f"tla-edge calibrate: '{report['model']}' on '{report['data']}': {report['scored']} of "
        f"{report['frames']} frames scored: {report['n_real']} bona fide, {report['n_attack']} attack"
        + (f" ({species})" if species else "")
        + f"; {len(report['subjects'])} people, sessions {','.join(report['sessions']) or '-'}",
    ]
    lines.extend(f"  dataset: {note}" for note in report.get("dataset_notes", ()))
    if report["no_usable_face"]:
        lines.append(f"  no usable face (not scored; the device never accepts them): {report['no_usable_face']}")
    lines.append(f"  threshold {report['threshold']:.4f} for {rule_text} (was {report['previous_threshold']:.4f})")
    lines.append(f"  expected BPCER {_rate_text(report['bpcer'], report['confidence'])}")
    if report["apcer"] is not None:
        lines.append(f"  expected APCER {_rate_text(report['apcer'], report['confidence'])} "
                     f"(worst species: {report['apcer_worst_species']}); AUC {report['auc']:.4f}, EER {report['eer']:.2%}")
    else:
        lines.append("  APCER unknown: no attack was recorded (record a print and a phone screen to measure it)")
    per_subject = report["bpcer_per_subject"]
    if per_subject:
        worst = max(per_subject.items(), key=lambda kv: kv[1])
        lines.append(f"  BPCER per person: worst {worst[0]} {worst[1]:.2%} of {len(per_subject)} people; "
                     f"{report['caveat']}")
    if report["serves"]:
        lines.append(f"  wrote {written} and {metadata_lib.sidecar_path(written)} (the input model is unchanged)")
    else:
        lines.append("  NO THRESHOLD SERVES this camera: " + "; ".join(report["reasons"]))
        lines.append("  nothing written; fine-tune on the recording: tla-edge prepare DATA --out CROPS, then "
                     "tla-edge train CROPS --weights default --out MODEL_DIR (docs/own-camera.md)")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)

