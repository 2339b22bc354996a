"""A stream whose next frame is detected while this one is judged: same results as frame by frame, in order."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from tla_edge.runtime import assets, loop
from tla_edge.runtime import pipeline as pl
from tla_edge.runtime.faces import FaceBox
from tla_edge.runtime.interpreter import LivenessModel
from tla_edge.runtime.pipeline import Pipeline
from tla_edge.runtime.sources import Frame
from tla_edge.runtime.stream import judge_stream

FACE = FaceBox(100, 60, 80, 80, 0.9)


def sample_frames() -> list[np.ndarray]:
    paths = sorted(assets.sample_frames_dir().glob("*.jpg"))
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def as_frames(rgbs: list[np.ndarray]) -> list[Frame]:
    return [Frame(i, rgb, 33 * i, f"f{i}", 0.0) for i, rgb in enumerate(rgbs)]


def summary(result: pl.LivenessResult) -> tuple:
    return (result.decision, result.is_live, result.score, result.raw_score, result.face, result.error)


def no_stream_threads() -> bool:
    return not any(t.name == "tla-edge-detect-ahead" for t in threading.enumerate())


def test_overlapped_stream_is_process_frame_by_frame_bit_for_bit():
    """Bundled detector and pair on the sample frames (faces, no face, repeats for the live streak)."""
    rgbs = sample_frames()
    rgbs = rgbs + rgbs[::-1] + [rgbs[0]] * 4 + [np.zeros((240, 320, 3), np.uint8)] + [rgbs[0]] * 4
    frames = as_frames(rgbs)
    # a threshold every face reaches, whatever the bundled set scores the samples: the streak goes pending, live
    with Pipeline(num_threads=1) as pipe:
        raw = [pipe.process(f.rgb, f.timestamp_ms).raw_score for f in frames]
    threshold = min(r for r in raw if r is not None)
    with Pipeline(num_threads=1, threshold=threshold) as pipe:
        expected = [summary(pipe.process(f.rgb, f.timestamp_ms)) for f in frames]
    with Pipeline(num_threads=1, threshold=threshold) as pipe:
        got = [(item, summary(r)) for item, r in pipe.stream(frames)]
    assert [item for item, _ in got] == frames  # every item, in order, handed back
    assert [s for _, s in got] == expected
    decisions = {s[0] for s in expected}
    assert {pl.NO_FACE, pl.PENDING} <= decisions and len(decisions) >= 3  # the smoothing state moved along
    assert no_stream_threads()


class RecordingDetector:
    """Finds FACE (or raises on the listed calls), recording each call's thread and time."""

    def __init__(self, fail_on=()):
        self.calls: list[tuple[int, str, float, float]] = []
        self.fail_on = set(fail_on)

    def detect(self, rgb, timestamp_ms=None):
        start = time.perf_counter()
        n = len(self.calls)
        time.sleep(0.01)
        self.calls.append((n, threading.current_thread().name, start, time.perf_counter()))
        if n in self.fail_on:
            raise RuntimeError(f"detector failed on call {n}")
        return [FACE]

    def close(self):
        pass


class SlowModel(LivenessModel):
    """A real LivenessModel whose run takes 30 ms and returns the given logits in turn."""

    def __init__(self, path, logits):
        super().__init__(path)
        self.logits = list(logits)
        self.runs: list[tuple[float, float]] = []

    def invoke_input(self):
        start = time.perf_counter()
        time.sleep(0.03)
        self.runs.append((start, time.perf_counter()))
        self.last_invoke_ms = 30.0
        return np.array([[self.logits[(len(self.runs) - 1) % len(self.logits)]]], np.float32)


def test_the_next_frame_is_detected_on_the_streams_thread_while_this_one_is_judged(tiny_tflite):
    detector = RecordingDetector()
    model = SlowModel(tiny_tflite["float"], [3.0])
    frame = np.full((240, 320, 3), 128, np.uint8)
    with Pipeline(model, detector, live_frames=1) as pipe:
        results = [r for _, r in pipe.stream([frame] * 4)]
    assert [r.decision for r in results] == [pl.LIVE] * 4
    assert {name for _, name, _, _ in detector.calls} == {"tla-edge-detect-ahead"}
    for n in range(1, 4):  # frame n's detection started before frame n-1's model run ended
        assert detector.calls[n][2] < model.runs[n - 1][1]
    assert no_stream_threads()


