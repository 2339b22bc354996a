"""The pipeline: fail-closed decisions, smoothing, fusion, and end to end on real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tla_edge.runtime import fused_set, metadata

from tla_edge.runtime import preprocess
from tla_edge.runtime import pipeline as pl
from tla_edge.runtime.faces import FaceBox
from tla_edge.runtime.interpreter import LivenessModel
from tla_edge.runtime.pipeline import Pipeline, Smoother

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

    def invoke_input(self):
        if self.error:
            raise self.error
        self.last_invoke_ms = 0.1
        return np.array([[self.logit]], np.float32)


FACE = FaceBox(100, 60, 80, 80, 0.9)


def make(tiny_tflite, faces=(FACE,), logit=0.0, error=None, det_error=None, **kw):
    kw.setdefault("live_frames", 1)  # one frame decides: these tests judge single frames
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
        ({"logit": float("inf")}, pl.ERROR),
        ({"logit": float("-inf")}, pl.ERROR),
        ({"logit": 3.4e38}, pl.ERROR),
        ({"logit": 2e4}, pl.ERROR),
        ({"faces": (FaceBox(100, 60, 80, 80, 0.9, ((160.0, 80.0), (160.0, 120.0))),)}, pl.FACE_ROTATED),
        ({"faces": (FaceBox(100, 60, 80, 80, 0.9, ((160.0, 120.0), (120.0, 120.0))),)}, pl.FACE_ROTATED),
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
    s = Smoother(window=3, live_frames=1)
    assert s.update(FACE, 0.9, 0.5).score == pytest.approx(0.9)
    assert s.update(FACE, 0.3, 0.5).score == pytest.approx(0.6)
    assert s.update(FACE, 0.0, 0.5).score == pytest.approx(0.4)
    assert s.update(FACE, 0.0, 0.5).score == pytest.approx(0.1)  # window of 3: 0.3, 0, 0
    other = FaceBox(250, 10, 40, 40)  # no overlap -> another person
    assert s.update(other, 0.8, 0.5).score == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"smoothing window 0 is not an integer >= 1"):
        Smoother(0)
    with pytest.raises(ValueError, match=r"live_frames 0 is not an integer >= 1"):
        Smoother(5, live_frames=0)


def test_swapped_in_photo_is_never_live(tiny_tflite):
    # Four live frames at 0.99, then a photo held up at the same place scoring 0.5:
    # the old mean of the last five (0.89) called it live at threshold 0.8.
    model = FixedModel(tiny_tflite["float"], logit=float(np.log(0.99 / 0.01)))
    pipe = Pipeline(model, FakeDetector([FACE]), threshold=0.8, smoothing=5, live_frames=3)
    decisions = [pipe.process(FRAME).decision for _ in range(4)]
    assert decisions == [pl.PENDING, pl.PENDING, pl.LIVE, pl.LIVE]
    model.logit = 0.0  # the photo: 0.5 on its own
    r = pipe.process(FRAME)
    assert r.score == pytest.approx((4 * 0.99 + 0.5) / 5) and r.score >= 0.8
    assert r.decision == pl.SPOOF and not r.is_live
    # back to the live face: K frames in a row again before live
    model.logit = float(np.log(0.99 / 0.01))
    assert [pipe.process(FRAME).is_live for _ in range(3)] == [False, False, True]


def test_smoothing_delays_live_but_never_grants_it():
    rng = np.random.default_rng(0)
    for window, k in ((1, 1), (5, 1), (5, 3), (3, 5)):
        s = Smoother(window, live_frames=k)
        own = rng.uniform(0.0, 1.0, 400)
        for i, score in enumerate(own):
            out = s.update(FACE, score, 0.6)
            recent = own[max(0, i - k + 1): i + 1]
            # independent rule: live iff the last k own scores all pass and the window mean passes
            expected = len(recent) == k and bool((recent >= 0.6).all()) and own[max(0, i - window + 1): i + 1].mean() >= 0.6
            assert out.is_live == expected, (window, k, i)
            assert not (out.is_live and score < 0.6)


def test_first_frame_after_a_reset_never_decides_alone(tiny_tflite):
    model = FixedModel(tiny_tflite["float"], logit=5.0)
    det = FakeDetector([FACE])
    pipe = Pipeline(model, det, live_frames=3)
    assert [pipe.process(FRAME).is_live for _ in range(3)] == [False, False, True]
    pipe.reset()
    assert pipe.process(FRAME).decision == pl.PENDING  # first frame after reset: not alone
    det.faces = [FaceBox(220, 100, 80, 80, 0.9)]  # another face: IoU 0 -> a new streak
    assert not pipe.process(FRAME).is_live
    assert not pipe.process(FRAME).is_live
    assert pipe.process(FRAME).is_live
    assert pl.DEFAULT_LIVE_FRAMES > 1
    assert Pipeline(model, FakeDetector([FACE])).smoother.live_frames == pl.DEFAULT_LIVE_FRAMES


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_pending_until_k_frames_then_live_and_a_low_frame_resets_to_spoof(tiny_tflite):
    model = FixedModel(tiny_tflite["float"])
    pipe = Pipeline(model, FakeDetector([FACE]), threshold=0.8, smoothing=1, live_frames=3)
    got = []
    for score in (0.9, 0.92, 0.95, 0.97, 0.5, 0.9, 0.9, 0.9):
        model.logit = _logit(score)
        got.append(pipe.process(FRAME))
    assert [r.decision for r in got] == [pl.PENDING, pl.PENDING, pl.LIVE, pl.LIVE,
                                         pl.SPOOF, pl.PENDING, pl.PENDING, pl.LIVE]
    assert [r.is_live for r in got] == [r.decision == pl.LIVE for r in got]
    assert got[0].raw_score == pytest.approx(0.9) and got[0].score == pytest.approx(0.9)


def test_pending_is_never_live_and_only_for_a_frame_at_or_above_the_threshold():
    rng = np.random.default_rng(1)
    for window, k in ((1, 1), (5, 3), (3, 5)):
        s = Smoother(window, live_frames=k)
        for score in rng.uniform(0.0, 1.0, 300):
            out = s.update(FACE, score, 0.6)
            decision = pl.decide(score, 0.6, out.is_live)
            assert decision == (pl.LIVE if out.is_live else pl.PENDING if score >= 0.6 else pl.SPOOF)
            assert (decision == pl.LIVE) == out.is_live
    # a smoother that says live on a frame under the threshold is overruled: spoof
    assert pl.decide(0.5, 0.6, True) == pl.SPOOF and pl.decide(0.6, 0.6, False) == pl.PENDING


def test_the_decision_set_is_documented_in_one_place():
    assert pl.DECISIONS == (pl.LIVE, pl.PENDING, pl.SPOOF, *pl.NON_RESPONSES)
    assert set(pl.SCORED) | set(pl.NON_RESPONSES) == set(pl.DECISIONS)
    assert not set(pl.SCORED) & set(pl.NON_RESPONSES)
    from tla_edge.runtime import decisions  # the one place; the pipeline re-exports it

    assert (pl.DECISIONS, pl.LivenessResult, pl.decide) == (decisions.DECISIONS, decisions.LivenessResult, decisions.decide)
    src = open(decisions.__file__, encoding="utf-8").read()
    for d in pl.DECISIONS:  # each constant carries its docstring right below it
        assert f'{d.upper()} = "{d}"\n"""' in src, d


