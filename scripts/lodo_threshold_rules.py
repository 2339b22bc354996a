#!/usr/bin/env python
"""Which rule should set a fused pair's shipped threshold? Rule R12-T on the kept leave-one-dataset-out scores.

Trains nothing: reads the validation and test score files of a fused pair's finished runs (``scripts/lodo.py
--fuse A,B``: mean score per source image) in every direction and seed, and puts three threshold rules side
by side, each chosen on the **validation** scores only:

- ``pooled_eer``: the EER threshold of all validation people and cameras together (what ships today);
- ``per_camera``: the lowest of the EER thresholds of each validation camera / session on its own, so that no
  validation camera rejects its real faces more than at its own EER (one camera: the same as pooled);
- ``bpcer5``: the threshold under which 5 % of the validation bona fide scores lie.

Each is then applied to the run's test side (which chose nothing): BPCER, APCER (worst species), ACER. In
``both-msutest`` the NUAA validation people's APCER and BPCER at each threshold are also reported.

    python scripts/lodo_threshold_rules.py --nuaa-crops build/crops_96/nuaa --msu-crops build/crops_96/msu \\
        --work build/lodo --out benchmarks/results/lodo_threshold_rules_r12.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lodo  # noqa: E402
import protocol  # noqa: E402

from tla_edge import fileio, metrics  # noqa: E402

A = "a0.35_s2.7_shift_kd0.3_px96_r10_greynorm"
B = "a0.35_s1.4_shift_kd0.3_px96_r10_greynorm"
DIRECTIONS = ["nuaa-msu", "msu-nuaa", "laptop-android", "android-laptop", "both-msutest"]
RULES = ("pooled_eer", "per_camera", "bpcer5")
RULE_TEXT = (
    "Rule R12-T (written 2026-12-05T14:13Z, before any figure of it was computed). A candidate replaces the pooled "
    "validation EER only if, over the greynorm pair's 10 runs (5 directions x seeds 0, 1): (a) mean test BPCER at its "
    "threshold is >= 10 points below the pooled EER's; (b) mean test ACER (worst species) is not higher than the "
    "pooled EER's + 1 point; (c) in the both-msutest runs, validation APCER (worst species) of NUAA's validation "
    "people stays <= 1 %. If both pass, the one with the lower mean test ACER.")


def thresholds(scores: np.ndarray, labels: np.ndarray, cameras: np.ndarray) -> tuple[dict, dict]:
    """The three rules' thresholds on validation scores, and each camera's own EER threshold."""
    per = {c: float(metrics.eer(scores[cameras == c], labels[cameras == c])[1])
           for c in sorted(set(cameras)) if len(set(labels[cameras == c])) == 2}
    return {"pooled_eer": float(metrics.eer(scores, labels)[1]),
            "per_camera": min(per.values()),
            "bpcer5": float(np.quantile(scores[labels == 1], 0.05))}, per


def one_run(args: argparse.Namespace, direction: str, seed: int) -> dict:
    d = lodo.DIRECTIONS[direction]
    train_ann = lodo.annotations(lodo.crops_of(args, d["train"]))
    test_ann = lodo.annotations(lodo.crops_of(args, d["test"]))
    dirs = lodo.member_dirs(args, direction, seed)
    val = lodo.fused_scores([protocol.read_scores(m / "validation_scores.csv") for m in dirs])
    test = lodo.fused_scores([protocol.read_scores(m / "test_scores.csv") for m in dirs])
    if d.get("test_split"):
        test = {k: v for k, v in test.items() if test_ann[k].get("split") == d["test_split"]}
    vk, tk = sorted(val), sorted(test)

    def part(table: dict, keys: list[str], ann: dict, t: float) -> dict:
        f = lodo.species_figures(np.array([table[k][1] for k in keys]), np.array([table[k][0] for k in keys]),
                                 [ann[k].get("species") or "attack" for k in keys], t)
        return {k: f[k] for k in ("bpcer", "apcer", "acer", "apcer_per_species", "auc")}

    thr, per = thresholds(np.array([val[k][1] for k in vk]), np.array([val[k][0] for k in vk]),
                          np.array([train_ann[k].get("session", "") for k in vk]))
    row = {"direction": direction, "seed": seed, "per_camera_eer_thresholds": per, "thresholds": thr}
    nuaa_val = [k for k in vk if train_ann[k].get("subject", "").isdigit()]
    for name, t in thr.items():
        row[name] = part(test, tk, test_ann, t)
        if direction == "both-msutest":
            f = part(val, nuaa_val, train_ann, t)
            row[name]["val_nuaa"] = {"apcer": f["apcer"], "bpcer": f["bpcer"]}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nuaa-crops", type=Path, required=True)
    p.add_argument("--msu-crops", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("runs/lodo"), help="folder of the lodo runs")
    p.add_argument("--out", type=Path, required=True, help="result JSON (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    if args.out.exists() and not args.force:
        raise SystemExit(f"lodo_threshold_rules.py: {args.out} exists; pass --force to replace it")
    args.name, args.fuse, args.weights = A, f"{A},{B}", None
    runs = [one_run(args, direction, seed) for direction in DIRECTIONS for seed in (0, 1)]
    mean = {r: {k: float(np.mean([run[r][k] for run in runs])) for k in ("bpcer", "apcer", "acer")} for r in RULES}
    nuaa = {r: max(run[r]["val_nuaa"]["apcer"] for run in runs if "val_nuaa" in run[r]) for r in RULES}
    verdict = {r: {"a": mean[r]["bpcer"] <= mean["pooled_eer"]["bpcer"] - 0.10,
                   "b": mean[r]["acer"] <= mean["pooled_eer"]["acer"] + 0.01,
                   "c": nuaa[r] <= 0.01} for r in RULES if r != "pooled_eer"}
    for run in runs:
        print(run["direction"], run["seed"], " | ".join(
            f"{r} {run['thresholds'][r]:.3f}: BPCER {run[r]['bpcer']:.1%} APCER {run[r]['apcer']:.1%} "
            f"ACER {run[r]['acer']:.1%}" for r in RULES))
    for r in RULES:
        print(f"mean {r}: BPCER {mean[r]['bpcer']:.1%} APCER {mean[r]['apcer']:.1%} ACER {mean[r]['acer']:.1%}; "
              f"worst NUAA validation APCER (both-msutest) {nuaa[r]:.1%}", verdict.get(r, ""))
    out = {"what": "fused threshold rules on the greynorm pair's leave-one-dataset-out scores",
           "rule": RULE_TEXT, "pair": [A, B],
           "figures": "thresholds: chosen on validation; test figures: each run's test side, which chose nothing; "
                      "val_nuaa: validation figures of NUAA 0008/0009 in the both-msutest runs",
           "mean_over_runs": mean, "worst_val_nuaa_apcer_both_msutest": nuaa, "criteria": verdict,
           "passes": [r for r, v in verdict.items() if all(v.values())], "runs": runs}
    fileio.write_json_atomic(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
