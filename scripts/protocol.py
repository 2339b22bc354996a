#!/usr/bin/env python
"""The cross-session protocol every reported accuracy figure of tla-edge comes from.

For one training recipe, each direction (train on session A, test on session
B) and each seed:

1. ``tla-edge train`` on session A only; subjects ``--val-subjects`` of session
   A are held out as **validation**: they choose the kept epoch (early
   stopping) and the threshold (the EER threshold written to metadata.json).
2. The trained Keras model scores every crop of session B, which no choice
   has seen: the **test** figures (APCER, BPCER, ACER at the validation
   threshold; EER and AUC, which need no threshold). ``test_unseen`` is the
   part of session B whose subjects were also absent from training.

Each run's test scores are written to ``test_scores.csv`` in its model folder,
so two recipes can be fused afterwards (``--fuse OTHER_WORK``): the mean of the
two models' scores, with the threshold derived on the fused *validation*
scores, exactly as the pipeline fuses two models.

    python scripts/protocol.py --name mnv2_a0.35_s2.7 --crops crops/nuaa --work runs/protocol \\
        -- --alpha 0.35 --scale 2.7 --weights imagenet --epochs 10 --fine-tune-epochs 3

Arguments after ``--`` go to ``tla-edge train`` unchanged. Finished runs in
``--work/NAME`` are reused, so an interrupted protocol resumes. The result is
``benchmarks/results/protocol/NAME.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import run_main

from tla_edge import fileio, metrics

from tla_edge.data import datasets
from tla_edge.data import crops as crops_lib
from tla_edge.runtime.metadata import ModelMetadata

# Run tla-edge train as the command itself (this interpreter's package).
TRAIN = [sys.executable, "-m", "tla_edge.cli", "train"]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="recipe name (result file and run folder)")
    p.add_argument("--crops", type=Path, required=True, help="crops of both sessions, written by tla-edge prepare")
    p.add_argument("--work", type=Path, required=True, help="folder of the runs' model folders")
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/protocol"), help="result folder")
    p.add_argument("--directions", default="01-02,02-01", help="train-test session pairs")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--val-subjects", default="0008,0009", help="subjects of the training session held out for validation")
    p.add_argument("--fuse", type=Path, default=None,
                   help="another recipe's run folder (--work/NAME): report the mean-score fusion with it")
    p.add_argument("--note", default="", help="free text recorded in the JSON")
    p.add_argument("--force", action="store_true", help="overwrite the result JSON")
    return p.parse_args(argv), train_args


def _scale_of(train_args: list[str]) -> float:
    return float(train_args[train_args.index("--scale") + 1])


def read_scores(path: Path) -> dict[str, tuple[int, float, str]]:
    """source -> (label, score, subject) from validation_scores.csv or test_scores.csv."""
    with open(path, newline="") as f:
        return {r["source"]: (int(r["label"]), float(r["score"]), r["subject"]) for r in csv.DictReader(f)}


def figures(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """APCER/BPCER/ACER at ``threshold`` (chosen on validation), EER and AUC."""
    m = metrics.compute_metrics(scores, labels, None, threshold)
    eer, _ = metrics.eer(scores, labels)
    return {"apcer": m["apcer"], "bpcer": m["bpcer"], "acer": m["acer"], "eer": eer, "auc": m["auc"],
            "n_real": int((labels == 1).sum()), "n_attack": int((labels == 0).sum())}


def score_test(model_dir: Path, crops_dir: Path, test_session: str, scale: float) -> None:
    """Scores session ``test_session`` with the run's Keras model into test_scores.csv."""
    import keras

    from tla_edge.train import models

    from tla_edge.runtime import preprocess

    meta = ModelMetadata.from_dict(json.loads((model_dir / "metadata.json").read_text()))
    crops = crops_lib.load_crops(crops_dir, scale=scale, sessions=test_session)
    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    images = preprocess.resize_crops(crops.images, int(meta.input_size[0]))
    scores = models.keras_scores(model, images, meta, desc=f"test session {test_session}")
    lines = ["source,session,subject,label,score"] + [
        f"{src},{se},{su},{int(y)},{float(p):.6f}"
        for src, se, su, y, p in zip(crops.sources, crops.sessions, crops.subjects, crops.labels, scores)
    ]
    fileio.write_text_atomic(model_dir / "test_scores.csv", "\n".join(lines) + "\n")


