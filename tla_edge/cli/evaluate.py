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
their metadata, never the mean of their own.

Writes to --out: metrics.json, report.md, scores.csv, roc.png, det.png,
hist.png, confusion.png and worst_errors.png (crops of the data: keep the
report folder out of the repository).

Example:
  tla-edge evaluate crops/nuaa --model runs/mnv2/model.keras --sessions 02 --out reports/mnv2
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tla_edge import fileio, metrics

from tla_edge.data import datasets
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.cli import argtypes
from tla_edge.errors import UserError, missing_extra
from tla_edge.progress import Progress

OUTPUT_FILES = (
    "metrics.json",
    "report.md",
    "scores.csv",
    "roc.png",
    "det.png",
    "hist.png",
    "confusion.png",
    "worst_errors.png",
)
CROPS = "crops"
LIVE, SPOOF = "live", "spoof"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``evaluate`` flags."""
    parser.add_argument("data", type=Path, metavar="DATA", help="crops folder (tla-edge prepare) or, with --raw, a dataset")
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        default=None,
        metavar="MODEL",
        help=".tflite or .keras model; repeat to fuse several by averaging their scores "
        "(None: the bundled int8 model)",
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
        "--store-fusion", action="store_true",
        help="several .tflite --model: derive their fused threshold at the EER of the fused scores on DATA, "
        "report at it, and store it in each model's metadata (extra.fusion) for the runtime",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR", help="folder for the report files")
    parser.add_argument("--force", action="store_true", help="overwrite report files in REPORT_DIR")
    parser.add_argument("--limit", type=argtypes.positive_int, default=None, metavar="N", help="evaluate N images, evenly spread (None: all)")
    parser.add_argument("--detector", type=str, default="short", metavar="short|full|PATH", help="face detector (--raw)")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend (--raw): auto (MediaPipe where it runs, else LiteRT), mediapipe or litert")
    parser.add_argument("--num-threads", type=argtypes.positive_int, default=None, help="interpreter CPU threads (None: the runtime's default)")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=64, help="batch size of a .keras model")
    parser.add_argument("--worst", type=argtypes.positive_int, default=12, help="worst false accepts and rejects shown")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge evaluate``; returns 0."""
    t0 = time.perf_counter()
    check_outputs(args.out, args.force)
    model_paths = [Path(p) for p in args.model] if args.model else _default_models()
    raw = args.raw or args.layout in datasets.LAYOUTS
    if not raw and args.layout in ("auto", CROPS) and not datasets.is_crops_dir(args.data):
        if not args.data.exists():
            raise FileNotFoundError(f"data '{args.data}' not found")
        raise UserError(
            f"'{args.data}' is not a crops folder (no manifest.csv written by tla-edge prepare); "
            "expected a crops folder, or pass --raw to run the device pipeline on a raw dataset"
        )
    store_fusion = getattr(args, "store_fusion", False)
    if store_fusion:
        if len(model_paths) < 2 or any(metadata_lib.model_file(p).suffix.lower() != ".tflite" for p in model_paths):
            raise UserError(f"--store-fusion needs two or more .tflite --model; got {len(model_paths)} "
                            f"({', '.join(str(p) for p in model_paths)})")
        if args.threshold is not None:
            raise UserError(f"--store-fusion derives the threshold; got also --threshold {args.threshold:g}")
    scorers: list[Scorer] = []
    try:
        for p in model_paths:
            scorers.append(load_scorer(p, args.num_threads, args.batch_size, need_tflite=raw,
                                       threshold=args.threshold))
        threshold = _threshold_of(args, scorers)
        if raw:
            ev = evaluate_raw(args, scorers)
        else:
            ev = evaluate_crops(args, scorers)
    finally:
        for sc in scorers:
            sc.close()
    if store_fusion:
        threshold = _derive_fused_threshold(ev)
    report = build_report(ev, threshold, scorers, args, raw)
    if store_fusion:
        report["threshold_source"] = "fused EER on this data (--store-fusion)"
        report["fusion_record"] = metadata_lib.store_fusion([s.path for s in scorers], threshold)
        print(f"stored fused threshold {threshold:.4f} in " + ", ".join(f"'{s.path}'" for s in scorers))
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    write_report(args.out, ev, report, args.worst)
    print(format_summary(report, args.out))
    return 0


