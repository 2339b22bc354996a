"""Convert a Keras liveness model to TFLite: float32, fp16, dynamic range, full-integer int8, QAT.

Every converted model is checked against the Keras model on the same
validation crops (by default the people or sessions training held out: the
recording's held-out people after train --weights default): score correlation,
decision agreement, change in ACER and EER. Its threshold is re-derived on its
own scores and written into its metadata (embedded and as a <model>.tflite.json
sidecar). The model is degraded when its scores barely vary, when they do not
follow the float model's (Pearson r under --min-pearson), or when it decides
differently on the crops clear of the threshold beyond sampling noise (the
upper end of the 95 % Wilson interval of that agreement under
--min-agreement); flips of crops near the threshold are reported, not held
against it. --parity enforce (the default) keeps a degraded model back and
exits 1; --parity report writes it, records the verdict in its metadata and
the --report JSON, prints a warning and exits 0. The Edge TPU readiness of
each file is printed; --edgetpu also runs edgetpu_compiler when it is installed.

examples:
  tla-edge convert models/default --int8 --calib crops/
  tla-edge convert models/default/model.keras --all --qat --calib crops/ --val-session 02 --edgetpu
  tla-edge convert models/default --int8 --io uint8 --calib crops/ --out model_uint8.tflite
  tla-edge convert models/kiosk --int8 --calib crops/kiosk --parity report --report convert.json
"""

from __future__ import annotations

import argparse

from tla_edge.cli import argtypes
from tla_edge.converters import calibration as calibration_lib
from tla_edge.converters import export as export_lib
from tla_edge.converters import outputs as outputs_lib
from tla_edge.converters import parity as parity_lib
from tla_edge.converters import qat as qat_lib
from tla_edge.converters import tflite as tflite_lib
from tla_edge.errors import UserError


