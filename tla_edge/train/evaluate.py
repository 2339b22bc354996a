"""ISO/IEC 30107-3 evaluation of liveness models on prepared crops or raw frames.

On a crops folder written by ``tla-edge prepare``, each model scores the
crops of its own crop scale, which must have its input size
(:func:`evaluate_crops`; ``.keras`` or ``.tflite``). On a raw dataset every
frame goes through the device pipeline (:func:`evaluate_raw`: the one loop
of :func:`tla_edge.data.scoring.score_records`; ``.tflite`` only). Several
models are fused by averaging their scores; their threshold is the one given
or the fused threshold stored in their metadata, never the mean of their
own. :func:`evaluate` runs the whole command; :mod:`tla_edge.train.report`
writes the report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge import fileio, metrics
from tla_edge.data import crops as crops_lib
from tla_edge.data import datasets
from tla_edge.errors import UserError, import_tensorflow
from tla_edge.progress import Progress
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime.pipeline import LIVE, SPOOF
from tla_edge.train import fusion
from tla_edge.train.report import Evaluated, Selection, build_report, check_outputs

CROPS = "crops"
"""The ``layout`` naming a crops folder."""


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
            "path": metadata_lib.portable_path(self.path),
            "kind": self.kind,
            "architecture": self.meta.architecture,
            "input_size": list(self.meta.input_size),
            "crop_scale": self.meta.crop_scale,
            "crop_rule": self.meta.crop_rule,
            "normalization": self.meta.normalization,
            "threshold": self.meta.threshold,
            "thresholds": self.meta.extra.get("thresholds"),
        }


def _load_keras(path: Path, batch_size: int) -> Scorer:
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' not found")
    meta = metadata_lib.load(path)
    if meta is None:
        raise FileNotFoundError(
            f"metadata '{metadata_lib.sidecar_path(path)}' of model '{path}' not found; "
            "expected the metadata.json tla-edge train writes beside model.keras"
        )
    import_tensorflow()
    import keras

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
    return _load_keras(path, batch_size)


def threshold_of(scorers: Sequence[Scorer], threshold: float | None = None, store_fusion: bool = False) -> float:
    """The given threshold, else the model's own, else the fused threshold stored with several models.

    With ``store_fusion``, 0.5 for the scoring pass: the threshold is derived afterwards.
    """
    if store_fusion:
        return 0.5
    if threshold is not None:
        return metadata_lib.check_threshold(threshold, "--threshold")
    if len(scorers) == 1:
        return float(scorers[0].meta.threshold)
    return fused_set.fused_threshold([(s.path, s.meta) for s in scorers])


def derive_fused_threshold(ev: Evaluated) -> float:
    """The EER threshold of the fused scores over processed presentations; the decisions follow it."""
    scores, labels, _ = ev.arrays()
    done = ev.processed()
    if len(set(labels[done].tolist())) < 2:
        raise UserError("--store-fusion needs processed bona fide and attack presentations to derive a threshold")
    # checked with the other rules by tla_edge.train.fusion.check_fused_threshold (0 or 1 never serves)
    threshold = float(metrics.eer(scores[done], labels[done])[1])
    ev.decisions = [(LIVE if scores[i] >= threshold else SPOOF) if d else ev.decisions[i]
                    for i, d in enumerate(done)]
    return threshold


# --- crops ------------------------------------------------------------------------


def _crop_sets(data: Path, scorers: Sequence[Scorer], selection: Selection) -> list[crops_lib.CropSet]:
    """Each model's crops (its own scale and crop rule), checked against its input size."""
    scales = sorted({float(r["scale"]) for r in crops_lib.read_manifest(data)})
    sets = []
    for sc in scorers:
        want = float(sc.meta.crop_scale)
        if not any(abs(s - want) < 1e-6 for s in scales):
            raise UserError(
                f"model '{sc.path}' expects crops at scale {want:g} but '{data}' holds scales "
                f"{', '.join(f'{s:g}' for s in scales)}; prepare them with --scales {want:g}"
            )
        cs = crops_lib.load_crops(data, scale=want, split=selection.split, sessions=selection.sessions,
                                  subjects=selection.subjects, crop_rule=sc.meta.crop_rule)
        h, w = cs.images.shape[1:3]
        if (h, w) != tuple(sc.meta.input_size):
            raise UserError(
                f"crops in '{data}' at scale {want:g} are {h}x{w} but model '{sc.path}' expects "
                f"{sc.meta.input_size[0]}x{sc.meta.input_size[1]}; prepare them with --size {sc.meta.input_size[0]}"
            )
        sets.append(cs)
    return sets


