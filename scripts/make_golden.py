#!/usr/bin/env python
"""Writes tests/golden/bundled_samples.json: what the shipped pipeline says on the bundled sample frames.

    python scripts/make_golden.py [--force]

Run it once after the bundled model, the crop or the runtime changed on
purpose, and commit the file: tests/test_golden.py then sees any change that
moves a decision or a score by more than int8 tolerance. Each frame is judged
alone (image mode, smoothing off, one frame decides), with each detector
backend that loads here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import run_main

from tla_edge import fileio

from tla_edge.runtime import assets

from tla_edge.runtime import sources
from tla_edge.runtime.pipeline import Pipeline

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "bundled_samples.json"


def judge(backend: str) -> tuple[float, dict[str, dict]]:
    """The pipeline's threshold, and the decision and own score of every bundled sample frame."""
    out = {}
    with Pipeline(video=False, smoothing=1, live_frames=1, detector_backend=backend) as pipe:
        for path in sorted(assets.sample_frames_dir().glob("*.jpg")):
            pipe.reset()
            r = pipe.process(sources.bgr_to_rgb(sources.read_image_bgr(path)))
            out[path.name] = {"decision": r.decision,
                              "score": None if r.raw_score is None else round(float(r.raw_score), 6)}
        return pipe.threshold, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="overwrite the committed expectation")
    args = p.parse_args(argv)
    fileio.check_writable(OUT, args.force)
    from tla_edge.runtime import metadata

    models = assets.default_liveness_models()
    threshold, frames = judge("auto")
    golden = {"models": {m.name: metadata.model_sha256(m) for m in models}, "threshold": threshold,
              "frames": frames}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fileio.write_json_atomic(OUT, golden)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "make_golden.py"))
