"""A fused set's models run concurrently: LiteRT lets go of the GIL, and nothing but the time changes.

No test asserts a speed (benchmarks/results/ holds the measured times); they check
that a thread runs while another is inside ``invoke()``, that concurrent and
sequential pipelines give the same results bit for bit on the bundled pair and
sample frames, and the option's rules and failure paths.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from tla_edge.runtime import assets, members, preprocess
from tla_edge.runtime import pipeline as pl
from tla_edge.runtime.faces import FaceBox
from tla_edge.runtime.interpreter import LivenessModel, make_interpreter
from tla_edge.runtime.members import MemberRunner, Worker, check_members, resolve_crop_overlap, resolve_members
from tla_edge.runtime.pipeline import Pipeline
from tla_edge.runtime.quant import scores_from_output

pytest.importorskip("ai_edge_litert", reason="the bundled pair runs on the 'runtime' extra's LiteRT")

FRAME = np.full((240, 320, 3), 128, np.uint8)
FACE = FaceBox(100, 60, 80, 80, 0.9)


class FakeDetector:
    """Always finds ``FACE``."""

    def detect(self, rgb, timestamp_ms=None):
        return [FACE]

    def close(self):
        pass


class FixedModel(LivenessModel):
    """A real LivenessModel whose run returns a fixed logit, or raises ``error`` when it is set."""

    def __init__(self, path, logit: float = 0.0):
        super().__init__(path)
        self.logit = logit
        self.error: Exception | None = None

    def invoke_input(self):
        if self.error:
            raise self.error
        return np.array([[self.logit]], np.float32)


def sample_frames() -> list[np.ndarray]:
    paths = sorted(assets.sample_frames_dir().glob("*.jpg"))
    assert len(paths) >= 5
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


# --- LiteRT releases the GIL ------------------------------------------------------------


def moves_during(call, times: int = 30) -> int:
    """How many of ``times`` calls let another Python thread run while they were in progress.

    The switch interval is made huge, so this thread never hands the GIL over
    on its own: the other thread can only run while a call releases it.
    """
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)  # lets the GIL go: the calling thread gets it back after each call

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    spinner = threading.Thread(target=spin, daemon=True)
    moved = 0
    try:
        spinner.start()
        for _ in range(times):
            before = count[0]
            call()
            moved += count[0] != before
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    return moved


def test_a_python_thread_runs_while_another_is_inside_invoke():
    """LiteRT releases the GIL inside ``invoke()``; a pure-Python call of the same length does not."""
    interpreter = make_interpreter(assets.default_liveness_models()[0], num_threads=1)
    interpreter.invoke()

    def python_busy() -> None:  # the control: holds the GIL for ~2 ms
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass

    assert moves_during(python_busy) == 0  # the probe sees a GIL that is held
    assert moves_during(interpreter.invoke) > 0, "no other thread ran during invoke(): LiteRT held the GIL"


# --- same results -------------------------------------------------------------------------


def run_frames(mode: str, frames: list[np.ndarray], repeats: int = 3, overlap: bool | None = False,
               model=None) -> list[tuple]:
    with Pipeline(model, num_threads=1, members=mode, overlap_crops=overlap) as pipe:
        assert pipe.members == mode and len(pipe.models) == 2
        assert pipe.overlap_crops == (bool(overlap) and mode == "sequential")
        out = []
        for i in range(repeats * len(frames)):
            r = pipe.process(frames[i % len(frames)], 33 * (i + 1))
            out.append((r.decision, r.is_live, r.raw_score, r.score, r.face, r.error))
        return out


@pytest.mark.parametrize("which", ["bundled", "two crops"])
def test_concurrent_and_sequential_give_the_same_results_bit_for_bit(which, two_crop_set):
    """The bundled set, and a set of its members taking two crops, over the sample frames: decisions and
    scores identical, to the last bit, one member after another, with the later crop cut on the worker
    meanwhile (two crops only: one shared crop has nothing to overlap), and concurrently."""
    frames = sample_frames()
    model = two_crop_set if which == "two crops" else None
    sequential = run_frames("sequential", frames, model=model)
    concurrent = run_frames("concurrent", frames, model=model)
    assert sequential == concurrent  # floats compared with ==: bit for bit
    if which == "two crops":  # the 2.7x crop cut while the 1.4x member runs
        assert run_frames("sequential", frames, overlap=True, model=model) == sequential
    scored = [row for row in sequential if row[2] is not None]
    assert len(scored) >= 6 and {row[0] for row in sequential} >= {pl.NO_FACE}
    # independently of either path: each model scores its own crop, the pair is their mean
    with Pipeline(num_threads=1, members="sequential", smoothing=1, live_frames=1) as pipe:
        a, b = pipe.models
        for rgb in frames:
            r = pipe.process(rgb)
            if r.raw_score is None:
                continue
            # each member cuts its own crop (its metadata's scale and rule: the pair may differ)
            crops = [preprocess.crop_face(rgb, r.face, m.meta.crop_scale, m.input_size, m.meta.crop_rule)
                     for m in (a, b)]
            assert r.raw_score == float(np.mean([a.score(crops[0]), b.score(crops[1])]))


# --- the option ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members,count,threads,edgetpu,cpus,expected",
    [
        ("auto", 2, 1, False, 3, "concurrent"),  # a core each, one to spare
        ("auto", 2, 1, False, 4, "concurrent"),  # a Pi 4 or 5 at 1 thread
        ("auto", 2, None, False, 4, "concurrent"),
        ("auto", 2, 1, False, 2, "sequential"),  # no core to spare: measured slower on a loaded 2-core VM
        ("auto", 2, 2, False, 4, "sequential"),  # 4 interpreter threads on 4 cores, none to spare
        ("auto", 2, 2, False, 5, "concurrent"),
        ("auto", 2, 1, False, 1, "sequential"),
        ("auto", 2, 1, True, 8, "sequential"),  # one Edge TPU serves one model at a time
        ("auto", 1, 1, False, 8, "sequential"),  # nothing to overlap
        ("concurrent", 2, 4, False, 1, "concurrent"),  # asked for: kept
        ("concurrent", 1, 1, False, 8, "sequential"),
        ("sequential", 3, 1, False, 8, "sequential"),
    ],
)
def test_auto_is_concurrent_when_each_model_has_a_core_and_one_is_spare(members, count, threads, edgetpu, cpus, expected):
    assert resolve_members(members, count, threads, edgetpu, cpus) == expected


@pytest.mark.parametrize("bad", ["both", "", None, True, "Concurrent"])
def test_an_unknown_members_value_is_refused_in_one_line(bad, tiny_tflite):
    message = f"members {bad!r} is not one of 'auto', 'sequential', 'concurrent'"
    with pytest.raises(ValueError) as err:
        check_members(bad)
    assert str(err.value) == message
    with pytest.raises(ValueError, match="members .* is not one of"):
        Pipeline(FixedModel(tiny_tflite["float"]), FakeDetector(), members=bad)


def test_a_single_model_runs_sequentially_without_threads(tiny_tflite):
    before = {t.name for t in threading.enumerate()}
    with Pipeline(FixedModel(tiny_tflite["float"], 1.0), FakeDetector(), members="concurrent") as pipe:
        assert pipe.members == "sequential"
        assert pipe.process(FRAME).raw_score is not None
        assert not any(t.name.startswith("tla-edge-member") for t in threading.enumerate() if t.name not in before)


def test_the_runner_keeps_order_uses_two_threads_and_ends_its_workers():
    runner = MemberRunner(2, concurrent=True)
    seen = []

    def call(x):
        if x == 1:  # the caller's own: long enough for the worker to take the second (else the caller would)
            time.sleep(0.05)
        seen.append(threading.get_ident())
        return x * 10

    assert runner.map(call, [1, 2]) == [10, 20]
    assert len(set(seen)) == 2 and threading.get_ident() in seen  # the caller runs the first itself
    workers = [t for t in threading.enumerate() if t.name.startswith("tla-edge-member")]
    runner.close()
    runner.close()  # twice is fine
    assert workers and not any(t.is_alive() for t in workers)
    with pytest.raises(RuntimeError, match="closed"):
        runner.map(call, [1, 2])
    assert MemberRunner(2, concurrent=False).map(call, [3, 4]) == [30, 40]


def test_the_runner_raises_the_first_error_only_after_every_call_ended():
    runner = MemberRunner(2, concurrent=True)
    ended = threading.Event()
    started = threading.Event()

    def slow_ok(_):
        started.set()
        ended.wait(0.2)  # still running when the first call fails
        ended.set()
        return 1

    def fail(_):
        started.wait(5)
        raise RuntimeError("member 0 broke")

    calls = {0: fail, 1: slow_ok}
    try:
        with pytest.raises(RuntimeError, match="member 0 broke"):
            runner.map(lambda i: calls[i](i), [0, 1])
        assert ended.is_set()  # the worker's call had ended before map raised
    finally:
        runner.close()


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_member_fails_closed_when_concurrent(tiny_tflite, failing):
    models = [FixedModel(tiny_tflite["float"], 50.0) for _ in range(2)]
    models[failing].error = RuntimeError("invoke failed")
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="concurrent") as pipe:
        assert pipe.members == "concurrent"
        r = pipe.process(FRAME)
        assert r.decision == pl.ERROR and not r.is_live and r.score is None
        assert "invoke failed" in r.error
        models[failing].error = None  # the next frame is judged again
        assert pipe.process(FRAME).decision == pl.LIVE


def test_close_ends_the_member_threads():
    with Pipeline(num_threads=1, members="concurrent") as pipe:
        assert any(t.name.startswith("tla-edge-member") for t in threading.enumerate())
        runner = pipe._runner
    assert runner is not None and runner._pool is None
    assert not any(t.name.startswith("tla-edge-") for t in threading.enumerate())  # joined, not left running
    r = pipe.process(sample_frames()[0])
    assert r.decision == pl.ERROR and not r.is_live  # a closed pipeline fails closed


def test_resolve_reads_this_process_cpus(monkeypatch):
    monkeypatch.setattr(members.host, "cpus_available", lambda: 2)
    assert resolve_members("auto", 2, 1) == "sequential"
    monkeypatch.setattr(members.host, "cpus_available", lambda: 3)
    assert resolve_members("auto", 2, 1) == "concurrent"


def test_set_input_writes_what_set_tensor_of_input_tensor_writes(tiny_tflite):
    """Quantized straight into the tensor: the same bytes as the copy it replaces, int8, uint8 and float."""
    rng = np.random.default_rng(0)
    for kind in ("int8", "uint8", "float"):
        model = LivenessModel(tiny_tflite[kind])
        crop = rng.integers(0, 256, (*model.input_size, 3), dtype=np.uint8)
        index = model.interpreter.get_input_details()[0]["index"]
        model.set_input(crop)
        direct = model.interpreter.get_tensor(index).copy()
        model.interpreter.set_tensor(index, np.zeros_like(direct))
        model.interpreter.set_tensor(index, model.input_tensor(crop))
        assert np.array_equal(direct, model.interpreter.get_tensor(index)) and direct.any()
        via_copy = float(scores_from_output(model.invoke_tensor(model.input_tensor(crop)), model.meta)[0])
        assert model.score(crop) == via_copy
        with pytest.raises(ValueError, match=r"crop shape \(8, 8, 3\) dtype uint8 is not 32x32x3 uint8"):
            model.set_input(crop[:8, :8])
        model.close()
        with pytest.raises(RuntimeError, match="is closed"):
            model.set_input(crop)


# --- the later members' crops cut while the first member runs --------------------------------


@pytest.mark.parametrize(
    "overlap,members,crops,threads,edgetpu,cpus,expected",
    [
        (None, "sequential", 2, 1, False, 2, True),  # the 2-core VM at 1 thread: a core idles during invoke
        (None, "sequential", 2, None, False, 2, True),
        (None, "sequential", 2, 2, False, 2, False),  # both cores invoke
        (None, "sequential", 2, 2, False, 4, True),
        (None, "sequential", 2, 1, False, 1, False),
        (None, "sequential", 2, 4, True, 1, True),  # an Edge TPU invokes off the CPU
        (None, "sequential", 1, 1, False, 8, False),  # one crop for every member: nothing to overlap
        (None, "concurrent", 2, 1, False, 8, False),  # the members themselves overlap
        (True, "sequential", 2, 4, False, 1, True),  # asked for: kept
        (True, "sequential", 1, 1, False, 8, False),
        (True, "concurrent", 2, 1, False, 8, False),
        (False, "sequential", 2, 1, False, 8, False),
    ],
)
def test_crop_overlap_auto_rule(overlap, members, crops, threads, edgetpu, cpus, expected):
    assert resolve_crop_overlap(overlap, members, crops, threads, edgetpu, cpus) is expected


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_an_unknown_crop_overlap_is_refused_in_one_line(bad, tiny_tflite):
    with pytest.raises(ValueError) as err:
        Pipeline(FixedModel(tiny_tflite["float"]), FakeDetector(), overlap_crops=bad)
    assert str(err.value) == f"crop overlap {bad!r} is not one of None (auto), True, False"


def two_scales(tiny_tflite, logit: float = 50.0) -> list[FixedModel]:
    """Two tiny models that need different crops (2.0x and 3.0x)."""
    models = [FixedModel(tiny_tflite["float"], logit) for _ in range(2)]
    models[1].meta = dataclasses.replace(models[1].meta, crop_scale=3.0)
    return models


def slow_first_crop(model, seconds: float) -> None:
    """Delays ``model``'s crop: time for the worker to be scheduled even on a busy machine."""
    first_crop = model.crop_trusted

    def slow(rgb, box):
        time.sleep(seconds)
        return first_crop(rgb, box)

    model.crop_trusted = slow