def run_one(args: argparse.Namespace, train_args: list[str], train_s: str, test_s: str, seed: int) -> dict:
    model_dir = args.work / args.name / f"train{train_s}_test{test_s}_seed{seed}"
    if not (model_dir / "metadata.json").is_file():
        cmd = [*TRAIN, str(args.crops), "--out", str(model_dir), "--sessions", train_s,
               "--val-subjects", args.val_subjects, "--seed", str(seed), "--force", *train_args]
        print(f"[protocol] {args.name}: train {train_s} -> test {test_s}, seed {seed}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    if not (model_dir / "test_scores.csv").is_file():
        score_test(model_dir, args.crops, test_s, _scale_of(train_args))
    return summarise(model_dir, train_s, test_s, seed, args.val_subjects)


def summarise(model_dir: Path, train_s: str, test_s: str, seed: int, val_subjects: str,
              other: Path | None = None) -> dict:
    """Validation and test figures of one run (or of its fusion with ``other``, a run folder)."""
    meta = json.loads((model_dir / "metadata.json").read_text())
    val, test = read_scores(model_dir / "validation_scores.csv"), read_scores(model_dir / "test_scores.csv")
    if other is not None:  # mean-score fusion; the threshold is derived on the fused validation scores
        val_o, test_o = read_scores(other / "validation_scores.csv"), read_scores(other / "test_scores.csv")
        val = {k: (v[0], (v[1] + val_o[k][1]) / 2, v[2]) for k, v in val.items() if k in val_o}
        test = {k: (v[0], (v[1] + test_o[k][1]) / 2, v[2]) for k, v in test.items() if k in test_o}
    arr = lambda d, keys, i: np.array([d[k][i] for k in keys])  # noqa: E731
    vk = sorted(val)
    y_val, p_val = arr(val, vk, 0), arr(val, vk, 1)
    # Thresholds from the validation scores alone (the same rules as tla-edge train, recomputed
    # here so that every run and every fusion uses the current rules).
    threshold = float(metrics.eer(p_val, y_val)[1])
    thr_apcer = float(metrics.threshold_at_apcer(p_val, y_val, None, 0.05))
    tk = sorted(test)
    held = [s.strip() for s in val_subjects.split(",")]
    unseen = [k for k in tk if any(datasets.same_id(test[k][2], h) for h in held)]
    out = {
        "train_session": train_s, "test_session": test_s, "seed": seed, "threshold": threshold,
        "validation": figures(p_val, y_val, threshold),
        "test": figures(arr(test, tk, 1), arr(test, tk, 0), threshold),
        "threshold_val_apcer_0.05": thr_apcer,
        "test_at_val_apcer_0.05": figures(arr(test, tk, 1), arr(test, tk, 0), thr_apcer),
        "model_dir": model_dir.name,
    }
    yu = arr(test, unseen, 0)
    if len(set(yu.tolist())) == 2:
        out["test_unseen_subjects"] = figures(arr(test, unseen, 1), yu, threshold)
    if other is None:
        phases = meta["extra"]["phases"]
        out["kept_epochs"] = {k: v.get("best_epoch") for k, v in phases.items() if "best_epoch" in v}
        out["train_wall_s"] = meta["extra"]["wall_s_total"]
    return out


def mean_spread(runs: list[dict], part: str) -> dict:
    rows = [r[part] for r in runs if part in r]
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows])),
                "min": float(np.min([r[k] for r in rows])), "max": float(np.max([r[k] for r in rows]))}
            for k in ("acer", "apcer", "bpcer", "eer", "auc")} if rows else {}


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    name = args.name if args.fuse is None else f"{args.name}+{args.fuse.name}"
    out = args.out_dir / f"{name}.json"
    fileio.check_writable(out, args.force)
    t0 = time.perf_counter()
    runs = []
    for pair in args.directions.split(","):
        train_s, test_s = pair.split("-")
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run_one(args, train_args, train_s, test_s, seed)
            if args.fuse is not None:
                r = summarise(args.work / args.name / r["model_dir"], train_s, test_s, seed, args.val_subjects,
                              other=args.fuse / r["model_dir"])
            runs.append(r)
            print(f"[protocol] {name} {pair} seed {seed}: val EER {r['validation']['eer']:.3%}  "
                  f"test ACER {r['test']['acer']:.2%} EER {r['test']['eer']:.2%} AUC {r['test']['auc']:.4f}",
                  file=sys.stderr, flush=True)
    result = {
        "recipe": name, "train_args": train_args, "fused_with": args.fuse.name if args.fuse else None,
        "protocol": ("train on one session; subjects " + args.val_subjects + " of it held out as validation "
                     "(kept epoch, threshold); test = every crop of the other session, which chose nothing"),
        "runs": runs,
        "validation_mean": mean_spread(runs, "validation"),
        "test_mean": mean_spread(runs, "test"),
        "test_unseen_subjects_mean": mean_spread(runs, "test_unseen_subjects"),
        "test_at_val_apcer_0.05_mean": mean_spread(runs, "test_at_val_apcer_0.05"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "note": args.note,
    }
    fileio.write_json_atomic(out, result)
    t = result["test_mean"]
    print(f"{name}: test ACER {t['acer']['mean']:.2%} ± {t['acer']['std']:.2%}, EER {t['eer']['mean']:.2%} "
          f"± {t['eer']['std']:.2%}, AUC {t['auc']['mean']:.4f} over {len(runs)} runs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "protocol.py"))