def evaluate_crops(data: Path, scorers: Sequence[Scorer], threshold: float, selection: Selection = Selection(),
                   show_progress: bool = True) -> Evaluated:
    """Scores prepared crops; each model reads the crops of its own scale.

    Args:
      data: a crops folder written by ``tla-edge prepare``.
      scorers: the models (scores averaged when several).
      threshold: the decision threshold.
      selection: split, sessions, subjects and limit.
      show_progress: draw a progress bar on stderr.

    Raises:
      UserError: the crops have no scale or size matching a model's metadata,
        or the filtered data lacks a class.
    """
    sets = _crop_sets(data, scorers, selection)
    # Align the scales on their source image (fusion needs the same frames).
    common = set(sets[0].sources)
    for cs in sets[1:]:
        common &= set(cs.sources)
    order = [s for s in sets[0].sources if s in common]
    order = [order[i] for i in datasets.evenly_spread(len(order), selection.limit)]
    picked = []
    for cs in sets:
        pos = {s: i for i, s in enumerate(cs.sources)}
        picked.append(cs.subset([pos[s] for s in order]))
    base = picked[0]
    datasets.check_two_classes(
        [datasets.Record(Path(s), "real" if y == 1 else "attack", "", "", "", "") for s, y in zip(base.sources, base.labels)],
        f"crops '{data}'" + selection.describe(),
    )
    with Progress(len(order) * len(scorers), "evaluate", unit="crop", enabled=show_progress) as bar:
        scores = np.mean([sc.score(cs.images, bar) for sc, cs in zip(scorers, picked)], axis=0)
    ev = Evaluated()
    for i in range(len(base)):
        decision = LIVE if scores[i] >= threshold else SPOOF
        ev.add(base.sources[i], int(base.labels[i]), base.species[i] or "attack", base.subjects[i], base.sessions[i],
               scores[i], decision)
    ev.thumbs = lambda i: base.images[i]
    ev.extra = {"scales": [float(cs.scale) for cs in picked], "crop_rules": [cs.crop_rule for cs in picked]}
    return ev


# --- raw frames ---------------------------------------------------------------------


def display_source(path: Path, data: Path) -> str:
    """A frame's path relative to the dataset (as given when outside it), bytes that are not UTF-8 as ``\\xNN``."""
    base = Path(data)
    base = base.parent if base.is_file() else base
    try:
        return fileio.printable(path.resolve().relative_to(base.resolve()).as_posix())
    except ValueError:
        return fileio.printable(path.as_posix())


