#!/usr/bin/env python
"""Teacher targets for distillation: Silent-Face's P(real) for every source image of a crops folder.

    python scripts/teacher_targets.py CROPS DATA --out CROPS.teacher.csv
    tla-edge train CROPS --teacher-targets CROPS.teacher.csv --distill 0.3 ...

For each source image named in CROPS/manifest.csv (``tla-edge prepare``'s
output), the teacher (``tla_edge.train.teacher``: both MiniFASNet members
fused as upstream does) judges the face box ``prepare`` found, through the
teacher's own crop rule, on the source image read from DATA (the dataset
folder ``prepare`` read; a dataset given as ``manifest.csv`` means its
folder). One row per source image (``tla_edge.train.distill``'s format), so
one file serves every scale and crop rule of the folder. An unreadable source
image is skipped and counted: training then names the crops without a target.

The teacher's files come from ``--teacher-dir``, else ``$TLA_EDGE_TEACHER_DIR``,
else ``../shared/weights/teachers/silent-face``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from common import REPO, run_main, teacher_dir

sys.path.insert(0, str(REPO))

from tla_edge import fileio  # noqa: E402
from tla_edge.data import crops as crops_lib  # noqa: E402
from tla_edge.data import datasets  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.progress import Progress  # noqa: E402
from tla_edge.train import distill  # noqa: E402
from tla_edge.train import teacher as tch  # noqa: E402

TEACHER_NAME = "silent-face MiniFASNetV2@2.7 + MiniFASNetV1SE@4.0"


def source_boxes(crops_dir: Path) -> dict[str, tuple[float, float, float, float]]:
    """``{source: box}`` of a crops folder, the first row's box per source image (every scale shares it)."""
    out: dict[str, tuple[float, float, float, float]] = {}
    for r in crops_lib.read_manifest(crops_dir):
        if r["source"] not in out:
            out[r["source"]] = tuple(float(r[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
    return out


def compute(crops_dir: Path, data: Path, teacher: tch.SilentFaceTeacher) -> tuple[list, list[str]]:
    """``([(source, p_live, teacher)], unreadable sources)``."""
    root = data.parent if data.is_file() else data
    boxes = source_boxes(crops_dir)
    rows, unreadable = [], []
    with Progress(len(boxes), "teacher", unit="img") as bar:
        for source, box in boxes.items():
            bar.update()
            rgb = datasets.read_image_rgb(root / source)
            if rgb is None:
                unreadable.append(source)
                continue
            p = tch.live_probability(teacher.score_faces(rgb, [box]))[0]
            rows.append((source, float(p), TEACHER_NAME))
    return rows, unreadable


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("crops", type=Path, help="folder written by tla-edge prepare")
    p.add_argument("data", type=Path, help="the dataset folder (or its manifest.csv) that prepare read")
    p.add_argument("--out", type=Path, required=True, help="targets CSV to write")
    p.add_argument("--teacher-dir", type=Path, default=None, help="folder of the two ONNX files")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    args = p.parse_args(argv)
    if not crops_lib.is_crops_dir(args.crops):
        raise UserError(f"'{args.crops}' is not a crops folder; expected a folder written by tla-edge prepare")
    if not args.data.exists():
        raise UserError(f"dataset '{args.data}' not found; expected the folder (or manifest.csv) prepare read")
    fileio.check_writable(args.out, args.force)
    folder = args.teacher_dir or teacher_dir()
    with tch.SilentFaceTeacher(folder, num_threads=args.threads) as teacher:
        rows, unreadable = compute(args.crops, args.data, teacher)
    distill.write_targets(args.out, rows, force=args.force)
    print(f"wrote {args.out}: {len(rows)} source images" + (f", {len(unreadable)} unreadable (skipped, e.g. "
                                                              f"{unreadable[0]!r})" if unreadable else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "teacher_targets.py", (FileNotFoundError,)))
