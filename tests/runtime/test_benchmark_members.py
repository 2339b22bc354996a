"""``tla-edge bench --members``: sequential and concurrent rows of the bundled pair, side by side.

No test asserts a speed (the measured rows are in benchmarks/results/); these check
the rows, that both modes judge the same frames alike, and the raw pass's mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tla_edge import cli
from tla_edge.runtime import benchmark as bench
from tla_edge.runtime import benchmark_raw

pytest.importorskip("ai_edge_litert", reason="the bundled pair runs on the 'runtime' extra's LiteRT")


def test_configurations_cross_members_and_name_them():
    a, b = "a_int8.tflite", "b_int8.tflite"
    configs = bench.configurations([f"{a}+{b}"], [1, 2], False, (None,), ["sequential", "concurrent", "sequential"])
    assert [c.id for c in configs] == ["a_int8+b_int8/1t:sequential", "a_int8+b_int8/1t:concurrent",
                                       "a_int8+b_int8/2t:sequential", "a_int8+b_int8/2t:concurrent"]
    assert bench.configurations([a], [1], False)[0].id == "a_int8/1t"  # unnamed: ids as before


def test_bench_rows_sequential_and_concurrent_judge_alike(tmp_path, monkeypatch):
    out = tmp_path / "members.json"
    monkeypatch.setattr(cli, "COMMANDS", {"bench": cli.COMMANDS["bench"]})
    argv = ["bench", "--members", "sequential", "--members", "concurrent", "--members", "auto", "--threads", "1",
            "--frames", "6", "--warmup", "1", "--json", str(out), "--quiet"]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    seq, conc, auto = report["configurations"]
    assert [seq["members"], conc["members"]] == ["sequential", "concurrent"]
    assert auto["members"] in ("sequential", "concurrent") and auto["id"].endswith("/1t:auto")
    assert seq["id"].endswith("/1t:sequential") and conc["id"].endswith("/1t:concurrent")
    assert seq["decisions"] == conc["decisions"] == auto["decisions"]
    for c in (seq, conc):
        assert c["frames_scored"] > 0 and c["raw_invoke_ms"]["liveness"]["n"] == 6
        assert c["overhead"] == pytest.approx(
            c["total_scored"]["median"]
            / (c["raw_invoke_ms"]["detector"]["median"] + c["raw_invoke_ms"]["liveness"]["median"]), abs=1e-3)
    assert report["overhead"] == max(c["overhead"] for c in report["configurations"])


def test_an_unknown_members_value_is_refused_before_measuring():
    with pytest.raises(ValueError, match=r"--members 'both' is not one of 'auto', 'sequential', 'concurrent'"):
        bench.run_benchmark(None, None, [1], 1, 0, members=["both"])


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_the_raw_models_run_the_way_the_pipeline_ran_them(mode):
    """The raw liveness series runs the pair as the pipeline did, on the face it judged."""
    import threading

    import cv2

    from tla_edge.runtime import assets
    from tla_edge.runtime.pipeline import Pipeline

    rgb = cv2.cvtColor(cv2.imread(str(sorted(assets.sample_frames_dir().glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    with Pipeline(num_threads=1, members=mode) as pipe:
        face = pipe.process(rgb, 33).face
        assert face is not None
        threads = []  # (member, the name of the thread that ran its invoke)
        for j, model in enumerate(pipe.models):
            real = model.interpreter.invoke
            model.interpreter.invoke = (lambda real=real, j=j:
                                        threads.append((j, threading.current_thread().name)) or real())
        with benchmark_raw.RawTimer(pipe) as raw:
            assert raw.detector_ms(rgb, 66) > 0
            assert raw.liveness_ms(rgb, face) > 0
            for model in pipe.models:  # the inputs it timed: the face's own
                index = model.interpreter.get_input_details()[0]["index"]
                assert np.array_equal(model.interpreter.get_tensor(index), model.input_tensor(model.crop(rgb, face)))
            assert raw.liveness_ms(rgb, None) > 0  # no face on this frame: the last face's inputs
            assert sorted(j for j, _ in threads) == [0, 0, 1, 1]
            main = threading.current_thread().name
            if mode == "concurrent":
                # the partner runs on the runner's worker; on a busy machine the caller takes a call the worker
                # has not started yet (members.Job.finish): time a few more frames until the worker has run one
                for _ in range(200):
                    if any(name == "tla-edge-member-0" for _, name in threads):
                        break
                    raw.liveness_ms(rgb, face)
        assert all(name == main for j, name in threads if j == 0)  # the primary runs on the calling thread
        assert {name for _, name in threads} == ({main} if mode == "sequential" else {main, "tla-edge-member-0"})
        with pytest.raises(RuntimeError, match="closed"):
            raw.detector_ms(rgb, 99)


def test_bench_rows_with_and_without_crop_overlap_judge_alike(tmp_path, monkeypatch, two_crop_set):
    configs = bench.configurations(["a.tflite+b.tflite"], [1], False, (None,), (None,), ["off", "on"])
    assert [c.id for c in configs] == ["a+b/1t~overlap-off", "a+b/1t~overlap-on"]
    out = tmp_path / "overlap.json"
    monkeypatch.setattr(cli, "COMMANDS", {"bench": cli.COMMANDS["bench"]})
    argv = ["bench", "--model", str(two_crop_set), "--members", "sequential", "--crop-overlap", "off",
            "--crop-overlap", "on", "--threads", "1", "--frames", "6", "--warmup", "1", "--json", str(out), "--quiet"]
    assert cli.main(argv) == 0
    off, on = json.loads(out.read_text())["configurations"]
    assert (off["overlap_crops"], on["overlap_crops"]) == (False, True)  # the set cuts two crops
    assert off["id"].endswith("/1t:sequential~overlap-off") and on["id"].endswith("/1t:sequential~overlap-on")
    assert off["decisions"] == on["decisions"] and on["frames_scored"] > 0
    # faces cut on the worker / in turn: on always uses the worker; off has none to count
    faces = on["overlap_crops_faces"]
    assert faces["in_turn"] == 0 and faces["on_worker"] >= on["frames_scored"] and "overlap_crops_faces" not in off


def test_an_unknown_crop_overlap_is_refused_before_measuring():
    with pytest.raises(ValueError, match=r"--crop-overlap 'yes' is not one of 'auto', 'on', 'off'"):
        bench.run_benchmark(None, None, [1], 1, 0, crop_overlaps=["yes"])