def printable_tree(obj: Any) -> Any:
    """``obj`` with every string (and key) made :func:`tla_edge.fileio.printable`: a report any UTF-8 reader reads."""
    if isinstance(obj, str):
        return fileio.printable(obj)
    if isinstance(obj, dict):
        return {printable_tree(k): printable_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(printable_tree(v) for v in obj)
    return obj


class Detection(NamedTuple):
    """The face detector the device pipeline uses on raw frames."""

    detector: str = "short"
    """``short``, ``full`` or a detector model path."""
    backend: str = "auto"
    """``auto``, ``mediapipe`` or ``litert``."""
    num_threads: int | None = None
    """The detector's CPU threads (None: its default)."""


def evaluate_raw(data: Path, scorers: Sequence[Scorer], threshold: float, layout: str = "auto",
                 selection: Selection = Selection(), detection: Detection = Detection(),
                 show_progress: bool = True) -> Evaluated:
    """Runs the device pipeline (image-mode detector, no smoothing) on every frame of a raw dataset.

    Raises:
      UserError: the filtered data lacks a class, or no image can be read.
    """
    from tla_edge.data import scoring

    records = datasets.filter_records(datasets.load_dataset(data, "auto" if layout in ("auto", CROPS) else layout),
                                      selection.split, selection.sessions, selection.subjects)
    records = [records[i] for i in datasets.evenly_spread(len(records), selection.limit)]
    datasets.check_two_classes(records, f"dataset '{data}'" + selection.describe())
    frames = scoring.score_records(records, [s.liveness for s in scorers], threshold=threshold,
                                   detector=detection.detector, detector_backend=detection.backend,
                                   detector_threads=detection.num_threads, desc="evaluate",
                                   show_progress=show_progress)
    ev = Evaluated()
    boxes: list[Any] = []
    for f in frames:
        source = display_source(f.record.path, data)
        if f.result is None:
            ev.corrupt.append(source)
            continue
        # a non-response has no score: it is counted apart, never as a 0.0 score
        rec = f.record
        ev.add(source, 1 if rec.label == "real" else 0, fileio.printable(rec.species), fileio.printable(rec.subject),
               fileio.printable(rec.session), f.result.score, f.result.decision)
        boxes.append((f.record.path, f.result.face))
    if len(ev.scores) == 0:
        raise UserError(f"dataset '{data}' has no readable image ({len(ev.corrupt)} corrupt)")
    ev.thumbs = _thumbnails(scorers[0].liveness, boxes)
    return ev


def _thumbnails(model: Any, boxes: list[tuple[Path, Any]]) -> Any:
    """index -> the frame's crop as the model saw it (the whole frame resized when no face was found)."""

    def thumb(i: int) -> np.ndarray:
        import cv2

        path, face = boxes[i]
        rgb = datasets.read_image_rgb(path)
        if rgb is None:
            return np.zeros((*model.input_size, 3), np.uint8)
        if face is None:
            return cv2.resize(rgb, (model.input_size[1], model.input_size[0]), interpolation=cv2.INTER_AREA)
        return model.crop(rgb, face)

    return thumb


# --- the whole command ----------------------------------------------------------------


def check_request(data: Path, model_paths: Sequence[Path], layout: str = "auto", raw: bool = False,
                  store_fusion: bool = False, threshold: float | None = None) -> bool:
    """Checks the data and the fusion request before any model is opened; returns whether it is raw.

    Raises:
      FileNotFoundError: ``data`` is missing.
      UserError: ``data`` is not a crops folder (and not raw), or ``store_fusion`` with a threshold
        (the models are checked by :func:`tla_edge.train.fusion.check_request`).
    """
    raw = raw or layout in datasets.LAYOUTS
    if not raw and layout in ("auto", CROPS) and not crops_lib.is_crops_dir(data):
        if not Path(data).exists():
            raise FileNotFoundError(f"data '{data}' not found")
        raise UserError(
            f"'{data}' is not a crops folder (no manifest.csv written by tla-edge prepare); "
            "expected a crops folder, or pass --raw to run the device pipeline on a raw dataset"
        )
    if store_fusion and threshold is not None:
        raise UserError(f"--store-fusion derives the threshold; got also --threshold {threshold:g}")
    return raw


def evaluate(data: Path, out: Path, models: Sequence[Path] | None = None, *, layout: str = "auto", raw: bool = False,
             selection: Selection = Selection(), threshold: float | None = None,
             store_fusion: fusion.FusionRequest | None = None,
             force: bool = False, detection: Detection = Detection(), num_threads: int | None = None,
             batch_size: int = 64, show_progress: bool = True) -> tuple[Evaluated, dict[str, Any]]:
    """Scores ``data`` with the models and builds metrics.json's content; writes no report file.

    Args:
      data: a crops folder, or a raw dataset (``raw``, or a raw ``layout``).
      out: the report folder (checked here, written by :func:`tla_edge.train.report.write_report`).
      models: ``.tflite`` or ``.keras`` models (None: the bundled int8 model(s)).
      layout: ``auto``, ``crops`` or a raw layout (which implies ``raw``).
      raw: run the device pipeline on raw frames.
      selection: split, sessions, subjects and limit.
      threshold: the decision threshold (None: the metadata's).
      store_fusion: derive the fused threshold of several explicit ``.tflite``
        models at the EER of their fused scores, check it as calibrate does, and
        write copies of the models carrying it into ``store_fusion.out`` (the
        models given are never changed; nothing is written when it does not serve).
      force: report files in ``out`` may be overwritten.
      detection: the face detector (raw only).
      num_threads: interpreter CPU threads.
      batch_size: batch size of a ``.keras`` model.
      show_progress: draw a progress bar on stderr.

    Returns:
      ``(per-sample results, report)``; the report has ``fusion_record`` when
      ``store_fusion`` stored one.
    """
    t0 = time.perf_counter()
    check_outputs(out, force)
    if store_fusion is not None:
        models = fusion.check_request(store_fusion, models, data, out, force)
    if models:
        model_paths = [Path(p) for p in models]
    else:
        from tla_edge.runtime.assets import default_liveness_models

        model_paths = default_liveness_models()
    raw = check_request(data, model_paths, layout, raw, store_fusion is not None, threshold)
    scorers: list[Scorer] = []
    try:
        for p in model_paths:
            scorers.append(load_scorer(p, num_threads, batch_size, need_tflite=raw, threshold=threshold))
        chosen = threshold_of(scorers, threshold, store_fusion is not None)
        if raw:
            ev = evaluate_raw(data, scorers, chosen, layout, selection, detection, show_progress)
        else:
            ev = evaluate_crops(data, scorers, chosen, selection, show_progress)
    finally:
        for sc in scorers:
            sc.close()
    checked = None
    if store_fusion is not None:
        chosen = derive_fused_threshold(ev)
        checked = fusion.check_fused_threshold(ev, chosen, store_fusion)
    report = build_report(ev, chosen, scorers, data, raw, selection,
                          "--threshold" if threshold is not None else "model metadata")
    if store_fusion is not None:
        report["threshold_source"] = "fused EER on this data (--store-fusion)"
        report["fusion_check"] = checked
        report["fusion_record"] = fusion.write_copies(store_fusion, model_paths, chosen)
        report["fusion_out"] = metadata_lib.portable_path(store_fusion.out)
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    return ev, printable_tree(report)
