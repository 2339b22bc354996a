"""Soak: 10,000 frames through the headless demo loop; does memory stay flat?

    nice -n 10 python benchmarks/soak.py [--frames 10000] [--data ../shared/data/nuaa-train]

Loops a folder of about 100 NUAA frames (half real, half printed-photo
attacks; symlinks in a temp folder, nothing is copied into the repository)
through :func:`tla_edge.runtime.loop.run_loop`, the same loop ``tla-edge demo
--headless`` runs: frame decode, BGR->RGB, MediaPipe face detection, crop,
MobileNetV2-160 liveness, smoothing, decision. Every ``--sample-every``
frames it records the process's current and peak RSS
(:func:`tla_edge.host.current_rss_mb`, :func:`tla_edge.host.peak_rss_mb`).

The model is ``--model``, else the bundled ``tla_edge/runtime/assets/liveness_mnv2_int8.tflite``
when present, else a MobileNetV2 alpha 0.35 160x160 float TFLite with
random weights (``weights=None``) built in a child process, so TensorFlow
never enters the process being measured. Memory behaviour depends on the
graph, not on the weights' values.

Pass: the current RSS at the end is within 5% of the current RSS after the
first ``--baseline-frames`` (500) frames, by which point every lazy
allocation (interpreters, XNNPACK packs, MediaPipe graph, decoder buffers)
has happened.

Writes ``benchmarks/results/soak_<host-kind>.json`` (``--out`` to change;
refuses to overwrite without ``--force``) with these keys:

- ``benchmark``: ``"soak"``; ``date``: UTC ISO time; ``host_kind``: e.g.
  ``linux-x86_64`` or ``rpi4-aarch64``; ``host``: system, machine, CPU count,
  Python, NumPy, OpenCV, MediaPipe and TFLite runtime versions.
- ``model``: file name, bytes, input size and dtype, ``source``
  (``--model``, ``bundled`` or ``built``), architecture.
- ``source``: images in the looped folder (real, attack), ``loop``: true.
- ``frames``, ``wall_s``, ``fps`` (mean over the whole run), ``mean_ms``
  (decode, detect, crop, invoke, total per frame), ``decisions`` (counts).
- ``rss_mb_at_baseline``: current RSS after ``baseline_frames`` frames;
  ``rss_mb_end``: current RSS after the last frame; ``rss_ratio``:
  end / baseline; ``rss_growth_mb``: end - baseline;
  ``rss_slope_kb_per_1000_frames``: least-squares slope of the samples after
  the baseline; ``peak_rss_mb_at_baseline``, ``peak_rss_mb_end``: VmHWM (ru_maxrss
  where /proc is absent; Linux updates it lazily, so it can trail the current RSS by a fraction of a MB).
- ``tolerance``: 0.05; ``pass``: ``|rss_ratio - 1| <= tolerance``.
- ``tensorflow_imported``: whether TensorFlow was loaded in the measured
  process (it must not be on a device).
- ``samples``: ``[{"frame", "elapsed_s", "rss_mb", "peak_rss_mb"}, ...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tla_edge.cli import argtypes
from tla_edge.host import current_rss_mb, host_kind, package_versions, peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # scripts/common.py: the data folder the scripts share

from common import data_dir  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
TOLERANCE = 0.05
SEED = 0


# --- memory ---------------------------------------------------------------------------


def slope_per_1000(frames: list[int], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``frames``, per 1000 frames (0 for < 2 points)."""
    if len(frames) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(frames, np.float64), np.asarray(values, np.float64), 1)[0] * 1000)


# --- host, data, model ------------------------------------------------------------------