def _default_models() -> list[Path]:
    from tla_edge.runtime.assets import default_liveness_models

    return default_liveness_models()


def check_outputs(out: Path, force: bool) -> None:
    """Refuses to overwrite report files without ``force``; checks the folder can be written.

    Raises:
      UserError: ``out`` is a file, or holds a report file and ``force`` is false.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output '{out}' is a file; expected a folder for the report")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not force:
        raise UserError(
            f"output folder '{out}' already holds {', '.join(existing)}; pass --force to overwrite them"
        )
    # Check without creating anything: a run that fails later leaves no empty folder.
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder '{out}' cannot be created: '{parent}' is not writable")


# --- models -------------------------------------------------------------------


class Scorer:
    """One model: its metadata and a function scoring uint8 crops of its input size.

    Attributes:
      path: the model file.
      meta: its metadata.
      kind: ``"tflite"`` or ``"keras"``.
      liveness: the :class:`~tla_edge.runtime.interpreter.LivenessModel` (``.tflite`` only).
    """

    def __init__(self, path: Path, meta: metadata_lib.ModelMetadata, kind: str, liveness=None, keras_model=None,
                 batch_size: int = 64) -> None:
        self.path = path
        self.meta = meta
        self.kind = kind
        self.liveness = liveness
        self._keras = keras_model
        self._batch = batch_size

    def score(self, crops: np.ndarray, bar: Progress | None = None) -> np.ndarray:
        """Live probabilities ``(N,)`` of ``(N, H, W, 3)`` uint8 RGB crops."""
        if self.kind == "keras":
            from tla_edge.train.models import keras_scores

            return keras_scores(self._keras, crops, self.meta, self._batch, bar=bar)
        out = np.empty(len(crops), np.float64)
        for i, crop in enumerate(crops):
            out[i] = self.liveness.score(crop)
            if bar is not None:
                bar.update(1)
        return out

    def close(self) -> None:
        """Releases the interpreter (``.tflite``) or the Keras model."""
        if self.liveness is not None:
            self.liveness.close()
        self._keras = None

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the model."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "architecture": self.meta.architecture,
            "input_size": list(self.meta.input_size),
            "crop_scale": self.meta.crop_scale,
            "normalization": self.meta.normalization,
            "threshold": self.meta.threshold,
            "thresholds": self.meta.extra.get("thresholds"),
        }


def load_scorer(path: Path, num_threads: int | None = None, batch_size: int = 64, need_tflite: bool = False,
                threshold: float | None = None) -> Scorer:
    """Opens a ``.tflite`` (LiteRT) or ``.keras`` (Keras, imported here) model with its metadata.

    ``threshold`` (``--threshold``) lets a ``.tflite`` without tla-edge metadata be used.

    Raises:
      FileNotFoundError: the model or a ``.keras`` model's metadata.json is missing.
      ValueError: the file is neither, or cannot be loaded.
      UserError: a ``.keras`` model where the device pipeline needs a ``.tflite``.
    """
    path = metadata_lib.model_file(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from tla_edge.runtime.interpreter import LivenessModel

        lm = LivenessModel(path, num_threads=num_threads, threshold=threshold)
        return Scorer(path, lm.meta, "tflite", liveness=lm)
    if suffix != ".keras":
        raise ValueError(f"model '{path}' is not a .tflite or .keras file")
    if need_tflite:
        raise UserError(
            f"--raw runs the device pipeline, which needs a .tflite model; got '{path}' "
            "(convert it with tla-edge convert, or evaluate prepared crops without --raw)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' not found")
    meta = metadata_lib.load(path)
    if meta is None:
        raise FileNotFoundError(
            f"metadata '{metadata_lib.sidecar_path(path)}' of model '{path}' not found; "
            "expected the metadata.json tla-edge train writes beside model.keras"
        )
    try:
        import keras
    except ImportError:
        raise missing_extra("tensorflow", "train") from None
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ValueError(f"model file '{path}' could not be loaded by Keras: {err}") from err
    shape = tuple(model.input_shape[1:3])
    if shape != tuple(meta.input_size):
        raise ValueError(
            f"model '{path}' input is {shape[0]}x{shape[1]} but its metadata says "
            f"{meta.input_size[0]}x{meta.input_size[1]}"
        )
    return Scorer(path, meta, "keras", keras_model=model, batch_size=batch_size)


# --- evaluation ---------------------------------------------------------------


class Evaluated:
    """Per-sample results of one evaluation, in data order."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.labels: list[int] = []
        self.species: list[str] = []
        self.subjects: list[str] = []
        self.sessions: list[str] = []
        self.scores: list[float] = []
        self.decisions: list[str] = []
        self.extra: dict[str, Any] = {}
        self.corrupt: list[str] = []
        self.thumbs: Any = None  # callable index -> RGB image, for the worst-errors grid

    def add(self, source, label, species, subject, session, score, decision) -> None:
        """Appends one sample; ``score`` is None for a non-response (no usable face, model error)."""
        self.sources.append(str(source))
        self.labels.append(int(label))
        self.species.append(species if label == 0 else "")
        self.subjects.append(subject)
        self.sessions.append(session)
        self.scores.append(float("nan") if score is None else float(score))
        self.decisions.append(decision)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(scores, labels, species)`` of every sample; a non-response's score is NaN."""
        return np.asarray(self.scores, np.float64), np.asarray(self.labels, np.int64), list(self.species)

    def processed(self) -> np.ndarray:
        """True where the system processed the presentation (a live or spoof decision with a score)."""
        return np.array([d in (LIVE, SPOOF) for d in self.decisions], bool)

    def reasons(self) -> list[str | None]:
        """Per sample: None when processed, else the non-response reason (the decision)."""
        return [None if d in (LIVE, SPOOF) else d for d in self.decisions]


