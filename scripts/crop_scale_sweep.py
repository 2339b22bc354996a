#!/usr/bin/env python
"""Cross-session validation of the crop scale on NUAA.

For each crop scale and both directions (train session 01 -> validate on 02,
train 02 -> validate on 01) a small model is trained from scratch with the
same ``tla-edge train`` code (MobileNetV2 alpha 0.35 at 96x96 by default, for
speed on a CPU), and its validation ACER, EER and AUC are recorded. The
default scale is the one with the best mean cross-session ACER at the fixed
threshold 0.5 (a threshold chosen before seeing the validation session; ties
broken by the mean EER). The score-level fusion of the two best scales (the
mean of their validation scores, as :class:`tla_edge.pipeline.Pipeline` fuses
two models) is reported too.

    python scripts/crop_scale_sweep.py --crops /work/crops/nuaa --work /tmp/sweep \
        --out benchmarks/results/crop_scale_sweep.json

Runs already finished in --work (a metadata.json there) are reused, so an
interrupted sweep resumes.
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

from tla_edge import fileio, metrics

DIRECTIONS = (("01", "02"), ("02", "01"))  # (train session, validation session)
# Run tla-edge train from its own module so the sweep does not depend on other subcommands.
TRAIN = (
    "import sys, argparse; from tla_edge import cli, train; "
    "p = argparse.ArgumentParser(prog='tla-edge train', formatter_class=cli._Formatter); "
    "train.add_arguments(p); sys.exit(train.run(p.parse_args(sys.argv[1:])))"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", type=Path, default=Path("/work/crops/nuaa"), help="prepared crops (all scales)")
    p.add_argument("--work", type=Path, default=Path("/tmp/crop_scale_sweep"), help="model folders of the runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/crop_scale_sweep.json"), help="result JSON")
    p.add_argument("--scales", type=str, default="1.0,1.5,2.0,2.7,3.5,4.0", help="comma-separated crop scales")
    p.add_argument("--arch", type=str, default="mobilenetv2", help="architecture")
    p.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width")
    p.add_argument("--input-size", type=int, default=96, help="model input side")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (from scratch)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--patience", type=int, default=100, help="early-stopping patience (large: fixed epochs)")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--monitor", type=str, choices=("val_loss", "val_auc"), default="val_loss",
                   help="figure that picks the kept epoch")
    p.add_argument("--pool-with", type=Path, default=None,
                   help="another sweep's result JSON: also report per-scale means over both sweeps' runs")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p.parse_args(argv)


def read_scores(model_dir: Path) -> dict[str, tuple[int, float]]:
    """source -> (label, score) from a run's validation_scores.csv."""
    with open(model_dir / "validation_scores.csv", newline="") as f:
        return {r["source"]: (int(r["label"]), float(r["score"])) for r in csv.DictReader(f)}


def kept_epoch(model_dir: Path) -> int | None:
    """The epoch whose weights early stopping kept, from metadata or history.csv."""
    meta = json.loads((model_dir / "metadata.json").read_text())
    for phase in meta["extra"]["phases"].values():
        if phase.get("best_epoch"):
            return int(phase["best_epoch"])
    monitor = meta["extra"].get("early_stopping", {}).get("monitor", "val_loss")
    with open(model_dir / "history.csv", newline="") as f:
        values = [float(r[monitor]) for r in csv.DictReader(f)]
    if not values:
        return None
    return int(np.argmin(values) if monitor == "val_loss" else np.argmax(values)) + 1


