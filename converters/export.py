"""The convert job: one Keras model to the TFLite variants asked for, checked and written.

The steps, in order:

1. :func:`tla_edge.converters.outputs.plan_jobs` names the outputs and checks
   that every one may be written;
2. :func:`tla_edge.converters.calibration.choose_crop_folders` and
   :func:`tla_edge.converters.tflite.load_model` find the crops and load the model;
3. :func:`tla_edge.converters.calibration.crop_sets` splits the crops into a
   validation part and a calibration draw;
4. per model (:func:`run_job`): :func:`convert_job` converts (bytes),
   :func:`check_parity` compares it with the Keras model,
   :func:`converted_metadata` builds its metadata, the parity gate
   (:class:`ParityGate`) keeps a degraded model back, or with ``mode="report"``
   writes it with its verdict recorded, and
   :func:`tla_edge.converters.outputs.write_model` writes the model and its sidecar;
5. :func:`compile_edgetpu` runs ``edgetpu_compiler`` on the int8 models;
6. :func:`build_report` gathers the figures; :func:`write_report` writes them.

:func:`export` runs them all. It takes plain parameters (no ``argparse``
namespace) and reports what it does through two callbacks: ``log``
(progress, warnings and errors; stderr in ``tla-edge convert``) and ``echo``
(what was written; stdout). :mod:`tla_edge.cli.convert` parses the flags,
calls :func:`export` and prints the summary.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from tla_edge.converters import calibration as calibration_lib
from tla_edge.converters import edgetpu as edgetpu_lib
from tla_edge.converters import outputs as outputs_lib
from tla_edge.converters import parity as parity_lib
from tla_edge.converters import qat as qat_lib
from tla_edge.converters import tflite as tflite_lib
from tla_edge.converters.calibration import CropOptions, CropSets
from tla_edge.converters.outputs import Job, OutputOptions
from tla_edge.converters.tflite import Source
from tla_edge.errors import UserError
from tla_edge.fileio import write_json_atomic
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.train import colour as colour_lib
from tla_edge.train import models as models_lib

PROG = "tla-edge convert"
"""Prefix of every ``log`` line, as the command prints it."""
ALL_MODES = ("float32", "fp16", "dynamic", "int8")
"""What ``--all`` writes."""

__all__ = [
    "ALL_MODES", "CropOptions", "ExportResult", "OutputOptions", "PARITY_MODES", "ParityGate", "QatOptions",
    "build_report", "export", "log_stderr", "write_report",
]


def log_stderr(text: str) -> None:
    """The default ``log``: ``tla-edge convert: <text>`` on stderr, flushed."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


# --- options and results --------------------------------------------------------------


PARITY_MODES = ("enforce", "report")
"""What the parity gate does with a degraded model: keep it back (exit 1), or write it with the verdict."""


class ParityGate(NamedTuple):
    """When a converted model counts as degraded, and what happens to it then.

    The rule is :func:`tla_edge.converters.parity.degraded_reason`'s. With
    ``mode="enforce"`` (the default) a degraded model is not written and the
    run fails; with ``"report"`` it is written, the verdict is recorded in its
    metadata (``extra.parity.verdict``, ``extra.degraded``) and in the JSON
    report, a warning is logged, and the run does not fail because of it.
    """

    min_agreement: float = parity_lib.DEFAULT_MIN_AGREEMENT
    """The Wilson upper end of agreement on crops clear of the threshold must reach this."""
    min_score_std: float = parity_lib.DEFAULT_MIN_SCORE_STD
    """Scores varying less: collapsed."""
    min_pearson: float = parity_lib.DEFAULT_MIN_PEARSON
    """Score correlation with the float model under this: degraded."""
    margin_logit: float = parity_lib.DEFAULT_MARGIN_LOGIT
    """Logit distance from the threshold beyond which a crop counts for the decision check."""
    mode: str = "enforce"
    """``"enforce"`` or ``"report"``, see above."""
    flag: str = "--parity report"
    """How the user asked for ``"report"``, named in the warning."""

    def criteria(self) -> parity_lib.Criteria:
        """The parity criteria, checked.

        Raises:
          UserError: an unknown mode or a criterion out of range.
        """
        if self.mode not in PARITY_MODES:
            raise UserError(f"parity mode {self.mode!r} is not one of {', '.join(PARITY_MODES)}")
        try:
            return parity_lib.Criteria(self.min_agreement, self.min_score_std, self.min_pearson,
                                       self.margin_logit).check()
        except ValueError as err:
            raise UserError(str(err)) from None


class QatOptions(NamedTuple):
    """Quantization-aware training of an extra int8 model."""

    epochs: int = qat_lib.DEFAULT_EPOCHS
    """Fine-tuning epochs."""
    lr: float = qat_lib.DEFAULT_LR
    """Adam learning rate."""
    batch_size: int = qat_lib.DEFAULT_BATCH_SIZE
    """Crops per step."""
    target: str = "teacher"
    """What fine-tuning learns, one of :data:`tla_edge.converters.qat.TARGETS`."""


