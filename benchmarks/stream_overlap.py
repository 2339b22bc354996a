"""Does detecting the next frame while this one is judged pay? Frames per second and latency, both ways, one run.

    python benchmarks/stream_overlap.py --source frames/nuaa200 --json benchmarks/results/stream_overlap_x86_64.json

The frames are decoded once into memory (as ``tla-edge bench`` does). Then,
in alternating rounds on one Pipeline (the bundled pair unless ``--model``),
the same frames go through ``Pipeline.process`` one after another and through
``Pipeline.stream`` (:mod:`tla_edge.runtime.stream`: the next frame's
detection on a thread of its own), each frame copied fresh first as a decoder
would leave it. Per round: wall milliseconds per frame (the pace a video file
or a fast camera would get) and the median per-frame latency
(``timings["total"]``: detection start to decision). The decisions of both
ways must be the same frame for frame, or the script fails. The first round
of each way warms up and is not counted.

Exit codes: 0 done, 1 the two ways decided differently, 2 a user's mistake.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from common import run_main  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="folder of frames or a video file")
    parser.add_argument("--model", action="append", default=None, help="liveness .tflite (repeat: a fused set); "
                        "None: the bundled pair")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--frames", type=int, default=200, help="frames per round (default 200)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per way, the first not counted (default 6)")
    parser.add_argument("--json", required=True, help="output JSON")
    parser.add_argument("--force", action="store_true", help="replace --json if it exists")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rounds < 2 or args.threads < 1:
        parser.error(f"--frames {args.frames}, --rounds {args.rounds}, --threads {args.threads}: "
                     "expected frames >= 1, rounds >= 2, threads >= 1")
    return args


def one_round(pipe: Any, frames: list[Any], overlap: bool, t0_ms: int) -> tuple[float, float, list[str]]:
    """Wall ms per frame, median latency ms and the decisions of one pass over ``frames``."""
    from tla_edge.runtime.sources import Frame

    fresh = [Frame(i, f.rgb.copy(), t0_ms + 33 * i, f.name, 0.0) for i, f in enumerate(frames)]
    pipe.reset()
    start = time.perf_counter()
    results = [r for _, r in pipe.stream(fresh, overlap=overlap)]  # overlap=False: process() frame by frame
    wall = (time.perf_counter() - start) * 1e3 / len(fresh)
    return wall, statistics.median(r.timings["total"] for r in results), [r.decision for r in results]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tla_edge import host
    from tla_edge.fileio import check_writable, write_json_atomic
    from tla_edge.runtime.benchmark import read_frames
    from tla_edge.runtime.pipeline import Pipeline

    check_writable(args.json, args.force)
    frame_set = read_frames(args.source, args.frames)
    frames = [frame_set.frames[i % len(frame_set.frames)] for i in range(args.frames)]  # a short source repeats
    rounds: dict[str, list[dict[str, float]]] = {"process": [], "stream": []}
    decisions: dict[str, list[str]] = {}
    with Pipeline(args.model, num_threads=args.threads) as pipe:
        t0 = 0
        for r in range(args.rounds):
            for way in ("process", "stream"):
                wall, latency, decided = one_round(pipe, frames, way == "stream", t0)
                t0 += 33 * len(frames) + 1000
                if decisions.setdefault(way, decided) != decided:
                    raise AssertionError(f"{way}: decisions changed between rounds")
                if r:
                    rounds[way].append({"ms_per_frame": round(wall, 4), "latency_ms": round(latency, 4)})
        members, overlap_crops = pipe.members, pipe.overlap_crops
    same = decisions["process"] == decisions["stream"]
    summary = {
        way: {"ms_per_frame_median": round(statistics.median(x["ms_per_frame"] for x in rows), 4),
              "fps": round(1e3 / statistics.median(x["ms_per_frame"] for x in rows), 1),
              "latency_ms_median": round(statistics.median(x["latency_ms"] for x in rows), 4),
              "rounds": rows}
        for way, rows in rounds.items()
    }
    report = {
        "what": "process() frame by frame vs stream() with the next frame detected ahead: same frames, one run",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": frame_set.info, "frames_per_round": len(frames), "rounds_counted": args.rounds - 1,
        "threads": args.threads, "members": members, "overlap_crops": overlap_crops,
        "models": [str(m) for m in args.model] if args.model else "bundled pair",
        "same_decisions": same,
        "decisions": {d: decisions["stream"].count(d) for d in sorted(set(decisions["stream"]))},
        "speedup_fps": round(summary["process"]["ms_per_frame_median"] / summary["stream"]["ms_per_frame_median"], 3),
        **summary, "host": host.host_info("ai-edge-litert"),
    }
    write_json_atomic(args.json, report)
    for way in ("process", "stream"):
        s = summary[way]
        print(f"{way:8s} {s['ms_per_frame_median']:.3f} ms/frame ({s['fps']:.0f} fps), "
              f"latency {s['latency_ms_median']:.3f} ms")
    print(f"speed-up {report['speedup_fps']:.2f}x, same decisions: {same}; wrote {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run_main(main, "stream_overlap.py", errors=(FileNotFoundError, FileExistsError, ValueError)))