def _spread(n: int, limit: int | None) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def evaluate_crops(args: argparse.Namespace, scorers: Sequence[Scorer]) -> Evaluated:
    """Scores prepared crops; each model reads the crops of its own scale.

    Raises:
      UserError: the crops have no scale or size matching a model's metadata,
        or the filtered data lacks a class.
    """
    rows = datasets.read_manifest(args.data)
    scales = sorted({float(r["scale"]) for r in rows})
    sets = []
    for sc in scorers:
        want = float(sc.meta.crop_scale)
        if not any(abs(s - want) < 1e-6 for s in scales):
            raise UserError(
                f"model '{sc.path}' expects crops at scale {want:g} but '{args.data}' holds scales "
                f"{', '.join(f'{s:g}' for s in scales)}; prepare them with --scales {want:g}"
            )
        cs = datasets.load_crops(args.data, scale=want, split=args.split, sessions=args.sessions,
                                 subjects=getattr(args, "subjects", None))
        h, w = cs.images.shape[1:3]
        if (h, w) != tuple(sc.meta.input_size):
            raise UserError(
                f"crops in '{args.data}' at scale {want:g} are {h}x{w} but model '{sc.path}' expects "
                f"{sc.meta.input_size[0]}x{sc.meta.input_size[1]}; prepare them with --size {sc.meta.input_size[0]}"
            )
        sets.append(cs)
    # Align the scales on their source image (fusion needs the same frames).
    common = set(sets[0].sources)
    for cs in sets[1:]:
        common &= set(cs.sources)
    order = [s for s in sets[0].sources if s in common]
    idx = _spread(len(order), args.limit)
    order = [order[i] for i in idx]
    picked = []
    for cs in sets:
        pos = {s: i for i, s in enumerate(cs.sources)}
        picked.append(cs.subset([pos[s] for s in order]))
    base = picked[0]
    datasets.check_two_classes(
        [datasets.Record(Path(s), "real" if y == 1 else "attack", "", "", "", "") for s, y in zip(base.sources, base.labels)],
        f"crops '{args.data}'" + _filters_text(args),
    )
    total = len(order) * len(scorers)
    with Progress(total, "evaluate", unit="crop", enabled=not args.quiet) as bar:
        scores = np.mean([sc.score(cs.images, bar) for sc, cs in zip(scorers, picked)], axis=0)
    ev = Evaluated()
    for i in range(len(base)):
        y = int(base.labels[i])
        decision = LIVE if scores[i] >= _threshold_of(args, scorers) else SPOOF
        ev.add(base.sources[i], y, base.species[i] or "attack", base.subjects[i], base.sessions[i], scores[i], decision)
    ev.thumbs = lambda i: base.images[i]
    ev.extra = {"scales": [float(cs.scale) for cs in picked]}
    return ev


