"""Per-frame latency of each pipeline stage for every (model, threads, detector backend) combination.

Frames from a folder or a video are read once into memory (warm-up + timed
frames, reused in order when the source has fewer), so every configuration
sees identical pixels; a camera is live and each configuration captures its own.
For each configuration the device pipeline (face detector in video mode) runs
the warm-up frames untimed, then the timed ones; side by side, frame by frame,
:mod:`tla_edge.runtime.benchmark_raw` times the two models alone on the same
frame. Their ratio to the pipeline's total is the overhead (goal: <= 1.15).
Each configuration also reports frames per second end to end (decode to
decision: ``fps_end_to_end``) and each stage's share of that time (``stage_share``).
Timed with time.perf_counter(); the report is the JSON schema of
benchmarks/README.md (``tla-edge-bench/1``).

    report, samples = run_benchmark("samples", [Path("m_int8.tflite")], threads=[1, 4], frames=100, warmup=10)
"""

from __future__ import annotations

import collections
import datetime
import itertools
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from tla_edge import host
from tla_edge.errors import UserError
from tla_edge.runtime.benchmark_raw import FRAME_INTERVAL_MS, RawTimer
from tla_edge.runtime import benchmark_report
from tla_edge.runtime.benchmark_report import STAGES, configuration_block, file_facts, recorded_path, stage_stats
from tla_edge.runtime.cpu import check_num_threads
from tla_edge.runtime.members import check_members
from tla_edge.runtime.fused_set import fused_threshold, set_files

FORMAT = "tla-edge-bench/1"
STAT_NAMES = benchmark_report.STAT_NAMES
"""The statistics :func:`stage_stats` gives of each stage."""
OVERHEAD_GOAL = 1.15
"""Target for median total over (median raw detector + median raw liveness invoke)."""
SEED = 0
LIVE_KINDS = ("camera", "picamera2")


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
    members: str | None = None
    """How a fused set's models run (``sequential``, ``concurrent``, ``auto``); None: auto, unnamed."""
    crop_overlap: str | None = None
    """Whether later members' crops are cut on a worker beside the first crop and invoke (``on``, ``off``, ``auto``); None: auto, unnamed."""

    @property
    def models(self) -> list[Path]:
        """Every liveness model of the configuration: one, or the fused set."""
        return [self.model, *self.partners]

    @property
    def id(self) -> str:
        """A short unique name: ``<stem>[+<stem>...]/<threads>t`` (``+edgetpu``) (``@<backend>``) (``:<members>``)
        (``~overlap-<on|off|auto>``)."""
        stems = "+".join(m.stem for m in self.models)
        return (f"{stems}/{self.threads}t" + ("+edgetpu" if self.edgetpu else "")
                + (f"@{self.detector_backend}" if self.detector_backend else "")
                + (f":{self.members}" if self.members else "")
                + (f"~overlap-{self.crop_overlap}" if self.crop_overlap else ""))


def model_set(value: str | Path | Sequence[str | Path]) -> tuple[Path, ...]:
    """One ``--model`` value as its models: ``A.tflite``, a fused set ``A.tflite+B.tflite``, or a folder
    holding one model or one set (``tla-edge calibrate --out DIR``; :func:`~tla_edge.runtime.fused_set.set_files`).

    Raises:
      ValueError: the value names no model (``+``, an empty text), or a folder that is not one model or set.
    """
    parts = value if isinstance(value, (list, tuple)) else str(value).split("+")
    models = tuple(f for part in parts if str(part) for f in set_files(part))  # a folder: its model or set
    if not models:
        raise ValueError(f"--model {str(value)!r} names no model; expected M.tflite or A.tflite+B.tflite")
    return models


def configurations(
    models: Sequence[Path | Sequence[Path]], threads: Sequence[int], edgetpu: bool,
    detector_backends: Sequence[str | None] = (None,), members: Sequence[str | None] = (None,),
    crop_overlaps: Sequence[str | None] = (None,),
) -> list[Configuration]:
    """Every (model or fused set, threads, detector backend, members, crop overlap) combination, duplicates
    dropped, in order."""
    seen: dict[tuple[tuple[str, ...], int, str | None, str | None, str | None], Configuration] = {}
    for m, t, b, mode, ov in itertools.product(models, threads, detector_backends, members, crop_overlaps):
        first, *rest = model_set(m)
        key = (tuple(str(p.resolve()) for p in (first, *rest)), t, b, mode, ov)
        seen.setdefault(key, Configuration(first, int(t), edgetpu, b, tuple(rest), mode, ov))
    return list(seen.values())


CROP_OVERLAPS = {"auto": None, "on": True, "off": False}
"""``--crop-overlap`` values and the ``Pipeline(overlap_crops=...)`` each means."""


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
    info: dict[str, Any] = {"spec": recorded_path(spec), "kind": src.kind, "live": src.kind in LIVE_KINDS}
    if info["live"]:
        return FrameSet([], src, info)
    # The first decode pays the codec's cold start (170 ms against 10 on a sample frame): one untimed, then reopen.
    next(iter(src), None)
    src.close()
    src = open_source(spec)
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