def figures(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ACER/APCER/BPCER at 0.5 and at the EER threshold, EER and AUC."""
    at_half = metrics.compute_metrics(scores, labels, None, 0.5)
    eer, thr = metrics.eer(scores, labels)
    at_eer = metrics.compute_metrics(scores, labels, None, thr)
    return {
        "acer_at_0.5": at_half["acer"], "apcer_at_0.5": at_half["apcer"], "bpcer_at_0.5": at_half["bpcer"],
        "acer_at_eer_threshold": at_eer["acer"], "eer": eer, "eer_threshold": thr, "auc": at_half["auc"],
    }


def run_one(args: argparse.Namespace, scale: float, train_s: str, val_s: str) -> dict:
    model_dir = args.work / f"s{scale:g}_train{train_s}_val{val_s}"
    if not (model_dir / "metadata.json").is_file():
        cmd = [
            sys.executable, "-c", TRAIN, str(args.crops), "--out", str(model_dir), "--arch", args.arch,
            "--alpha", str(args.alpha), "--input-size", str(args.input_size), "--weights", "none",
            "--scale", str(scale), "--val-session", val_s, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--patience", str(args.patience), "--seed", str(args.seed), "--monitor", args.monitor,
            "--force",
        ]
        print(f"[sweep] scale {scale:g} train {train_s} -> val {val_s}: {model_dir}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    meta = json.loads((model_dir / "metadata.json").read_text())
    scores = read_scores(model_dir)
    sources = sorted(scores)
    y = np.array([scores[s][0] for s in sources])
    p = np.array([scores[s][1] for s in sources])
    phase = meta["extra"]["phases"]["scratch"]
    return {
        "scale": scale, "train_session": train_s, "val_session": val_s, **figures(p, y),
        "n_val_real": int((y == 1).sum()), "n_val_attack": int((y == 0).sum()),
        "n_train": meta["extra"]["data"]["train"]["crops"],
        "epochs_run": phase["epochs_run"], "kept_epoch": kept_epoch(model_dir), "train_wall_s": phase["wall_s"], "train_img_per_s": phase["img_per_s"],
        "model_dir": str(model_dir),
    }


def fusion(runs: list[dict], scales: tuple[float, float]) -> dict:
    """Mean-score fusion of two scales' validation scores, per direction."""
    out = {}
    for train_s, val_s in DIRECTIONS:
        dirs = [next(r["model_dir"] for r in runs if r["scale"] == s and r["val_session"] == val_s) for s in scales]
        a, b = read_scores(Path(dirs[0])), read_scores(Path(dirs[1]))
        common = sorted(set(a) & set(b))
        y = np.array([a[s][0] for s in common])
        p = np.array([(a[s][1] + b[s][1]) / 2.0 for s in common])
        out[f"train{train_s}_val{val_s}"] = {**figures(p, y), "n_val": len(common)}
    out["mean_acer_at_0.5"] = float(np.mean([v["acer_at_0.5"] for v in out.values()]))
    out["mean_eer"] = float(np.mean([v["eer"] for k, v in out.items() if isinstance(v, dict)]))
    return out


def pooled(runs: list[dict], other: list[dict], other_path: Path) -> dict:
    """Per-scale means over this sweep's runs and another sweep's (e.g. another epoch selection)."""
    both = runs + other
    per_scale = {}
    for sc in sorted({r["scale"] for r in both}):
        rs = [r for r in both if r["scale"] == sc]
        per_scale[f"{sc:g}"] = {
            "mean_acer_at_0.5": float(np.mean([r["acer_at_0.5"] for r in rs])),
            "mean_eer": float(np.mean([r["eer"] for r in rs])),
            "mean_auc": float(np.mean([r["auc"] for r in rs])),
            "runs": len(rs),
        }
    ranking = sorted(per_scale, key=lambda k: (round(per_scale[k]["mean_acer_at_0.5"], 4), per_scale[k]["mean_eer"]))
    return {"with": str(other_path), "per_scale": per_scale, "ranking": ranking}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fileio.check_writable(args.out, args.force)
    scales = [float(s) for s in args.scales.split(",")]
    t0 = time.perf_counter()
    runs: list[dict] = []
    result: dict = {}
    for scale in scales:
        for train_s, val_s in DIRECTIONS:
            runs.append(run_one(args, scale, train_s, val_s))
            per_scale = {}
            for s in sorted({r["scale"] for r in runs}):
                rs = [r for r in runs if r["scale"] == s]
                per_scale[f"{s:g}"] = {
                    "mean_acer_at_0.5": float(np.mean([r["acer_at_0.5"] for r in rs])),
                    "mean_eer": float(np.mean([r["eer"] for r in rs])),
                    "mean_auc": float(np.mean([r["auc"] for r in rs])),
                    "mean_acer_at_eer_threshold": float(np.mean([r["acer_at_eer_threshold"] for r in rs])),
                    "directions": len(rs),
                }
            complete = {k: v for k, v in per_scale.items() if v["directions"] == len(DIRECTIONS)}
            ranking = sorted(complete, key=lambda k: (round(complete[k]["mean_acer_at_0.5"], 4), complete[k]["mean_eer"]))
            result = {
                "what": "cross-session validation of the crop scale on NUAA (train one session, validate on the other)",
                "dataset": str(args.crops),
                "model": {"arch": args.arch, "alpha": args.alpha, "input_size": args.input_size,
                          "weights": "none (from scratch)", "epochs": args.epochs, "batch_size": args.batch_size,
                          "seed": args.seed, "augment": True, "monitor": args.monitor,
                          "note": f"input {args.input_size} px and alpha {args.alpha} for speed on a shared 2-core "
                                  "CPU; crops (160 px) resized with INTER_AREA; the epoch with the best "
                                  f"validation {args.monitor.replace('val_', '')} is kept (same for every scale)"},
                "selection": "best mean ACER at the fixed threshold 0.5 over both directions; ties -> mean EER",
                "runs": runs,
                "per_scale": per_scale,
                "ranking": ranking,
                "best_scale": float(ranking[0]) if ranking else None,
                "complete": len(runs) == len(scales) * len(DIRECTIONS),
                "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
                "train_wall_s_all_runs": round(sum(r["train_wall_s"] for r in runs), 1),
                "host": {"machine": platform.machine(), "python": platform.python_version()},
            }
            if len(ranking) >= 2:
                top = (float(ranking[0]), float(ranking[1]))
                result["fusion_top2"] = {"scales": list(top), **fusion(runs, top)}
                # Every pair, to tell scale complementarity from a plain two-model ensemble gain.
                pairs = [(float(a), float(b)) for i, a in enumerate(ranking) for b in ranking[i + 1:]]
                result["fusion_all_pairs"] = sorted(
                    ({"scales": list(pr), **{k: v for k, v in fusion(runs, pr).items() if k.startswith("mean")}}
                     for pr in pairs),
                    key=lambda f: (round(f["mean_acer_at_0.5"], 4), f["mean_eer"]),
                )
            if args.pool_with is not None:
                result["pooled"] = pooled(runs, json.loads(args.pool_with.read_text())["runs"], args.pool_with)
            fileio.write_json_atomic(args.out, result)
    if "pooled" in result:
        print(f"pooled with {args.pool_with}: " + ", ".join(
            f"{k}: ACER@0.5 {v['mean_acer_at_0.5']:.4f} EER {v['mean_eer']:.4f}"
            for k, v in result["pooled"]["per_scale"].items()))
    print(f"\n{'scale':>6} {'ACER@0.5':>9} {'EER':>7} {'AUC':>7}   (mean of both directions)")
    for k in result["ranking"]:
        v = result["per_scale"][k]
        print(f"{k:>6} {v['mean_acer_at_0.5']:9.4f} {v['mean_eer']:7.4f} {v['mean_auc']:7.4f}")
    if "fusion_top2" in result:
        f = result["fusion_top2"]
        print(f"fusion {f['scales']}: ACER@0.5 {f['mean_acer_at_0.5']:.4f} EER {f['mean_eer']:.4f}")
    print(f"best scale: {result['best_scale']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