def test_smoothing_resets_when_the_face_is_lost(tiny_tflite):
    model = FixedModel(tiny_tflite["float"], logit=5.0)
    det = FakeDetector([FACE])
    pipe = Pipeline(model, det, smoothing=5, live_frames=1)
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
    r = Pipeline([a, b], FakeDetector([FACE]), threshold=0.5, members="sequential").process(FRAME)
    assert r.raw_score == pytest.approx(0.5)
    assert r.timings["invoke"] == pytest.approx(0.2)  # sequential: the sum of the models' own invokes


def test_fused_models_of_one_crop_scale_share_the_crop(tiny_tflite, monkeypatch):
    """Same crop scale and input size: one crop per frame for both; another scale gets its own."""
    import dataclasses

    a, b, c = (FixedModel(tiny_tflite["float"], logit=v) for v in (1.0, 1.0, 1.0))
    c.meta = dataclasses.replace(c.meta, crop_scale=c.meta.crop_scale + 1.0)
    calls = []
    for m in (a, b, c):
        monkeypatch.setattr(m, "crop_trusted", lambda rgb, box, m=m: calls.append(m) or LivenessModel.crop(m, rgb, box))
    r = Pipeline([a, b, c], FakeDetector([FACE]), threshold=0.5, live_frames=1).process(FRAME)
    assert r.decision == "live" and calls == [a, c]