def _derive_fused_threshold(ev: "Evaluated") -> float:
    """The EER threshold of the fused scores over processed presentations; the decisions follow it."""
    scores, labels, _ = ev.arrays()
    done = ev.processed()
    if len(set(labels[done].tolist())) < 2:
        raise UserError("--store-fusion needs processed bona fide and attack presentations to derive a threshold")
    threshold = metadata_lib.check_threshold(metrics.eer(scores[done], labels[done])[1], "fused EER threshold")
    ev.decisions = [(LIVE if scores[i] >= threshold else SPOOF) if d else ev.decisions[i]
                    for i, d in enumerate(done)]
    return threshold


def _threshold_of(args: argparse.Namespace, scorers: Sequence[Scorer]) -> float:
    """--threshold, else the model's own, else the fused threshold stored with several models.

    With --store-fusion, 0.5 for the scoring pass: the threshold is derived afterwards.
    """
    if getattr(args, "store_fusion", False):
        return 0.5
    if args.threshold is not None:
        return metadata_lib.check_threshold(args.threshold, "--threshold")
    if len(scorers) == 1:
        return float(scorers[0].meta.threshold)
    return metadata_lib.fused_threshold([(s.path, s.meta) for s in scorers])


def _filters_text(args: argparse.Namespace) -> str:
    parts = []
    if args.split:
        parts.append(f"split {args.split!r}")
    if args.sessions:
        parts.append(f"sessions {args.sessions}")
    if getattr(args, "subjects", None):
        parts.append(f"subjects {args.subjects}")
    return (" (" + ", ".join(parts) + ")") if parts else ""