def frames_for(frame_set: FrameSet, count: int) -> Iterator[tuple[Any, int]]:
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


# --- one configuration -------------------------------------------------------------


class TimedPass(NamedTuple):
    """What the timed frames of one configuration measured: the pipeline's stages, the raw models."""

    samples: dict[str, list[float]]
    """Per-frame milliseconds of every stage of :data:`STAGES`, timed frames only."""
    decisions: collections.Counter
    """Count of timed frames per decision."""
    raw: dict[str, list[float]]
    """``detector`` and ``liveness``: the models alone, on each timed frame (:class:`RawTimer`)."""
    scored_total: list[float]
    """The pipeline's total of the timed frames that were scored."""
    end_to_end: list[float]
    """Decode + the pipeline's total of every timed frame: decode to decision."""


def fusion_threshold(config: Configuration) -> tuple[float | None, str | None]:
    """``(threshold, note)`` for the pipeline: None (the models' own) unless a model or fused set stores none."""
    from tla_edge.runtime import metadata as metadata_lib

    loaded = [(m, metadata_lib.load(m)) for m in config.models]
    bare = [str(m) for m, meta in loaded if meta is None]
    if bare:
        # Timing does not depend on the threshold; the decision counts then do.
        return 0.5, f"'{bare[0]}' has no tla-edge metadata: decisions at 0.5, not meaningful"
    if not config.partners:
        return None, None
    try:
        fused_threshold(loaded)
    except (ValueError, TypeError):
        # Timing does not depend on the threshold; the decision counts then do.
        return 0.5, "no stored fusion threshold: decisions at 0.5, not meaningful"
    return None, None


def time_pipeline(pipe: Any, raw: RawTimer, label: str, frame_set: FrameSet, frames: int, warmup: int,
                  show_progress: bool = True) -> TimedPass:
    """Runs ``warmup`` untimed then ``frames`` timed frames; records each stage and the raw models.

    Side by side, frame by frame: the pipeline judges a frame, then the raw
    detector runs on it and the raw liveness models on the face it judged.
    Each frame is first copied (untimed) into a fresh array, as a decode or a
    colour conversion leaves it in a stream: the frame set is decoded ahead
    into memory, and a frame read cold from there cost the pipeline's detector
    ~0.06 ms more than the raw detector that ran after it on the same, now
    cached, frame (benchmarks/README.md, round 8).
    """
    from tla_edge.progress import Progress

    timed = TimedPass({s: [] for s in STAGES}, collections.Counter(), {"detector": [], "liveness": []}, [], [])
    samples = timed.samples
    with Progress(warmup + frames, label, unit="frame", enabled=show_progress) as bar:
        for i, (frame, ts) in enumerate(frames_for(frame_set, warmup + frames)):
            rgb = frame.rgb.copy()  # freshly written, as a decoded frame is; both the pipeline and the raw models read it
            result = pipe.process(rgb, ts)
            raw_detector = raw.detector_ms(rgb, ts)
            raw_liveness = raw.liveness_ms(rgb, result.face if result.raw_score is not None else None)
            bar.update()
            if i < warmup:
                continue
            tm = result.timings
            timed.decisions[result.decision] += 1
            timed.raw["detector"].append(raw_detector)
            timed.raw["liveness"].append(raw_liveness)
            samples["decode"].append(float(frame.decode_ms))
            samples["detect"].append(tm["detect"])
            if "detect_invoke" in tm:
                samples["detect_invoke"].append(tm["detect_invoke"])
            samples["total"].append(tm["total"])
            timed.end_to_end.append(float(frame.decode_ms) + tm["total"])
            if result.raw_score is not None:
                samples["crop"].append(tm["crop"])
                samples["invoke"].append(tm["invoke"])
                timed.scored_total.append(tm["total"])
            samples["glue"].append(tm["total"] - tm["detect"] - tm["crop"] - tm["invoke"])
    return timed


