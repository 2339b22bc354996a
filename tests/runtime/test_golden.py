"""The shipped artefact on the bundled sample frames gives the committed decisions and scores.

tests/golden/bundled_samples.json was written by scripts/make_golden.py when the
bundled model last changed on purpose. A change to the model, the crop, the
preprocessing, the detector or the runtime that moves a decision, or a score by
more than int8 tolerance, fails here; if the change is meant, re-run the script
and commit the new expectation with the change.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tla_edge.runtime import assets, cpu, metadata, sources
from tla_edge.runtime.pipeline import Pipeline

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "bundled_samples.json"
pytest.importorskip("cv2")
# What each detector backend needs installed; the liveness model needs one TFLite runtime.
TFLITE_RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
BACKEND_PACKAGES = {"mediapipe": ("mediapipe",), "litert": ()}


def _int8_tolerance(model: Path) -> float:
    """Two int8 output steps in probability: a logit step is the output scale, sigmoid' <= 1/4."""
    from tla_edge.runtime import interpreter

    with interpreter.LivenessModel(model) as m:
        scale, _ = interpreter.quantization_params(interpreter.output_details(m.interpreter))
    return 2 * 0.25 * scale if scale > 0 else 1e-4


def runtime_absent(backend: str) -> str | None:
    """Why ``backend`` cannot run here because its runtime is absent, or None when it can.

    Absent means not installed (mediapipe is the opt-in ``mediapipe`` extra), or
    mediapipe on a CPU it cannot run on (ARMv8.0 cores stop it with SIGILL,
    which :func:`cpu.mediapipe_unavailable` knows first).
    """
    if not any(importlib.util.find_spec(m) for m in TFLITE_RUNTIMES):
        return "no TFLite runtime is installed (the 'runtime' extra)"
    return cpu.mediapipe_unavailable() if backend == "mediapipe" else None


def open_pipeline(backend: str) -> Pipeline:
    """The golden configuration; skips only where the backend's runtime is absent, else fails loudly."""
    why = runtime_absent(backend)
    if why:
        pytest.skip(f"detector backend {backend!r} cannot run here: {why}")
    try:
        return Pipeline(video=False, smoothing=1, live_frames=1, detector_backend=backend)
    except ImportError as err:
        # a runtime package that is installed but does not import is absent too; any
        # other ImportError (a stale import in tla_edge) is a broken constructor
        if (err.name or "").split(".")[0] not in (*TFLITE_RUNTIMES, *BACKEND_PACKAGES[backend]):
            raise
        pytest.skip(f"detector backend {backend!r} does not import here: {err}")


@pytest.mark.parametrize("backend", ["mediapipe", "litert"])
def test_bundled_pipeline_gives_the_committed_decisions_and_scores(backend):
    golden = json.loads(GOLDEN.read_text())
    models = assets.default_liveness_models()
    assert {m.name: metadata.model_sha256(m) for m in models} == golden["models"], (
        "the bundled model changed: re-run scripts/make_golden.py --force and commit its output")
    pipe = open_pipeline(backend)
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


@pytest.mark.parametrize("error", [RuntimeError("broken"), ValueError("bad model"),
                                   ImportError("cannot import name 'gone' from 'tla_edge.runtime.faces'",
                                               name="tla_edge.runtime.faces")])
def test_a_broken_constructor_fails_instead_of_skipping(monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(sys.modules[__name__], "Pipeline", broken)
    with pytest.raises(type(error)):
        open_pipeline("litert")


def test_a_runtime_that_does_not_import_skips(monkeypatch):
    def absent(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'ai_edge_litert'", name="ai_edge_litert")

    monkeypatch.setattr(sys.modules[__name__], "Pipeline", absent)
    with pytest.raises(pytest.skip.Exception, match="does not import here"):
        open_pipeline("litert")