def pick_frames(data_dir: Path, count: int) -> tuple[list[Path], list[Path]]:
    """About ``count`` NUAA frames, half real and half attack, spread evenly over subjects."""
    real = sorted((data_dir / "ClientRaw").glob("*/*.jpg"))
    attack = sorted((data_dir / "ImposterRaw").glob("*/*.jpg"))
    if not real or not attack:
        from tla_edge.errors import UserError

        raise UserError(
            f"NUAA frames not found in '{data_dir}'; expected ClientRaw/ and ImposterRaw/ "
            "(pass --data DIR)"
        )

    from tla_edge.data.datasets import evenly_spread

    def spread(paths: list[Path], n: int) -> list[Path]:
        return [paths[i] for i in evenly_spread(len(paths), n)]

    return spread(real, count // 2), spread(attack, count - count // 2)


def link_frames(real: list[Path], attack: list[Path], folder: Path) -> None:
    """Symlinks (or copies, where links are refused) the frames into ``folder`` under unique names."""
    import shutil

    for kind, paths in (("real", real), ("attack", attack)):
        for i, src in enumerate(paths):
            dst = folder / f"{kind}_{i:03d}_{src.name}"
            try:
                dst.symlink_to(src.resolve())
            except OSError:
                shutil.copy(src, dst)


def build_model(path: Path) -> None:
    """Writes a MobileNetV2 alpha 0.35 160x160 float TFLite with random weights (needs TensorFlow)."""
    from tla_edge.errors import import_tensorflow

    tf = import_tensorflow()
    from tla_edge.runtime import metadata as metadata_lib
    from tla_edge.fileio import write_bytes_atomic

    tf.keras.utils.set_random_seed(SEED)
    try:
        from tla_edge.train.models import build_mobilenetv2

        model = build_mobilenetv2(160, alpha=0.35, weights=None)
    except ImportError:
        keras = tf.keras
        inputs = keras.Input((160, 160, 3))
        base = keras.applications.MobileNetV2(input_shape=(160, 160, 3), alpha=0.35, include_top=False, weights=None)
        x = keras.layers.GlobalAveragePooling2D()(base(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    meta = metadata_lib.ModelMetadata(
        input_size=(160, 160), architecture="mobilenetv2-0.35 (random weights, soak only)"
    )
    write_bytes_atomic(path, metadata_lib.embed(data, meta))


def build_model_in_child(path: Path) -> None:
    """Runs :func:`build_model` in a child Python, so TensorFlow stays out of this process."""
    print("soak: building MobileNetV2 alpha 0.35 160x160 float TFLite (random weights) ...", file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--build-model", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        from tla_edge.errors import UserError

        raise UserError(f"building the soak model failed: {tail[0]}")


def choose_model(arg: str | None, workdir: Path) -> tuple[Path, str]:
    """The model to soak and where it came from: ``--model``, ``bundled`` or ``built``."""
    if arg:
        path = Path(arg)
        if not path.is_file():
            raise FileNotFoundError(f"model file '{path}' not found")
        return path, "--model"
    from tla_edge.runtime.assets import DEFAULT_LIVENESS_MODEL

    if DEFAULT_LIVENESS_MODEL.is_file():
        return DEFAULT_LIVENESS_MODEL, "bundled"
    path = workdir / "mnv2_035_160_float32.tflite"
    build_model_in_child(path)
    return path, "built"


def versions() -> dict[str, str]:
    """Versions of the libraries on the frame path."""
    dists = ("numpy", "opencv-contrib-python", "opencv-python", "opencv-python-headless",
             "mediapipe", "ai-edge-litert", "tflite-runtime")
    return {"python": platform.python_version(), **package_versions(dists)}


# --- the soak ---------------------------------------------------------------------------


class Sampler:
    """The run_loop hook: samples memory every ``every`` frames and draws progress."""

    def __init__(self, every: int, baseline_frames: int, total: int) -> None:
        from tla_edge.progress import Progress

        self.every = every
        self.baseline_frames = baseline_frames
        self.samples: list[dict[str, float]] = []
        self.baseline: dict[str, float] | None = None
        self.last: dict[str, float] | None = None
        self.start = time.perf_counter()
        self.bar = Progress(total, "soak", unit="frame")

    def sample(self, frame_count: int) -> dict[str, float]:
        s = {
            "frame": frame_count,
            "elapsed_s": round(time.perf_counter() - self.start, 2),
            "rss_mb": round(current_rss_mb(), 2),
            "peak_rss_mb": round(peak_rss_mb(), 2),
        }
        self.last = s
        return s

    def __call__(self, frame, result) -> None:
        n = frame.index + 1
        if n % self.every == 0 or n == self.baseline_frames:
            s = self.sample(n)
            if n % self.every == 0:
                self.samples.append(s)
            if n == self.baseline_frames:
                self.baseline = s
            self.bar.update(postfix=f"rss {s['rss_mb']:.0f} MB")
        else:
            self.bar.update()


class SoakRun(NamedTuple):
    """What the loop of a soak measured, before it is turned into the result record."""

    summary: Any
    """The :class:`~tla_edge.runtime.loop.LoopSummary`."""
    sampler: Sampler
    """The memory samples, the baseline among them."""
    end: dict[str, float]
    """The sample after the last frame."""
    model: dict[str, Any]
    """The ``model`` block of the record."""
    source: dict[str, Any]
    """The ``source`` block of the record."""


def model_block(pipeline: Any, model_path: Path, model_from: str) -> dict[str, Any]:
    """The ``model`` block of the record: file, size, where it came from, input, runtime."""
    from tla_edge.runtime.interpreter import import_runtime, input_details

    d = input_details(pipeline.model.interpreter)
    return {
        "file": model_path.name,
        "bytes": model_path.stat().st_size,
        "source": model_from,
        "architecture": pipeline.model.meta.architecture,
        "input_shape": [int(v) for v in d["shape"]],
        "input_dtype": str(np.dtype(d["dtype"])),
        "runtime": import_runtime().name,
    }


def soak_loop(data: Path, frames: int, baseline_frames: int, sample_every: int, images: int,
              model: str | None, detector: str, threads: int | None) -> SoakRun:
    """Links the frames, opens the pipeline and runs the loop with the memory sampler."""
    from tla_edge.runtime.loop import run_loop
    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.runtime.sources import open_source

    with tempfile.TemporaryDirectory(prefix="tla-edge-soak-") as tmp:
        workdir = Path(tmp)
        real, attack = pick_frames(data, images)  # before the slow model build
        model_path, model_from = choose_model(model, workdir)
        folder = workdir / "frames"
        folder.mkdir()
        link_frames(real, attack, folder)

        with open_source(folder, loop=True) as source, Pipeline(
            model_path, num_threads=threads, detector_model=detector
        ) as pipeline:
            model_info = model_block(pipeline, model_path, model_from)
            sampler = Sampler(sample_every, baseline_frames, frames)
            sampler.sample(0)
            try:
                summary = run_loop(pipeline, source, max_frames=frames, on_result=sampler)
            finally:
                sampler.bar.close()
            end = sampler.sample(summary.frames)
            skipped = list(source.skipped)
    source_info = {"images": len(real) + len(attack), "real": len(real), "attack": len(attack),
                   "skipped": len(skipped), "loop": True}
    return SoakRun(summary, sampler, end, model_info, source_info)


def run_soak(
    data: str | Path,
    *,
    frames: int = 10_000,
    baseline_frames: int = 500,
    sample_every: int = 100,
    images: int = 100,
    model: str | None = None,
    detector: str = "short",
    threads: int | None = None,
) -> dict[str, Any]:
    """Runs the soak; returns the result record (see the module docstring).

    Args:
      data: the NUAA training sessions folder (``ClientRaw/``, ``ImposterRaw/``).
      frames: frames to run.
      baseline_frames: frames before the RSS baseline.
      sample_every: frames between memory samples.
      images: NUAA frames in the looped folder.
      model: liveness ``.tflite``; None: the bundled model, else a built MobileNetV2-0.35-160.
      detector: ``short`` or ``full`` range face detector.
      threads: liveness interpreter threads; None: the runtime's choice.

    Raises:
      KeyboardInterrupt: the run was interrupted.
      UserError: the frames are missing, or the run ended before the baseline.
    """
    run = soak_loop(Path(data), frames, baseline_frames, sample_every, images, model, detector, threads)
    summary, base, end = run.summary, run.sampler.baseline, run.end
    if summary.stopped == "interrupted":
        raise KeyboardInterrupt
    if base is None:
        from tla_edge.errors import UserError

        raise UserError(
            f"the run ended after {summary.frames} frames, before the {baseline_frames}-frame baseline"
        )
    after = [s for s in run.sampler.samples if s["frame"] >= baseline_frames]
    ratio = end["rss_mb"] / base["rss_mb"]
    return {
        "benchmark": "soak",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host_kind": host_kind(),
        "host": {"system": platform.system(), "machine": platform.machine(),
                 "cpu_count": os.cpu_count(), **versions()},
        "model": run.model,
        "detector": detector,
        "threads": threads,
        "source": run.source,
        "frames": summary.frames,
        "wall_s": round(summary.wall_s, 2),
        "fps": round(summary.fps, 2),
        "mean_ms": {k: round(v, 3) for k, v in summary.mean_ms.items()},
        "decisions": summary.decisions,
        "baseline_frames": baseline_frames,
        "rss_mb_at_baseline": base["rss_mb"],
        "rss_mb_end": end["rss_mb"],
        "rss_ratio": round(ratio, 4),
        "rss_growth_mb": round(end["rss_mb"] - base["rss_mb"], 2),
        "rss_slope_kb_per_1000_frames": round(
            slope_per_1000([s["frame"] for s in after], [s["rss_mb"] * 1024 for s in after]), 1
        ),
        "peak_rss_mb_at_baseline": base["peak_rss_mb"],
        "peak_rss_mb_end": end["peak_rss_mb"],
        "tolerance": TOLERANCE,
        "pass": bool(abs(ratio - 1.0) <= TOLERANCE),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "samples": run.sampler.samples,
    }


def format_summary(r: dict[str, Any], out: Path) -> str:
    """The one-screen summary printed at the end."""
    return "\n".join([
        f"soak on {r['host_kind']}: {r['frames']} frames in {r['wall_s']:.0f} s ({r['fps']:.1f} fps), "
        f"model {r['model']['file']} ({r['model']['input_dtype']}, {r['model']['source']})",
        f"  RSS after {r['baseline_frames']} frames {r['rss_mb_at_baseline']:.1f} MB, at the end "
        f"{r['rss_mb_end']:.1f} MB: ratio {r['rss_ratio']:.4f} "
        f"({'PASS' if r['pass'] else 'FAIL'}, tolerance {r['tolerance']:.0%})",
        f"  slope after baseline {r['rss_slope_kb_per_1000_frames']:.1f} KB / 1000 frames; "
        f"peak RSS {r['peak_rss_mb_end']:.1f} MB",
        "  mean ms: " + ", ".join(f"{k} {v:.1f}" for k, v in r["mean_ms"].items()),
        "  decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(r["decisions"].items())),
        f"  tensorflow imported: {r['tensorflow_imported']}",
        f"  wrote {out}",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="10,000-frame headless soak: RSS must stay flat.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=10_000, help="frames to run")
    p.add_argument("--baseline-frames", type=int, default=500, help="frames before the RSS baseline")
    p.add_argument("--sample-every", type=int, default=100, help="frames between memory samples")
    p.add_argument("--images", type=int, default=100, help="NUAA frames in the looped folder")
    p.add_argument("--data", type=str, default=str(data_dir()),
                   help="the NUAA training sessions folder")
    p.add_argument("--model", type=str, default=None,
                   help="liveness .tflite; default: the bundled model, else a built MobileNetV2-0.35-160")
    p.add_argument("--detector", type=str, choices=("short", "full"), default="short", help="face detector")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="liveness interpreter threads")
    p.add_argument("--out", type=str, default=None,
                   help="result JSON; default benchmarks/results/soak_<host-kind>.json")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--build-model", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for flag in ("frames", "baseline_frames", "sample_every", "images"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} {getattr(args, flag)} is not >= 1")
    if args.baseline_frames >= args.frames:
        p.error(f"--baseline-frames {args.baseline_frames} is not below --frames {args.frames}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the soak; exit 0 pass, 1 fail, 2 bad input, 130 interrupted."""
    from tla_edge.errors import UserError
    from tla_edge.fileio import check_writable, write_json_atomic

    args = parse_args(argv)
    try:
        if args.build_model:
            build_model(Path(args.build_model))
            return 0
        out = check_writable(Path(args.out) if args.out else RESULTS_DIR / f"soak_{host_kind()}.json", args.force)
        record = run_soak(args.data, frames=args.frames, baseline_frames=args.baseline_frames,
                          sample_every=args.sample_every, images=args.images, model=args.model,
                          detector=args.detector, threads=args.threads)
        write_json_atomic(out, record)
    except KeyboardInterrupt:
        print("soak: interrupted; nothing written", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError, OSError) as err:
        print(f"soak: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(format_summary(record, out), file=sys.stderr)
    return 0 if record["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
