#!/usr/bin/env python
"""The leave-one-dataset-out protocol: train on one dataset (or camera), test on another.

Beside the cross-session protocol (``scripts/protocol.py``, whose scoring and
figures this reuses), for one training recipe, each direction and each seed:

1. ``tla-edge train`` on the training side only; a few **subjects of the
   training data** are held out as **validation**: they choose the kept epoch
   (early stopping) and the threshold (the validation EER threshold written to
   ``metadata.json``, the threshold a model ships with).
2. The trained Keras model scores every crop of the test side, which chose
   nothing: AUC and EER (no threshold), and APCER (per species), BPCER and
   ACER **at the validation threshold** -- the shipped threshold: does it
   travel to a dataset or camera it never saw?

Directions (``--directions``):

``nuaa-msu``        train NUAA sessions 01+02 (validation: NUAA subjects 0008, 0009);
                    test every MSU-MFSD crop (35 other people, 2 other cameras, print + replay).
``msu-nuaa``        train MSU-MFSD, both cameras, all 35 people but the validation ones
                    (validation: ``MSU_VAL``, 4 people of the database's ``train`` split);
                    test every NUAA crop (other people, other webcam; print only).
``laptop-android``  train the MSU-MFSD laptop camera (validation: ``MSU_VAL`` on that camera);
``android-laptop``  test the other camera's crops, all 35 people. **The test people overlap
                    with the training people** (31 of 35 were trained on, on the other
                    camera): ``test_unseen_people`` is the part of the test whose people
                    were in no training crop (the 4 validation people), ``test_seen_people``
                    the rest.
``both-msutest``    NOT leave-one-dataset-out: train NUAA 01+02 + MSU-MFSD ``train`` split
                    (both cameras, replay as a species); validation NUAA 0008, 0009 + ``MSU_VAL``;
                    test the MSU-MFSD ``test`` split (20 people never trained on, cameras seen).

The combined crops folder of ``both-msutest`` is written into ``--work``
(a manifest over links to the two crops folders; no image is copied).

    TLA_EDGE_WEIGHTS_DIR=../shared/weights/imagenet python scripts/lodo.py --name a0.35_s2.7_pad \\
        --nuaa-crops runs/crops/nuaa --msu-crops runs/crops/msu --work runs/lodo --seeds 0 \\
        -- --alpha 0.35 --scale 2.7 --crop-rule pad --weights imagenet --epochs 10 --fine-tune-epochs 3

A fused set of two seeds of one recipe: run it once as recipe A, once as recipe B with
``--seed-offset 2`` (run SEED of B trains with seed SEED + 2), then ``--fuse A,B``.

Arguments after ``--`` go to ``tla-edge train`` unchanged. Finished runs in
``--work/NAME`` are reused (a run is finished when its ``metadata.json`` and
``test_scores.csv`` exist), so an interrupted protocol resumes. The result,
``benchmarks/results/lodo/NAME.json`` (``NAME_both.json`` for ``both-msutest``,
run on its own), is rewritten after every run with
every run found for the chosen directions, whatever the seed, and for every other
direction of the same file with a finished run (so running a recipe in a new
direction never drops its earlier runs); ``complete`` says whether every chosen
direction and seed is there. ``--table`` prints the Markdown table of every JSON
in ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import combine_crops  # noqa: E402
import common  # noqa: E402
import protocol  # noqa: E402  (the cross-session protocol: scoring and figures reused)

from tla_edge import fileio, host, metrics  # noqa: E402
from tla_edge.data import crops as crops_lib  # noqa: E402
from tla_edge.data import datasets  # noqa: E402
from tla_edge.runtime.metadata import portable_path  # noqa: E402

NUAA_VAL = "0008,0009"
MSU_VAL = "msu002,msu012,msu034,msu054"
"""Validation people of MSU-MFSD: 4 of its 15 ``train``-split people, fixed, chosen among the 9 with
bona fide crops on both cameras (msu003, 005-009 have none on the Android phone)."""

DIRECTIONS: dict[str, dict] = {
    "nuaa-msu": {"train": "nuaa", "sessions": "01,02", "val": NUAA_VAL, "test": "msu", "test_sessions": None,
                 "overlap": "none: other dataset, people and cameras"},
    "msu-nuaa": {"train": "msu", "sessions": None, "val": MSU_VAL, "test": "nuaa", "test_sessions": None,
                 "overlap": "none: other dataset, people and camera"},
    "laptop-android": {"train": "msu", "sessions": "laptop", "val": MSU_VAL, "test": "msu",
                       "test_sessions": "android",
                       "overlap": "people overlap: 31 of 35 test people were trained on (other camera); "
                                  "test_unseen_people = the 4 validation people"},
    "android-laptop": {"train": "msu", "sessions": "android", "val": MSU_VAL, "test": "msu",
                       "test_sessions": "laptop",
                       "overlap": "people overlap: 31 of 35 test people were trained on (other camera); "
                                  "test_unseen_people = the 4 validation people"},
    "both-msutest": {"train": "both", "sessions": None, "val": f"{NUAA_VAL},{MSU_VAL}", "test": "msu",
                     "test_sessions": None, "test_split": "test",
                     "overlap": "NOT leave-one-dataset-out: test people (MSU test split) unseen, "
                                "but their cameras, attack species and dataset were trained on"},
}

TRAIN = protocol.TRAIN


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="recipe name (result file and run folder)")
    p.add_argument("--nuaa-crops", type=Path, help="NUAA crops (tla-edge prepare of nuaa-train)")
    p.add_argument("--msu-crops", type=Path, help="MSU-MFSD crops (tla-edge prepare of msu-mfsd/manifest.csv)")
    p.add_argument("--work", type=Path, default=Path("runs/lodo"), help="folder of the runs' model folders")
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/lodo"), help="result folder")
    p.add_argument("--directions", default="nuaa-msu,msu-nuaa,laptop-android,android-laptop",
                   help=f"comma-separated, of {', '.join(DIRECTIONS)}")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--seed-offset", type=int, default=0, metavar="K",
                   help="run SEED trains with seed SEED + K (its folder and JSON still say SEED): a second member "
                        "of the same recipe for a fused set of two seeds (default: 0)")
    p.add_argument("--note", default="", help="free text recorded in the JSON")
    p.add_argument("--summarise-only", action="store_true",
                   help="train and score nothing: rewrite the JSON from the finished runs in --work")
    p.add_argument("--table", action="store_true", help="print the Markdown table of every JSON in --out-dir")
    p.add_argument("--fuse", default=None, metavar="A,B",
                   help="train nothing: NAME is the fused set of finished recipes A and B (mean score per source "
                        "image, threshold = EER of the fused validation scores), for every run both have")
    p.add_argument("--fuse-weights", default=None, metavar="WA,WB",
                   help="with --fuse: the members' weights in the fused score (non-negative, normalised to sum "
                        "1; default: equal, the mean)")
    args = p.parse_args(argv)
    args.weights = fuse_weights(p, args.fuse, args.fuse_weights)
    if not args.table:
        missing = [f for f in ("name", "nuaa_crops", "msu_crops") if getattr(args, f) is None]
        if missing:
            p.error("the following arguments are required: " + ", ".join("--" + m.replace("_", "-") for m in missing))
        bad = [d for d in args.directions.split(",") if d not in DIRECTIONS]
        if bad:
            p.error(f"unknown directions {bad}; choose from {', '.join(DIRECTIONS)}")
    return args, train_args


def fuse_weights(p: argparse.ArgumentParser, fuse: str | None, weights: str | None) -> list[float] | None:
    """``--fuse-weights`` as normalised floats, one per ``--fuse`` member; None for the plain mean."""
    if weights is None:
        return None
    if not fuse:
        p.error("--fuse-weights needs --fuse A,B")
    try:
        values = [float(w) for w in weights.split(",")]
    except ValueError:
        p.error(f"--fuse-weights {weights!r} is not comma-separated numbers")
    if len(values) != len(fuse.split(",")) or not all(np.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        p.error(f"--fuse-weights {weights!r}: expected {len(fuse.split(','))} non-negative numbers, not all 0")
    return [v / sum(values) for v in values]


# --- data -----------------------------------------------------------------------

def build_both(nuaa: Path, msu: Path, out: Path) -> Path:
    """A crops folder of NUAA (all) + MSU-MFSD ``train`` split: a manifest over links, no copies."""
    combine_crops.combine([nuaa, msu], out, {msu.name: "train"}, force=True)
    return out


def crops_of(args: argparse.Namespace, which: str) -> Path:
    if which == "nuaa":
        return args.nuaa_crops
    if which == "msu":
        return args.msu_crops
    return build_both(args.nuaa_crops, args.msu_crops, args.work / args.name / "crops_both")


def annotations(crops_dir: Path) -> dict[str, dict[str, str]]:
    """source -> manifest row (species, split, subject, session) of a crops folder."""
    return {r["source"]: r for r in crops_lib.read_manifest(crops_dir)}


# --- one run --------------------------------------------------------------------

def run_dir(args: argparse.Namespace, direction: str, seed: int) -> Path:
    return args.work / args.name / f"{direction}_seed{seed}"


def train_command(args: argparse.Namespace, train_args: list[str], direction: str, seed: int) -> list[str]:
    d = DIRECTIONS[direction]
    cmd = ["tla-edge", "train", str(crops_of(args, d["train"])), "--out", str(run_dir(args, direction, seed)),
           "--val-subjects", d["val"], "--seed", str(seed + args.seed_offset), "--force"]
    if d["sessions"]:
        cmd += ["--sessions", d["sessions"]]
    return cmd + train_args


def run_one(args: argparse.Namespace, train_args: list[str], direction: str, seed: int) -> dict:
    d = DIRECTIONS[direction]
    model_dir = run_dir(args, direction, seed)
    if not (model_dir / "metadata.json").is_file():
        cmd = train_command(args, train_args, direction, seed)
        print(f"[lodo] {args.name}: {direction}, seed {seed}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run([*TRAIN, *cmd[2:]], check=True)
    if not (model_dir / "test_scores.csv").is_file():
        protocol.score_test(model_dir, crops_of(args, d["test"]), d["test_sessions"], protocol._scale_of(train_args))
    return summarise(args, direction, seed, model_dir)


def species_figures(scores: np.ndarray, labels: np.ndarray, species: list[str], threshold: float) -> dict:
    """protocol.figures plus APCER per attack species; APCER and ACER use the worst species (ISO/IEC 30107-3)."""
    out = protocol.figures(scores, labels, threshold)  # its APCER pools every attack
    out["apcer_pooled"] = out["apcer"]
    out["apcer_per_species"] = metrics.apcer_per_species(scores, labels, species, threshold)
    out["apcer"] = max(out["apcer_per_species"].values())  # ISO/IEC 30107-3: the worst species
    out["acer"] = (out["apcer"] + out["bpcer"]) / 2.0
    out["n_per_species"] = {s: int(sum(1 for sp, y in zip(species, labels) if y == 0 and sp == s))
                            for s in sorted({sp for sp, y in zip(species, labels) if y == 0})}
    return out


def member_dirs(args: argparse.Namespace, direction: str, seed: int) -> list[Path]:
    """The run folders of one run: its own, or with ``--fuse`` one per member recipe."""
    names = args.fuse.split(",") if args.fuse else [args.name]
    return [args.work / n / f"{direction}_seed{seed}" for n in names]


def fused_scores(tables: list[dict], weights: list[float] | None = None) -> dict[str, tuple[int, float, str]]:
    """The mean (or ``weights``-weighted mean) score per source image over the members (sources all of them scored)."""
    keys = set(tables[0]).intersection(*tables[1:])
    if weights is None:
        return {k: (tables[0][k][0], float(np.mean([t[k][1] for t in tables])), tables[0][k][2]) for k in keys}
    return {k: (tables[0][k][0], float(sum(w * t[k][1] for w, t in zip(weights, tables))), tables[0][k][2])
            for k in keys}


def summarise(args: argparse.Namespace, direction: str, seed: int, model_dir: Path) -> dict:
    d = DIRECTIONS[direction]
    dirs = member_dirs(args, direction, seed)
    meta = json.loads((dirs[0] / "metadata.json").read_text())
    train_ann = annotations(crops_of(args, d["train"]))
    test_ann = annotations(crops_of(args, d["test"]))
    weights = getattr(args, "weights", None)
    val = fused_scores([protocol.read_scores(m / "validation_scores.csv") for m in dirs], weights)
    test = fused_scores([protocol.read_scores(m / "test_scores.csv") for m in dirs], weights)
    if d.get("test_split"):
        test = {k: v for k, v in test.items() if test_ann[k].get("split") == d["test_split"]}

    def part(table: dict, keys: list[str], ann: dict, threshold: float) -> dict:
        return species_figures(np.array([table[k][1] for k in keys]), np.array([table[k][0] for k in keys]),
                               [ann[k].get("species") or "attack" for k in keys], threshold)

    vk = sorted(val)
    y_val, p_val = np.array([val[k][0] for k in vk]), np.array([val[k][1] for k in vk])
    recomputed = float(metrics.eer(p_val, y_val)[1])
    # train's validation EER threshold: what the model ships with; a fused set's is its fused validation EER
    shipped = recomputed if args.fuse else float(meta["threshold"])
    thr_apcer = float(metrics.threshold_at_apcer(p_val, y_val, [train_ann[k].get("species") or "attack" for k in vk],
                                                 0.05))
    tk = sorted(test)
    held = [s.strip() for s in d["val"].split(",")]
    trained_people = {r.get("subject", "") for src, r in train_ann.items()
                      if not any(datasets.same_id(r.get("subject", ""), h) for h in held)}
    unseen = [k for k in tk if not any(datasets.same_id(test[k][2], t) for t in trained_people)]
    seen = [k for k in tk if k not in set(unseen)]
    out = {
        "direction": direction, "seed": seed,
        "train": d["train"] + (f" sessions {d['sessions']}" if d["sessions"] else ""),
        "validation_subjects": d["val"],
        "test": d["test"] + (f" session {d['test_sessions']}" if d["test_sessions"] else "")
        + (f" split {d['test_split']}" if d.get("test_split") else ""),
        "people_overlap": d["overlap"],
        "threshold_shipped": shipped,
        "threshold_val_eer_recomputed": recomputed,
        "validation_at_shipped": part(val, vk, train_ann, shipped),
        "test_at_shipped": part(test, tk, test_ann, shipped),
        "threshold_val_apcer_0.05": thr_apcer,
        "test_at_val_apcer_0.05": part(test, tk, test_ann, thr_apcer),
        "test_people": len({test[k][2] for k in tk}),
        "test_unseen_people_n": len({test[k][2] for k in unseen}),
        "model_dir": portable_path(model_dir) if not args.fuse else [portable_path(m) for m in dirs],
        "kept_epochs": {k: v.get("best_epoch") for k, v in meta["extra"]["phases"].items() if "best_epoch" in v},
        "train_wall_s": meta["extra"].get("wall_s_total"),
        "train_data": {k: meta["extra"].get("data", {}).get(k) for k in ("train", "val")}
        if isinstance(meta["extra"].get("data"), dict) else None,
    }
    if seen and unseen:
        for name, keys in (("test_unseen_people_at_shipped", unseen), ("test_seen_people_at_shipped", seen)):
            if len({test[k][0] for k in keys}) == 2:
                out[name] = part(test, keys, test_ann, shipped)
    return out


# --- the recipe's JSON ------------------------------------------------------------

def mean_spread(runs: list[dict], part: str) -> dict:
    rows = [r[part] for r in runs if part in r]
    if not rows:
        return {}
    out = {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows])),
               "n": len(rows)} for k in ("acer", "apcer", "bpcer", "eer", "auc")}
    for s in sorted({s for r in rows for s in r["apcer_per_species"]}):
        v = [r["apcer_per_species"][s] for r in rows if s in r["apcer_per_species"]]
        out[f"apcer_{s}"] = {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
    return out


def versions() -> dict:
    facts = host.host_info("ai-edge-litert")
    facts.pop("load_avg_start", None)
    facts["packages"] = host.package_versions(["tensorflow", "tensorflow-cpu", "keras", "tf-keras", "numpy",
                                               "mediapipe", "ai-edge-litert"])
    return facts


def result_suffix(directions: list[str]) -> str:
    """``""`` for leave-one-dataset-out directions, ``"_both"`` for the both-datasets direction, which is not
    leave-one-dataset-out and so has a file of its own."""
    both = [d == "both-msutest" for d in directions]
    if any(both) and not all(both):
        raise SystemExit("lodo.py: error: run both-msutest on its own (--directions both-msutest): its result "
                         "is not leave-one-dataset-out and goes to NAME_both.json")
    return "_both" if all(both) else ""


def kept_directions(args: argparse.Namespace, asked: list[str]) -> list[str]:
    """The directions a recipe's JSON holds: the ones asked now, then every other direction of the same file
    (leave-one-dataset-out, or both-msutest) with a finished run in --work, so that running a recipe in a new
    direction never drops the runs of another from its result."""
    suffix = result_suffix(asked)
    return asked + [d for d in DIRECTIONS
                    if result_suffix([d]) == suffix and d not in asked and finished_seeds(args, d)]


def finished_seeds(args: argparse.Namespace, direction: str) -> list[int]:
    """The seeds of the recipe's finished runs in this direction: every member's ``metadata.json`` and
    ``test_scores.csv`` are there."""
    seeds = []
    for d in (args.work / (args.fuse.split(",")[0] if args.fuse else args.name)).glob(f"{direction}_seed*"):
        seed = d.name.rsplit("_seed", 1)[1]
        if seed.isdigit() and all((m / "metadata.json").is_file() and (m / "test_scores.csv").is_file()
                                  for m in member_dirs(args, direction, int(seed))):
            seeds.append(int(seed))
    return sorted(seeds)


def write_result(args: argparse.Namespace, train_args: list[str], wanted: int, wall: float) -> Path:
    """Writes the recipe's JSON from every finished run of its kept directions (:func:`kept_directions`)."""
    directions = kept_directions(args, args.directions.split(","))
    runs = finished_runs(args, directions)
    out = args.out_dir / f"{args.name}{result_suffix(directions)}.json"
    result = {
        "recipe": args.name,
        "train_args": train_args,
        "train_command": {d: shlex.join(train_command(args, train_args, d, 0)).replace(
                          f"--seed {args.seed_offset}", "--seed SEED" + (f"+{k}" if (k := args.seed_offset) else ""))
                          for d in directions},
        "seed_offset": args.seed_offset,
        "lodo_command": shlex.join(["python", "scripts/lodo.py", "--name", args.name, "--nuaa-crops",
                                    portable_path(args.nuaa_crops), "--msu-crops", portable_path(args.msu_crops),
                                    "--work", portable_path(args.work), "--directions", args.directions,
                                    "--seeds", args.seeds,
                                    *(["--seed-offset", str(args.seed_offset)] if args.seed_offset else []),
                                    *(["--fuse", args.fuse] if args.fuse else []),
                                    *(["--fuse-weights", args.fuse_weights] if args.fuse_weights else []),
                                    "--", *train_args]),
        "protocol": ("validation = held-out subjects of the training data: they chose the kept epoch and the "
                     "threshold (validation EER, the threshold the model ships with); the test side chose "
                     "nothing. Figures are fractions (0.05 = 5 %). Scored with the trained Keras model on "
                     "prepared crops (not through the device pipeline)."),
        "directions": {d: DIRECTIONS[d] for d in directions},
        "data": {"nuaa": "../" + portable_path(common.data_dir("nuaa-train"), common.REPO.parent),
                 "msu": "../" + portable_path(common.data_dir("msu-mfsd"), common.REPO.parent),
                 "nuaa_crops": portable_path(args.nuaa_crops), "msu_crops": portable_path(args.msu_crops),
                 "nuaa_prepare": crops_lib.read_prepare_json(args.nuaa_crops).get("summary"),
                 "msu_prepare": crops_lib.read_prepare_json(args.msu_crops).get("summary")},
        "complete": len([r for r in runs if r["direction"] in args.directions.split(",")
                         and str(r["seed"]) in args.seeds.split(",")]) >= wanted,
        "directions_asked": args.directions,
        "seeds_asked": args.seeds,
        "runs": runs,
        "mean_by_direction": {
            d: {part: mean_spread([r for r in runs if r["direction"] == d], part)
                for part in ("validation_at_shipped", "test_at_shipped", "test_unseen_people_at_shipped")}
            for d in directions if any(r["direction"] == d for r in runs)},
        "commit": common.commit(),
        "host": versions(),
        "wall_s": round(wall, 1),
        "note": args.note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fileio.write_json_atomic(out, result)
    return out


# --- the table ----------------------------------------------------------------

def pct(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{100 * np.mean(xs):.1f}" + (f" ± {100 * np.std(xs):.1f}" if len(xs) > 1 else "")


def num(xs: list[float]) -> str:
    return f"{np.mean(xs):.3f}" + (f" ± {np.std(xs):.3f}" if len(xs) > 1 else "")


def table(out_dir: Path) -> str:
    head = ("| recipe | direction | seeds | val EER % | test AUC | test EER % | test APCER % print "
            "(shipped thr.) | test APCER % replay | test BPCER % (shipped thr.) | test ACER % | "
            "unseen-people test AUC / ACER % | shipped thr. |")
    lines = [head, "|" + "|".join([" --- "] * 12) + "|"]
    for f in sorted(out_dir.glob("*.json")):
        res = json.loads(f.read_text())
        if "directions" not in res or "runs" not in res:  # another script's result (e.g. a teacher's)
            continue
        for d in res["directions"]:
            rs = [r for r in res["runs"] if r["direction"] == d]
            if not rs:
                continue
            t = [r["test_at_shipped"] for r in rs]
            sp = lambda s: pct([x["apcer_per_species"].get(s) for x in t if s in x["apcer_per_species"]])  # noqa: E731
            un = [r["test_unseen_people_at_shipped"] for r in rs if "test_unseen_people_at_shipped" in r]
            unseen = (f"{num([x['auc'] for x in un])} / {pct([x['acer'] for x in un])}" if un
                      else "all test people unseen")
            lines.append(
                f"| {res['recipe']} | {d} | {','.join(str(r['seed']) for r in rs)} | "
                f"{pct([r['validation_at_shipped']['eer'] for r in rs])} | {num([x['auc'] for x in t])} | "
                f"{pct([x['eer'] for x in t])} | {sp('print')} | {sp('replay')} | {pct([x['bpcer'] for x in t])} | "
                f"{pct([x['acer'] for x in t])} | {unseen} | {num([r['threshold_shipped'] for r in rs])} |")
    return "\n".join(lines)


def finished_runs(args: argparse.Namespace, directions: list[str]) -> list[dict]:
    """Every finished run of the recipe in --work for these directions, whatever its seed (so that runs of
    one seed, made by another invocation, are never dropped from the JSON)."""
    found = sorted((seed, i, direction) for i, direction in enumerate(directions)
                   for seed in finished_seeds(args, direction))
    return [summarise(args, direction, seed, run_dir(args, direction, seed)) for seed, _, direction in found]


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    if args.table:
        print(table(args.out_dir))
        return 0
    t0 = time.perf_counter()
    directions = args.directions.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = None
    if args.fuse:
        args.summarise_only = True
        how = f"weights {args.fuse_weights}" if args.fuse_weights else "mean score"
        args.note = args.note or f"fused set of {args.fuse}: {how}, threshold at the fused validation EER"
    for seed in ([] if args.summarise_only else seeds):  # every direction of a seed before the next seed
        for direction in directions:
            r = run_one(args, train_args, direction, seed)
            t, v = r["test_at_shipped"], r["validation_at_shipped"]
            print(f"[lodo] {args.name} {direction} seed {seed}: val EER {v['eer']:.2%} | test AUC {t['auc']:.4f} "
                  f"EER {t['eer']:.2%}; at shipped thr. {r['threshold_shipped']:.3f}: APCER {t['apcer']:.2%} "
                  f"{ {k: round(x, 4) for k, x in t['apcer_per_species'].items()} } BPCER {t['bpcer']:.2%} "
                  f"ACER {t['acer']:.2%}", file=sys.stderr, flush=True)
            out = write_result(args, train_args, len(seeds) * len(directions), time.perf_counter() - t0)
    if args.summarise_only:
        out = write_result(args, train_args, len(seeds) * len(directions), time.perf_counter() - t0)
    print(f"{args.name} -> {out} (every finished run of the directions asked, and of every other recorded direction)")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main, "lodo.py"))
