#!/usr/bin/env python
"""Agreement of the two face-detector backends (MediaPipe Tasks vs BlazeFace through LiteRT).

On every frame of a dataset (NUAA's raw training frames by default) both
backends run the same bundled model in image mode, with every face kept
(policy ``all``), and the bundled device pipeline runs once per backend
(bundled int8 liveness model, image-mode detector, no smoothing, each frame
judged alone, as ``tla-edge evaluate --raw`` does). Recorded per model:

- the frames where each backend found a face, and whether they are the same;
- per frame where both found faces: the same number of faces, the IoU of the
  boxes matched by order (largest first), the largest keypoint distance in
  pixels, the score difference;
- the pipeline's decisions and raw scores, frame by frame.

The criteria (issue 10): the same frames found, IoU >= 0.98 on every frame
where both find a face, keypoints within 1 px, decisions identical.

    python scripts/detector_agreement.py                          # ../shared/data/nuaa-train
    python scripts/detector_agreement.py DATA --models short --limit 200 --out agreement.json

Writes ``benchmarks/results/detector_agreement.json`` (``--force`` to replace).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common import REPO, commit, data_dir

sys.path.insert(0, str(REPO))

from tla_edge import fileio  # noqa: E402

from tla_edge.data import datasets  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.host import package_version  # noqa: E402
from tla_edge.progress import Progress  # noqa: E402

MIN_IOU = 0.98
MAX_KEYPOINT_PX = 1.0
DEFAULT_OUT = REPO / "benchmarks" / "results" / "detector_agreement.json"
MAX_LISTED = 20


def compare_faces(a: Sequence[Any], b: Sequence[Any]) -> dict[str, Any]:
    """Compares two backends' faces on one frame (both lists largest first).

    Returns:
      ``count_a``, ``count_b``, and where both found faces: ``min_iou`` over the
      faces matched by order, ``max_keypoint_px``, ``max_score_diff`` and
      ``identical_boxes``.
    """
    out: dict[str, Any] = {"count_a": len(a), "count_b": len(b)}
    pairs = list(zip(a, b))
    if pairs:
        out["min_iou"] = min(fa.iou(fb) for fa, fb in pairs)
        out["max_keypoint_px"] = max(
            float(np.abs(np.asarray(fa.keypoints) - np.asarray(fb.keypoints)).max()) for fa, fb in pairs
        )
        out["max_score_diff"] = max(abs(fa.score - fb.score) for fa, fb in pairs)
        out["identical_boxes"] = all(tuple(fa[:4]) == tuple(fb[:4]) for fa, fb in pairs)
    return out


def _pipeline(detector: Any) -> Any:
    from tla_edge.runtime.pipeline import Pipeline

    kwargs: dict[str, Any] = {"smoothing": 1}
    if "live_frames" in inspect.signature(Pipeline).parameters:
        kwargs["live_frames"] = 1  # each frame judged alone
    return Pipeline(None, detector, **kwargs)


def measure(records: Sequence[Any], root: Path, model: str, show_progress: bool) -> dict[str, Any]:
    """Runs both backends and both pipelines on every record; returns the model's summary."""
    from tla_edge.runtime.faces import FaceDetector

    det = {b: FaceDetector(model, mode="image", policy="all", backend=b) for b in ("mediapipe", "litert")}
    pipe_det = {b: FaceDetector(model, mode="image", policy="largest", backend=b) for b in ("mediapipe", "litert")}
    pipes = {b: _pipeline(pipe_det[b]) for b in pipe_det}
    found = {"both": 0, "mediapipe_only": 0, "litert_only": 0, "neither": 0}
    ious, kp_err, score_err = [], [], []
    identical = count_differs = 0
    low_iou, far_keypoints, found_differs, decision_differs = [], [], [], []
    decisions: dict[str, dict[str, int]] = {"mediapipe": {}, "litert": {}}
    raw_score_diff = 0.0
    unreadable = []
    try:
        with Progress(len(records), model, unit="img", enabled=show_progress) as bar:
            for rec in records:
                bar.update()
                name = rec.path.relative_to(root).as_posix() if rec.path.is_relative_to(root) else rec.path.name
                rgb = datasets.read_image_rgb(rec.path)
                if rgb is None:
                    unreadable.append(name)
                    continue
                faces = {b: d.detect(rgb) for b, d in det.items()}
                c = compare_faces(faces["mediapipe"], faces["litert"])
                key = ("both" if c["count_a"] and c["count_b"] else "mediapipe_only" if c["count_a"]
                       else "litert_only" if c["count_b"] else "neither")
                found[key] += 1
                if key in ("mediapipe_only", "litert_only"):
                    found_differs.append(name)
                if key == "both":
                    ious.append(c["min_iou"])
                    kp_err.append(c["max_keypoint_px"])
                    score_err.append(c["max_score_diff"])
                    identical += c["identical_boxes"]
                    count_differs += c["count_a"] != c["count_b"]
                    if c["min_iou"] < MIN_IOU:
                        low_iou.append({"frame": name, "iou": round(c["min_iou"], 4)})
                    if c["max_keypoint_px"] > MAX_KEYPOINT_PX:
                        far_keypoints.append({"frame": name, "px": round(c["max_keypoint_px"], 3)})
                results = {b: p.process(rgb) for b, p in pipes.items()}
                for b, r in results.items():
                    decisions[b][r.decision] = decisions[b].get(r.decision, 0) + 1
                mp, lr = results["mediapipe"], results["litert"]
                if mp.decision != lr.decision:
                    decision_differs.append({"frame": name, "mediapipe": mp.decision, "litert": lr.decision})
                if mp.raw_score is not None and lr.raw_score is not None:
                    raw_score_diff = max(raw_score_diff, abs(mp.raw_score - lr.raw_score))
    finally:
        for p in pipes.values():
            p.close()
        for d in (*det.values(), *pipe_det.values()):
            d.close()
    n = len(records) - len(unreadable)
    return {
        "frames": n,
        "unreadable": unreadable,
        "found": found,
        "same_frames_found": not found_differs,
        "found_differs": found_differs[:MAX_LISTED],
        "both_found": found["both"],
        "same_face_count_frames": found["both"] - count_differs,
        "identical_box_frames": identical,
        "min_iou": round(min(ious), 6) if ious else None,
        "median_iou": round(float(np.median(ious)), 6) if ious else None,
        "frames_iou_below_min": len(low_iou),
        "iou_below_min": low_iou[:MAX_LISTED],
        "max_keypoint_px": round(max(kp_err), 4) if kp_err else None,
        "frames_keypoints_beyond_max": len(far_keypoints),
        "keypoints_beyond_max": far_keypoints[:MAX_LISTED],
        "max_score_diff": round(max(score_err), 6) if score_err else None,
        "pipeline": {
            "what": "bundled int8 liveness model, image-mode detector (policy largest), "
                    "no smoothing, each frame judged alone",
            "decisions_identical_frames": n - len(decision_differs),
            "decisions_identical": not decision_differs,
            "decision_differs": decision_differs[:MAX_LISTED],
            "decisions_mediapipe": dict(sorted(decisions["mediapipe"].items())),
            "decisions_litert": dict(sorted(decisions["litert"].items())),
            "max_raw_score_diff": round(raw_score_diff, 6),
        },
        "pass": bool(not found_differs and not low_iou and not far_keypoints and not decision_differs
                     and not count_differs),
    }


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, measures, writes the JSON; one line and exit 2 on a user mistake."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?", default=None,
                        help="dataset (any tla-edge layout); None: $TLA_EDGE_DATA/nuaa-train or "
                        "../shared/data/nuaa-train")
    parser.add_argument("--models", type=str, default="short,full", help="bundled detectors, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="first N frames only (None: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON to write")
    parser.add_argument("--force", action="store_true", help="replace --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models or any(m not in ("short", "full") for m in models):
            raise ValueError(f"--models {args.models!r} is not a list of short and full")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit {args.limit} is not >= 1")
        fileio.check_writable(args.out, args.force)
        data = args.data or data_dir()
        if not data.exists():
            raise FileNotFoundError(f"dataset '{data}' not found; pass its folder")
        records = list(datasets.load_dataset(data))
        records = records[: args.limit] if args.limit else records
        root = Path(data).resolve()
        records = [r._replace(path=Path(r.path).resolve()) for r in records]
        from tla_edge.runtime.interpreter import import_runtime

        runtime = import_runtime().name
        report: dict[str, Any] = {
            "what": "face detector backends on the same frames: MediaPipe Tasks FaceDetector vs the bundled "
                    "BlazeFace through LiteRT with MediaPipe's graph in NumPy (tla_edge/runtime/blazeface.py)",
            "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit(),
            "dataset": data.name,
            "frames_requested": len(records),
            "criteria": {"same_frames_found": True, "min_iou": MIN_IOU, "max_keypoint_px": MAX_KEYPOINT_PX,
                         "pipeline_decisions_identical": True},
            "host": {"machine": platform.machine(), "python": platform.python_version(),
                     "mediapipe": package_version("mediapipe"), "runtime": {"name": runtime, "version": package_version(runtime)},
                     "opencv": package_version("opencv-contrib-python") or package_version("opencv-python"),
                     "numpy": np.__version__},
            "models": {},
        }
        for model in models:
            report["models"][model] = measure(records, root, model, not args.quiet)
        report["pass"] = all(m["pass"] for m in report["models"].values())
        fileio.write_json_atomic(args.out, report)
    except (UserError, FileNotFoundError, ValueError) as err:
        print(f"detector_agreement: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for model, m in report["models"].items():
        p = m["pipeline"]
        print(f"{model}: {m['frames']} frames; found by both {m['both_found']}, same frames found "
              f"{m['same_frames_found']}; min IoU {m['min_iou']}; identical boxes {m['identical_box_frames']}; "
              f"max keypoint {m['max_keypoint_px']} px; decisions identical {p['decisions_identical_frames']}"
              f"/{m['frames']}; pass {m['pass']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