def test_a_failing_crop_on_the_worker_fails_closed_and_the_next_frame_is_judged(tiny_tflite):
    models = two_scales(tiny_tflite)
    calls = []
    original = models[1].crop_trusted

    def broken(rgb, box):
        calls.append(threading.current_thread().name)
        raise RuntimeError("crop failed")

    models[1].crop_trusted = broken
    slow_first_crop(models[0], 0.05)
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, overlap_crops=True) as pipe:
        assert pipe.members == "sequential" and pipe.overlap_crops
        r = pipe.process(FRAME)
        assert r.decision == pl.ERROR and not r.is_live and r.score is None and "crop failed" in r.error
        assert calls and calls[0].startswith("tla-edge-crop")  # the 3.0x crop was cut on the worker
        models[1].crop_trusted = original
        assert pipe.process(FRAME).decision == pl.LIVE


def test_the_first_member_failing_waits_for_the_worker_then_fails_closed(tiny_tflite):
    models = two_scales(tiny_tflite)
    models[0].error = RuntimeError("invoke failed")
    done = threading.Event()
    original = models[1].crop_trusted

    def slow(rgb, box):
        time.sleep(0.1)  # still cutting when the first member fails
        crop = original(rgb, box)
        done.set()
        return crop

    models[1].crop_trusted = slow
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, overlap_crops=True) as pipe:
        r = pipe.process(FRAME)
        assert done.is_set()  # the worker had finished before the frame's result came back
        assert r.decision == pl.ERROR and "invoke failed" in r.error


