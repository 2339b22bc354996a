#!/usr/bin/env python
"""One crops folder over several (e.g. NUAA + MSU-MFSD), for one training run: links and a manifest, no copies.

    python scripts/combine_crops.py build/crops/nuaa build/crops/msu --out build/crops/both

``OUT/<i>_<name>`` links to each input folder and ``OUT/manifest.csv`` lists
every row of every input with its crop path through that link; the other
columns (source, label, species, subject, session, split, scale, box, crop
rule) are kept as they are, so ``tla-edge train``, ``evaluate`` and
``convert`` read the result like any crops folder. ``--split NAME:SPLIT``
keeps only one split of an input (``msu:train``).

Inputs may be one dataset at several scales (they share source images) or
several datasets. Refused, in one line: an input that is not a crops folder,
two datasets sharing a subject name (their people would merge), one crop
(source image, scale, crop rule) in two inputs, and an existing OUT without
``--force``. Subjects and sources are not renamed, so teacher targets and
validation subjects written for the inputs keep working.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path
from typing import Sequence

from common import REPO, run_main

sys.path.insert(0, str(REPO))

from tla_edge import fileio  # noqa: E402
from tla_edge.data import crops as crops_lib  # noqa: E402
from tla_edge.data import datasets  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402


def combined_rows(inputs: Sequence[Path], splits: dict[str, str]) -> list[dict[str, str]]:
    """Every input's manifest rows, crop paths through ``<i>_<name>``; overlaps refused."""
    rows: list[dict[str, str]] = []
    per_input: list[tuple[Path, set[str], set[str]]] = []
    seen: dict[tuple[str, str, str], str] = {}
    for i, src in enumerate(inputs):
        if not crops_lib.is_crops_dir(src):
            raise UserError(f"'{src}' is not a crops folder; expected a folder written by tla-edge prepare")
        keep = splits.get(src.name)
        kept = [r for r in crops_lib.read_manifest(src) if keep is None or r.get("split", "") == keep]
        for r in kept:
            key = (r["source"], r["scale"], crops_lib.row_rule(r))
            if key in seen:
                raise UserError(f"source image {r['source']!r} at scale {r['scale']} ({key[2]}) is in both "
                                f"'{seen[key]}' and '{src}'; expected each crop in one input")
            seen[key] = str(src)
            rows.append(dict(r, crop=f"{i}_{src.name}/{r['crop']}"))
        per_input.append((src, {r["source"] for r in kept}, {r.get("subject", "") for r in kept}))
    for a, (pa, sources_a, subjects_a) in enumerate(per_input):
        for pb, sources_b, subjects_b in per_input[a + 1:]:
            shared = sorted(subjects_a & subjects_b)
            if shared and not sources_a & sources_b:  # other scales of one dataset share their source images
                raise UserError(f"subject {shared[0]!r} is in both '{pa}' and '{pb}', which share no source image; "
                                "expected separate people per dataset (rename one dataset's subjects)")
    return rows


def manifest_text(rows: Sequence[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(crops_lib.MANIFEST_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def combine(inputs: Sequence[Path], out: Path, splits: dict[str, str], force: bool = False) -> int:
    """Writes OUT (links + manifest); returns the number of rows."""
    names = [p.name for p in inputs]
    unknown = sorted(set(splits) - set(names))
    if unknown:
        raise UserError(f"--split names {unknown}, not an input folder name; expected one of {names}")
    rows = combined_rows(inputs, splits)
    if not rows:
        raise UserError("the inputs hold no crops after --split; expected at least one row")
    if out.exists() and not force:
        raise UserError(f"output '{out}' already exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(inputs):
        link = out / f"{i}_{src.name}"
        if link.is_symlink() or link.exists():
            if not link.is_symlink():
                raise UserError(f"'{link}' exists and is not a link; expected an empty or combined output folder")
            link.unlink()
        link.symlink_to(os.path.relpath(src.resolve(), out.resolve()), target_is_directory=True)
    fileio.write_text_atomic(out / datasets.MANIFEST_NAME, manifest_text(rows))
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", type=Path, nargs="+", help="crops folders written by tla-edge prepare")
    p.add_argument("--out", type=Path, required=True, help="the combined folder")
    p.add_argument("--split", action="append", default=[], metavar="NAME:SPLIT",
                   help="keep only rows of SPLIT from the input folder named NAME (repeatable)")
    p.add_argument("--force", action="store_true", help="rewrite an existing --out")
    args = p.parse_args(argv)
    splits = {}
    for s in args.split:
        name, sep, split = s.partition(":")
        if not sep or not name or not split:
            raise UserError(f"--split {s!r} is not NAME:SPLIT; expected e.g. msu:train")
        splits[name] = split
    n = combine(args.inputs, args.out, splits, args.force)
    print(f"wrote {args.out}: {n} crops from {len(args.inputs)} folders")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "combine_crops.py"))