def evaluate_raw(args: argparse.Namespace, scorers: Sequence[Scorer]) -> Evaluated:
    """Runs the device pipeline (image-mode detector, no smoothing) on every frame of a raw dataset."""
    from tla_edge.runtime.faces import FaceDetector
    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.cli.prepare import _prefetch

    layout = "auto" if args.layout in ("auto", CROPS) else args.layout
    records = datasets.load_dataset(args.data, layout)
    wanted = datasets.id_list(args.sessions)
    people = datasets.id_list(getattr(args, "subjects", None))
    records = [
        r
        for r in records
        if (args.split is None or r.split == args.split)
        and (wanted is None or any(datasets.same_id(r.session, s) for s in wanted))
        and (people is None or any(datasets.same_id(r.subject, s) for s in people))
    ]
    records = [records[i] for i in _spread(len(records), args.limit)]
    datasets.check_two_classes(records, f"dataset '{args.data}'" + _filters_text(args))
    threshold = _threshold_of(args, scorers)
    ev = Evaluated()
    boxes: list[Any] = []
    detector = FaceDetector(args.detector, mode="image", policy="largest", num_threads=args.num_threads,
                            backend=args.detector_backend)
    pipe = None
    try:
        pipe = Pipeline([s.liveness for s in scorers], detector, threshold=threshold, smoothing=1, live_frames=1)
        with Progress(len(records), "evaluate", unit="img", enabled=not args.quiet) as bar:
            for rec, rgb in _prefetch(lambda r: datasets.read_image_rgb(r.path), records):
                source = _display_source(rec.path, args.data)
                if rgb is None:
                    ev.corrupt.append(source)
                    bar.update()
                    continue
                pipe.reset()
                result = pipe.process(rgb)
                # a non-response has no score: it is counted apart, never as a 0.0 score
                ev.add(source, 1 if rec.label == "real" else 0, rec.species, rec.subject, rec.session,
                       result.score, result.decision)
                boxes.append((rec.path, result.face))
                bar.update(postfix=f"no response {sum(d not in (LIVE, SPOOF) for d in ev.decisions)}")
    finally:
        if pipe is not None:
            pipe.close()
        detector.close()
    if len(ev.scores) == 0:
        raise UserError(f"dataset '{args.data}' has no readable image ({len(ev.corrupt)} corrupt)")

    model = scorers[0].liveness

    def thumb(i: int) -> np.ndarray:
        import cv2

        path, face = boxes[i]
        rgb = datasets.read_image_rgb(path)
        if rgb is None:
            return np.zeros((*model.input_size, 3), np.uint8)
        if face is None:
            return cv2.resize(rgb, (model.input_size[1], model.input_size[0]), interpolation=cv2.INTER_AREA)
        return model.crop(rgb, face)

    ev.thumbs = thumb
    return ev


def _display_source(path: Path, data: Path) -> str:
    base = Path(data)
    base = base.parent if base.is_file() else base
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --- report -------------------------------------------------------------------


def _group_metrics(ev: Evaluated, keys: Sequence[str], threshold: float) -> dict[str, dict[str, Any]]:
    scores, labels, species = ev.arrays()
    done = ev.processed()
    out = {}
    for key in sorted(set(keys)):
        group = np.array([k == key for k in keys])
        mask = group & done
        sp = [s for s, m in zip(species, mask) if m]
        r = metrics.error_rates(scores[mask], labels[mask], sp, threshold)
        if r["n_real"] and r["n_attack"]:
            r["eer"], r["eer_threshold"] = metrics.eer(scores[mask], labels[mask])
            r["auc"] = metrics.auc(scores[mask], labels[mask])
        r["no_face"] = int(sum(1 for d, m in zip(ev.decisions, group) if m and d == "no_face"))
        r["non_responses"] = int((group & ~done).sum())
        out[key] = r
    return out


def build_report(ev: Evaluated, threshold: float, scorers: Sequence[Scorer], args: argparse.Namespace,
                 raw: bool) -> dict[str, Any]:
    """The content of metrics.json."""
    scores, labels, species = ev.arrays()
    done = ev.processed()
    n_done = {name: int((done & (labels == v)).sum()) for name, v in (("bona fide", 1), ("attack", 0))}
    if not all(n_done.values()):
        raise UserError(
            f"the system processed {n_done['bona fide']} bona fide and {n_done['attack']} attack presentations "
            f"of '{args.data}' ({int((~done).sum())} non-responses); ISO/IEC 30107-3 metrics need at least "
            "one of each"
        )
    # ISO/IEC 30107-3: APCER, BPCER, ACER, EER and AUC over the presentations the
    # system processed; non-responses are reported apart, by reason.
    m = metrics.compute_metrics(scores[done], labels[done], [sp for sp, d in zip(species, done) if d], threshold)
    report: dict[str, Any] = {
        **m,
        "metrics_over": "processed presentations (ISO/IEC 30107-3); non-responses reported apart",
        "no_face": int(sum(1 for d in ev.decisions if d == "no_face")),
        "non_response": metrics.non_response_rates(labels, ev.reasons()),
        "end_to_end_non_response_as_rejection": metrics.end_to_end_rates(scores, labels, species, done, threshold),
        "corrupt": len(ev.corrupt),
        "corrupt_files": ev.corrupt,
        "threshold_source": "--threshold" if args.threshold is not None else "model metadata",
        "model": " + ".join(str(s.path) for s in scorers),
        "models": [s.describe() for s in scorers],
        "fusion": "mean of scores" if len(scorers) > 1 else None,
        "data": str(args.data),
        "mode": "raw (device pipeline, image-mode detector, no smoothing)" if raw else "crops",
        "split": args.split,
        "sessions": args.sessions,
        "subjects": getattr(args, "subjects", None),
        "limit": args.limit,
        "per_session": _group_metrics(ev, ev.sessions, threshold),
        "per_subject": _group_metrics(ev, ev.subjects, threshold),
        **ev.extra,
    }
    return report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.2f} %"