def test_auto_overlap_cuts_in_turn_while_no_cpu_sat_idle(tiny_tflite, monkeypatch):
    """auto keeps the worker but asks tla_edge.host.IdleCpus face by face: no idle CPU lately (another
    program busy) -> the later crop is cut in turn on the calling thread; unknown -> the worker, as before.
    Same scores either way; an explicit on never asks."""
    from tla_edge import host

    answers: list = []

    class FakeIdle:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def spare(self, need: float = 0.5):
            return answers.pop(0)

    monkeypatch.setattr(host, "IdleCpus", FakeIdle)
    monkeypatch.setattr(host, "cpus_available", lambda: 4)  # a spare core: auto starts the worker
    models = two_scales(tiny_tflite)
    where: list[str] = []
    original = models[1].crop_trusted

    def traced(rgb, box):
        where.append(threading.current_thread().name)
        return original(rgb, box)

    models[1].crop_trusted = traced
    slow_first_crop(models[0], 0.02)
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="sequential") as pipe:
        assert pipe.overlap_crops and pipe.overlap_counts == [0, 0]
        answers[:] = [None, True, False, False, True]
        results = [pipe.process(FRAME) for _ in range(5)]
        assert not answers and pipe.overlap_counts == [3, 2]
    assert [w.startswith("tla-edge-crop") for w in where] == [True, True, False, False, True]
    assert len({(r.decision, r.raw_score) for r in results}) == 1 and results[0].raw_score is not None
    where.clear()
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="sequential",
                  overlap_crops=True) as pipe:
        assert pipe._idle is None  # asked for: always on the worker, no counters read
        pipe.process(FRAME)
        assert pipe.overlap_counts == [1, 0] and where[0].startswith("tla-edge-crop")


