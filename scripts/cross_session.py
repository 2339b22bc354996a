#!/usr/bin/env python
"""Cross-session runs on NUAA: train on one session, validate on the other, both ways.

Trains ``--arch`` (MobileNetV2 or ResNet34) with ``--weights none`` at one
crop scale through the ``tla-edge train`` code, in both directions, and
writes ACER, EER and AUC on the validation session with the wall time,
images/s and epochs run per phase to
``benchmarks/results/cross_session_<arch>.json``.

    python scripts/cross_session.py --arch mobilenetv2 --alpha 0.35 --scale 2.7 --epochs 8
    python scripts/cross_session.py --arch resnet34 --scale 2.7 --epochs 3

Finished runs in --work are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop_scale_sweep import DIRECTIONS, TRAIN, figures, kept_epoch, read_scores  # noqa: E402

from tla_edge import fileio  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=str, choices=("mobilenetv2", "resnet34"), required=True, help="architecture")
    p.add_argument("--crops", type=Path, default=Path("/work/crops/nuaa"), help="prepared crops")
    p.add_argument("--scale", type=float, required=True, help="crop scale (the sweep's winner)")
    p.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width")
    p.add_argument("--input-size", type=int, default=160, help="model input side")
    p.add_argument("--epochs", type=int, default=8, help="maximum epochs per direction")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    p.add_argument("--monitor", type=str, choices=("val_loss", "val_auc"), default="val_loss",
                   help="early-stopping figure (which epoch is kept)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--work", type=Path, default=Path("/tmp/cross_session"), help="model folders of the runs")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/cross_session_<arch>.json)")
    p.add_argument("--directions", type=str, default="01-02,02-01", help="train-val session pairs to run")
    p.add_argument("--fuse-scale", type=float, default=None,
                   help="also report the mean-score fusion with the finished runs at this scale in --work")
    p.add_argument("--fuse-work", type=Path, default=None,
                   help="folder of the runs to fuse with (default --work; e.g. another seed's runs)")
    p.add_argument("--note", type=str, default="", help="free text recorded in the JSON (e.g. why so few epochs)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p.parse_args(argv)


def fuse(args: argparse.Namespace, runs: list[dict]) -> dict:
    """Mean-score fusion of each run with the same direction's run at --fuse-scale (as the pipeline fuses)."""
    out: dict = {"scales": [args.scale, args.fuse_scale], "runs": {}}
    for r in runs:
        other = (args.fuse_work or args.work) / f"{args.arch}_s{args.fuse_scale:g}_train{r['train_session']}_val{r['val_session']}"
        if not (other / "metadata.json").is_file():
            out["runs"][f"train{r['train_session']}_val{r['val_session']}"] = {"missing": str(other)}
            continue
        a, b = read_scores(Path(r["model_dir"])), read_scores(other)
        common = sorted(set(a) & set(b))
        y = np.array([a[s][0] for s in common])
        p = np.array([(a[s][1] + b[s][1]) / 2.0 for s in common])
        out["runs"][f"train{r['train_session']}_val{r['val_session']}"] = {
            **figures(p, y), "n_val": len(common), "other_model_dir": str(other)}
    done = [v for v in out["runs"].values() if "eer" in v]
    if done:
        out["mean"] = {k: float(np.mean([v[k] for v in done])) for k in ("acer_at_0.5", "eer", "auc")}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(f"benchmarks/results/cross_session_{args.arch}.json")
    fileio.check_writable(out, args.force)
    wanted = [tuple(d.split("-")) for d in args.directions.split(",")]
    t0 = time.perf_counter()
    runs = []
    for train_s, val_s in [d for d in DIRECTIONS if d in wanted]:
        model_dir = args.work / f"{args.arch}_s{args.scale:g}_train{train_s}_val{val_s}"
        if not (model_dir / "metadata.json").is_file():
            cmd = [
                sys.executable, "-c", TRAIN, str(args.crops), "--out", str(model_dir), "--arch", args.arch,
                "--alpha", str(args.alpha), "--input-size", str(args.input_size), "--weights", "none",
                "--scale", str(args.scale), "--val-session", val_s, "--epochs", str(args.epochs),
                "--patience", str(args.patience), "--monitor", args.monitor, "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                "--force",
            ]
            print(f"[cross-session] {args.arch} train {train_s} -> val {val_s}: {model_dir}", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True)
        meta = json.loads((model_dir / "metadata.json").read_text())
        scores = read_scores(model_dir)
        y = np.array([v[0] for v in scores.values()])
        p = np.array([v[1] for v in scores.values()])
        extra = meta["extra"]
        runs.append({
            "train_session": train_s, "val_session": val_s, **figures(p, y),
            "at_eer_threshold": extra["validation"]["at_eer_threshold"],
            "n_train": extra["data"]["train"]["crops"], "n_val": extra["data"]["val"]["crops"],
            "kept_epoch": kept_epoch(model_dir), "phases": extra["phases"], "wall_s_total": extra["wall_s_total"],
            "model_dir": str(model_dir),
        })
        result = {
            "what": "NUAA cross-session validation: train on one session, validate on the other",
            "dataset": str(args.crops),
            "model": {"arch": args.arch, "alpha": args.alpha if args.arch == "mobilenetv2" else None,
                      "input_size": args.input_size, "crop_scale": args.scale, "weights": "none (from scratch)",
                      "max_epochs": args.epochs, "patience": args.patience, "monitor": args.monitor, "batch_size": args.batch_size,
                      "seed": args.seed, "augment": True,
                      "note": "early stopping on the validation session's loss restores the best epoch, so the "
                              "figures are mildly optimistic; ACER at 0.5 uses a threshold fixed in advance, "
                              "ACER at the EER threshold picks it on the validation session itself"},
            "note": args.note,
            "runs": runs,
            "mean": {k: float(np.mean([r[k] for r in runs])) for k in ("acer_at_0.5", "eer", "auc", "eer_threshold")},
            "complete": len(runs) == len(wanted),
            "wall_s": round(time.perf_counter() - t0, 1),
            "host": {"machine": platform.machine(), "python": platform.python_version(),
                     "note": "2 CPU cores shared with other jobs; img/s are lower bounds"},
        }
        if args.fuse_scale is not None:
            result["fusion"] = fuse(args, runs)
        fileio.write_json_atomic(out, result)
    for r in runs:
        ph = r["phases"]["scratch"]
        print(f"{args.arch} train {r['train_session']} -> val {r['val_session']}: ACER@0.5 {r['acer_at_0.5']:.4f} "
              f"EER {r['eer']:.4f} AUC {r['auc']:.4f}  {ph['epochs_run']} epochs (kept {r['kept_epoch']}) {ph['wall_s']:.0f} s "
              f"{ph['img_per_s']:.1f} img/s")
    if "fusion" in result:
        f = result["fusion"]
        for k, v in f["runs"].items():
            if "missing" in v:
                print(f"fusion {f['scales']} {k}: run at {args.fuse_scale:g} not found ({v['missing']})")
                continue
            print(f"fusion {f['scales']} {k}: ACER@0.5 {v['acer_at_0.5']:.4f} EER {v['eer']:.4f} AUC {v['auc']:.4f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
