"""The shipped artefact on the bundled sample frames gives the committed decisions and scores.

tests/golden/bundled_samples.json was written by scripts/make_golden.py when the
bundled model last changed on purpose. A change to the model, the crop, the
preprocessing, the detector or the runtime that moves a decision, or a score by
more than int8 tolerance, fails here; if the change is meant, re-run the script
and commit the new expectation with the change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tla_edge.runtime import assets

from tla_edge.runtime import metadata

from tla_edge.runtime import sources
from tla_edge.runtime.pipeline import Pipeline

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "bundled_samples.json"
pytest.importorskip("cv2")


def _int8_tolerance(model: Path) -> float:
    """Two int8 output steps in probability: a logit step is the output scale, sigmoid' <= 1/4."""
    from tla_edge.runtime import interpreter

    with interpreter.LivenessModel(model) as m:
        scale, _ = interpreter.quantization_params(interpreter.output_details(m.interpreter))
    return 2 * 0.25 * scale if scale > 0 else 1e-4


@pytest.mark.parametrize("backend", ["mediapipe", "litert"])
def test_bundled_pipeline_gives_the_committed_decisions_and_scores(backend):
    golden = json.loads(GOLDEN.read_text())
    models = assets.default_liveness_models()
    assert {m.name: metadata.model_sha256(m) for m in models} == golden["models"], (
        "the bundled model changed: re-run scripts/make_golden.py --force and commit its output")
    try:
        pipe = Pipeline(video=False, smoothing=1, live_frames=1, detector_backend=backend)
    except Exception as err:  # noqa: BLE001 - a backend that cannot load here (e.g. mediapipe on ARMv8.0)
        pytest.skip(f"detector backend {backend!r} does not load here: {err}")
    tol = sum(_int8_tolerance(m) for m in models) / len(models)  # the mean of the models' scores
    with pipe:
        assert pipe.threshold == pytest.approx(golden["threshold"], abs=1e-12)
        for name, want in golden["frames"].items():
            pipe.reset()
            r = pipe.process(sources.bgr_to_rgb(sources.read_image_bgr(assets.sample_frames_dir() / name)))
            assert r.decision == want["decision"], name
            if want["score"] is None:
                assert r.raw_score is None, name
            else:
                assert r.raw_score == pytest.approx(want["score"], abs=tol), name
