"""``tla-edge evaluate --store-fusion DIR``: derive a fused threshold, check it, write fused copies.

The installed models are never changed: copies of the given models, with the
fused threshold in their metadata (``extra.fusion``), are written into DIR
under their own names (the record names its partners by file name), all or
nothing. The threshold must pass ``tla-edge calibrate``'s checks
(:func:`tla_edge.thresholds.verdict`): AUC above 0.5, not under the floor,
the other error rate within the maximum, enough frames of each class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from tla_edge import fileio, metrics
from tla_edge.data import calibration
from tla_edge.errors import UserError
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.thresholds import DEFAULT_FLOOR, DEFAULT_MAX_ERROR, error_rate, verdict
from tla_edge.train.report import Evaluated

DEFAULT_MIN_FRAMES = 30
"""Fewest processed presentations of each class a stored fused threshold is derived from."""


class FusionRequest(NamedTuple):
    """Where fused copies go and the checks their threshold must pass."""

    out: Path
    """The folder the fused copies (and their sidecars) are written to."""
    floor: float = DEFAULT_FLOOR
    """A fused threshold below this is refused (as ``calibrate --floor``)."""
    max_error: float = DEFAULT_MAX_ERROR
    """The BPCER at the fused threshold must not exceed this (as ``calibrate --max-error``)."""
    min_frames: int = DEFAULT_MIN_FRAMES
    """Fewest processed bona fide and attack presentations each."""


def output_files(request: FusionRequest, model_paths: Sequence[Path]) -> dict[str, Path]:
    """What each fused copy is called -> its path in ``request.out``."""
    return calibration.copy_paths(request.out, model_paths, "--store-fusion")


def check_request(request: FusionRequest, models: Sequence[Path] | None, data: Path, report_out: Path,
                  force: bool) -> list[Path]:
    """Checks a store-fusion request before any model is scored; returns the model paths.

    Raises:
      UserError: no explicit models, fewer than two ``.tflite``, one model given
        twice (or two with one file name), an output that is an input or lies in
        the installed package, an existing output without ``force``, or a bad check value.
    """
    if not models:
        raise UserError("--store-fusion needs explicit --model files (two or more .tflite); got none "
                        "(the bundled models are never rewritten)")
    paths = [metadata_lib.model_file(p) for p in models]
    if len(paths) < 2 or any(p.suffix.lower() != ".tflite" for p in paths):
        raise UserError(f"--store-fusion needs two or more .tflite --model; got {len(paths)} "
                        f"({', '.join(str(p) for p in paths)})")
    calibration.check_set(paths)
    if not 0.0 <= request.floor < 1.0 or not 0.0 <= request.max_error <= 1.0 or request.min_frames < 1:
        raise UserError(f"--floor {request.floor:g}, --max-error {request.max_error:g}, --min-frames "
                        f"{request.min_frames}: expected a floor in [0, 1), a max error in [0, 1], min frames >= 1")
    fileio.check_outside_package(request.out, "--store-fusion", "folder")
    inputs = [("DATA", data), ("--out", report_out)]
    for p in paths:
        inputs += [("--model", p), ("--model's sidecar", metadata_lib.sidecar_path(p))]
    outputs = output_files(request, paths)
    fileio.check_distinct(outputs, inputs)
    existing = [str(o) for o in outputs.values() if o.exists()]
    if existing and not force:
        raise UserError(f"output '{existing[0]}' already exists; pass --force to overwrite it")
    parent = request.out  # checked without creating anything: a run that fails leaves no empty folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"--store-fusion folder '{request.out}' cannot be created or written: '{parent}'")
    return paths


def check_fused_threshold(ev: Evaluated, threshold: float, request: FusionRequest) -> dict[str, Any]:
    """Calibrate's checks of a fused threshold on the processed presentations.

    Returns:
      ``auc``, ``bpcer``, ``apcer`` (rates with intervals) for the report.

    Raises:
      UserError: no threshold serves; the message lists every reason and says nothing was written.
    """
    scores, labels, _ = ev.arrays()
    done = ev.processed()
    s, y = scores[done], labels[done]
    accepted = s >= threshold
    bp, ap = error_rate(~accepted[y == 1], 0.95), error_rate(accepted[y == 0], 0.95)
    auc = metrics.auc(s, y) if bp is not None and ap is not None else None
    reasons = verdict(threshold, "eer", bp, ap, auc, request.floor, request.max_error)
    counts = {"bona fide": int((y == 1).sum()), "attack": int((y == 0).sum())}
    reasons += [f"{n} {name} presentations processed, fewer than --min-frames {request.min_frames}"
                for name, n in counts.items() if n < request.min_frames]
    if reasons:
        raise UserError(f"--store-fusion: no fused threshold serves on this data (threshold {threshold:.4g}): "
                        + "; ".join(reasons) + "; nothing written")
    return {"auc": auc, "bpcer": bp._asdict(), "apcer": ap._asdict(), **{f"n_{k.split()[0]}": v for k, v in counts.items()}}


def write_copies(request: FusionRequest, model_paths: Sequence[Path], threshold: float) -> dict[str, Any]:
    """Writes the fused copies into ``request.out``, all or nothing; returns the fusion record."""
    try:
        record, files = fused_set.fused_copies(model_paths, threshold)
    except ValueError as err:
        raise UserError(f"--store-fusion: {err}") from err
    fileio.write_files_atomic({request.out / name: data for name, data in files.items()})
    return record


def summary(out: Path, record: dict[str, Any]) -> str:
    """The line saying what was written."""
    return (f"stored fused threshold {record['threshold']:.4f} in copies: "
            + ", ".join(f"'{Path(out) / n}'" for n in record["models"]) + " (the input models are unchanged)")