class ExportResult(NamedTuple):
    """What a run did; :func:`build_report` and the command's summary read it."""

    model_path: Path
    """The ``.keras`` file converted."""
    crops: CropSets
    """The crops used."""
    models: list[dict[str, Any]]
    """One row per model: file, io, tensor types, parity, threshold, written, Edge TPU readiness."""
    edgetpu: list[dict[str, Any]]
    """One row per int8 model given to ``edgetpu_compiler`` (empty without ``edgetpu``)."""
    qat: dict[str, Any] | None
    """QAT summary (None without QAT)."""
    failed: list[str]
    """Models kept back as degraded (``--parity enforce``), and ``edgetpu`` when a compilation failed;
    empty: exit 0."""
    wall_s: float
    """Seconds the run took."""
    report: dict[str, Any]
    """The JSON :func:`write_report` writes."""


# --- one model ------------------------------------------------------------------------------


def with_progress(gen_fn: Any, total: int, desc: str) -> Any:
    """A representative-dataset function that draws a progress bar as the converter pulls crops."""
    from tla_edge.progress import Progress

    def gen() -> Any:
        with Progress(total, desc, unit="img") as bar:
            for item in gen_fn():
                yield item
                bar.update()

    return gen


def train_qat(source: Source, crops: CropSets, qat: QatOptions, seed: int,
              resize: bool) -> tuple[Any, dict[str, Any]]:
    """The fine-tuned QAT model and its summary, trained on the calibration part of the crops."""
    meta = source.meta
    train = calibration_lib.load_crop_set(
        crops.calib_dir, meta.crop_scale, tuple(meta.input_size), what="QAT training",
        resize=resize, crop_rule=meta.crop_rule, **crops.train_filters,
    )
    norm = colour_lib.input_normalization(source.model, meta.normalization)  # greynorm's layers taken out
    return qat_lib.qat_model(  # grey folded first, as for post-training quantization: the same ops
        colour_lib.fold_colour(source.model), meta.replace(normalization=norm), train.images, train.labels, qat.epochs,
        qat.batch_size, qat.lr, seed, target=qat.target,
    )


def convert_job(model: Any, job: Job, calib: calibration_lib.CalibrationSet | None,
                normalization: str, io: str) -> bytes:
    """The ``.tflite`` bytes of one job (int8 calibrated on ``calib`` with a progress bar)."""
    rep = None
    if job.mode == "int8":
        rep = with_progress(tflite_lib.representative_dataset(calib.images, normalization),
                            len(calib.labels), f"calibrating {job.key}")
    return tflite_lib.convert(model, job.mode, rep, io=io)


def check_parity(data: bytes, job: Job, float_scores: np.ndarray, val: Any,
                 meta: metadata_lib.ModelMetadata,
                 gate: ParityGate) -> tuple[parity_lib.ParityReport, tflite_lib.TensorSummary]:
    """Scores the converted model on the validation crops and compares it with the float model's scores."""
    with tempfile.TemporaryDirectory(prefix="tla_edge_convert_") as tmp:
        tmp_path = Path(tmp) / job.path.name
        tmp_path.write_bytes(data)
        conv_scores = parity_lib.tflite_scores(tmp_path, val.images, meta, desc=f"{job.key} model")
        summary = tflite_lib.tensor_summary(tmp_path)
    report = parity_lib.compare(float_scores, conv_scores, val.labels, val.species, meta, gate.criteria())
    return report, summary


def converted_metadata(source: Source, crops: CropSets, job: Job, io: str, report: parity_lib.ParityReport,
                       seed: int, qat_info: dict[str, Any] | None,
                       gate_mode: str = "enforce") -> metadata_lib.ModelMetadata:
    """The converted model's metadata: the source's, with its threshold, parity and provenance.

    int8 moves scores, so its thresholds are re-derived on its own scores;
    the float modes keep the thresholds training chose (their scores match).
    """
    meta, calib = source.meta, crops.calib
    rederive = job.mode == "int8"
    extra: dict[str, Any] = {
        "thresholds": report.thresholds if rederive else dict((meta.extra or {}).get("thresholds") or {}),
        "quantization": job.key,
        "io": io,
        "source_model": {"file": source.path.name, "sha256": source.sha256, "threshold": meta.threshold},
        "calibration": None if calib is None else {
            "crops": int(len(calib.labels)), "per_stratum": calib.counts,
            "crops_dir": metadata_lib.portable_path(crops.calib_dir), "part": crops.train_desc, "seed": seed,
        },
        "parity": {**report.to_dict(), "gate": gate_mode},
        "validation": {"crops_dir": metadata_lib.portable_path(crops.val_dir), "part": crops.holdout.describe(),
                       "source": crops.holdout.source},
        "converter": dict(source.converter),
    }
    for key in ("alpha", "target_apcer", "colour"):  # colour: train --weights default builds the same first layers
        if key in (meta.extra or {}):
            extra[key] = meta.extra[key]
    if job.key == "int8_qat":
        extra["qat"] = qat_info
    if report.degraded:
        extra["degraded"] = report.degraded
    threshold = report.converted_threshold if rederive else float(meta.threshold)
    return meta.replace(threshold=threshold, extra=extra)