def test_one_crop_for_every_member_needs_no_worker_and_close_ends_it(tiny_tflite):
    before = {t.name for t in threading.enumerate()}
    same = [FixedModel(tiny_tflite["float"], 1.0) for _ in range(2)]
    with Pipeline(same, FakeDetector(), threshold=0.5, overlap_crops=True) as pipe:
        assert not pipe.overlap_crops
        assert not any(t.name.startswith("tla-edge-crop") for t in threading.enumerate() if t.name not in before)
    with Pipeline(two_scales(tiny_tflite), FakeDetector(), threshold=0.5, overlap_crops=True) as pipe:
        workers = [t for t in threading.enumerate() if t.name.startswith("tla-edge-crop") and t.name not in before]
        assert pipe.overlap_crops and workers
    assert not any(t.is_alive() for t in workers)


def test_the_overlap_cuts_the_cheapest_crop_on_the_calling_thread(two_crop_set):
    """A set listed primary (2.7x) first: the calling thread cuts the 1.4x crop (the smaller window, the
    cheaper resize) and runs its member, and the worker cuts the 2.7x one meanwhile."""
    with Pipeline(two_crop_set, num_threads=1, members="sequential", overlap_crops=True) as pipe:
        scales = [m.meta.crop_scale for m in pipe.models]
        assert scales == [2.7, 1.4]
        assert (pipe._first_crop, pipe._later_crops) == ([1], [0])


