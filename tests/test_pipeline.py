"""The pipeline: fail-closed decisions, smoothing, fusion, and end to end on real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tla_edge import pipeline as pl
from tla_edge.faces import FaceBox
from tla_edge.interpreter import LivenessModel
from tla_edge.pipeline import Pipeline, Smoother

FRAME = np.full((240, 320, 3), 128, np.uint8)


class FakeDetector:
    """Returns the given faces (or raises) instead of running MediaPipe."""

    def __init__(self, faces=(), error: Exception | None = None):
        self.faces = list(faces)
        self.error = error
        self.closed = False

    def detect(self, rgb, timestamp_ms=None):
        if self.error:
            raise self.error
        return list(self.faces)

    def close(self):
        self.closed = True


class FixedModel(LivenessModel):
    """A real LivenessModel whose invoke returns a fixed logit (or raises)."""

    def __init__(self, path, logit: float = 0.0, error: Exception | None = None):
        super().__init__(path)
        self.logit = logit
        self.error = error

    def invoke_tensor(self, x):
        if self.error:
            raise self.error
        self.last_invoke_ms = 0.1
        return np.array([[self.logit]], np.float32)


FACE = FaceBox(100, 60, 80, 80, 0.9)


def make(tiny_tflite, faces=(FACE,), logit=0.0, error=None, det_error=None, **kw):
    return Pipeline(
        FixedModel(tiny_tflite["float"], logit, error),
        FakeDetector(faces, det_error),
        **kw,
    )


def test_live_and_spoof_at_the_threshold(tiny_tflite):
    live = make(tiny_tflite, logit=3.0).process(FRAME)
    assert live.decision == pl.LIVE and live.is_live
    assert live.score == pytest.approx(1 / (1 + np.exp(-3.0)))
    spoof = make(tiny_tflite, logit=-3.0).process(FRAME)
    assert spoof.decision == pl.SPOOF and not spoof.is_live
    # exactly at the threshold counts as live (score >= threshold)
    assert make(tiny_tflite, logit=0.0, threshold=0.5).process(FRAME).is_live
    assert not make(tiny_tflite, logit=0.0, threshold=0.51).process(FRAME).is_live


@pytest.mark.parametrize(
    "kwargs,decision",
    [
        ({"faces": ()}, pl.NO_FACE),
        ({"faces": (FaceBox(100, 60, 20, 20, 0.9),)}, pl.FACE_TOO_SMALL),
        ({"faces": (FaceBox(-60, 60, 100, 100, 0.9),)}, pl.FACE_CUT_OFF),
        ({"error": RuntimeError("invoke failed")}, pl.ERROR),
        ({"det_error": RuntimeError("graph died")}, pl.ERROR),
        ({"logit": float("nan")}, pl.ERROR),
    ],
)
def test_fails_closed(tiny_tflite, kwargs, decision):
    # a model that would say "live" with certainty must still not pass
    kwargs.setdefault("logit", 50.0)
    result = make(tiny_tflite, **kwargs).process(FRAME)
    assert result.decision == decision
    assert result.is_live is False
    if decision == pl.ERROR:
        assert result.error and result.score is None


def test_result_carries_stage_timings(tiny_tflite):
    r = make(tiny_tflite, logit=1.0).process(FRAME)
    assert set(pl.STAGES) <= set(r.timings)
    assert r.timings["total"] >= r.timings["detect"] + r.timings["crop"]
    assert r.timings["invoke"] == pytest.approx(0.1)


def test_smoother_averages_and_resets_on_a_new_face():
    s = Smoother(window=3)
    assert s.update(FACE, 0.9) == pytest.approx(0.9)
    assert s.update(FACE, 0.3) == pytest.approx(0.6)
    assert s.update(FACE, 0.0) == pytest.approx(0.4)
    assert s.update(FACE, 0.0) == pytest.approx(0.1)  # window of 3: 0.3, 0, 0
    other = FaceBox(250, 10, 40, 40)  # no overlap -> another person
    assert s.update(other, 0.8) == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"smoothing window 0 is not >= 1"):
        Smoother(0)


def test_smoothing_resets_when_the_face_is_lost(tiny_tflite):
    model = FixedModel(tiny_tflite["float"], logit=5.0)
    det = FakeDetector([FACE])
    pipe = Pipeline(model, det, smoothing=5)
    assert pipe.process(FRAME).is_live
    det.faces = []
    assert pipe.process(FRAME).decision == pl.NO_FACE
    det.faces = [FACE]
    model.logit = -5.0
    r = pipe.process(FRAME)
    # without the reset the old live scores would pull this frame up
    assert r.score == pytest.approx(r.raw_score) and not r.is_live


def test_two_models_are_fused_by_mean(tiny_tflite):
    a = FixedModel(tiny_tflite["float"], logit=2.0)
    b = FixedModel(tiny_tflite["float"], logit=-2.0)
    r = Pipeline([a, b], FakeDetector([FACE])).process(FRAME)
    assert r.raw_score == pytest.approx(0.5)
    assert r.timings["invoke"] == pytest.approx(0.2)


def test_bad_frame_is_a_caller_error(tiny_tflite):
    with pytest.raises(ValueError, match=r"frame shape \(240, 320\) dtype uint8 is not HxWx3 uint8"):
        make(tiny_tflite).process(FRAME[..., 0])


def test_only_an_owned_detector_is_closed(tiny_tflite):
    det = FakeDetector([FACE])
    with Pipeline(FixedModel(tiny_tflite["float"]), det):
        pass
    assert det.closed is False


def _nuaa_frames(nuaa_dir, n):
    paths = sorted((nuaa_dir / "ClientRaw").rglob("*.jpg"))[:: 400][: n // 2]
    paths += sorted((nuaa_dir / "ImposterRaw").rglob("*.jpg"))[:: 400][: n - len(paths)]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_end_to_end_on_real_frames(nuaa_dir, tiny_tflite, kind):
    frames = _nuaa_frames(nuaa_dir, 6)
    with Pipeline(tiny_tflite[kind], video=False, smoothing=1) as pipe:
        results = [pipe.process(f) for f in frames]
        # the crop the model saw is the shared crop of the detected face
        crop = pipe.model.crop(frames[0], results[0].face)
    assert crop.shape == (32, 32, 3)
    for r in results:
        assert r.decision in (pl.LIVE, pl.SPOOF), r
        assert r.face is not None and 0.0 <= r.score <= 1.0
        assert r.is_live == (r.score >= pipe.threshold)
        assert all(r.timings[s] > 0 for s in ("detect", "crop", "invoke", "total"))


def test_end_to_end_no_face_on_a_blank_frame(tiny_tflite):
    with Pipeline(tiny_tflite["int8"], video=False) as pipe:
        r = pipe.process(np.zeros((480, 640, 3), np.uint8))
    assert r.decision == pl.NO_FACE and not r.is_live and r.faces == ()