def run_job(job: Job, source: Source, crops: CropSets, float_scores: np.ndarray, io: str, gate: ParityGate,
            seed: int, qat_model: tuple[Any, dict[str, Any]] | None, t0: float,
            log: Callable[[str], None], echo: Callable[[str], None]) -> dict[str, Any]:
    """Converts one model, gates it on parity and writes it; returns its row (``written`` says if it was).

    ``t0`` is when the job started (QAT training included in ``convert_s``).
    """
    # a grey layer is folded into the first convolution: the file has an RGB model's ops; parity below
    # compares it with the unfolded source's scores
    # greynorm's layers are taken out: the file's input is their output, the runtime computes it per crop
    model, qat_info = qat_model if job.key == "int8_qat" else (colour_lib.fold_colour(source.model), None)
    in_meta = source.meta.replace(normalization=colour_lib.input_normalization(source.model, source.meta.normalization))
    io = io if job.mode == "int8" else "float"
    data = convert_job(model, job, crops.calib, in_meta.normalization, io)
    t_convert = time.perf_counter() - t0
    report, summary = check_parity(data, job, float_scores, crops.val, in_meta, gate)
    out_meta = converted_metadata(source, crops, job, io, report, seed, qat_info, gate.mode)
    out_meta = out_meta.replace(normalization=in_meta.normalization)
    row: dict[str, Any] = {
        "model": job.key, "file": str(job.path), "io": io,
        "input": summary.input_dtype, "output": summary.output_dtype,
        "float_tensors": summary.float_tensors, "convert_s": round(t_convert, 2),
        "parity": report.to_dict(), "parity_gate": gate.mode, "threshold": out_meta.threshold,
        "threshold_source": "re-derived" if job.mode == "int8" else "source model",
    }
    if report.degraded:
        msg = f"{job.key} model is degraded: {report.degraded}"
        if gate.mode != "report":
            log(f"error: {msg}; not written (check the calibration crops, or pass --parity report to write "
                "it with this verdict recorded)")
            row.update(written=False, bytes=len(data))
            return row
        log(f"warning: {msg}; written anyway ({gate.flag}), the verdict recorded in its metadata")
    else:
        note = parity_lib.near_threshold_note(report)
        if note:
            log(f"note: {job.key}: {note}")
    final = outputs_lib.write_model(job.path, data, out_meta)
    echo(f"wrote {job.path} ({outputs_lib.mb(len(final))}) + {metadata_lib.sidecar_path(job.path).name}")
    ready, lines = edgetpu_lib.readiness_lines(job.path)
    for line in lines:
        echo(line)
    row.update(written=True, bytes=len(final), edgetpu_ready=ready)
    return row


# --- Edge TPU ------------------------------------------------------------------------------