def test_a_shift_model_gets_the_shifted_crop_beside_a_pad_model(tiny_tflite):
    """A fused pair of one scale but two crop rules: two crops, each model its own."""
    import dataclasses

    frame = np.full((240, 320, 3), 200, np.uint8)
    face = FaceBox(0, 60, 80, 80, 0.9)  # at the left edge: the 160 px window (2.0x) starts 40 px outside
    pad, shift = FixedModel(tiny_tflite["float"], 1.0), FixedModel(tiny_tflite["float"], 1.0)
    shift.meta = dataclasses.replace(shift.meta, crop_rule="shift")
    seen = {}

    def recording(name, m):
        return lambda crop: seen.setdefault(name, crop.copy()) is not None and LivenessModel.set_input(m, crop)

    pad.set_input, shift.set_input = recording("pad", pad), recording("shift", shift)
    r = Pipeline([pad, shift], FakeDetector([face]), threshold=0.5, live_frames=1).process(frame)
    assert r.decision == "live" and set(seen) == {"pad", "shift"}
    assert (seen["shift"] == 200).all()  # moved inside the frame: every pixel is the frame's
    # centred and padded: the first quarter of the window (40 of 160 px -> 8 of 32) is PAD_VALUE
    assert (seen["pad"][:, :6] == preprocess.PAD_VALUE).all() and (seen["pad"][:, 10:] == 200).all()


def _pair_with_thresholds(tiny_tflite, tmp_path, fusion=None):
    """Copies of two different tiny models, own thresholds 0.3 and 0.5 (mean 0.4)."""
    import json

    paths = []
    for kind, thr in (("float", 0.3), ("int8", 0.5)):
        path = tmp_path / f"{kind}.tflite"
        path.write_bytes(tiny_tflite[kind].read_bytes())
        meta = metadata.ModelMetadata(input_size=(32, 32), crop_scale=2.0, threshold=thr)
        metadata.sidecar_path(path).write_text(json.dumps(meta.to_dict()))
        paths.append(path)
    if fusion is not None:
        for path in paths:
            meta = metadata.load(path)
            meta = meta.replace(extra={**meta.extra, "fusion": fusion(paths)})
            metadata.sidecar_path(path).write_text(json.dumps(meta.to_dict()))
    return paths


def test_fused_threshold_is_the_stored_one_not_the_mean(tiny_tflite, tmp_path):
    paths = _pair_with_thresholds(tiny_tflite, tmp_path, lambda ps: fused_set.fusion_record(ps, 0.7))
    record = metadata.load(paths[0]).extra["fusion"]
    import hashlib

    own = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths)  # no embedded zip here
    metas = {hashlib.sha256(p.read_bytes()).hexdigest(): fused_set.metadata_sha256(metadata.load(p)) for p in paths}
    assert record == {"models": [p.name for p in paths], "partners": own, "metadata_sha256": metas, "threshold": 0.7}
    with Pipeline(paths, FakeDetector([FACE])) as pipe:
        assert pipe.threshold == pytest.approx(0.7)  # not (0.3 + 0.5) / 2
    with Pipeline(paths[::-1], FakeDetector([FACE]), threshold=0.45) as pipe:
        assert pipe.threshold == pytest.approx(0.45)


