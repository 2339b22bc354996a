"""tla_edge.runtime.blazeface (MediaPipe's face-detection graph in NumPy) and the detector backend choice.

The pure steps are checked on hand-made inputs against values worked out by
hand; none of these tests needs mediapipe. The last layer runs the bundled
models through LiteRT (the default backend) on the bundled sample frames, and
compares with MediaPipe where the opt-in mediapipe extra is installed.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from tla_edge.runtime import blazeface as bf
from tla_edge.runtime import cpu, faces, mediapipe_backend
from tla_edge.runtime.assets import sample_frames_dir
from tla_edge.errors import UserError
from tla_edge.runtime.faces import FaceDetector, bundled_detector_path

PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
"""
PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU part\t: 0xd0b
"""
X86_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme sse sse2 avx avx2 fma\n"


# --- anchors -----------------------------------------------------------------


def test_short_range_anchors():
    a = bf.ssd_anchors(128, (8, 16, 16, 16))
    assert a.shape == (896, 2) and a.dtype == np.float32
    # 16x16 cells with 2 anchors each (one layer + the interpolated one), row by row
    np.testing.assert_array_equal(a[0], [0.03125, 0.03125])
    np.testing.assert_array_equal(a[1], [0.03125, 0.03125])
    np.testing.assert_array_equal(a[2], [0.09375, 0.03125])
    np.testing.assert_array_equal(a[32], [0.03125, 0.09375])
    np.testing.assert_array_equal(a[511], [0.96875, 0.96875])
    # then 8x8 cells with 6 anchors each (three stride-16 layers x 2)
    np.testing.assert_array_equal(a[512:518], [[0.0625, 0.0625]] * 6)
    np.testing.assert_array_equal(a[518], [0.1875, 0.0625])
    np.testing.assert_array_equal(a[-1], [0.9375, 0.9375])


def test_full_range_anchors():
    a = bf.ssd_anchors(192, (4,), interpolated_scale_aspect_ratio=0.0)
    assert a.shape == (2304, 2)
    np.testing.assert_allclose(a[0], [1 / 96, 1 / 96], rtol=1e-6)
    np.testing.assert_allclose(a[1], [3 / 96, 1 / 96], rtol=1e-6)
    np.testing.assert_allclose(a[48], [1 / 96, 3 / 96], rtol=1e-6)
    np.testing.assert_allclose(a[-1], [95 / 96, 95 / 96], rtol=1e-6)


def test_anchors_of_a_tiny_layout_and_the_bundled_configs():
    a = bf.ssd_anchors(16, (8,), interpolated_scale_aspect_ratio=0.0)
    np.testing.assert_array_equal(a, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    for config in bf.CONFIGS:
        n = len(bf.ssd_anchors(config.input_size, config.strides,
                               interpolated_scale_aspect_ratio=config.interpolated_scale_aspect_ratio))
        assert n == config.num_boxes, config
    with pytest.raises(ValueError, match=r"strides \(\) are not positive integers"):
        bf.ssd_anchors(128, ())
    with pytest.raises(ValueError, match=r"input 100x100 with 896 boxes is not a BlazeFace layout"):
        bf.config_for_input(100, 100, 896)


# --- decoding ----------------------------------------------------------------


def test_decoding_of_a_known_raw_output():
    anchors = np.array([[0.5, 0.5], [0.25, 0.75], [0.5, 0.5], [0.5, 0.5]], np.float32)
    raw = np.zeros((4, 8), np.float32)  # 4 box values + 2 keypoints
    raw[0] = [12.8, -6.4, 32.0, 64.0, 0.0, 0.0, 6.4, 12.8]
    raw[1, 2:4] = [12.8, 12.8]
    raw[2, 2:4] = [12.8, 12.8]
    raw[3, 2:4] = [-10.0, 12.8]  # negative width
    logits = np.array([[200.0], [0.0], [-1.0], [3.0]], np.float32)
    d = bf.decode_detections(raw[None], logits[None], anchors, 128, min_score=0.5)
    # box 0: centre (0.5 + 12.8/128, 0.5 - 6.4/128) = (0.6, 0.45), size (0.25, 0.5);
    # its logit is clipped to 100 (sigmoid 1). Box 1: sigmoid(0) = 0.5, kept at
    # min_score 0.5. Box 2: sigmoid(-1) = 0.27, dropped. Box 3: negative width, dropped.
    np.testing.assert_allclose(d.boxes, [[0.475, 0.2, 0.25, 0.5], [0.2, 0.7, 0.1, 0.1]], atol=1e-6)
    np.testing.assert_allclose(d.scores, [1.0, 0.5], atol=1e-7)
    np.testing.assert_allclose(d.keypoints[0], [[0.5, 0.5], [0.55, 0.6]], atol=1e-6)
    np.testing.assert_allclose(d.keypoints[1], [[0.25, 0.75], [0.25, 0.75]], atol=1e-6)


def test_decoding_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not describe the same boxes"):
        bf.decode_detections(np.zeros((3, 16)), np.zeros(4), np.zeros((3, 2)), 128, 0.5)


# --- weighted NMS ---------------------------------------------------------------


def _decoded(boxes, scores, keypoints):
    return bf.Decoded(np.array(boxes, np.float32), np.array(keypoints, np.float32).reshape(len(boxes), -1, 2),
                      np.array(scores, np.float32))


def test_weighted_nms_on_hand_made_boxes():
    d = _decoded(
        boxes=[[0.6, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 1.0, 1.0], [0.1, 0.0, 1.0, 1.0]],
        scores=[0.7, 0.9, 0.8, 0.6],
        keypoints=[[0.0, 0.0], [0.5, 0.5], [3.5, 3.5], [0.8, 0.2]],
    )
    out = bf.weighted_nms(d, 0.3)
    # The 0.9 box takes the 0.6 box (IoU 0.9/1.1), not the 0.7 one (IoU 0.4/1.6);
    # the 0.6 box, gone with it, no longer joins the 0.7 box (IoU 0.5/1.5).
    # Weighted: xmin (0*0.9 + 0.1*0.6)/1.5 = 0.04, xmax (1*0.9 + 1.1*0.6)/1.5 = 1.04,
    # keypoint ((0.5*0.9 + 0.8*0.6)/1.5, (0.5*0.9 + 0.2*0.6)/1.5) = (0.62, 0.38).
    np.testing.assert_allclose(out.scores, [0.9, 0.8, 0.7], atol=1e-7)
    np.testing.assert_allclose(out.boxes, [[0.04, 0.0, 1.0, 1.0], [3.0, 3.0, 1.0, 1.0], [0.6, 0.0, 1.0, 1.0]],
                               atol=1e-6)
    np.testing.assert_allclose(out.keypoints[:, 0], [[0.62, 0.38], [3.5, 3.5], [0.0, 0.0]], atol=1e-6)


def test_weighted_nms_of_nothing_and_of_an_empty_top_box():
    nothing = bf.Decoded(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32))
    empty = bf.weighted_nms(nothing)
    assert empty.boxes.shape == (0, 4) and empty.keypoints.shape == (0, 6, 2) and empty.scores.shape == (0,)
    # An empty box overlaps nothing, not even itself: kept as it is, and (as
    # MediaPipe's loop does) the suppression stops there instead of looping.
    out = bf.weighted_nms(_decoded([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.2, 0.2]], [0.9, 0.8], [[0, 0], [0, 0]]))
    np.testing.assert_allclose(out.boxes, [[0.5, 0.5, 0.0, 0.0]])


# --- letterbox and projection ------------------------------------------------------


def test_letterbox_roi_pads_the_short_side():
    assert bf.letterbox_roi(640, 480, 128, 128) == bf.Roi(320.0, 240.0, 640.0, 640.0)
    assert bf.letterbox_roi(480, 640, 128, 128) == bf.Roi(240.0, 320.0, 640.0, 640.0)
    assert bf.letterbox_roi(640, 480, 256, 128) == bf.Roi(320.0, 240.0, 960.0, 480.0)


def test_projection_back_to_frame_pixels():
    roi = bf.letterbox_roi(640, 480, 128, 128)  # 640x640, 80 px of padding above and below
    d = _decoded(
        boxes=[[0.2501, 0.2501, 0.5001, 0.5001], [-0.05, 0.1, 0.30001, 0.2001], [0.5, 0.5, 2.0, 0.1]],
        scores=[0.9, 0.8, 0.7],
        keypoints=[[0.5, 0.5], [0.0, 0.0], [1.0, 1.0]],
    )
    (box0, s0, kp0), (box1, _, kp1), (box2, _, _) = bf.project_to_frame(d, roi, 640, 480)
    # x = 0.2501*640 = 160.06, y = 0.2501*640 - 80 = 80.06, side 0.5001*640 = 320.06: truncated
    assert box0 == (160, 80, 320, 320) and s0 == pytest.approx(0.9)
    np.testing.assert_allclose(kp0, [[320.0, 240.0]], atol=1e-3)
    # left and top outside the frame: bounded to 0, the size kept (MediaPipe's pixel box)
    assert box1 == (0, 0, 192, 128)
    np.testing.assert_allclose(kp1, [[0.0, -80.0]], atol=1e-3)  # keypoints are not bounded
    assert box2 == (320, 240, 640, 64)  # a width past the frame is bounded to the frame's


def test_image_to_tensor_letterboxes_with_a_zero_border():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    roi = bf.letterbox_roi(640, 480, 128, 128)
    t = bf.image_to_tensor(rgb, roi, 128, 128)
    assert t.shape == (1, 128, 128, 3) and t.dtype == np.float32
    # the ROI's corners map to the tensor's corners: tensor (u, v) samples frame (5u, 5v - 80)
    expected = np.full((128, 128, 3), -1.0, np.float32)
    rows = np.arange(16, 112)
    expected[rows] = rgb[5 * rows - 80][:, ::5] * (2.0 / 255.0) - 1.0
    np.testing.assert_allclose(t[0], expected, atol=1e-6)


def test_image_to_tensor_of_a_grey_frame_at_a_fractional_scale():
    rgb = np.full((600, 800, 3), 200, np.uint8)
    t = bf.image_to_tensor(rgb, bf.letterbox_roi(800, 600, 192, 192), 192, 192)
    # 800 px over 192: the frame covers rows 24..168 of the tensor
    np.testing.assert_allclose(t[0, 30:160], 200 * 2.0 / 255.0 - 1.0, atol=1e-6)
    np.testing.assert_allclose(t[0, :20], -1.0)
    np.testing.assert_allclose(t[0, 172:], -1.0)


def test_image_to_tensor_uses_opencvs_fixed_point_bilinear():
    # One row of 12 pixels, 10 of them onto 3: output u samples x = 10u/3. At
    # u = 1 (x = 3.33) OpenCV's warp rounds the position to 107/32, i.e. pixel 3
    # plus 11/32, and weighs (21, 11) * 32 * 32 of 2**15: (11 * 1024 * 255 + 2**14) >> 15
    # = 88, where exact bilinear would give 85. At u = 2 (x = 6.67): 213/32,
    # pixel 6 plus 21/32: (11 * 1024 * 30 + 21 * 1024 * 90 + 2**14) >> 15 = 69.
    row = np.zeros((1, 12, 3), np.uint8)
    row[0, 0] = 7
    row[0, 4] = 255
    row[0, 6], row[0, 7] = 30, 90
    t = bf.image_to_tensor(row, bf.Roi(5.0, 0.5, 10.0, 1.0), 3, 1)
    np.testing.assert_allclose((t[0, 0, :, 0] + 1.0) * 255.0 / 2.0, [7, 88, 69], atol=1e-3)


@pytest.mark.parametrize("shape", [(480, 640), (600, 800), (720, 1280), (640, 480), (37, 53)])
@pytest.mark.parametrize("size", [128, 192])
def test_opencv_remap_gives_the_numpy_warps_pixels(shape, size):
    pytest.importorskip("cv2")
    rgb = np.random.default_rng(sum(shape) + size).integers(0, 256, (*shape, 3), dtype=np.uint8)
    roi = bf.letterbox_roi(shape[1], shape[0], size, size)
    maps = bf.remap_maps(roi, size, size)
    np.testing.assert_array_equal(bf.image_to_tensor_remap(rgb, maps), bf.image_to_tensor(rgb, roi, size, size))


def test_remap_maps_refuse_positions_beyond_int16():
    assert bf.remap_maps(bf.Roi(20000.0, 20000.0, 40000.0, 40000.0), 128, 128) is None


# --- backend choice ------------------------------------------------------------------


def test_cpu_features_and_verdict():
    assert cpu.cpu_features(PI4_CPUINFO) == {"fp", "asimd", "evtstrm", "crc32", "cpuid"}
    assert "asimddp" in cpu.cpu_features(PI5_CPUINFO)
    assert cpu.cpu_features("no such lines") == frozenset()
    verdict = cpu.mediapipe_cpu_verdict
    assert verdict("Linux", "aarch64", cpu.cpu_features(PI4_CPUINFO)) is False
    assert verdict("Linux", "aarch64", cpu.cpu_features(PI5_CPUINFO)) is True
    assert verdict("Linux", "aarch64", frozenset()) is None
    # qemu-user before 8.x shows an arm64 guest the x86 host's cpuinfo
    assert verdict("Linux", "aarch64", cpu.cpu_features(X86_CPUINFO)) is None
    assert verdict("Darwin", "arm64", frozenset()) is True
    assert verdict("Linux", "x86_64", cpu.cpu_features(X86_CPUINFO)) is True
    assert verdict("Linux", "x86_64", frozenset({"sse2"})) is None
    assert verdict("Linux", "armv7l", frozenset({"neon"})) is None


def _find_spec_without_mediapipe(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(cpu.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mediapipe" else real(name, *a))


def test_auto_takes_litert_even_where_mediapipe_runs(monkeypatch):
    monkeypatch.setattr(cpu, "this_cpu_verdict", lambda: (True, "x86_64 CPU"))
    monkeypatch.setattr(cpu.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(mediapipe_backend, "import_mediapipe", lambda: pytest.fail("mediapipe imported"))
    backend, why = cpu.auto_backend()
    assert backend == "litert" and "--detector-backend mediapipe" in why
    assert cpu.resolve_backend("auto") == "litert"
    assert cpu.resolve_backend("mediapipe") == "mediapipe"  # asked for, installed, runs here


def test_auto_detector_is_litert():
    with FaceDetector("short", num_threads=1) as det:
        assert det.backend == "litert"


def test_mediapipe_asked_for_but_absent_is_one_line_naming_the_extra(monkeypatch):
    _find_spec_without_mediapipe(monkeypatch)
    assert cpu.resolve_backend("auto") == "litert"
    message = r"^detector backend 'mediapipe' needs the mediapipe extra: pip install 'tla-edge\[runtime,mediapipe\]'"
    for ask in (lambda: cpu.resolve_backend("mediapipe"), lambda: FaceDetector("short", backend="mediapipe"),
                mediapipe_backend.import_mediapipe):
        with pytest.raises(UserError, match=message) as err:
            ask()
        assert "\n" not in str(err.value)


def test_mediapipe_asked_for_on_a_pi4_cpu_is_refused_without_importing_it(monkeypatch):
    monkeypatch.setattr(cpu, "this_cpu_verdict", lambda: (False, "aarch64 CPU without asimddp, atomics"))
    monkeypatch.setattr(mediapipe_backend, "import_mediapipe", lambda: pytest.fail("mediapipe imported"))
    monkeypatch.setattr(cpu.importlib.util, "find_spec", lambda name, *a: object())
    assert cpu.auto_backend()[0] == "litert"
    with pytest.raises(UserError, match="mediapipe 1.x cannot run on this aarch64 CPU.*--detector-backend litert"):
        cpu.resolve_backend("mediapipe")
    assert cpu.resolve_backend("litert") == "litert"


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"detector backend 'tpu' is not one of 'auto', 'mediapipe', 'litert'"):
        FaceDetector("short", backend="tpu")


# --- the bundled models through LiteRT -------------------------------------------------


@pytest.fixture(scope="module")
def samples():
    from tla_edge.data.datasets import read_image_rgb

    return {p.name: read_image_rgb(p) for p in sorted(sample_frames_dir().glob("*.jpg"))}


@pytest.mark.parametrize("model", ["short", "full"])
def test_litert_backend_on_the_sample_frames(samples, model):
    with FaceDetector(model, backend="litert", policy="all", num_threads=1) as det:
        assert det.backend == "litert"
        found = {name: det.detect(rgb) for name, rgb in samples.items()}
    assert found["04_no_face.jpg"] == []
    for name in ("01_person.jpg", "02_person_left_edge.jpg", "05_printed_photo.jpg"):
        face = found[name][0]
        assert face.width > 40 and len(face.keypoints) == 6, (name, face)
        right_eye, left_eye = face.keypoints[:2]
        assert face.x <= right_eye[0] < left_eye[0] <= face.x + face.width, (name, face)


@pytest.mark.skipif(cpu.mediapipe_unavailable() is not None, reason=f"{cpu.mediapipe_unavailable()}")
@pytest.mark.parametrize("model", ["short", "full"])
def test_litert_backend_agrees_with_mediapipe(samples, model):
    with FaceDetector(model, backend="mediapipe", policy="all") as mp, \
            FaceDetector(model, backend="litert", policy="all") as lr:
        for name, rgb in samples.items():
            a, b = mp.detect(rgb), lr.detect(rgb)
            assert len(a) == len(b), (name, a, b)
            for fa, fb in zip(a, b):
                assert fa.iou(fb) >= 0.98, (name, fa, fb)
                assert np.abs(np.subtract(fa.keypoints, fb.keypoints)).max() <= 1.0, (name, fa, fb)
                assert fa[:4] == fb[:4], (name, fa, fb)  # same pixels, same kernels: the same integer box


def test_litert_video_mode_keeps_mediapipe_timestamp_rules(samples):
    rgb = samples["01_person.jpg"]
    with FaceDetector("short", backend="litert", mode="video") as det:
        det.detect(rgb, 100)
        with pytest.raises(ValueError, match="is not greater than the previous frame's"):
            det.detect(rgb, 100)
        assert det.last_invoke_ms is not None and det.last_invoke_ms > 0
    with pytest.raises(RuntimeError, match="closed"):
        det.detect(rgb)


def test_litert_backend_rejects_a_model_that_is_not_blazeface():
    from tla_edge.runtime.assets import default_liveness_model

    with pytest.raises(ValueError, match=r"outputs \[\(1, 1\)\] are not BlazeFace's"):
        bf.BlazeFaceLiteRT(default_liveness_model())


def test_bundled_model_files_match_their_configs():
    for name, config in (("short", bf.SHORT_RANGE), ("full", bf.FULL_RANGE)):
        det = bf.BlazeFaceLiteRT(bundled_detector_path(name))
        assert det.config == config and det.anchors.shape == (config.num_boxes, 2)


# --- tla-edge info on the bundled detectors -----------------------------------------------


def test_info_reports_the_bundled_detectors_and_what_an_edgetpu_one_needs():
    from tla_edge.cli.info import format_report
    from tla_edge.runtime import modelinfo as info
    from tla_edge.runtime.assets import default_liveness_model

    for name, anchors in (("short", 896), ("full", 2304)):
        d = info.describe(name)
        assert d["path"].endswith(faces.BUNDLED_MODELS[name])
        assert not d["edgetpu"]["ready"]
        det = d["detector"]
        assert det["anchors"] == anchors and det["full_integer"] is False
        assert det["backends"] == ["mediapipe", "litert"]
        assert det["edgetpu"].startswith("needs a full-integer model")
        # one line for all the fp16 weights' DEQUANTIZE ops, not one line each
        dequant = [r for r in d["edgetpu"]["reasons"] if "DEQUANTIZE op" in r]
        assert len(dequant) == 2 and re.match(r"\d+ more DEQUANTIZE ops inside the graph", dequant[1])
        assert "detector   BlazeFace" in format_report(d)
    assert info.describe(default_liveness_model())["detector"] is None


@pytest.mark.parametrize("num_threads", [0, 65, 30000])
def test_runner_refuses_thread_counts_outside_1_to_64(num_threads):
    with pytest.raises(ValueError, match=rf"num_threads {num_threads} is not an integer in \[1, 64\] or None"):
        bf.BlazeFaceLiteRT(bundled_detector_path("short"), num_threads=num_threads)


def test_loop_options_and_benchmark_bound_threads():
    from tla_edge.runtime.benchmark import run_benchmark
    from tla_edge.runtime.loop import check_options

    with pytest.raises(ValueError, match=r"--threads 30000 is not an integer in \[1, 64\] or None"):
        check_options(None, threads=30000)
    with pytest.raises(ValueError, match=r"threads 65 is not an integer in \[1, 64\] or None"):
        run_benchmark(None, None, [1, 65], frames=1, warmup=0, show_progress=False)
