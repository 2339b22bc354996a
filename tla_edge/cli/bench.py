"""Per-frame latency of each pipeline stage: decode, face detection, crop +
preprocess, liveness invoke, glue and total, for every (model, threads)
combination on the same frames.

Frames from a folder or a video are read once into memory (--warmup + --frames
of them, reused in order when the source has fewer), so every configuration
sees identical pixels; a camera is live and each configuration captures its own.
For each configuration the device pipeline (tla_edge.runtime.pipeline.Pipeline, face
detector in video mode) runs --warmup frames that are not counted, then
--frames timed ones. A second pass then times the two models alone on the same
frames, without any glue: MediaPipe's detect call on a prepared image, and the
liveness interpreter's invoke() on a prepared input tensor (with the LiteRT
detector backend: its warp, invoke, decoding and NMS on the frame). Their
ratio to the pipeline's total is the overhead (goal: <= 1.15).
Repeat --detector-backend to time MediaPipe and LiteRT detection side by side.

Results: a table on stdout, --json (schema in benchmarks/README.md) and --plot
(per-stage distributions, needs matplotlib). Timed with time.perf_counter().

Examples:
  tla-edge bench --source frames/ --model a_int8.tflite --model a_float32.tflite \\
      --threads 1 --threads 4 --json bench.json --plot bench.png
  tla-edge bench --source 0 --frames 300      # camera 0, bundled model
  tla-edge bench --detector-backend mediapipe --detector-backend litert --threads 1 --threads 2
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import importlib.util
import itertools
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from tla_edge import __version__
from tla_edge.cli import argtypes
from tla_edge.runtime.native import quiet_native_logs
from tla_edge.errors import UserError, missing_extra

FORMAT = "tla-edge-bench/1"
STAGES = ("decode", "detect", "detect_invoke", "crop", "invoke", "glue", "total")
"""Per-frame stages, in milliseconds (see benchmarks/README.md for what each times)."""
STAT_NAMES = ("n", "median", "p90", "p99", "mean", "std", "min", "max")
OVERHEAD_GOAL = 1.15
"""Target for median total over (median raw detector + median raw liveness invoke)."""
SEED = 0
FRAME_INTERVAL_MS = 33
"""Timestamp step of in-memory frames fed to the video-mode detector (30 fps)."""
LIVE_KINDS = ("camera", "picamera2")


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
        type=Path,
        action="append",
        default=None,
        metavar="M.tflite",
        help="liveness model; repeat to compare several; A.tflite+B.tflite times a fused set as one row, "
        "the way the pipeline runs it (None: the bundled int8 model)",
    )
    parser.add_argument(
        "--threads",
        type=argtypes.positive_int,
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
        help="face detector backend; repeat to compare (None: auto, MediaPipe where it runs, else LiteRT)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON (None: table only)")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PATH", help="write per-stage latency box plots (.png/.svg/.pdf; None: no plot)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite --json/--plot outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# --- pure helpers -------------------------------------------------------------


def stage_stats(values: Iterable[float]) -> dict[str, Any]:
    """Summary statistics of one stage's per-frame times (milliseconds).

    Args:
      values: one time per frame.

    Returns:
      ``{"n", "median", "p90", "p99", "mean", "std", "min", "max"}``; every
      statistic is None when there are no values (a stage that never ran).
    """
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, **{k: None for k in STAT_NAMES[1:]}}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "median": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "std": round(float(a.std()), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def overhead_ratio(total: dict[str, Any], raw_detector: dict[str, Any], raw_liveness: dict[str, Any]) -> float | None:
    """Median pipeline total over the sum of the models' median raw invoke times.

    Returns:
      The ratio (1.0 = no glue at all), or None when a median is missing.
    """
    parts = (total.get("median"), raw_detector.get("median"), raw_liveness.get("median"))
    if any(p is None for p in parts) or parts[1] + parts[2] <= 0:
        return None
    return round(parts[0] / (parts[1] + parts[2]), 4)


def fps_from(total: dict[str, Any]) -> float | None:
    """Frames per second from a total-time summary: 1000 / mean milliseconds."""
    mean = total.get("mean")
    return round(1000.0 / mean, 2) if mean else None


class Configuration(NamedTuple):
    """One combination the benchmark runs."""

    model: Path
    """The liveness ``.tflite`` (the first of a fused set)."""
    threads: int
    """Liveness interpreter threads."""
    edgetpu: bool = False
    """Whether the liveness model runs on the Edge TPU delegate."""
    detector_backend: str | None = None
    """Face detector backend asked for (``mediapipe``, ``litert``, ``auto``); None: auto, unnamed."""
    partners: tuple[Path, ...] = ()
    """The other models of a fused set (scores averaged), run with ``model`` on every face."""

    @property
    def models(self) -> list[Path]:
        """Every liveness model of the configuration: one, or the fused set."""
        return [self.model, *self.partners]

    @property
    def id(self) -> str:
        """A short unique name: ``<model stem>[+<stem>...]/<threads>t`` (``+edgetpu``) (``@<backend>``)."""
        stems = "+".join(m.stem for m in self.models)
        return (f"{stems}/{self.threads}t" + ("+edgetpu" if self.edgetpu else "")
                + (f"@{self.detector_backend}" if self.detector_backend else ""))


def model_set(value: str | Path | Sequence[str | Path]) -> tuple[Path, ...]:
    """One ``--model`` value as its models: ``A.tflite`` or a fused set ``A.tflite+B.tflite``."""
    if isinstance(value, (list, tuple)):
        return tuple(Path(v) for v in value)
    return tuple(Path(part) for part in str(value).split("+") if part)


def configurations(
    models: Sequence[Path | Sequence[Path]], threads: Sequence[int], edgetpu: bool,
    detector_backends: Sequence[str | None] = (None,),
) -> list[Configuration]:
    """Every (model or fused set, threads, detector backend) combination, duplicates dropped, in the order given."""
    seen: dict[tuple[tuple[str, ...], int, str | None], Configuration] = {}
    for m, t, b in itertools.product(models, threads, detector_backends):
        first, *rest = model_set(m)
        key = (tuple(str(p.resolve()) for p in (first, *rest)), t, b)
        seen.setdefault(key, Configuration(first, int(t), edgetpu, b, tuple(rest)))
    return list(seen.values())


# --- host and memory ----------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _scheduler() -> str | None:
    """This process's scheduling policy, e.g. ``SCHED_OTHER`` or ``SCHED_FIFO 1`` (Linux)."""
    try:
        policy = os.sched_getscheduler(0)
        priority = os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):
        return None
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")
             if hasattr(os, n)}
    name = names.get(policy, str(policy))
    return f"{name} {priority}" if priority else name