@pytest.mark.parametrize(
    "fusion",
    [
        None,  # no record: the mean of 0.3 and 0.5 must not be used
        lambda ps: {"partners": ["0" * 64, "1" * 64], "threshold": 0.7},  # another pair's record
        lambda ps: {**fused_set.fusion_record(ps, 0.7), "partners": [metadata.model_sha256(ps[0])] * 2},  # one of them twice
    ],
)
def test_fused_models_without_a_matching_record_need_a_threshold(tiny_tflite, tmp_path, fusion):
    paths = _pair_with_thresholds(tiny_tflite, tmp_path, fusion)
    with pytest.raises(ValueError, match=r"carry no common fusion threshold .* pass an explicit threshold"):
        Pipeline(paths, FakeDetector([FACE]))


def test_fusion_record_differs_between_models(tiny_tflite, tmp_path):
    import json

    paths = _pair_with_thresholds(tiny_tflite, tmp_path, lambda ps: fused_set.fusion_record(ps, 0.7))
    meta = metadata.load(paths[1])
    meta = meta.replace(extra={**meta.extra, "fusion": {**meta.extra["fusion"], "threshold": 0.2}})
    metadata.sidecar_path(paths[1]).write_text(json.dumps(meta.to_dict()))
    with pytest.raises(ValueError, match=r"carry no common fusion threshold"):
        Pipeline(paths, FakeDetector([FACE]))


@pytest.mark.parametrize("bad", [-1.0, 0.0, 1.0, 1.5, float("nan"), float("inf"), "0.5", True])
def test_bad_threshold_is_refused_by_the_api(tiny_tflite, bad):
    with pytest.raises(ValueError, match=r"^threshold .* (is not strictly between 0 and 1|is not a number)"):
        make(tiny_tflite, threshold=bad)
    with pytest.raises(ValueError, match=r"^threshold .* (is not strictly between 0 and 1|is not a number)"):
        LivenessModel(tiny_tflite["float"], threshold=bad)


def test_close_releases_owned_models_and_keeps_given_ones(tiny_tflite):
    given = LivenessModel(tiny_tflite["float"])
    det = FakeDetector([FACE])
    pipe = Pipeline([given, tiny_tflite["int8"]], det, threshold=0.5)
    owned = pipe.models[1]
    pipe.close()
    assert owned.interpreter is None and given.interpreter is not None
    with pytest.raises(RuntimeError, match=r"is closed"):
        owned.score(np.zeros((32, 32, 3), np.uint8))
    assert pipe.process(FRAME).decision == pl.ERROR  # a closed pipeline fails closed
    pipe.close()  # twice is fine


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


def _quantize_half_away(x, scale, zero_point):
    """Independent of tla_edge: LiteRT's float -> int8 rule, std::round(x / scale) + zp, clipped."""
    v = np.asarray(x, np.float32) / np.float32(scale)
    return np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)) + zero_point, -128, 127).astype(np.int8)


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_end_to_end_on_real_frames(nuaa_dir, tiny_tflite, kind):
    tf = pytest.importorskip("tensorflow")
    frames = _nuaa_frames(nuaa_dir, 6)
    with Pipeline(tiny_tflite[kind], video=False, smoothing=1, live_frames=1) as pipe:
        results = [pipe.process(f) for f in frames]
        # the crop the model saw is the shared crop of the detected face
        crop = pipe.model.crop(frames[0], results[0].face)
    assert crop.shape == (32, 32, 3)
    # an independent scorer: TensorFlow's own interpreter, input built here
    ref = tf.lite.Interpreter(model_path=str(tiny_tflite[kind]))
    ref.allocate_tensors()
    inp, out = ref.get_input_details()[0], ref.get_output_details()[0]
    for frame, r in zip(frames, results):
        assert r.decision in (pl.LIVE, pl.SPOOF), r
        x = preprocess.crop_face(frame, r.face, 2.0, 32).astype(np.float32) / 127.5 - 1.0
        if kind == "int8":
            x = _quantize_half_away(x, *inp["quantization"])
        ref.set_tensor(inp["index"], x[None])
        ref.invoke()
        y = ref.get_tensor(out["index"]).astype(np.float64)
        if kind == "int8":
            y = (y - out["quantization"][1]) * out["quantization"][0]
        expected = 1.0 / (1.0 + np.exp(-y.item()))
        assert r.raw_score == pytest.approx(expected, abs=1e-6)
        assert r.is_live == (expected >= 0.5) and r.decision == (pl.LIVE if expected >= 0.5 else pl.SPOOF)
        assert all(r.timings[s] > 0 for s in ("detect", "crop", "invoke", "total"))