def bench_configuration(
    config: Configuration,
    frame_set: FrameSet,
    frames: int,
    warmup: int,
    detector: str,
    show_progress: bool = True,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Runs one configuration: the pipeline and, side by side, the raw models (:func:`time_pipeline`).

    Returns:
      ``(result, samples)``: the JSON block of the configuration, and the
      per-frame times of every stage plus ``raw_detector``/``raw_liveness``
      (for the plot).
    """
    from tla_edge.runtime.pipeline import Pipeline

    rss_scope = "configuration" if host.reset_peak_rss() else "process"
    threshold, threshold_note = fusion_threshold(config)
    pipe = Pipeline(
        config.models if config.partners else config.model, threshold=threshold, num_threads=config.threads,
        edgetpu=config.edgetpu, detector_model=detector, video=True,
        detector_backend=config.detector_backend or "auto", members=config.members or "auto",
        overlap_crops=CROP_OVERLAPS[config.crop_overlap or "auto"],
    )
    # read now: close() drops the detector
    backend, members, overlap = pipe.detector.backend, pipe.members, pipe.overlap_crops
    try:
        with RawTimer(pipe) as raw:
            timed = time_pipeline(pipe, raw, config.id, frame_set, frames, warmup, show_progress)
    finally:
        pipe.close()
    result = configuration_block(config, backend, members, frames, timed, threshold_note, rss_scope, overlap,
                                 tuple(pipe.overlap_counts))
    samples = {**timed.samples, "raw_detector": timed.raw["detector"], "raw_liveness": timed.raw["liveness"]}
    return result, samples


# --- every configuration -------------------------------------------------------------


def default_inputs(
    source: str | None, models: Sequence[Path | Sequence[Path]] | None
) -> tuple[str, list[Path | Sequence[Path]]]:
    """``(source, models)`` with the bundled ones where None: the sample frames, the bundled model set."""
    from tla_edge.runtime import assets

    if source is None:
        source = str(assets.sample_frames_dir())
    if not models:
        models = [tuple(assets.default_liveness_models())]  # a fused default is one row, as the pipeline runs it
    return source, list(models)


def detector_block(detector: str, detector_path: Path) -> dict[str, Any]:
    """The JSON ``detector`` block: the name asked for, its file, its mode and threads."""
    return {
        "model": detector,
        **file_facts(detector_path),
        "mode": "video",
        "threads": "litert backend: the configuration's threads; mediapipe backend: its own default "
        "(the Tasks API has no thread setting)",
    }


def check_choices(threads: Sequence[int], members: Sequence[str | None], crop_overlaps: Sequence[str | None]) -> None:
    """Refuses a thread count, ``--members`` or ``--crop-overlap`` value before anything is measured.

    Raises:
      ValueError: one line naming the value received and those expected.
    """
    for t in threads:
        check_num_threads(t, "threads")
    for mode in members:
        if mode is not None:
            check_members(mode, "--members")
    for ov in crop_overlaps:
        if ov is not None and ov not in CROP_OVERLAPS:
            raise ValueError(f"--crop-overlap {ov!r} is not one of {', '.join(repr(k) for k in CROP_OVERLAPS)}")


def run_benchmark(
    source: str | None,
    models: Sequence[Path | Sequence[Path]] | None,
    threads: Sequence[int],
    frames: int,
    warmup: int,
    detector: str = "short",
    edgetpu: bool = False,
    show_progress: bool = True,
    detector_backends: Sequence[str | None] = (None,),
    members: Sequence[str | None] = (None,),
    crop_overlaps: Sequence[str | None] = (None,),
) -> tuple[dict[str, Any], list[dict[str, list[float]]]]:
    """Runs every configuration on the same frames.

    Args:
      source: image folder, video, camera index or ``samples``; None: the bundled sample frames.
      models: liveness ``.tflite`` files, or fused sets (``A+B`` or a tuple); None or empty: the bundled model.
      threads: liveness interpreter threads to compare.
      frames: timed frames per configuration.
      warmup: untimed frames first.
      detector: ``short``, ``full`` or a face detector ``.tflite``.
      edgetpu: run the liveness models on a Coral Edge TPU.
      show_progress: draw a progress bar per configuration on stderr.
      detector_backends: face detector backends to compare (None: auto, unnamed).
      members: how a fused set's models run, to compare: ``sequential``,
        ``concurrent``, ``auto`` (None: auto, unnamed); see :class:`~tla_edge.runtime.pipeline.Pipeline`.
      crop_overlaps: whether a sequential fused set cuts its later crops on a worker beside the first
        crop and invoke, to compare: ``on``, ``off``, ``auto`` (None: auto, unnamed).

    Returns:
      ``(report, samples)``: the JSON-ready report, and per configuration the
      per-frame times of each stage (for :func:`~tla_edge.runtime.benchmark_report.write_plot`).

    Raises:
      FileNotFoundError: a model, the source or the detector is missing.
      ValueError: a file is not a TFLite model; a thread count outside [1, 64]; an unknown ``members``.
      UserError: the source gives no frame, the Edge TPU is missing, ...
    """
    from tla_edge.runtime import faces as faces_lib
    from tla_edge.runtime.interpreter import check_tflite_file, import_runtime

    check_choices(threads, members, crop_overlaps)
    np.random.seed(SEED)
    source, models = default_inputs(source, models)
    for m in models:
        for path in model_set(m):
            check_tflite_file(path)
    detector_path = faces_lib.resolve_model(detector)
    machine = host.host_info(import_runtime().name)
    configs = configurations(models, threads, edgetpu, detector_backends, members, crop_overlaps)
    frame_set = read_frames(source, warmup + frames)
    results, samples = [], []
    try:
        for config in configs:
            result, sample = bench_configuration(config, frame_set, frames, warmup, detector, show_progress)
            results.append(result)
            samples.append(sample)
    finally:
        if frame_set.live is not None:
            frame_set.live.close()
    machine["load_avg_end"] = host.load_average()
    overheads = [r["overhead"] for r in results if r["overhead"] is not None]
    report = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": machine,
        "source": frame_set.info,
        "frames": frames,
        "warmup": warmup,
        "seed": SEED,
        "detector": detector_block(detector, detector_path),
        "overhead": max(overheads) if overheads else None,
        "overhead_goal": OVERHEAD_GOAL,
        "configurations": results,
    }
    return report, samples
