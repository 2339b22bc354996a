"""Calibrating a model's threshold on a recording of the deployment camera (``tla-edge calibrate``).

Every frame goes through the device pipeline (:func:`tla_edge.data.scoring.score_records`);
the threshold is chosen on the scores by a rule of :mod:`tla_edge.thresholds`
and measured on the same frames. The model file is never changed: the
command writes a copy with :func:`calibrated_metadata`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tla_edge import fileio, metrics
from tla_edge.data import datasets
from tla_edge.data.scoring import Scored, raw_scores, score_records
from tla_edge.errors import UserError
from tla_edge.runtime import fused_set
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.thresholds import (
    CAVEAT,
    DEFAULT_FLOOR,
    DEFAULT_MAX_ERROR,
    Rate,
    centre_in_gap,
    choose_threshold,
    error_rate,
    verdict,
)

CALIBRATION_KEYS = (
    "rule", "target", "threshold", "previous_threshold", "data", "model_sha256", "detector",
    "frames", "scored", "n_real", "n_attack", "subjects", "sessions", "bpcer", "apcer",
    "apcer_worst_species", "auc", "eer", "confidence", "caveat",
)
"""The report's entries kept in the calibrated model's metadata (``device_calibration``)."""


def check_model(path: Path) -> metadata_lib.ModelMetadata:
    """The model's metadata; refuses anything but a ``.tflite`` that carries it.

    Raises:
      FileNotFoundError: no such file.
      UserError: not a ``.tflite``, or no tla-edge metadata (embedded or sidecar).
    """
    from tla_edge.runtime.interpreter import check_tflite_file

    if path.suffix.lower() != ".tflite":
        raise UserError(
            f"--model '{path}' is not a .tflite; calibrate sets the threshold of the file the device "
            "runs: convert it first (tla-edge convert MODEL --int8 --calib CROPS --out model.tflite)"
        )
    check_tflite_file(path)
    meta = metadata_lib.load(path)
    if meta is None:
        raise UserError(
            f"model '{path}' has no tla-edge metadata (none embedded, no '{metadata_lib.sidecar_path(path).name}'); "
            "its crop scale, preprocessing and output are unknown; expected a .tflite written by tla-edge convert"
        )
    return meta


def check_set(models: Sequence[Path]) -> None:
    """Refuses a fused set with one model given twice or two sharing a file name (its copies keep the names).

    Raises:
      UserError: names the two models.
    """
    for i, p in enumerate(models):
        for q in models[:i]:
            if fileio.same_file(p, q) or p.name == q.name:
                raise UserError(f"--model '{q}' and --model '{p}' are the same model or share a file name; "
                                "expected different models with different file names")


def copy_paths(folder: Path, models: Sequence[Path], flag: str) -> dict[str, Path]:
    """What each copy of a fused set written into ``folder`` is called (``"--out's a.tflite"``) -> its path."""
    out = {}
    for m in models:
        out[f"{flag}'s {m.name}"] = folder / m.name
        out[f"{flag}'s {m.name}.json"] = metadata_lib.sidecar_path(folder / m.name)
    return out


def _per_species(accepted: np.ndarray, y: np.ndarray, species: Sequence[str],
                 confidence: float) -> dict[str, dict[str, Any]]:
    """APCER of each attack species, as dicts."""
    out = {}
    for name in sorted({x for x, lab in zip(species, y) if lab == 0}):
        m = np.array([x == name for x in species]) & (y == 0)
        out[name] = error_rate(accepted[m], confidence)._asdict()
    return out


def _per_subject(accepted: np.ndarray, y: np.ndarray, recs: Sequence[datasets.Record]) -> dict[str, float]:
    """BPCER of each person (``"?"``: no subject)."""
    out = {}
    for subj in sorted({r.subject for r, lab in zip(recs, y) if lab == 1}):
        m = np.array([r.subject == subj for r in recs]) & (y == 1)
        out[subj or "?"] = round(float((~accepted[m]).mean()), 4)
    return out


def _usable(scored: Scored) -> tuple[np.ndarray, np.ndarray]:
    """``(ok, labels)``: frames with a usable face, and every frame's label (1 real, 0 attack).

    Raises:
      UserError: no frame had a usable face.
    """
    ok = ~np.isnan(scored.scores)
    labels = np.array([1 if r.label == "real" else 0 for r in scored.records], np.int64)
    if not ok.any():
        raise UserError(
            f"none of the {len(scored.records)} frames had a usable face "
            f"({dict(Counter(scored.decisions))}); expected frames showing one face"
        )
    return ok, labels


def calibration_report(scored: Scored, rule: str, target: float | None, previous: float,
                       floor: float = DEFAULT_FLOOR, max_error: float = DEFAULT_MAX_ERROR,
                       confidence: float = 0.95) -> dict[str, Any]:
    """Chooses the threshold and measures it on the same frames.

    Returns:
      A JSON-ready dict: ``threshold``, ``rule``, ``target``, counts, ``bpcer`` and
      ``apcer`` (rate, errors, n, ci), per species and per subject rates, ``auc``
      and ``eer`` with attacks, ``serves`` and ``reasons``.

    Raises:
      UserError: no frame had a usable face, or the rule needs a missing class.
    """
    ok, labels_all = _usable(scored)
    recs = [r for r, k in zip(scored.records, ok) if k]
    s, y = scored.scores[ok], labels_all[ok]
    sp = [r.species or "attack" if r.label == "attack" else "" for r in recs]
    edge = choose_threshold(s, y, sp, rule, target)
    thr = centre_in_gap(edge, s)
    accepted = s >= thr
    bp = error_rate(~accepted[y == 1], confidence)
    ap = error_rate(accepted[y == 0], confidence)
    per_species = _per_species(accepted, y, sp, confidence)
    worst = max(per_species.items(), key=lambda kv: kv[1]["rate"])[0] if per_species else None
    auc = eer = None
    if bp is not None and ap is not None:
        auc = metrics.auc(s, y)
        eer = metrics.eer(s, y)[0]
    # ISO/IEC 30107-3 reports the worst species' APCER.
    ap_worst = Rate(**per_species[worst]) if worst is not None else None
    reasons = verdict(edge, rule, bp, ap_worst, auc, floor, max_error, threshold=thr)
    no_face = Counter(f"{'real' if lab == 1 else 'attack'}:{d}"
                      for d, lab, k in zip(scored.decisions, labels_all, ok) if not k)
    return {
        "rule": rule, "target": target, "threshold": thr, "threshold_edge": edge,
        "previous_threshold": previous, "confidence": confidence,
        "frames": len(scored.records), "scored": int(ok.sum()), "unreadable": len(scored.unreadable),
        "no_usable_face": dict(sorted(no_face.items())),
        "n_real": int((y == 1).sum()), "n_attack": int((y == 0).sum()),
        "subjects": sorted({r.subject for r in recs if r.subject}),
        "sessions": sorted({r.session for r in recs if r.session}),
        "bpcer": bp._asdict() if bp else None,
        "apcer": ap_worst._asdict() if ap_worst else None,
        "apcer_worst_species": worst,
        "apcer_per_species": per_species,
        "apcer_pooled": ap._asdict() if ap else None,
        "bpcer_per_subject": _per_subject(accepted, y, recs),
        "auc": auc, "eer": eer, "floor": floor, "max_error": max_error,
        "serves": not reasons, "reasons": reasons, "caveat": CAVEAT,
    }


def calibrate_dataset(
    data: Path,
    model: Path | Sequence[Path],
    rule: str,
    target: float | None,
    previous: float,
    *,
    sessions: str | Sequence[str] | None = None,
    subjects: str | Sequence[str] | None = None,
    floor: float = DEFAULT_FLOOR,
    max_error: float = DEFAULT_MAX_ERROR,
    confidence: float = 0.95,
    detector: str = "short",
    detector_backend: str = "auto",
    num_threads: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Scores a dataset's frames with ``model`` through the device pipeline and chooses its threshold.

    Args:
      data: a recording (``tla-edge record``) or any dataset layout.
      model: the ``.tflite`` to calibrate (see :func:`check_model`), or several:
        a fused set, scored as the device fuses it (the mean of their scores).
      rule, target: from :func:`tla_edge.thresholds.resolve_rule`.
      previous: the model's (or set's fused) threshold so far (reported; None: the set had none).
      sessions, subjects: keep only these (None: all; ``"2"`` matches ``"02"``).
      floor, max_error, confidence: see :func:`calibration_report`.
      detector, detector_backend: the face detector the device runs.
      num_threads: interpreter CPU threads.
      show_progress: draw a progress bar on stderr.

    Returns:
      :func:`calibration_report`'s dict with ``data``, ``model``, ``model_sha256`` and ``detector`` added
      (``model``: the first model; ``models`` and ``models_sha256`` list them all).

    Raises:
      UserError: no frame left after filtering, no usable face, or a class the rule needs is missing.
    """
    dataset = datasets.load_dataset(data)
    records = datasets.filter_records(dataset, sessions=sessions, subjects=subjects)
    if not records:
        raise UserError(f"dataset '{data}' has no frames for sessions={datasets.id_list(sessions)} "
                        f"subjects={datasets.id_list(subjects)}")
    models = [Path(model)] if isinstance(model, (str, Path)) else [Path(m) for m in model]
    # The raw (fused) scores do not depend on the pipeline's threshold; a set with no fused threshold yet gets 0.5.
    frames = score_records(records, models, threshold=0.5 if previous is None else previous,
                           num_threads=num_threads, detector=detector, detector_backend=detector_backend,
                           desc="calibrate", show_progress=show_progress)
    report = calibration_report(raw_scores(frames), rule, target, previous, floor, max_error, confidence)
    report.update({
        "data": str(data),
        "model": str(models[0]),
        "model_sha256": fileio.sha256_file(models[0]),
        "models": [str(m) for m in models],
        "models_sha256": [fileio.sha256_file(m) for m in models],
        "detector": detector,
        "dataset_notes": list(dataset.notes),  # rows naming missing images, said, not dropped silently
    })
    return report


