#!/usr/bin/env python
"""Stores the fused threshold of several int8 liveness models in each model's metadata.

    python scripts/fuse_models.py A_int8.tflite B_int8.tflite --crops CROPS --val-subjects 0008,0009 [--force]

The pipeline fuses several models by averaging their live probabilities; the
threshold of that mean is derived here on the fused scores of the held-out
validation subjects (the EER threshold, :func:`tla_edge.metrics.eer`), never as
the mean of the models' own thresholds. Each model's crops are read at its own
crop scale from CROPS (written by ``tla-edge prepare``) and scored by the int8
model itself (LiteRT), then averaged per source frame. The record
(:func:`tla_edge.metadata.fusion_record`: partner hashes + threshold) is written
into every model: embedded and in its sidecar, each through a temporary file.
A JSON report of the validation figures goes to ``--report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tla_edge import datasets, fileio, metrics, preprocess
from tla_edge import metadata as metadata_lib
from tla_edge.interpreter import LivenessModel


def fused_validation_scores(models: list[Path], crops_dir: Path, val_subjects: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and mean int8 scores of the validation frames every model has a crop of."""
    per_model = []
    for path in models:
        with LivenessModel(path) as m:
            crops = datasets.load_crops(crops_dir, scale=m.meta.crop_scale, subjects=val_subjects)
            images = preprocess.resize_crops(crops.images, m.input_size[0])
            scores = m.score_batch(images)
        per_model.append({s: (int(y), float(p)) for s, y, p in zip(crops.sources, crops.labels, scores)})
    common = sorted(set.intersection(*(set(d) for d in per_model)))
    y = np.array([per_model[0][s][0] for s in common])
    each = np.array([[d[s][1] for s in common] for d in per_model])
    singles = {p.name: {"eer": metrics.eer(e, y)[0], "auc": metrics.auc(e, y)} for p, e in zip(models, each)}
    return y, each.mean(axis=0), singles


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", type=Path, nargs="+", help="int8 .tflite models with tla-edge metadata")
    p.add_argument("--crops", type=Path, required=True, help="crops of every model's scale (tla-edge prepare)")
    p.add_argument("--val-subjects", required=True, help="held-out subjects that choose the threshold")
    p.add_argument("--report", type=Path, default=None, help="JSON report of the validation figures")
    p.add_argument("--force", action="store_true", help="replace an existing fusion record or report")
    args = p.parse_args(argv)
    if len(args.models) < 2:
        print(f"fuse_models: error: got {len(args.models)} model; expected two or more to fuse", file=sys.stderr)
        return 2
    metas = [metadata_lib.load(m) for m in args.models]
    for path, meta in zip(args.models, metas):
        if meta is None:
            print(f"fuse_models: error: '{path}' has no tla-edge metadata; expected models written by tla-edge convert",
                  file=sys.stderr)
            return 2
        if "fusion" in (meta.extra or {}) and not args.force:
            print(f"fuse_models: error: '{path}' already has a fusion record; pass --force to replace it",
                  file=sys.stderr)
            return 2
    if args.report is not None:
        fileio.check_writable(args.report, args.force)
    y, fused, singles = fused_validation_scores(args.models, args.crops, args.val_subjects)
    eer, threshold = metrics.eer(fused, y)
    at = metrics.compute_metrics(fused, y, None, threshold)
    record = metadata_lib.fusion_record(args.models, threshold)
    record["validation"] = {"subjects": args.val_subjects, "n_real": int((y == 1).sum()),
                            "n_attack": int((y == 0).sum()), "eer": eer, "auc": at["auc"],
                            "apcer": at["apcer"], "bpcer": at["bpcer"]}
    record["models"] = [m.name for m in args.models]
    for path, meta in zip(args.models, metas):
        new = meta.replace(extra={**(meta.extra or {}), "fusion": record})
        fileio.write_bytes_atomic(path, metadata_lib.embed(metadata_lib.strip_embedded(path.read_bytes()), new))
        fileio.write_json_atomic(metadata_lib.sidecar_path(path), new.to_dict())
    if args.report is not None:
        fileio.write_json_atomic(args.report, {"fusion": record, "single_models_validation": singles})
    print(f"fused threshold {threshold:.4f} on {len(y)} validation frames (subjects {args.val_subjects}): "
          f"EER {eer:.2%}, AUC {at['auc']:.4f}; written into {', '.join(str(m) for m in args.models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