def compile_edgetpu(results: list[dict[str, Any]], meta: metadata_lib.ModelMetadata,
                    log: Callable[[str], None] = log_stderr,
                    echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Runs ``edgetpu_compiler`` on every written int8 model; writes ``*_edgetpu.tflite`` + sidecar.

    Returns:
      One row per int8 model: ``compiled``, and the compiler's figures, or
      ``reason`` (no compiler) or ``error`` (it failed).
    """
    compiler = edgetpu_lib.find_compiler()
    rows = []
    int8 = [r for r in results if r.get("written") and r["model"].startswith("int8")]
    if compiler is None:
        log(f"warning: {edgetpu_lib.missing_compiler_message()}; kept the CPU int8 model(s)")
        return [{"model": r["model"], "compiled": False, "reason": "edgetpu_compiler not installed"} for r in int8]
    for r in int8:
        src = Path(r["file"])
        try:
            data, report, _ = edgetpu_lib.compile_model(src.read_bytes(), src.name, compiler)
        except UserError as err:
            log(f"error: {err}")
            rows.append({"model": r["model"], "compiled": False, "error": str(err)})
            continue
        src_meta = metadata_lib.load(src) or meta
        out_meta = src_meta.replace(extra={**src_meta.extra, "edgetpu": report.to_dict()})
        dst = outputs_lib.edgetpu_path(src)
        final = outputs_lib.write_model(dst, data, out_meta)
        echo(f"wrote {dst} ({outputs_lib.mb(len(final))}); Edge TPU ops {report.ops_tpu}/{report.ops_total}, "
             f"CPU {report.ops_cpu}, subgraphs {report.subgraphs}")
        rows.append({"model": r["model"], "compiled": True, "file": str(dst), "bytes": len(final),
                     **report.to_dict()})
    return rows


# --- report -----------------------------------------------------------------------------------


def build_report(source: Source, crops: CropSets, models: list[dict[str, Any]], edgetpu: list[dict[str, Any]],
                 qat_info: dict[str, Any] | None, wall_s: float) -> dict[str, Any]:
    """The run's figures as JSON: source, validation, calibration, one row per model, Edge TPU, QAT."""
    meta, calib = source.meta, crops.calib
    return {
        "source": {"file": metadata_lib.portable_path(source.path), "sha256": source.sha256,
                   "bytes": source.path.stat().st_size,
                   "threshold": meta.threshold, "crop_scale": meta.crop_scale,
                   "crop_rule": meta.crop_rule,
                   "input_size": list(meta.input_size), "architecture": meta.architecture},
        "validation": {"crops_dir": metadata_lib.portable_path(crops.val_dir), "part": crops.holdout.describe(),
                       "source": crops.holdout.source, "crops": int(len(crops.val.labels))},
        "calibration": None if calib is None else {"crops": int(len(calib.labels)), "per_stratum": calib.counts},
        "models": models, "edgetpu": edgetpu, "qat": qat_info, "wall_s": round(wall_s, 1),
    }


def write_report(path: Path, result: ExportResult) -> Path:
    """Writes ``result.report`` as JSON (through a temporary file); returns ``path``."""
    return write_json_atomic(path, result.report)


# --- the job ----------------------------------------------------------------------------------------


def export(
    model: Path,
    modes: Sequence[str],
    crops: CropOptions = CropOptions(),
    output: OutputOptions = OutputOptions(),
    gate: ParityGate = ParityGate(),
    qat: QatOptions | None = None,
    log: Callable[[str], None] = log_stderr,
    echo: Callable[[str], None] = print,
) -> ExportResult:
    """Converts a Keras liveness model to each mode, checks parity, writes the files that pass.

    Args:
      model: ``MODEL.keras``, or a folder holding ``model.keras`` and ``metadata.json``.
      modes: conversion modes, from :data:`tla_edge.converters.tflite.MODES`.
      crops: calibration and validation crops.
      output: what is written where (the report only by :func:`write_report`).
      gate: parity criteria, and whether degraded models are kept back or written with their verdict.
      qat: also write a quantization-aware-trained int8 model (None: no QAT).
      log: receives progress, warnings and errors (one line each).
      echo: receives one line per file written, and each model's Edge TPU readiness.

    Returns:
      The :class:`ExportResult`; ``failed`` empty means every model passed.

    Raises:
      UserError, FileNotFoundError, ValueError: bad input; nothing is written.
    """
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    gate.criteria()  # a bad criterion or mode is refused before any work
    model_path = tflite_lib.resolve_model(model)
    meta = metadata_lib.load(model_path)
    jobs = outputs_lib.plan_jobs(model_path, outputs_lib.job_keys(modes, qat is not None), output)
    needs_int8 = any(j.mode == "int8" for j in jobs)
    calib_dir, val_dir = calibration_lib.choose_crop_folders(meta, crops.calib, crops.val, needs_int8, log)
    if qat is not None:
        qat_lib.check_architecture(meta)
        qat_lib.import_tfmot()
    source = tflite_lib.load_model(model_path, meta, log)
    sets = calibration_lib.crop_sets(source.meta, calib_dir, val_dir, crops, needs_int8, log)
    float_scores = models_lib.keras_scores(source.model, sets.val.images, source.meta, desc="float model")
    results: list[dict[str, Any]] = []
    qat_model = None
    for job in jobs:
        t0 = time.perf_counter()
        log(f"converting {job.key} ...")
        if job.key == "int8_qat":
            qat_model = train_qat(source, sets, qat, crops.seed, crops.resize)
        results.append(run_job(job, source, sets, float_scores, output.io, gate, crops.seed, qat_model, t0,
                               log, echo))
    failed = [r["model"] for r in results if not r["written"]]
    edgetpu_rows = compile_edgetpu(results, source.meta, log, echo) if output.edgetpu else []
    if any(r.get("error") for r in edgetpu_rows):
        failed.append("edgetpu")
    qat_info = qat_model[1] if qat_model else None
    wall = time.perf_counter() - t_start
    report = build_report(source, sets, results, edgetpu_rows, qat_info, wall)
    return ExportResult(model_path, sets, results, edgetpu_rows, qat_info, failed, wall, report)