def format_summary(report: dict[str, Any], out: Path | str) -> str:
    """The one-screen summary (also the body of report.md)."""
    lines = [
        f"tla-edge evaluate: {report['model']} on {report['data']}"
        + (f" split {report['split']}" if report["split"] else "")
        + (f" sessions {report['sessions']}" if report["sessions"] else ""),
        f"mode {report['mode']}; processed {report['n_real']} bona fide, {report['n_attack']} attacks"
        + (f"; {report['corrupt']} corrupt files skipped" if report["corrupt"] else ""),
        "APCER, BPCER, ACER, EER, AUC are over processed presentations (ISO/IEC 30107-3); "
        "non-responses are below, by reason.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| threshold ({report['threshold_source']}) | {report['threshold']:.4f} |",
        f"| APCER (worst species) | {_pct(report['apcer'])} |",
    ]
    for name, v in report["apcer_per_species"].items():
        lines.append(f"| APCER {name} | {_pct(v)} |")
    lines += [
        f"| BPCER | {_pct(report['bpcer'])} |",
        f"| ACER | {_pct(report['acer'])} |",
        f"| HTER | {_pct(report['hter'])} |",
        f"| EER (threshold) | {_pct(report['eer'])} ({report['eer_threshold']:.4f}) |",
        f"| AUC | {report['auc']:.4f} |",
    ]
    for key, v in report["bpcer_at_apcer"].items():
        lines.append(f"| BPCER @ APCER {100 * v['target']:g} % (threshold) | {_pct(v['bpcer'])} ({v['threshold']:.4f}) |")
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    lines += [
        f"| accuracy / precision / recall / F1 | {report['accuracy']:.4f} / {report['precision']:.4f} / "
        f"{report['recall']:.4f} / {report['f1']:.4f} |",
        f"| confusion [[TN, FP], [FN, TP]] | [[{tn}, {fp}], [{fn}, {tp}]] |",
    ]
    nr = report["non_response"]
    reasons = [r for r in nr["attack"]["by_reason"]]
    lines += [
        "",
        "| non-response (rate) | attack presentations | bona fide presentations |",
        "| --- | --- | --- |",
        f"| all | {nr['attack']['non_responses']} of {nr['attack']['presentations']} ({_pct(nr['attack']['rate'])}) "
        f"| {nr['bona_fide']['non_responses']} of {nr['bona_fide']['presentations']} ({_pct(nr['bona_fide']['rate'])}) |",
    ]
    for reason in reasons:
        a, b = nr["attack"]["by_reason"][reason], nr["bona_fide"]["by_reason"][reason]
        lines.append(f"| {reason} | {a['count']} ({_pct(a['rate'])}) | {b['count']} ({_pct(b['rate'])}) |")
    e2e = report["end_to_end_non_response_as_rejection"]
    lines += [
        "",
        "End to end, a non-response counted as a rejection (not ISO APCER/BPCER): "
        f"APCER {_pct(e2e['apcer'])}, BPCER {_pct(e2e['bpcer'])}, ACER {_pct(e2e['acer'])}.",
        "",
        "| session | real | attack | APCER | BPCER | ACER | EER | non-responses | no face |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["per_session"].items():
        lines.append(
            f"| {name or '?'} | {r['n_real']} | {r['n_attack']} | {_pct(r['apcer'])} | {_pct(r['bpcer'])} | "
            f"{_pct(r['acer'])} | {_pct(r.get('eer'))} | {r['non_responses']} | {r['no_face']} |"
        )
    lines += ["", f"report files in {out}: {', '.join(OUTPUT_FILES)}"]
    return "\n".join(lines)


def write_report(out: Path, ev: Evaluated, report: dict[str, Any], worst: int = 12) -> None:
    """Writes every file of :data:`OUTPUT_FILES` into a staging folder, then renames them into ``out``.

    An interruption (Ctrl-C, SIGTERM, SIGHUP) or a failure while writing
    removes the staging folder and leaves ``out`` as it was: never half a
    report. The renames themselves run with those signals blocked.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".evaluate.", suffix=".tmp", dir=out))
    try:
        _write_report_files(stage, ev, report, worst, final=out)
        with fileio.signals_blocked():
            for name in OUTPUT_FILES:
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_report_files(out: Path, ev: Evaluated, report: dict[str, Any], worst: int, final: Path) -> None:
    from tla_edge.train import plots

    scores, labels, species = ev.arrays()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "label", "species", "subject", "session", "score", "decision"])
    for i in range(len(scores)):
        w.writerow([ev.sources[i], "real" if labels[i] == 1 else "attack", ev.species[i], ev.subjects[i],
                    ev.sessions[i], "" if np.isnan(scores[i]) else f"{scores[i]:.6f}", ev.decisions[i]])
    fileio.write_text_atomic(out / "scores.csv", buf.getvalue())
    fileio.write_json_atomic(out / "metrics.json", report)
    fileio.write_text_atomic(out / "report.md", "# Liveness evaluation\n\n" + format_summary(report, final) + "\n")
    title = Path(report["models"][0]["path"]).name + (" + ..." if len(report["models"]) > 1 else "")
    done = ev.processed()
    plots.evaluation_plots(out, scores[done], labels[done], [sp for sp, d in zip(species, done) if d],
                           report["threshold"], report["confusion_matrix"], title)
    images, captions = worst_errors(ev, report["threshold"], worst)
    plots.plot_image_grid(images, captions, out / "worst_errors.png",
                          f"worst false accepts, then worst false rejects; threshold {report['threshold']:.3f}")


def worst_errors(ev: Evaluated, threshold: float, k: int) -> tuple[list[np.ndarray], list[str]]:
    """Thumbnails and captions of the ``k`` highest-scoring attacks and ``k`` lowest-scoring bona fide.

    Only actual errors among processed presentations are shown (attacks
    accepted, bona fide rejected); non-responses have no score.
    """
    scores, labels, _ = ev.arrays()
    done = ev.processed()
    fa = [i for i in np.argsort(-scores, kind="stable") if done[i] and labels[i] == 0 and scores[i] >= threshold][:k]
    fr = [i for i in np.argsort(scores, kind="stable") if done[i] and labels[i] == 1 and scores[i] < threshold][:k]
    images, captions = [], []
    for kind, idx in (("false accept", fa), ("false reject", fr)):
        for i in idx:
            images.append(ev.thumbs(int(i)))
            name = ev.sources[i] if len(ev.sources[i]) <= 28 else "..." + ev.sources[i][-25:]
            decision = "" if ev.decisions[i] in (LIVE, SPOOF) else f" {ev.decisions[i]}"
            captions.append(f"{kind} {scores[i]:.3f}{decision}\n{name}")
    return images, captions