def test_smoothing_and_failures_stay_in_frame_order(tiny_tflite):
    """A detector failure resets the live streak exactly as process() does, at that frame and no other."""
    frame = np.full((240, 320, 3), 128, np.uint8)
    logits = [3.0, 3.0, 3.0, 3.0, -3.0, 3.0, 3.0, 3.0, 3.0]

    def run(overlap: bool) -> list[tuple]:
        pipe = Pipeline(SlowModel(tiny_tflite["float"], logits), RecordingDetector(fail_on={2}), live_frames=2)
        with pipe:
            return [(r.decision, r.raw_score, r.error) for _, r in judge_stream(pipe, [frame] * 10, overlap=overlap)]

    overlapped, one_by_one = run(True), run(False)
    assert overlapped == one_by_one
    # the failed frame takes no model run: the -3 logit (5th run) lands on frame 5
    assert [d for d, _, _ in overlapped] == [pl.PENDING, pl.LIVE, pl.ERROR, pl.PENDING, pl.LIVE, pl.SPOOF,
                                              pl.PENDING, pl.LIVE, pl.LIVE, pl.LIVE]
    assert "detector failed on call 2" in overlapped[2][2]


def test_leaving_early_stops_the_thread_and_reads_at_most_one_frame_ahead(tiny_tflite):
    read: list[int] = []

    def source():
        for i in range(100):
            read.append(i)
            yield np.full((240, 320, 3), 128, np.uint8)

    pipe = Pipeline(SlowModel(tiny_tflite["float"], [3.0]), RecordingDetector(), live_frames=1)
    with pipe:
        stream = pipe.stream(source())
        for n, (_, result) in enumerate(stream):
            if n == 2:
                break
        stream.close()
        assert no_stream_threads()
        assert len(read) <= 5  # frames 0-2 judged, one detected ahead, one read by a blocked hand-over at most
        assert pipe.process(np.full((240, 320, 3), 128, np.uint8)).decision == pl.LIVE  # usable afterwards


def test_a_source_error_and_a_bad_frame_are_raised_at_their_turn(tiny_tflite):
    good = np.full((240, 320, 3), 128, np.uint8)

    def dying():
        yield good
        yield good
        raise OSError("camera 0 stopped delivering frames")

    with Pipeline(SlowModel(tiny_tflite["float"], [3.0]), RecordingDetector(), live_frames=1) as pipe:
        seen = []
        with pytest.raises(OSError, match="stopped delivering"):
            for _, result in pipe.stream(dying()):
                seen.append(result.decision)
        assert seen == [pl.LIVE, pl.LIVE]  # the frames before the error were judged first
        seen = []
        with pytest.raises(ValueError, match="is not HxWx3 uint8"):
            for _, result in pipe.stream([good, good.astype(np.float32), good]):
                seen.append(result.decision)
        assert seen == [pl.LIVE]
    assert no_stream_threads()


def test_run_loop_with_overlapped_frames_reads_no_more_than_max_frames(tiny_tflite):
    frames = as_frames([np.full((240, 320, 3), 128, np.uint8)] * 20)
    read: list[int] = []

    def source():
        for f in frames:
            read.append(f.index)
            yield f

    with Pipeline(SlowModel(tiny_tflite["float"], [3.0, -3.0]), RecordingDetector(), live_frames=1) as pipe:
        overlapped = loop.run_loop(pipe, source(), max_frames=6, overlap_frames=True)
    assert read == list(range(6))
    with Pipeline(SlowModel(tiny_tflite["float"], [3.0, -3.0]), RecordingDetector(), live_frames=1) as pipe:
        one_by_one = loop.run_loop(pipe, frames, max_frames=6)
    assert overlapped.frames == one_by_one.frames == 6 and overlapped.stopped == "max_frames"
    assert overlapped.decisions == one_by_one.decisions == {"live": 3, "spoof": 3}
    assert no_stream_threads()