def host_info(runtime_name: str) -> dict[str, Any]:
    """Where the benchmark ran: OS, CPU, Python and library versions, load."""
    try:
        cpus_available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus_available = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available,
        "python": platform.python_version(),
        "runtime": {"name": runtime_name, "version": _version(runtime_name)},
        "mediapipe": _version("mediapipe"),
        "numpy": np.__version__,
        "opencv": _version("opencv-contrib-python") or _version("opencv-python") or _version("opencv-python-headless"),
        "tla_edge": __version__,
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "scheduler": _scheduler(),
        "load_avg_start": load,
    }


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory in MB: since the last :func:`reset_peak_rss`, else of the process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


def display_path(path: str | Path) -> str:
    """A path as the JSON records it: relative to the working directory when under it.

    Results are committed and compared across machines; an absolute path
    names one machine's folders and says nothing the relative one does not.
    """
    text = str(path)
    try:
        p = Path(text)
        if p.is_absolute():
            return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        pass
    return text


def file_facts(path: Path) -> dict[str, Any]:
    """Path (see :func:`display_path`), size and SHA-256 of a file."""
    data = path.read_bytes()
    return {"path": display_path(path), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def model_facts(path: Path) -> dict[str, Any]:
    """What the JSON says about a liveness model: file facts, I/O dtypes and shape, float tensors."""
    from tla_edge.runtime import modelinfo as tflite_info

    info = tflite_info.inspect_model(path)
    return {
        "name": path.stem,
        **file_facts(path),
        "dtype": info.inputs[0].dtype,
        "output_dtype": info.outputs[0].dtype,
        "input_shape": list(info.inputs[0].shape),
        "float_tensors": {"activations": info.float_activations, "constants": info.float_constants},
    }


def fused_facts(paths: Sequence[Path]) -> dict[str, Any]:
    """:func:`model_facts` of one model; of a fused set, the first's with the set's name and the others' facts."""
    facts = model_facts(paths[0])
    if len(paths) > 1:
        facts["name"] = "+".join(p.stem for p in paths)
        facts["fused_with"] = [model_facts(p) for p in paths[1:]]
    return facts


# --- frames ---------------------------------------------------------------------


class FrameSet(NamedTuple):
    """Frames held in memory for every configuration, or a live source."""

    frames: list[Any]
    """``Frame`` records read once (empty for a live source)."""
    live: Any
    """The open live source (camera), else None."""
    info: dict[str, Any]
    """The JSON ``source`` block."""


def read_frames(spec: str, count: int) -> FrameSet:
    """Opens a source; reads ``count`` frames into memory unless it is a live camera.

    Raises:
      FileNotFoundError, UserError, ValueError: from :func:`tla_edge.runtime.sources.open_source`.
    """
    from tla_edge.runtime.sources import open_source

    src = open_source(spec)
    info: dict[str, Any] = {"spec": display_path(spec), "kind": src.kind, "live": src.kind in LIVE_KINDS}
    if info["live"]:
        return FrameSet([], src, info)
    frames = []
    try:
        for frame in src:
            frames.append(frame)
            if len(frames) == count:
                break
        info["skipped"] = [f"{name}: {why}" for name, why in src.skipped]
    finally:
        src.close()
    if not frames:
        raise UserError(f"source '{spec}' gave no frame; expected a folder with images or a video")
    info["distinct_frames"] = len(frames)
    info["frame_shape"] = list(frames[0].rgb.shape)
    info["frames_mb"] = round(sum(f.rgb.nbytes for f in frames) / 2**20, 1)
    info["decode_ms"] = stage_stats(f.decode_ms for f in frames)
    if len(frames) < count:
        print(
            f"bench: source '{spec}' has {len(frames)} frames, fewer than the {count} needed; "
            "reusing them in order",
            file=sys.stderr,
        )
    return FrameSet(frames, None, info)


def _frames_for(frame_set: FrameSet, count: int) -> Iterator[tuple[Any, int]]:
    """``(frame, timestamp_ms)`` for one configuration: memory frames in order, or live captures."""
    if frame_set.live is None:
        n = len(frame_set.frames)
        for i in range(count):
            yield frame_set.frames[i % n], (i + 1) * FRAME_INTERVAL_MS
        return
    taken = 0
    for frame in frame_set.live:
        yield frame, int(frame.timestamp_ms)
        taken += 1
        if taken == count:
            return
    raise UserError(f"source '{frame_set.info['spec']}' stopped after {taken} of {count} frames")


# --- measurement -----------------------------------------------------------------


def raw_invoke_times(pipe: Any, frames: Sequence[Any], faces: Sequence[Any], warmup: int, count: int) -> dict[str, list[float]]:
    """Times the two models alone on prepared inputs: no conversion, crop or decoding.

    Detector: a fresh MediaPipe FaceDetector task (same model, mode and
    score threshold as the pipeline's) timed around ``detect_for_video`` (or
    ``detect``) on ``mp.Image`` objects built before timing; with the LiteRT
    backend, a fresh :class:`~tla_edge.runtime.blazeface.BlazeFaceLiteRT` (same model,
    score threshold and threads) timed around ``detect`` on the frame: warp,
    invoke, decoding and NMS, as MediaPipe's call includes. Liveness: the
    pipeline's own interpreter timed around ``invoke()`` after ``set_tensor``
    of input tensors prepared before timing from the faces the pipeline found
    (a zero tensor when it found none: invoke time does not depend on values).

    Args:
      pipe: the configuration's Pipeline.
      frames: the frames of the configuration, warm-up ones first.
      faces: the face judged in each timed frame that had one, with its frame index.
      warmup: untimed calls first.
      count: timed calls.

    Returns:
      ``{"detector": [ms...], "liveness": [ms...]}``, ``count`` each.
    """
    from tla_edge.runtime import interpreter as interp_lib

    det = pipe.detector
    if det.backend == "litert":
        detector_ms = _raw_litert_detector_ms(det, frames, warmup, count)
    else:
        detector_ms = _raw_mediapipe_detector_ms(det, frames, warmup, count)

    # Every model of a fused set runs on each face: a call's time is their sum.
    prepared = []
    for model in pipe.models:
        interpreter = model.interpreter
        d = interp_lib.input_details(interpreter)
        tensors = [model.input_tensor(model.crop(frames[i].rgb, face)) for i, face in faces]
        prepared.append((interpreter, d["index"], tensors or [np.zeros(d["shape"], d["dtype"])]))
    liveness_ms = []
    for i in range(warmup + count):
        dt = 0.0
        for interpreter, index, tensors in prepared:
            interpreter.set_tensor(index, tensors[i % len(tensors)])
            t0 = time.perf_counter()
            interpreter.invoke()
            dt += (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            liveness_ms.append(dt)
    return {"detector": detector_ms, "liveness": liveness_ms}


def _raw_litert_detector_ms(det: Any, frames: Sequence[Any], warmup: int, count: int) -> list[float]:
    from tla_edge.runtime.blazeface import BlazeFaceLiteRT

    litert = BlazeFaceLiteRT(det.model_path, min_score=det.min_score, num_threads=det.num_threads)
    detector_ms = []
    try:
        for i in range(warmup + count):
            rgb = frames[i % len(frames)].rgb
            t0 = time.perf_counter()
            litert.detect(rgb)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                detector_ms.append(dt)
    finally:
        litert.close()
    return detector_ms


def _raw_mediapipe_detector_ms(det: Any, frames: Sequence[Any], warmup: int, count: int) -> list[float]:
    from tla_edge.runtime import faces as faces_lib

    mp = faces_lib._import_mediapipe()  # the detector's own import, which keeps TensorFlow out
    running_mode = mp.running_mode.VisionTaskRunningMode
    video = det.mode == "video"
    with quiet_native_logs():
        task = mp.face_detector.FaceDetector.create_from_options(
            mp.face_detector.FaceDetectorOptions(
                base_options=mp.base_options.BaseOptions(model_asset_path=str(det.model_path)),
                running_mode=running_mode.VIDEO if video else running_mode.IMAGE,
                min_detection_confidence=det.min_score,
            )
        )
    images = [
        mp.image.Image(image_format=mp.image.ImageFormat.SRGB, data=np.ascontiguousarray(f.rgb)) for f in frames
    ]
    detector_ms = []
    try:
        # One untimed call first: it prints LiteRT's alignment notice on fd 2.
        with quiet_native_logs():
            task.detect_for_video(images[0], 1) if video else task.detect(images[0])
        for i in range(warmup + count):
            image = images[i % len(images)]
            t0 = time.perf_counter()
            if video:
                task.detect_for_video(image, (i + 1) * FRAME_INTERVAL_MS)
            else:
                task.detect(image)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                detector_ms.append(dt)
    finally:
        with quiet_native_logs():
            task.close()
    return detector_ms


def bench_configuration(
    config: Configuration,
    frame_set: FrameSet,
    frames: int,
    warmup: int,
    detector: str,
    show_progress: bool = True,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Runs one configuration: the pipeline pass, then the raw-invoke pass.

    Returns:
      ``(result, samples)``: the JSON block of the configuration, and the
      per-frame times of every stage plus ``raw_detector``/``raw_liveness``
      (for the plot).
    """
    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.progress import Progress

    rss_scope = "configuration" if reset_peak_rss() else "process"
    threshold, threshold_note = None, None
    if config.partners:
        from tla_edge.runtime import metadata as metadata_lib

        try:
            metadata_lib.fused_threshold([(m, metadata_lib.load(m)) for m in config.models])
        except (ValueError, TypeError):
            # Timing does not depend on the threshold; the decision counts then do.
            threshold, threshold_note = 0.5, "no stored fusion threshold: decisions at 0.5, not meaningful"
    pipe = Pipeline(
        config.models if config.partners else config.model, threshold=threshold, num_threads=config.threads,
        edgetpu=config.edgetpu, detector_model=detector, video=True,
        detector_backend=config.detector_backend or "auto",
    )
    backend = pipe.detector.backend  # read now: close() drops the detector
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    decisions: collections.Counter[str] = collections.Counter()
    used = []
    faces = []  # (index into used, face) of timed frames that were scored
    scored_total = []
    try:
        with Progress(warmup + frames, config.id, unit="frame", enabled=show_progress) as bar:
            for i, (frame, ts) in enumerate(_frames_for(frame_set, warmup + frames)):
                result = pipe.process(frame.rgb, ts)
                used.append(frame)
                bar.update()
                if i < warmup:
                    continue
                tm = result.timings
                decisions[result.decision] += 1
                samples["decode"].append(float(frame.decode_ms))
                samples["detect"].append(tm["detect"])
                if "detect_invoke" in tm:
                    samples["detect_invoke"].append(tm["detect_invoke"])
                samples["total"].append(tm["total"])
                if result.raw_score is not None:
                    samples["crop"].append(tm["crop"])
                    samples["invoke"].append(tm["invoke"])
                    scored_total.append(tm["total"])
                    faces.append((i, result.face))
                samples["glue"].append(tm["total"] - tm["detect"] - tm["crop"] - tm["invoke"])
        raw = raw_invoke_times(pipe, used, faces, warmup, frames)
    finally:
        pipe.close()
    stages = {s: stage_stats(samples[s]) for s in STAGES}
    raw_stats = {k: stage_stats(v) for k, v in raw.items()}
    scored = stage_stats(scored_total)
    result = {
        "id": config.id,
        "model": fused_facts(config.models),
        "threads": config.threads,
        "edgetpu": config.edgetpu,
        "detector_backend": backend,
        "frames": frames,
        "frames_scored": len(scored_total),
        "decisions": dict(sorted(decisions.items())),
        **({"threshold_note": threshold_note} if threshold_note else {}),
        "stages": stages,
        "total_scored": scored,
        "raw_invoke_ms": raw_stats,
        "overhead": overhead_ratio(scored, raw_stats["detector"], raw_stats["liveness"]),
        "fps": fps_from(stages["total"]),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_scope": rss_scope,
    }
    samples["raw_detector"] = raw["detector"]
    samples["raw_liveness"] = raw["liveness"]
    return result, samples


# --- output ---------------------------------------------------------------------


def _fmt(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """The one-screen summary: median milliseconds per stage, FPS, raw invokes, overhead, memory."""
    src = report["source"]
    host = report["host"]
    shape = src.get("frame_shape")
    size = f", {shape[1]}x{shape[0]}" if shape else ""
    lines = [
        f"tla-edge bench: {report['frames']} frames after {report['warmup']} warm-up from "
        f"'{src['spec']}' ({src['kind']}{size}); detector {report['detector']['model']} "
        f"({report['detector']['mode']} mode); {host['machine']}, {host['cpus_available']} CPUs, "
        f"{host['runtime']['name']} {host['runtime']['version']}",
        "",
        f"{'median ms':28s} {'decode':>7s} {'detect':>7s} {'crop':>6s} {'invoke':>7s} {'glue':>6s} "
        f"{'total':>7s} {'p90':>7s} {'fps':>6s} | {'raw det':>7s} {'raw liv':>7s} {'overhd':>6s} | {'RSS MB':>6s}",
    ]
    for c in report["configurations"]:
        st = c["stages"]
        raw = c["raw_invoke_ms"]
        lines.append(
            f"{c['id'][:28]:28s} {_fmt(st['decode']['median'], 7)} {_fmt(st['detect']['median'], 7)} "
            f"{_fmt(st['crop']['median'], 6)} {_fmt(st['invoke']['median'], 7)} {_fmt(st['glue']['median'], 6)} "
            f"{_fmt(st['total']['median'], 7)} {_fmt(st['total']['p90'], 7)} {_fmt(c['fps'], 6, 1)} | "
            f"{_fmt(raw['detector']['median'], 7)} {_fmt(raw['liveness']['median'], 7)} "
            f"{_fmt(c['overhead'], 6)} | {_fmt(c['peak_rss_mb'], 6, 0)}"
        )
    lines.append("")
    lines.append(
        "overhead = median total (frames with a score) / (median raw detector + median raw liveness invoke); "
        f"goal <= {report['overhead_goal']}"
    )
    for c in report["configurations"]:
        if c["frames_scored"] < c["frames"]:
            lines.append(
                f"{c['id']}: {c['frames_scored']} of {c['frames']} frames scored ("
                + ", ".join(f"{k} {v}" for k, v in c["decisions"].items())
                + "); crop and invoke are over the scored frames only"
            )
    return "\n".join(lines)


PLOT_PANELS = ("detect", "crop", "invoke", "glue", "total", "raw_detector", "raw_liveness", "decode")


def write_plot(path: Path, report: dict[str, Any], samples: Sequence[dict[str, list[float]]]) -> None:
    """Box plots of every stage's per-frame times, one box per configuration, one colour per model.

    Raises:
      UserError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise missing_extra("matplotlib", "dev") from None
    from tla_edge.fileio import atomic_path

    configs = report["configurations"]
    models = list(dict.fromkeys(c["model"]["name"] for c in configs))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    fig = Figure(figsize=(4.0 * 4, 3.6 * 2), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, stage in zip(axes, PLOT_PANELS):
        data = [s.get(stage) or [np.nan] for s in samples]
        box = ax.boxplot(data, patch_artist=True, showfliers=True, flierprops={"markersize": 2})
        for patch, c in zip(box["boxes"], configs):
            patch.set_facecolor(colour[c["model"]["name"]])
            patch.set_alpha(0.7)
        ax.set_xticks(range(1, len(configs) + 1), [f"{c['threads']}t" for c in configs], fontsize=8)
        ax.set_title(stage.replace("_", " "), fontsize=10)
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colour[m], label=m) for m in models]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 4), fontsize=9)
    host = report["host"]
    fig.suptitle(
        f"tla-edge bench: {report['frames']} frames, {host['machine']} ({host['cpu'][:50]}), "
        f"{host['runtime']['name']} {host['runtime']['version']}",
        fontsize=11,
    )
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)


