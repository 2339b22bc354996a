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

A fused set (several ``--model``, or none with ``--out`` a folder: the
bundled set, as the device runs it) is scored by the mean of its members'
scores, and the threshold is chosen on that mean: copies of every member,
under their own names, are written into the --out folder, each carrying the
new fused threshold (``extra.fusion``); each member's own threshold, for use
alone, is unchanged. ``--out`` ending in ``.tflite`` with no ``--model``
calibrates the bundled primary alone (its copy runs without its partner).

The expected BPCER and APCER come with a Clopper-Pearson interval over the
frames scored, and the number of people they came from: frames of one person
are alike, so with few people the true uncertainty is wider.

When no threshold serves (bona fide frames score below the attacks, the
threshold would fall under --floor, or the other error rate exceeds
--max-error), nothing is written, the reasons are printed and the exit code
is 1: fine-tune on the recording (``tla-edge train ... --weights default``).

Example:
  tla-edge calibrate data/kiosk --out kiosk/                            # the bundled fused set, BPCER 1 %
  tla-edge calibrate data/kiosk --out kiosk_int8.tflite                 # the bundled primary alone
  tla-edge calibrate data/kiosk --model mine_int8.tflite --at eer --out mine_kiosk.tflite
  tla-edge calibrate data/kiosk --model a_int8.tflite --model b_int8.tflite --out kiosk_pair/
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
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.thresholds import DEFAULT_FLOOR, DEFAULT_MAX_ERROR, DEFAULT_TARGET_BPCER, resolve_rule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``calibrate`` flags."""
    parser.add_argument("data", type=argtypes.path, metavar="DATA", help="a recording (tla-edge record) or any dataset")
    parser.add_argument("--model", type=argtypes.path, action="append", default=None, metavar="MODEL.tflite",
                        help="the .tflite to calibrate, with tla-edge metadata; repeat for a fused set, or give the "
                        "folder of one (an earlier --out DIR) (None: the bundled set with --out a folder, its "
                        "primary alone with --out a .tflite)")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="CALIBRATED.tflite|DIR",
                        help="the calibrated copy (its metadata sidecar is written beside it); for a fused "
                        "set, a folder for copies of every member")
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
    out = Path(args.out)
    models = _models(args.model, out)
    metas = [calibration.check_model(m) for m in models]
    fused = len(models) > 1
    if fused:
        calibration.check_set(models)
        outputs = calibration.copy_paths(out, models, "--out")
        try:
            previous = fused_set.fused_threshold(list(zip(models, metas)))
        except ValueError:
            previous = None  # a set never fused before: the threshold is chosen from scratch
    else:
        outputs = {"--out": out, "--out's sidecar": metadata_lib.sidecar_path(out)}
        previous = float(metas[0].threshold)
    inputs = [("DATA", args.data)]
    for m in models:
        inputs += [("--model", m), ("--model's sidecar", metadata_lib.sidecar_path(m))]
    fileio.check_outside_package(out, "--out")
    fileio.check_outputs({**outputs, "--report": args.report}, inputs, args.force)

    report = calibration.calibrate_dataset(
        args.data, models, rule, target, previous, sessions=args.sessions, subjects=args.subjects,
        floor=args.floor, max_error=args.max_error, confidence=args.confidence, detector=args.detector,
        detector_backend=args.detector_backend, num_threads=args.num_threads, show_progress=not args.quiet,
    )
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.report is not None:
        fileio.write_json_atomic(args.report, report)
    written: list[Path] = []
    if report["serves"] and fused:
        _, files = calibration.fused_calibrated_copies(models, report)
        fileio.write_files_atomic({out / name: data for name, data in files.items()})
        written = [out / m.name for m in models]
    elif report["serves"]:
        new_meta = calibration.calibrated_metadata(metas[0], report)
        fileio.write_bytes_atomic(out, metadata_lib.embed(models[0].read_bytes(), new_meta))
        fileio.write_json_atomic(metadata_lib.sidecar_path(out), new_meta.to_dict())
        written = [out]
    print(format_summary(report, written, args.report))
    return 0 if report["serves"] else 1


def _models(given: list[Path] | None, out: Path) -> list[Path]:
    """The models to calibrate: those given, else the bundled set (``--out`` a folder) or its primary (a ``.tflite``).

    Raises:
      UserError: ``--out`` a ``.tflite`` for several models, or a folder when the bundled model runs alone.
    """
    file_out = out.suffix.lower() == ".tflite"
    if given is None:
        from tla_edge.runtime.assets import default_liveness_model, default_liveness_models

        models = [default_liveness_model()] if file_out else default_liveness_models()
        if not file_out and len(models) < 2:
            raise UserError(f"--out '{out}' is a folder, for a fused set; the bundled model runs alone: "
                            "expected --out CALIBRATED.tflite")
        return models
    models = fused_set.expand_models(given)  # a folder (an earlier --out DIR) is its set
    if len(models) > 1 and file_out:
        raise UserError(f"--out '{out}' is a .tflite, but {len(models)} --model form a fused set; "
                        "expected --out a folder, for a copy of every member")
    return models


def _set_flags(written: list[Path]) -> str:
    """``--model DIR`` when the folder holds exactly the written set (it loads as the set), else a
    ``--model`` per file."""
    folder = written[0].parent
    try:
        if fused_set.set_files(folder) == list(written):
            return f"--model {folder} (the folder is the set; or " + " ".join(f"--model {w}" for w in written) + ")"
    except ValueError:
        pass  # other models share the folder: name each file
    return " ".join(f"--model {w}" for w in written)


def _rate_text(r: dict[str, Any] | None, confidence: float) -> str:
    if r is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{r['rate']:.2%} ({r['errors']}/{r['n']}), {confidence:.0%} CI {lo:.2%}-{hi:.2%}"


def format_summary(report: dict[str, Any], written: Path | list[Path] | None,
                   report_path: Path | None = None) -> str:
    """The one-screen summary (``written``: the model file(s) written, none when no threshold serves)."""
    written = [written] if isinstance(written, Path) else list(written or ())
    if report["rule"] == "bpcer":
        rule_text = f"BPCER <= {report['target']:.2%} on this recording"
    elif report["rule"] == "apcer":
        rule_text = f"APCER <= {report['target']:.2%} for every species on this recording"
    else:
        rule_text = "the equal error rate on this recording"
    species = ", ".join(f"{k} {v['n']}" for k, v in report["apcer_per_species"].items())
    models = report.get("models") or [report["model"]]
    what = f"'{models[0]}'" if len(models) == 1 else "the fused set " + " + ".join(f"'{m}'" for m in models)
    lines = [
        f"tla-edge calibrate: {what} on '{report['data']}': {report['scored']} of "
        f"{report['frames']} frames scored: {report['n_real']} bona fide, {report['n_attack']} attack"
        + (f" ({species})" if species else "")
        + f"; {len(report['subjects'])} people, sessions {','.join(report['sessions']) or '-'}",
    ]
    lines.extend(f"  dataset: {note}" for note in report.get("dataset_notes", ()))
    if report["no_usable_face"]:
        lines.append(f"  no usable face (not scored; the device never accepts them): {report['no_usable_face']}")
    was = report["previous_threshold"]
    lines.append(f"  {'fused ' if len(models) > 1 else ''}threshold {report['threshold']:.4f} for {rule_text} "
                 + (f"(was {was:.4f})" if was is not None else "(the set had no fused threshold)"))
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
    if report["serves"] and len(written) > 1:
        lines.append("  wrote " + ", ".join(str(w) for w in written) + " and their sidecars (fused threshold in "
                     "each; the input models are unchanged); run them together: " + _set_flags(written))
    elif report["serves"]:
        written_one = written[0]
        lines.append(f"  wrote {written_one} and {metadata_lib.sidecar_path(written_one)} (the input model is unchanged)")
    else:
        lines.append("  NO THRESHOLD SERVES this camera: " + "; ".join(report["reasons"]))
        lines.append("  nothing written; fine-tune on the recording: tla-edge prepare DATA --out CROPS, then "
                     "tla-edge train CROPS --weights default --out MODEL_DIR (docs/own-camera.md)")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)

