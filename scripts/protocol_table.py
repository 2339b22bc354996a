#!/usr/bin/env python
"""The recipe table of benchmarks/README.md, from benchmarks/results/protocol/*.json.

    python scripts/protocol_table.py [--ms benchmarks/results/frontier_ms.json] > table.md

One row per recipe (every run of the protocol counted: mean ± standard deviation
over both directions and all seeds). ``--ms`` adds the int8 invoke time per face
of each recipe's architecture (a JSON object ``{"<alpha or arch key>": ms}``,
keys as in :func:`ms_key`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def ms_key(recipe: dict) -> str:
    """The architecture a recipe's latency depends on: 'mobilenetv2_<alpha>' or 'resnet34', '+' for fusions."""
    def one(args: list[str]) -> str:
        arch = args[args.index("--arch") + 1] if "--arch" in args else "mobilenetv2"
        return f"mobilenetv2_{float(args[args.index('--alpha') + 1]):g}" if arch == "mobilenetv2" else arch
    key = one(recipe["train_args"])
    return key + (f"+{recipe['fused_key']}" if recipe.get("fused_key") else "")


def cell(stats: dict, key: str, pct: bool = True) -> str:
    s = stats.get(key)
    if not s:
        return "–"
    if pct:
        return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/protocol"), help="protocol result folder")
    p.add_argument("--ms", type=Path, default=None, help="int8 invoke ms per face by architecture (JSON)")
    args = p.parse_args(argv)
    ms = json.loads(args.ms.read_text()) if args.ms else {}
    rows = []
    for f in sorted(args.results.glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("fused_with"):
            other = json.loads((args.results / f"{r['fused_with']}.json").read_text())
            r["fused_key"] = ms_key(other)
        rows.append(r)
    rows.sort(key=lambda r: r["test_mean"]["acer"]["mean"])
    print("| recipe | runs | val EER % | test ACER % (val EER thr.) | test ACER % (val APCER 5 % thr.) "
          "| test EER % | test AUC | unseen-subject test ACER % | int8 ms / face |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        key = ms_key(r)
        parts = key.split("+")
        t = sum(ms[k] for k in parts) if all(k in ms for k in parts) else None
        print(f"| {r['recipe']} | {len(r['runs'])} | {cell(r['validation_mean'], 'eer')} "
              f"| {cell(r['test_mean'], 'acer')} | {cell(r.get('test_at_val_apcer_0.05_mean', {}), 'acer')} "
              f"| {cell(r['test_mean'], 'eer')} | {cell(r['test_mean'], 'auc', pct=False)} "
              f"| {cell(r.get('test_unseen_subjects_mean', {}), 'acer')} | {'–' if t is None else f'{t:.2f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