def slow_crop(original, done: threading.Event):
    """``original``, 0.1 s late, setting ``done`` when its crop is cut."""
    def slow(rgb, box):
        time.sleep(0.1)
        crop = original(rgb, box)
        done.set()
        return crop
    return slow


def broken_crop(message: str):
    def broken(rgb, box):
        raise RuntimeError(message)
    return broken


def test_a_failing_crop_on_the_calling_thread_waits_for_the_worker_then_fails_closed(tiny_tflite):
    """The worker is handed its crop before the calling thread cuts its own: when the calling thread's crop
    fails, the frame still waits for the worker (no input written after the frame is over)."""
    models = two_scales(tiny_tflite)
    done = threading.Event()
    models[1].crop_trusted = slow_crop(models[1].crop_trusted, done)  # still cutting when the calling thread's fails
    models[0].crop_trusted = broken_crop("own crop failed")
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, overlap_crops=True) as pipe:
        assert (pipe._first_crop, pipe._later_crops) == ([0], [1])
        r = pipe.process(FRAME)
        assert done.is_set()  # the worker had finished before the frame's result came back
        assert r.decision == pl.ERROR and not r.is_live and "own crop failed" in r.error


def test_concurrent_members_with_a_crop_each_cut_it_on_their_own_thread(tiny_tflite):
    """Concurrent members needing different crops: each member's crop is cut on the thread that runs it (the
    first on the calling thread, the other on a member worker), and the fused score is the members' mean."""
    models = two_scales(tiny_tflite)
    models[1].logit = -50.0
    threads: dict[int, str] = {}
    for j, m in enumerate(models):
        original = m.crop_trusted

        def crop(rgb, box, j=j, original=original):
            if j == 0:  # long enough for the member worker to take its own (else the caller would)
                time.sleep(0.05)
            threads[j] = threading.current_thread().name
            return original(rgb, box)

        m.crop_trusted = crop
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="concurrent") as pipe:
        assert pipe.members == "concurrent" and pipe._crop_with_member and not pipe.overlap_crops
        r = pipe.process(FRAME)
    assert threads[0] == threading.current_thread().name and threads[1].startswith("tla-edge-member")
    assert r.raw_score == pytest.approx(0.5) and r.timings["crop"] > 0 and r.timings["invoke"] >= 0


