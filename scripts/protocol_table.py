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
import re
import sys
from pathlib import Path


def ms_key(recipe: dict) -> str:
    """The architectures a recipe's latency depends on, from its name (``a<alpha>_...``, ``resnet34_...``), '+' for fusions."""
    def one(name: str) -> str:
        m = re.match(r"a([0-9.]+)_", name)
        return f"mobilenetv2_{float(m.group(1)):g}" if m else name.split("_")[0]
    return "+".join(one(part) for part in recipe["recipe"].split("+"))


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
        rows.append(r)
    rows.sort(key=lambda r: r["test_mean"]["eer"]["mean"])  # the choice: lowest mean cross-session EER
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