HELD_OUT = ("0008", "0009")  # subjects the bundled model was not trained on


def _held_out_frames(nuaa_dir, folder):
    paths = []
    for subject in HELD_OUT:
        paths += sorted((nuaa_dir / folder / subject).glob("*.jpg"))[::60][:4]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_bundled_pipeline_on_held_out_real_frames(nuaa_dir):
    real = _held_out_frames(nuaa_dir, "ClientRaw")
    attacks = _held_out_frames(nuaa_dir, "ImposterRaw")
    with Pipeline(video=False, live_frames=1) as pipe:
        got = []
        for frame in real + attacks:
            pipe.reset()
            got.append(pipe.process(frame))
    # each label checked: every bona fide frame live; printed photos spoof, but for at most one of
    # the 8: the default pair (NUAA + MSU-MFSD) accepts 1.6 % of these two people's prints at its
    # fused threshold (model card; one of these 8 scores 0.651 against 0.646)
    decisions = [r.decision for r in got]
    assert decisions[:len(real)] == [pl.LIVE] * len(real)
    assert decisions[len(real):].count(pl.SPOOF) >= len(attacks) - 1
    assert set(decisions[len(real):]) <= {pl.SPOOF, pl.LIVE}
    for r in got:
        assert r.is_live == (r.raw_score >= pipe.threshold)


def test_bundled_pipeline_refuses_rolled_faces(nuaa_dir):
    # Printed photos turned a quarter turn scored 0.9-1.0 live before faces were checked for roll.
    # BlazeFace misreads the pose of a few turned faces (eye keypoints as if upright);
    # those are judged as usual, and none may come out live.
    attacks = _held_out_frames(nuaa_dir, "ImposterRaw")
    decisions = []
    with Pipeline(video=False, live_frames=1) as pipe:
        for frame in attacks:
            for turn in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
                pipe.reset()
                r = pipe.process(np.ascontiguousarray(cv2.rotate(frame, turn)))
                assert not r.is_live, r
                roll = preprocess.face_roll(r.face.keypoints) if r.face is not None else None
                if roll is not None:
                    assert (r.decision == pl.FACE_ROTATED) == (abs(roll) > 30.0), (roll, r)
                decisions.append(r.decision)
    assert decisions.count(pl.FACE_ROTATED) >= 13, decisions


def test_face_roll_from_the_eye_keypoints():
    assert preprocess.face_roll(()) is None
    assert preprocess.face_roll(((10.0, 10.0), (50.0, 10.0))) == pytest.approx(0.0)
    assert preprocess.face_roll(((10.0, 10.0), (50.0, 50.0))) == pytest.approx(45.0)
    assert preprocess.face_roll(((10.0, 50.0), (50.0, 10.0))) == pytest.approx(-45.0)
    assert preprocess.face_roll(((10.0, 10.0), (10.0, 50.0))) == pytest.approx(90.0)
    box = (100, 60, 80, 80)
    tilted = FaceBox(*box, 0.9, ((120.0, 90.0), (160.0, 90.0 + 40.0 * np.tan(np.radians(25)))))
    assert preprocess.face_problem(tilted, (240, 320)) is None  # 25 degrees: judged
    over = FaceBox(*box, 0.9, ((120.0, 90.0), (160.0, 90.0 + 40.0 * np.tan(np.radians(35)))))
    assert preprocess.face_problem(over, (240, 320)) == pl.FACE_ROTATED
    assert preprocess.face_problem(over, (240, 320), max_roll=40.0) is None


def test_end_to_end_no_face_on_a_blank_frame(tiny_tflite):
    with Pipeline(tiny_tflite["int8"], video=False) as pipe:
        r = pipe.process(np.zeros((480, 640, 3), np.uint8))
    assert r.decision == pl.NO_FACE and not r.is_live and r.faces == ()