def test_a_failing_crop_on_a_member_thread_fails_closed_after_every_member_ended(tiny_tflite):
    models = two_scales(tiny_tflite)
    done = threading.Event()
    originals = [m.crop_trusted for m in models]
    models[0].crop_trusted = slow_crop(originals[0], done)  # the calling thread still cutting when the worker's fails
    models[1].crop_trusted = broken_crop("member crop failed")
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="concurrent") as pipe:
        r = pipe.process(FRAME)
        assert done.is_set()  # the other member had ended before the frame's result came back
        assert r.decision == pl.ERROR and not r.is_live and "member crop failed" in r.error
        models[0].crop_trusted, models[1].crop_trusted = originals
        assert pipe.process(FRAME).decision == pl.LIVE


def test_concurrent_members_sharing_one_crop_cut_it_once_before_they_run(tiny_tflite):
    same = [FixedModel(tiny_tflite["float"], 1.0) for _ in range(2)]
    with Pipeline(same, FakeDetector(), threshold=0.5, members="concurrent") as pipe:
        assert pipe.members == "concurrent" and not pipe._crop_with_member


def test_worker_runs_calls_in_order_on_its_own_thread_and_hands_back_errors():
    worker = Worker("tla-edge-test")
    seen: list[tuple[int, str]] = []
    try:
        jobs = [worker.submit(lambda i: seen.append((i, threading.current_thread().name)) or i * i, i) for i in range(5)]
        assert [job.result() for job in jobs] == [0, 1, 4, 9, 16]
        assert seen == [(i, "tla-edge-test") for i in range(5)]

        def fail():
            raise OSError("disk gone")

        job = worker.submit(fail)
        assert isinstance(job.exception(), OSError) and job.exception() is job.exception()  # waits, then stays
        with pytest.raises(OSError, match="disk gone"):
            job.result()
        assert worker.submit(int, "7").result() == 7  # the thread survived the failure
    finally:
        worker.close()
    assert not any(t.name == "tla-edge-test" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(int)
    worker.close()  # twice is fine


def test_worker_job_waits_for_a_slow_call():
    worker = Worker("tla-edge-test")
    gate = threading.Event()
    try:
        job = worker.submit(lambda: "done" if gate.wait(5) else "timed out")
        time.sleep(0.02)
        assert job._done.locked()  # still running: its latch is held
        threading.Timer(0.05, gate.set).start()
        assert job.result() == "done"  # waited for the call rather than returning early
    finally:
        worker.close()


def test_member_runner_raises_the_first_members_error_in_order_after_all_ended():
    runner = MemberRunner(3, concurrent=True)
    ended: list[int] = []

    def call(i: int) -> int:
        time.sleep(0.01 * (3 - i))
        ended.append(i)
        if i in (1, 2):
            raise ValueError(f"member {i}")
        return i

    try:
        with pytest.raises(ValueError, match="member 1"):
            runner.map(call, [0, 1, 2])
        assert sorted(ended) == [0, 1, 2]  # every member had ended when it raised
        assert runner.map(lambda i: i + 1, [0, 1, 2]) == [1, 2, 3]
    finally:
        runner.close()


def test_finish_runs_a_call_the_worker_has_not_started_here_and_only_once():
    """A loaded machine: the worker is still busy when the caller needs the result, so the caller does the work."""
    worker = Worker("tla-edge-test")
    gate = threading.Event()
    runs: list[str] = []
    try:
        busy = worker.submit(gate.wait, 5)  # the worker is held here
        job = worker.submit(lambda: runs.append(threading.current_thread().name) or len(runs))
        assert job.finish() is None and job.result() == 1
        assert runs == [threading.current_thread().name]  # ran on the caller
        gate.set()
        busy.result()
        assert worker.submit(int, "5").result() == 5  # the worker went past the taken call ...
        assert runs == [threading.current_thread().name]  # ... without running it again
    finally:
        gate.set()
        worker.close()


def test_finish_waits_for_a_call_the_worker_has_started():
    worker = Worker("tla-edge-test")
    started, gate = threading.Event(), threading.Event()
    names: list[str] = []

    def call():
        started.set()
        gate.wait(5)
        names.append(threading.current_thread().name)
        raise KeyError("from the worker")

    try:
        job = worker.submit(call)
        assert started.wait(5)
        threading.Timer(0.05, gate.set).start()
        assert isinstance(job.finish(), KeyError)  # waited for the worker's run and got its error
        assert names == ["tla-edge-test"]
    finally:
        gate.set()
        worker.close()


def test_a_crop_worker_that_has_not_started_is_not_waited_for(tiny_tflite):
    """Overlapped crops on a loaded machine: the worker is not running yet, so the caller cuts its crops."""
    models = two_scales(tiny_tflite)
    models[1].logit = -50.0
    cut_on: list[str] = []
    original = models[1].crop_trusted
    models[1].crop_trusted = lambda rgb, box: cut_on.append(threading.current_thread().name) or original(rgb, box)
    with Pipeline(models, FakeDetector(), threshold=0.5, live_frames=1, members="sequential",
                  overlap_crops=True) as pipe:
        expected = pipe.process(FRAME).raw_score
        assert cut_on == ["tla-edge-crop"] or cut_on == [threading.current_thread().name]
        gate = threading.Event()
        busy = pipe._crop_worker.submit(gate.wait, 5)  # the worker is held: as if no core were free for it
        cut_on.clear()
        r = pipe.process(FRAME)
        assert cut_on == [threading.current_thread().name] and r.raw_score == expected == pytest.approx(0.5)
        gate.set()
        busy.result()
        assert pipe.process(FRAME).raw_score == expected  # the worker skipped the taken crop and goes on


# --- one crop, one input, where members share them -------------------------------------------------------


class KeyedModel:
    """Just what :func:`members.shared_work` reads of a model."""

    def __init__(self, scale: float, key: tuple, rule: str = "shift", size: tuple = (96, 96)) -> None:
        self.meta = dataclasses.make_dataclass("Meta", ["crop_scale", "crop_rule"])(scale, rule)
        self.input_size, self.input_key = size, key


def test_shared_work_shares_a_crop_by_scale_rule_and_size_and_an_input_by_its_key_too():
    models = [KeyedModel(1.4, "k"), KeyedModel(1.4, "k"), KeyedModel(2.7, "k"), KeyedModel(1.4, "other"),
              KeyedModel(1.4, "k", rule="pad"), KeyedModel(1.4, "k", size=(80, 80)), KeyedModel(2.7, "k")]
    crop_of, input_of = members.shared_work(models)
    assert crop_of == [0, 0, 1, 0, 2, 3, 1]
    assert input_of == [0, 0, 2, 3, 4, 5, 2]


def test_a_copied_input_is_the_input_the_member_would_write_itself():
    """The bundled members share a crop; where their input keys match too, the second member's tensor is a
    copy of the first's, and equals what its own writer makes of the crop (computed apart, here)."""
    rgb = sample_frames()[0]
    with Pipeline(num_threads=1, members="sequential", smoothing=1, live_frames=1) as pipe:
        face = pipe.process(rgb).face
        assert face is not None
        calls = []
        for m in pipe.models:
            m.set_input = (lambda original: lambda crop: calls.append(1) or original(crop))(m.set_input)
        pipe._prepare(rgb, face, range(len(pipe.models)))
        shares = [j for j, src in enumerate(pipe._input_of) if src != j]
        assert len(calls) == len(pipe.models) - len(shares)  # a shared input is written once
        for m in pipe.models:
            own = m.input_tensor(m.crop(rgb, face))
            np.testing.assert_array_equal(m.interpreter.get_tensor(m.interpreter.get_input_details()[0]["index"]), own)
    keys = [m.input_key for m in pipe.models]
    assert shares == [j for j in range(1, len(keys)) if keys[j] in keys[:j]]


def test_copy_input_from_a_closed_model_is_refused(tiny_tflite):
    a, b = LivenessModel(tiny_tflite["int8"]), LivenessModel(tiny_tflite["int8"])
    b.close()
    with pytest.raises(RuntimeError, match="is closed"):
        a.copy_input_from(b)