def calibrated_metadata(meta: metadata_lib.ModelMetadata, report: dict[str, Any]) -> metadata_lib.ModelMetadata:
    """The model's metadata with the chosen threshold and a summary of how it was chosen."""
    extra = dict(meta.extra)
    # A fused pair's threshold was derived on the pair's mean score; this file is calibrated alone.
    extra.pop("fusion", None)
    key = f"device_{report['rule']}" + (f"_{report['target']:g}" if report["target"] is not None else "")
    extra["thresholds"] = {**dict(extra.get("thresholds") or {}), key: report["threshold"]}
    extra["device_calibration"] = {k: report.get(k) for k in CALIBRATION_KEYS}
    return meta.replace(threshold=float(report["threshold"]), extra=extra)


def fused_calibrated_copies(models: Sequence[Path], report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Copies of a fused set carrying the calibrated fused threshold; writes nothing.

    Each model's own metadata (its threshold when run alone) is unchanged; the
    set's ``extra.fusion`` record gets the new threshold and, under ``how``,
    the calibration summary (:data:`CALIBRATION_KEYS`). Any fusion record the
    models carried before is replaced.

    Returns:
      ``(record, {file name: bytes})``: each model and its ``<name>.json`` sidecar.

    Raises:
      UserError: the models cannot form a set (see :func:`tla_edge.runtime.fused_set.fusion_record`).
    """
    summary = {k: report.get(k) for k in CALIBRATION_KEYS}
    summary["models_sha256"] = report.get("models_sha256")
    try:
        return fused_set.fused_copies(models, float(report["threshold"]), how={"device_calibration": summary})
    except ValueError as err:
        raise UserError(str(err)) from err
