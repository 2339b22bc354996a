"""Per-frame latency of each pipeline stage: decode, face detection, crop +
preprocess, liveness invoke, glue and total, for every (model, threads)
combination on the same frames.

Frames from a folder or a video are read once into memory (--warmup + --frames
of them, reused in order when the source has fewer), so every configuration
sees identical pixels; a camera is live and each configuration captures its own.
For each configuration the device pipeline (tla_edge.runtime.pipeline.Pipeline, face
detector in video mode) runs --warmup frames that are not counted, then
--frames timed ones. Side by side, frame by frame, it times the two models
alone on the same frame, without any glue: MediaPipe's detect call on a
prepared image, and the liveness interpreters' invoke() on prepared input
tensors (with the LiteRT detector backend: its warp, invoke, decoding and NMS
on the frame). Their ratio to the pipeline's total is the overhead (goal: <= 1.15).
Repeat --detector-backend to time MediaPipe and LiteRT detection side by side,
and --members to time a fused pair's models one after another and concurrently
(the raw series then run them the same way).

Per configuration it also reports frames per second end to end (decode to
decision) and each stage's share of that time.

Results: a table on stdout, --json (schema in benchmarks/README.md) and --plot
(per-stage distributions, needs matplotlib). Timed with time.perf_counter().
The measurement is tla_edge.runtime.benchmark; table and plot are
tla_edge.runtime.benchmark_report.

Examples:
  tla-edge bench --source frames/ --model a_int8.tflite --model a_float32.tflite \\
      --threads 1 --threads 4 --json bench.json --plot bench.png
  tla-edge bench --source 0 --frames 300      # camera 0, bundled model
  tla-edge bench --detector-backend mediapipe --detector-backend litert --threads 1 --threads 2
  tla-edge bench --members sequential --members concurrent --threads 1 --threads 2 --threads 4
  tla-edge bench --crop-overlap off --crop-overlap on --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from tla_edge.cli import argtypes
from tla_edge.errors import missing_extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``bench`` flags."""
    parser.add_argument(
        "--source",
        type=str,
        default=None,
        metavar="FOLDER|VIDEO|CAMERA",
        help="image folder, video file or camera index (None: the bundled sample frames)",
    )
    parser.add_argument(
        "--model",
        type=argtypes.path,
        action="append",
        default=None,
        metavar="M.tflite",
        help="liveness model; repeat to compare several; A.tflite+B.tflite, or a folder of one set (tla-edge "
        "calibrate --out DIR), times a fused set as one row, "
        "the way the pipeline runs it (None: the bundled int8 model)",
    )
    parser.add_argument(
        "--threads",
        type=argtypes.threads,
        action="append",
        default=None,
        metavar="N",
        help="liveness interpreter threads; repeat to compare several (None: 1)",
    )
    parser.add_argument("--frames", type=argtypes.positive_int, default=100, help="timed frames per configuration")
    parser.add_argument("--warmup", type=argtypes.non_negative_int, default=10, help="untimed frames first")
    parser.add_argument("--edgetpu", action="store_true", help="run the liveness models on a Coral Edge TPU")
    parser.add_argument(
        "--detector", type=str, default="short", metavar="short|full|PATH", help="face detector model"
    )
    parser.add_argument(
        "--detector-backend",
        type=str,
        action="append",
        choices=("auto", "mediapipe", "litert"),
        default=None,
        help="face detector backend; repeat to compare (None: auto = LiteRT; mediapipe needs the mediapipe extra)",
    )
    parser.add_argument(
        "--members",
        type=str,
        action="append",
        choices=("auto", "sequential", "concurrent"),
        default=None,
        help="how a fused set's models run on each face: one after another, or concurrently (one thread "
        "each); repeat to compare (None: auto = concurrent when there are more CPUs than models x --threads)",
    )
    parser.add_argument(
        "--crop-overlap",
        type=str,
        action="append",
        choices=("auto", "on", "off"),
        default=None,
        help="whether a sequential fused set cuts its later members' crops while the first member runs; "
        "repeat to compare (None: auto = when a core would otherwise idle during that invoke, checked face by "
        "face against the CPUs' idle time: a CPU busy with other work does not count)",
    )
    parser.add_argument("--json", type=argtypes.path, default=None, metavar="PATH", help="write the results as JSON (None: table only)")
    parser.add_argument(
        "--plot", type=argtypes.path, default=None, metavar="PATH", help="write per-stage latency box plots (.png/.svg/.pdf; None: no plot)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite --json/--plot outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_outputs(json_path: Path | None, plot_path: Path | None, force: bool,
                  inputs: list[tuple[str, str | os.PathLike | None]] | None = None) -> None:
    """Refuses bad ``--json``/``--plot`` outputs before minutes of measuring (an input among them too)."""
    from tla_edge.fileio import check_outputs as check_paths
    from tla_edge.runtime.benchmark_report import PLOT_SUFFIXES

    check_paths({"--json": json_path, "--plot": plot_path}, inputs, force)
    if plot_path is None:
        return
    if importlib.util.find_spec("matplotlib") is None:
        raise missing_extra("matplotlib", "dev")
    if plot_path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"--plot '{plot_path}' has suffix '{plot_path.suffix}'; expected .png, .svg or .pdf")


def bench_inputs(args: argparse.Namespace) -> list[tuple[str, str | os.PathLike | None]]:
    """The files ``bench`` reads, named for :func:`tla_edge.fileio.check_outputs`."""
    from tla_edge.runtime.benchmark import model_set

    inputs = [("--source", args.source), ("--detector", args.detector)]
    return inputs + [("--model", m) for value in args.model or () for m in model_set(value)]


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge bench``; returns 0."""
    from tla_edge.fileio import write_json_atomic
    from tla_edge.runtime.benchmark import run_benchmark
    from tla_edge.runtime.benchmark_report import format_table, write_plot

    check_outputs(args.json, args.plot, args.force, bench_inputs(args))
    report, samples = run_benchmark(
        args.source,
        args.model,
        args.threads or [1],
        args.frames,
        args.warmup,
        detector=args.detector,
        edgetpu=args.edgetpu,
        show_progress=not args.quiet,
        detector_backends=args.detector_backend or (None,),
        members=getattr(args, "members", None) or (None,),
        crop_overlaps=getattr(args, "crop_overlap", None) or (None,),
    )
    print(format_table(report))
    if args.json is not None:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    if args.plot is not None:
        write_plot(args.plot, report, samples)
        print(f"wrote {args.plot}")
    return 0
