#!/usr/bin/env python
"""The Silent-Face teacher as a comparison row: NUAA training frames and the MSU-MFSD crops.

Every image is treated as a frame: the project's face detector (bundled
BlazeFace short range, LiteRT backend, image mode, largest face, default
min score) finds the face; the teacher (``tla_edge.train.teacher``: both
MiniFASNet members, fused as upstream does) judges it through **its own crop
rule** (scale capped by the frame, box scaled about its centre keeping its
aspect, shifted inside the frame, never padded, stretched to 80x80, BGR 0-255).
No tla-edge face checks (too small, cut off, rolled) are applied: every
detected face is scored; frames without a face are counted, not scored.

On MSU-MFSD two more rows answer the issue's "0.71 when fed tla-edge's padded
crop": the teacher fed tla-edge's padded square crop
(``tla_edge.runtime.preprocess.crop_face``, side 2.7x the box's longer side,
padded with black outside the frame, resized to 80x80), (a) the one 2.7x crop
given to both members, (b) each member given a padded square at its own scale
(2.7 and 4.0).

Reported per dataset and row: AUC, EER; APCER (worst species), per-species
APCER, BPCER, ACER under upstream's decision rule (live iff the real class,
index 1, wins the three-way argmax of the fused probabilities), at
P(real) >= 0.5, and at the EER threshold (chosen on the same data: an oracle,
not a test figure); no-face counts. The teacher's training data is undisclosed:
overlap with NUAA or MSU-MFSD is unknown.

    python scripts/teacher_eval.py                 # ../shared/data/{nuaa-train,msu-mfsd}, ../shared/weights
    python scripts/teacher_eval.py --limit 200 --out quick_check.json

Writes ``benchmarks/results/lodo/teacher_silent_face.json`` (``--force`` to replace).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common import REPO, commit, data_dir, run_main, teacher_dir

sys.path.insert(0, str(REPO))

from tla_edge import fileio, metrics  # noqa: E402
from tla_edge.data import datasets  # noqa: E402
from tla_edge.data.scoring import prefetch  # noqa: E402
from tla_edge.host import host_info, load_average, package_version  # noqa: E402
from tla_edge.progress import Progress  # noqa: E402
from tla_edge.runtime import preprocess  # noqa: E402
from tla_edge.runtime.faces import DEFAULT_MIN_SCORE, FaceDetector  # noqa: E402
from tla_edge.runtime.metadata import portable_path  # noqa: E402
from tla_edge.train import teacher as tch  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "lodo" / "teacher_silent_face.json"
PADDED_SCALE = 2.7
ROWS = {
    "own_crop": "Silent-Face's own crop rule (2.7x and 4.0x, shifted inside the frame, never padded, "
                "stretched to 80x80)",
    "padded_2.7": "tla-edge's padded square crop (crop_face, 2.7x the box's longer side, black outside the frame, "
                  "80x80), the same crop fed to both members",
    "padded_own_scales": "tla-edge's padded square crop at each member's own scale (2.7x to MiniFASNetV2, "
                         "4.0x to MiniFASNetV1SE), 80x80",
}
UPSTREAM_RULE = ("live iff the real class (index 1) has the largest fused probability (three-way argmax of "
                 "(softmax(V2 @ 2.7) + softmax(V1SE @ 4.0)) / 2), as upstream test.py decides")
ORACLE_NOTE = "threshold at the EER of these same frames: chosen on the test data itself (an oracle), not a test figure"


def padded_inputs(rgb: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """tla-edge's padded square crops of one face, as teacher inputs ``(1, 3, 80, 80)``: at 2.7x and at 4.0x."""
    out = []
    for scale in (PADDED_SCALE, tch.MODELS[1].scale):
        crop = preprocess.crop_face(rgb, box, scale, tch.INPUT_SIZE)  # RGB, padded
        out.append(tch.to_input(crop[..., ::-1]))  # -> BGR, once
    return out[0], out[1]


