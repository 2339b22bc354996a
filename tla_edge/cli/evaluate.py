"""ISO/IEC 30107-3 evaluation of a liveness model on prepared crops or raw frames.

DATA is a crops folder written by ``tla-edge prepare`` (the default when it
holds such a manifest.csv): each model scores the crops of its own crop scale,
which must have its input size. With --raw (implied by --layout
nuaa|folder|csv), DATA is a raw dataset and every frame goes through the
device pipeline (face detector in image mode, crop, .tflite model, no
smoothing). As ISO/IEC 30107-3 asks, APCER, BPCER, ACER, EER and AUC are over
the presentations the system processed; a frame without a usable face (no
face, too small, cut off, rotated) or with a model error is a non-response,
reported apart by class and reason (``non_response``), and an end-to-end
figure counts it as a rejection (``end_to_end_non_response_as_rejection``).
Several --model values are fused by averaging their scores (two-scale
fusion); their threshold is --threshold or the fused threshold stored in
their metadata, never the mean of their own. --store-fusion FUSED_DIR derives
that threshold on DATA and writes copies of the models carrying it into
FUSED_DIR (never the models given, never the installed package).

Writes to --out: metrics.json, report.md, scores.csv, roc.png, det.png,
hist.png, confusion.png and worst_errors.png (crops of the data: keep the
report folder out of the repository).

Example:
  tla-edge evaluate crops/nuaa --model runs/mnv2/model.keras --sessions 02 --out reports/mnv2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tla_edge.cli import argtypes
from tla_edge.data import datasets
from tla_edge.fileio import printable
from tla_edge.train import fusion
from tla_edge.train import report as report_lib
from tla_edge.train.evaluate import CROPS, Detection, evaluate
from tla_edge.train.report import Selection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``evaluate`` flags."""
    parser.add_argument("data", type=argtypes.path, metavar="DATA", help="crops folder (tla-edge prepare) or, with --raw, a dataset")
    parser.add_argument(
        "--model",
        type=argtypes.path,
        action="append",
        default=None,
        metavar="MODEL",
        help=".tflite or .keras model (or a tla-edge train folder); repeat to fuse several by averaging "
        "their scores; a folder of one fused set (tla-edge calibrate --out DIR) is the set (None: the bundled "
        "int8 model)",
    )
    parser.add_argument(
        "--layout",
        type=str,
        default="auto",
        choices=("auto", CROPS) + datasets.LAYOUTS,
        help="layout of DATA; nuaa, folder and csv imply --raw",
    )
    parser.add_argument("--raw", action="store_true", help="DATA is a raw dataset: run the full device pipeline on each frame")
    parser.add_argument("--split", type=str, default=None, help="keep only this split, e.g. test (None: every split)")
    parser.add_argument(
        "--sessions", type=str, default=None, help="keep only these sessions, comma-separated, e.g. 02 (None: every session)"
    )
    parser.add_argument(
        "--subjects", type=str, default=None,
        help="keep only these subjects, comma-separated, e.g. 0008,0009 (the held-out ones; None: every subject)"
    )
    parser.add_argument(
        "--threshold", type=argtypes.threshold, default=None,
        help="decision threshold, strictly between 0 and 1 (None: the model metadata's; required for a .tflite "
        "without tla-edge metadata and for several --model without a stored fusion threshold)"
    )
    parser.add_argument(
        "--store-fusion", type=argtypes.path, default=None, metavar="FUSED_DIR",
        help="two or more explicit .tflite --model: derive their fused threshold at the EER of the fused scores "
        "on DATA, check it as calibrate does (--floor, --max-error, --min-frames, AUC), report at it, and write "
        "copies of the models carrying it (extra.fusion) into FUSED_DIR; the models given are never changed",
    )
    parser.add_argument("--floor", type=argtypes.probability, default=fusion.DEFAULT_FLOOR,
                        help="--store-fusion: a fused threshold below this does not serve")
    parser.add_argument("--max-error", type=argtypes.probability, default=fusion.DEFAULT_MAX_ERROR,
                        help="--store-fusion: the BPCER at the fused threshold must not exceed this")
    parser.add_argument("--min-frames", type=argtypes.positive_int, default=fusion.DEFAULT_MIN_FRAMES,
                        help="--store-fusion: fewest processed bona fide and attack presentations each")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="REPORT_DIR", help="folder for the report files")
    parser.add_argument("--force", action="store_true", help="overwrite report files in REPORT_DIR")
    parser.add_argument("--limit", type=argtypes.positive_int, default=None, metavar="N", help="evaluate N images, evenly spread (None: all)")
    parser.add_argument("--detector", type=str, default="short", metavar="short|full|PATH", help="face detector (--raw)")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend (--raw): auto (LiteRT), litert, or mediapipe (the opt-in 'mediapipe' extra)")
    parser.add_argument("--num-threads", type=argtypes.threads, default=None, help="interpreter CPU threads (None: the runtime's default)")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=64, help="batch size of a .keras model")
    parser.add_argument("--worst", type=argtypes.positive_int, default=12, help="worst false accepts and rejects shown")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge evaluate``; returns 0."""
    if args.model:  # a folder (tla-edge calibrate --out DIR) stands for its model or fused set
        from tla_edge.runtime.fused_set import expand_models

        args.model = expand_models(args.model)
    check_paths(args)
    ev, report = evaluate(
        args.data, args.out, args.model, layout=args.layout, raw=args.raw,
        selection=Selection(args.split, args.sessions, args.subjects, args.limit),
        threshold=args.threshold, force=args.force,
        store_fusion=None if args.store_fusion is None else fusion.FusionRequest(
            Path(args.store_fusion), args.floor, args.max_error, args.min_frames),
        detection=Detection(args.detector, args.detector_backend, args.num_threads),
        num_threads=args.num_threads, batch_size=args.batch_size, show_progress=not args.quiet,
    )
    if "fusion_record" in report:
        print(printable(fusion.summary(Path(args.store_fusion), report["fusion_record"])))
    report_lib.write_report(args.out, ev, report, args.worst)
    # a name that is not UTF-8 (the data, --out) is shown as \xNN: a strict UTF-8 console never ends the run
    print(printable(report_lib.format_summary(report, args.out)))
    return 0


def check_paths(args: argparse.Namespace) -> None:
    """Refuses a report folder, or a report file in it, that is the data or a model (before any work)."""
    from tla_edge.fileio import check_distinct
    from tla_edge.runtime.metadata import sidecar_path
    from tla_edge.train.report import OUTPUT_FILES

    out = Path(args.out)
    inputs = [("DATA", args.data)]
    for m in args.model or ():
        inputs += [("--model", m), ("--model's sidecar", sidecar_path(Path(m)))]
    check_distinct({"--out": out, **{f"--out's {name}": out / name for name in OUTPUT_FILES}}, inputs)