def run_benchmark(
    source: str,
    models: Sequence[Path],
    threads: Sequence[int],
    frames: int,
    warmup: int,
    detector: str = "short",
    edgetpu: bool = False,
    show_progress: bool = True,
    detector_backends: Sequence[str | None] = (None,),
) -> tuple[dict[str, Any], list[dict[str, list[float]]]]:
    """Runs every configuration on the same frames.

    Returns:
      ``(report, samples)``: the JSON-ready report, and per configuration the
      per-frame times of each stage (for :func:`write_plot`).

    Raises:
      FileNotFoundError: a model, the source or the detector is missing.
      ValueError: a file is not a TFLite model.
      UserError: the source gives no frame, the Edge TPU is missing, ...
    """
    from tla_edge.runtime import faces as faces_lib
    from tla_edge.runtime.interpreter import check_tflite_file, import_runtime

    np.random.seed(SEED)
    for m in models:
        for path in model_set(m):
            check_tflite_file(path)
    detector_path = faces_lib.resolve_model(detector)
    runtime = import_runtime()
    host = host_info(runtime.name)
    configs = configurations(models, threads, edgetpu, detector_backends)
    frame_set = read_frames(source, warmup + frames)
    results = []
    samples = []
    try:
        for config in configs:
            result, sample = bench_configuration(config, frame_set, frames, warmup, detector, show_progress)
            results.append(result)
            samples.append(sample)
    finally:
        if frame_set.live is not None:
            frame_set.live.close()
    try:
        host["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        host["load_avg_end"] = None
    overheads = [r["overhead"] for r in results if r["overhead"] is not None]
    report = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "source": frame_set.info,
        "frames": frames,
        "warmup": warmup,
        "seed": SEED,
        "detector": {
            "model": detector,
            **file_facts(detector_path),
            "mode": "video",
            "threads": "litert backend: the configuration's threads; mediapipe backend: its own default "
            "(the Tasks API has no thread setting)",
        },
        "overhead": max(overheads) if overheads else None,
        "overhead_goal": OVERHEAD_GOAL,
        "configurations": results,
    }
    return report, samples


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge bench``; returns 0."""
    from tla_edge.fileio import check_writable, write_json_atomic

    # Refuse bad outputs before minutes of measuring.
    if args.json is not None:
        check_writable(args.json, args.force)
    if args.plot is not None:
        check_writable(args.plot, args.force)
        if importlib.util.find_spec("matplotlib") is None:
            raise missing_extra("matplotlib", "dev")
        if args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"--plot '{args.plot}' has suffix '{args.plot.suffix}'; expected .png, .svg or .pdf")
        if args.json is not None and os.path.abspath(args.json) == os.path.abspath(args.plot):
            raise ValueError(f"--json and --plot are both '{args.plot}'; expected two different files")
    if args.model:
        models = list(args.model)
    else:
        from tla_edge.runtime.assets import default_liveness_models

        models = [tuple(default_liveness_models())]  # a fused default is one row, as the pipeline runs it
    if args.source is None:
        from tla_edge.runtime.assets import sample_frames_dir

        source = str(sample_frames_dir())
    else:
        source = args.source
    report, samples = run_benchmark(
        source,
        models,
        args.threads or [1],
        args.frames,
        args.warmup,
        detector=args.detector,
        edgetpu=args.edgetpu,
        show_progress=not args.quiet,
        detector_backends=args.detector_backend or (None,),
    )
    print(format_table(report))
    if args.json is not None:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    if args.plot is not None:
        write_plot(args.plot, report, samples)
        print(f"wrote {args.plot}")
    return 0