def judge_frame(teacher: tch.SilentFaceTeacher, rgb: np.ndarray, box: Any, padded: bool) -> dict[str, Any]:
    """Fused probabilities of one face for every row (one ONNX call per member), and its crop facts."""
    own = tch.teacher_inputs(rgb, [box])
    batches = [list(own[0]), list(own[1])]
    if padded:
        p27, p40 = padded_inputs(rgb, box)
        batches[0] += [p27[0], p27[0]]  # padded_2.7, padded_own_scales (V2 at 2.7)
        batches[1] += [p27[0], p40[0]]  # padded_2.7, padded_own_scales (V1SE at 4.0)
    fused = teacher.predict([np.stack(b) for b in batches])
    rows = ["own_crop"] + (["padded_2.7", "padded_own_scales"] if padded else [])
    crops = [tch.crop_box(box, m.scale, rgb.shape) for m in tch.MODELS]
    return {"fused": dict(zip(rows, fused)),
            "capped": [c.scale < m.scale for c, m in zip(crops, tch.MODELS)],
            "shifted": [c.shifted for c in crops]}


def run_dataset(records: Sequence[datasets.Record], detector: FaceDetector, teacher: tch.SilentFaceTeacher,
                padded: bool, desc: str) -> dict[str, Any]:
    """Every record through the detector and the teacher: per-frame arrays of the scored faces, and the rest counted."""
    kept: list[datasets.Record] = []
    fused: dict[str, list[np.ndarray]] = {}
    capped, shifted, no_face, unreadable = [], [], [], []
    with Progress(len(records), desc, unit="img") as bar:
        for rec, rgb in prefetch(lambda r: datasets.read_image_rgb(r.path), records):
            bar.update()
            if rgb is None:
                unreadable.append(rec)
                continue
            faces = detector.detect(rgb)
            if not faces:
                no_face.append(rec)
                continue
            out = judge_frame(teacher, rgb, faces[0], padded)
            kept.append(rec)
            for row, p in out["fused"].items():
                fused.setdefault(row, []).append(p)
            capped.append(out["capped"])
            shifted.append(out["shifted"])
    return {"records": kept, "fused": {k: np.stack(v) for k, v in fused.items()},
            "capped": np.array(capped, bool).reshape(-1, 2), "shifted": np.array(shifted, bool).reshape(-1, 2),
            "no_face": no_face, "unreadable": unreadable}


def rates(result: dict[str, Any]) -> dict[str, Any]:
    """The threshold figures kept in the JSON."""
    return {k: result[k] for k in ("threshold", "apcer", "apcer_per_species", "bpcer", "acer", "accuracy",
                                   "confusion_matrix")}


def row_metrics(fused: np.ndarray, labels: np.ndarray, species: Sequence[str]) -> dict[str, Any]:
    """AUC, EER and the three decision rules of one row."""
    s = tch.live_probability(fused)
    if labels.min() == labels.max():
        return {"n_scored": int(s.size), "note": "one class only: no AUC or EER"}
    m = metrics.compute_metrics(s, labels, species, threshold=0.5)
    up = tch.upstream_is_live(fused)
    upstream = metrics.error_rates(up.astype(float), labels, species, threshold=0.5)
    upstream["threshold"] = None
    oracle = metrics.error_rates(s, labels, species, threshold=m["eer_threshold"])
    return {
        "n_scored": int(s.size), "n_real": m["n_real"], "n_attack": m["n_attack"],
        "auc": m["auc"], "eer": m["eer"], "eer_threshold": m["eer_threshold"],
        "upstream_rule": {"rule": UPSTREAM_RULE, **rates(upstream)},
        "p_real_at_0.5": {"rule": "live iff fused P(real) >= 0.5", **rates(m)},
        "eer_threshold_oracle": {"note": ORACLE_NOTE, **rates(oracle)},
        "upstream_vs_p_real_0.5_disagreements": int((up != (s >= 0.5)).sum()),
        "bpcer_at_apcer": m["bpcer_at_apcer"],
    }


def group_metrics(fused: np.ndarray, labels: np.ndarray, species: list[str], keys: list[str]) -> dict[str, Any]:
    """AUC, EER and upstream-rule rates per group (session = camera, or split)."""
    out = {}
    for key in sorted(set(keys)):
        mask = np.array([k == key for k in keys])
        r = row_metrics(fused[mask], labels[mask], [s for s, m in zip(species, mask) if m])
        out[key or "(none)"] = {k: r[k] for k in ("n_scored", "n_real", "n_attack", "auc", "eer", "upstream_rule")
                                if k in r} if "auc" in r else r
    return out