def correlation(text: str) -> float:
    """A correlation floor: a number in [-1, 1]."""
    value = argtypes.number(text)
    if not -1.0 <= value <= 1.0:  # False for nan too
        raise argparse.ArgumentTypeError(f"{text!r} is not in [-1, 1]")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``convert`` flags."""
    parser.add_argument("model", type=argtypes.path, metavar="MODEL",
                        help="MODEL.keras, or a model folder holding model.keras and metadata.json")
    modes = parser.add_argument_group("what to write (one is required)")
    pick = modes.add_mutually_exclusive_group()
    pick.add_argument("--int8", dest="mode", action="store_const", const="int8",
                      help="full-integer int8 (post-training quantization; needs --calib)")
    pick.add_argument("--fp16", dest="mode", action="store_const", const="fp16",
                      help="float16 weights, float compute")
    pick.add_argument("--dynamic", dest="mode", action="store_const", const="dynamic",
                      help="dynamic-range: int8 weights, float activations")
    pick.add_argument("--float32", dest="mode", action="store_const", const="float32",
                      help="plain float32")
    pick.add_argument("--all", dest="mode", action="store_const", const="all",
                      help="all four: float32, fp16, dynamic, int8")
    modes.add_argument("--qat", action="store_true",
                       help="also quantization-aware training: fine-tune a QAT copy on the --calib "
                            "crops and write it as int8 (MobileNetV2 only; needs tensorflow-model-optimization)")
    data = parser.add_argument_group("data")
    data.add_argument("--calib", type=argtypes.path, default=None, metavar="CROPS",
                      help="crops folder (tla-edge prepare) to calibrate int8 and fine-tune QAT on "
                           "(None: the crops the model was trained on, from its metadata)")
    data.add_argument("--calib-samples", type=argtypes.positive_int, default=calibration_lib.DEFAULT_CALIBRATION_SAMPLES,
                      metavar="N", help="calibration crops, stratified by class and attack species")
    data.add_argument("--val", type=argtypes.path, default=None, metavar="CROPS",
                      help="crops folder for the parity check (None: --calib's)")
    held = data.add_mutually_exclusive_group()
    held.add_argument("--val-session", type=str, default=None, metavar="SESSION",
                      help="validate on this session only, and calibrate / fine-tune on the others "
                           "(None: the sessions or subjects the model was validated on, from its "
                           "metadata, else all crops)")
    held.add_argument("--val-subjects", type=str, default=None, metavar="S1,S2",
                      help="validate on these subjects only, and calibrate / fine-tune on the others "
                           "(None: see --val-session)")
    data.add_argument("--resize-crops", action="store_true",
                      help="resize crops of another size to the model's input, as tla-edge train "
                           "--input-size does (unset: refuse them)")
    data.add_argument("--seed", type=argtypes.integer, default=0, help="seed of the calibration draw and QAT shuffling")
    out = parser.add_argument_group("output")
    out.add_argument("--io", type=str, default="int8", choices=tflite_lib.IO_TYPES,
                     help="input/output type of int8 models: int8, uint8 (pycoral / Edge TPU "
                          "convention) or float (quantize/dequantize inside the model)")
    out.add_argument("--edgetpu", action="store_true",
                     help="run edgetpu_compiler on the int8 models (x86-64 Linux) and write *_edgetpu.tflite")
    where = out.add_mutually_exclusive_group()
    where.add_argument("--out", type=argtypes.path, default=None, metavar="FILE.tflite",
                       help="output file when one model is written (None: see --out-dir)")
    where.add_argument("--out-dir", type=argtypes.path, default=None, metavar="DIR",
                       help="output folder, files named <model>_<mode>.tflite (None: the model's folder)")
    out.add_argument("--report", type=argtypes.path, default=None, metavar="FILE.json",
                     help="also write the run's figures (sizes, parity, Edge TPU) as JSON (None: no JSON)")
    out.add_argument("--force", action="store_true", help="overwrite existing outputs")
    checks = parser.add_argument_group("parity checks")
    checks.add_argument("--parity", type=str, default=None, choices=export_lib.PARITY_MODES,
                        help="enforce: a degraded model is not written and the command exits 1; report: it "
                             "is written with the verdict in its metadata and --report, a warning is "
                             "printed and the command exits 0 (None: enforce)")
    checks.add_argument("--allow-degraded", action="store_true", help="the same as --parity report")
    checks.add_argument("--min-agreement", type=argtypes.probability, default=parity_lib.DEFAULT_MIN_AGREEMENT,
                        help="degraded when the upper end of the 95%% Wilson interval of decision agreement, "
                             "on the crops clear of the threshold, is under this")
    checks.add_argument("--min-pearson", type=correlation, default=parity_lib.DEFAULT_MIN_PEARSON,
                        help="degraded when the converted scores correlate less with the float ones")
    checks.add_argument("--min-score-std", type=argtypes.number, default=parity_lib.DEFAULT_MIN_SCORE_STD,
                        help="a converted model whose scores vary less is collapsed")
    qat = parser.add_argument_group("quantization-aware training (--qat)")
    qat.add_argument("--qat-epochs", type=argtypes.non_negative_int, default=qat_lib.DEFAULT_EPOCHS, help="fine-tuning epochs")
    qat.add_argument("--qat-lr", type=argtypes.number, default=qat_lib.DEFAULT_LR, help="Adam learning rate")
    qat.add_argument("--qat-batch-size", type=argtypes.positive_int, default=qat_lib.DEFAULT_BATCH_SIZE, help="crops per step")
    qat.add_argument("--qat-target", type=str, default="teacher", choices=qat_lib.TARGETS,
                     help="what fine-tuning learns: the float model's scores on the training crops "
                          "(distillation: the QAT model learns to reproduce the float model under int8 "
                          "rounding), or the crops' labels (refits them; on cross-session data it drifts "
                          "from the float model)")


def run(args: argparse.Namespace) -> int:
    """Converts, checks parity, writes files and prints the summary; returns the exit code."""
    if args.mode is None:
        raise UserError("choose what to write: --int8, --fp16, --dynamic, --float32 or --all")
    if args.allow_degraded and args.parity == "enforce":
        raise UserError("--allow-degraded (the same as --parity report) contradicts --parity enforce; "
                        "expected one of them")
    parity_mode = "report" if args.allow_degraded else (args.parity or "enforce")
    result = export_lib.export(
        args.model,
        list(export_lib.ALL_MODES) if args.mode == "all" else [args.mode],
        crops=export_lib.CropOptions(
            calib=args.calib, calib_samples=args.calib_samples, val=args.val, val_session=args.val_session,
            val_subjects=args.val_subjects, resize=args.resize_crops, seed=args.seed,
        ),
        output=export_lib.OutputOptions(
            io=args.io, edgetpu=args.edgetpu, out=args.out, out_dir=args.out_dir, report=args.report,
            force=args.force,
        ),
        gate=export_lib.ParityGate(
            min_agreement=args.min_agreement, min_score_std=args.min_score_std, min_pearson=args.min_pearson,
            mode=parity_mode, flag="--allow-degraded" if args.allow_degraded else "--parity report",
        ),
        qat=export_lib.QatOptions(
            epochs=args.qat_epochs, lr=args.qat_lr, batch_size=args.qat_batch_size, target=args.qat_target,
        ) if args.qat else None,
    )
    print_summary(result)
    if args.report is not None:
        export_lib.write_report(args.report, result)
        print(f"wrote {args.report}")
    if result.failed:
        export_lib.log_stderr(f"error: failed: {', '.join(result.failed)}")
        return 1
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def print_summary(result: export_lib.ExportResult) -> None:
    """Prints the one-screen summary: one row per model, degraded ones, Edge TPU, QAT."""
    model_path, crops, calib = result.model_path, result.crops, result.crops.calib
    val_desc, n_val, results, wall = crops.val_desc, len(crops.val.labels), result.models, result.wall_s
    edgetpu_rows, qat_info = result.edgetpu, result.qat
    print()
    print(f"convert summary: {model_path}  ({wall:.0f} s)")
    print(f"  parity on {n_val} crops of {val_desc}"
          + ("" if calib is None else f"; calibration {len(calib.labels)} crops"))
    head = f"  {'model':<9} {'size':>9} {'io':>6} {'float':>5} {'pearson':>8} {'agree%':>7} " \
           f"{'ACER%':>13} {'EER%':>13} {'maxdiff':>8} {'thr':>6} {'EdgeTPU':>8}"
    print(head)
    for r in results:
        p = r["parity"]
        own = r["threshold_source"] == "re-derived"
        f, c = p["float"] or {}, p["converted_own_threshold" if own else "converted"] or {}
        ce = p["converted"] or {}
        acer = f"{_pct(f.get('acer'))}->{_pct(c.get('acer'))}" if f else "-"
        eer = f"{_pct(f.get('eer'))}->{_pct(ce.get('eer'))}" if f else "-"
        pear = "-" if p["pearson"] is None else f"{p['pearson']:.4f}"
        tpu = "-" if not r.get("written") else ("ready" if r.get("edgetpu_ready") else "no")
        size = outputs_lib.mb(r["bytes"]) if r.get("written") else "NOT SAVED"
        print(f"  {r['model']:<9} {size:>9} {r['io']:>6} {r['float_tensors']:>5} {pear:>8} "
              f"{100 * p['agreement']:>7.2f} {acer:>13} {eer:>13} {p['max_abs_diff']:>8.4f} "
              f"{r['threshold']:>6.3f} {tpu:>8}")
    for r in results:
        if r["parity"]["degraded"]:
            kept = "written (--parity report)" if r.get("written") else "NOT SAVED (--parity enforce)"
            print(f"  {r['model']}: DEGRADED, {kept}: {r['parity']['degraded']}")
    for e in edgetpu_rows:
        if e.get("compiled"):
            print(f"  {e['model']} Edge TPU: {e['ops_tpu']}/{e['ops_total']} ops on the TPU -> {e['file']}")
        else:
            print(f"  {e['model']} Edge TPU: not compiled ({e.get('reason') or e.get('error')})")
    if qat_info:
        hist = qat_info.get("history") or {}
        loss = hist.get("loss") or []
        print(f"  QAT: {qat_info['crops']} crops, {qat_info['epochs']} epochs, lr {qat_info['lr']:g}, "
              f"target {qat_info['target']}, "
              f"{qat_info['wall_s']:.0f} s" + (f", loss {loss[0]:.4f} -> {loss[-1]:.4f}" if loss else ""))
    print("  (float = float tensors in the file; ACER at the threshold written into each file: "
          "int8 re-derived on its own scores, others the source's; agree% at the source threshold, every crop)")