def summarise(name: str, path: Path, records: Sequence[datasets.Record], run: dict[str, Any]) -> dict[str, Any]:
    """One dataset's entry of the JSON."""
    kept = run["records"]
    labels = np.array([1 if r.label == "real" else 0 for r in kept])
    species = [r.species for r in kept]
    count = lambda recs, label: sum(r.label == label for r in recs)  # noqa: E731
    rows = {}
    for row, fused in run["fused"].items():
        rows[row] = {"crop": ROWS[row], **row_metrics(fused, labels, species)}
        if row == "own_crop":
            rows[row]["by_session"] = group_metrics(fused, labels, species, [r.session for r in kept])
            rows[row]["by_split"] = group_metrics(fused, labels, species, [r.split for r in kept])
    return {
        "dataset": name, "path": portable_path(path) if path.is_dir() else f"{portable_path(path.parent)}/{path.name}",
        "frames": len(records),
        "frames_real": count(records, "real"), "frames_attack": count(records, "attack"),
        "species": sorted({r.species for r in records if r.label == "attack"}),
        "no_face": {"real": count(run["no_face"], "real"), "attack": count(run["no_face"], "attack"),
                    "examples": [portable_path(r.path, path) for r in run["no_face"][:10]]},
        "unreadable": len(run["unreadable"]),
        "crop_facts": {m.file: {"scale_capped_by_frame": int(run["capped"][:, i].sum()),
                                "shifted_at_a_border": int(run["shifted"][:, i].sum())}
                       for i, m in enumerate(tch.MODELS)},
        "rows": rows,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nuaa", type=Path, default=data_dir("nuaa-train"), help="NUAA training sessions (raw frames)")
    p.add_argument("--msu", type=Path, default=data_dir("msu-mfsd") / "manifest.csv", help="MSU-MFSD manifest")
    p.add_argument("--teacher-dir", type=Path, default=None,
                   help="folder of the two ONNX files (default: $TLA_EDGE_TEACHER_DIR, else ../shared/weights/...)")
    p.add_argument("--limit", type=int, default=None, help="evenly spread frames per dataset (a quick look)")
    p.add_argument("--threads", type=int, default=1, help="detector and onnxruntime threads")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = fileio.check_writable(args.out, args.force)
    folder = args.teacher_dir or teacher_dir()
    report: dict[str, Any] = {
        "format": "tla-edge-teacher-eval/1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(), "host": host_info("onnxruntime"),
        "detector_runtime": {"name": "ai-edge-litert", "version": package_version("ai-edge-litert")},
        "teacher": {"models": [m._asdict() for m in tch.MODELS], "folder": portable_path(folder),
                    "source": tch.SOURCE, "fusion": "(softmax(V2 on its 2.7 crop) + softmax(V1SE on its 4.0 crop)) / 2",
                    "score": "fused P(real) = class index 1"},
        "detector": {"model": "short", "backend": "litert", "mode": "image", "policy": "largest",
                     "min_score": DEFAULT_MIN_SCORE, "face_checks": "none (every detected face is scored)"},
        "limit": args.limit, "datasets": {},
    }
    with FaceDetector("short", mode="image", policy="largest", backend="litert", num_threads=args.threads) as det, \
            tch.SilentFaceTeacher(folder, num_threads=args.threads) as teacher:
        for name, path, padded in (("nuaa-train", args.nuaa, False), ("msu-mfsd", args.msu, True)):
            records = datasets.load_dataset(path)
            records = [records[i] for i in datasets.evenly_spread(len(records), args.limit)]
            run = run_dataset(records, det, teacher, padded, name)
            report["datasets"][name] = summarise(name, path, records, run)
    report["host"]["load_avg_end"] = load_average()
    fileio.write_json_atomic(out, report)
    for name, d in report["datasets"].items():
        for row, r in d["rows"].items():
            up = r.get("upstream_rule", {})
            print(f"{name:10s} {row:18s} n={r['n_scored']:5d} AUC {r.get('auc', float('nan')):.4f} "
                  f"EER {r.get('eer', float('nan')):.4f} upstream APCER {up.get('apcer')} BPCER {up.get('bpcer')}")
    print(f"wrote {portable_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "teacher_eval.py"))
