"""tla_edge.train.teacher: Silent-Face's crop rule on hand-made boxes, its input contract, the fusion,
and the real ONNX pair on a bundled sample frame."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from tla_edge.errors import UserError
from tla_edge.train import teacher as tch
from tla_edge.train.teacher import CropBox, crop_box

H, W = 480, 640
FRAME = (H, W, 3)


def find_teacher_dir() -> Path | None:
    """The shared ONNX pair: $TLA_EDGE_DATA/../weights/teachers/silent-face, else ../shared/weights/... ."""
    candidates = []
    if os.environ.get("TLA_EDGE_DATA"):
        candidates.append(Path(os.environ["TLA_EDGE_DATA"]).parent / "weights" / "teachers" / "silent-face")
    candidates.append(REPO.parent / "shared" / "weights" / "teachers" / "silent-face")
    for c in candidates:
        if all((c / m.file).is_file() for m in tch.MODELS):
            return c
    return None


@pytest.fixture(scope="module")
def teacher_folder() -> Path:
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install 'tla-edge[teacher]')")
    found = find_teacher_dir()
    if found is None:
        pytest.skip("Silent-Face ONNX files not found: set TLA_EDGE_DATA to the data folder whose sibling "
                    "weights/teachers/silent-face holds them (expected ../shared/weights/teachers/silent-face)")
    return found


# --- the crop rule on hand-made boxes (expectations computed by hand) ---------------------


def test_centred_box_is_scaled_about_its_centre():
    # centre (320, 240); 2.7 x 100 = 270: corners 320 -/+ 135, 240 -/+ 135
    assert crop_box((270, 190, 100, 100), 2.7, FRAME) == CropBox(185, 105, 455, 375, 2.7, False)


def test_box_keeps_its_aspect_ratio():
    # 40 x 80 at 2.0 -> 80 x 160 about (320, 240): not made square
    assert crop_box((300, 200, 40, 80), 2.0, FRAME) == CropBox(280, 160, 360, 320, 2.0, False)


@pytest.mark.parametrize("box, expected", [
    # left: centre x 60, 60 - 135 = -75 -> moved right by 75: x 0..270
    ((10, 200, 100, 100), CropBox(0, 115, 270, 385, 2.7, True)),
    # right (box past the frame): centre x 610, 610 + 135 = 745 > 639 -> moved left by 106: x 369..639
    ((560, 200, 100, 100), CropBox(369, 115, 639, 385, 2.7, True)),
    # top (box above the frame): 80 x 100 -> 216 x 270 about (340, 30); y -105 -> moved down: y 0..270
    ((300, -20, 80, 100), CropBox(232, 0, 448, 270, 2.7, True)),
    # bottom: centre y 470, 470 + 135 = 605 > 479 -> moved up by 126: y 209..479
    ((300, 420, 80, 100), CropBox(232, 209, 448, 479, 2.7, True)),
])
def test_box_is_shifted_inside_at_each_edge_never_padded(box, expected):
    got = crop_box(box, 2.7, FRAME)
    assert got == expected
    assert got.x1 >= 0 and got.y1 >= 0 and got.x2 <= W - 1 and got.y2 <= H - 1


def test_scale_is_capped_by_the_frame():
    # 100 x 200 at 4.0: (H-1)/h = 479/200 = 2.395 < 4 -> 239.5 x 479 about (320, 290);
    # x 200.25..439.75, y 50.5..529.5 -> moved up by 50.5: y 0..479
    got = crop_box((270, 190, 100, 200), 4.0, FRAME)
    assert got.scale == pytest.approx(2.395)
    assert got[:4] == (200, 0, 439, 479) and got.shifted
    # the width caps too: (W-1)/w = 639/300 = 2.13
    assert crop_box((170, 200, 300, 100), 4.0, FRAME).scale == pytest.approx(639 / 300)


def test_corners_are_truncated_with_int():
    # scale 1: corners 100.6, 50.3, 160.6, 110.3 -> int() -> 100, 50, 160, 110
    assert crop_box((100.6, 50.3, 60, 60), 1.0, FRAME)[:4] == (100, 50, 160, 110)


def test_bad_boxes_and_scales_are_refused():
    for box, scale in (((0, 0, 0, 10), 2.7), ((0, 0, 10, -1), 2.7), ((0, 0, 10, 10), 0.0)):
        with pytest.raises(ValueError):
            crop_box(box, scale, FRAME)


# --- the input contract ------------------------------------------------------------------------


def gradient_frame() -> np.ndarray:
    """Pixel (y, x) = (x % 256, y % 256, 7) as RGB: position is readable from colour."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx % 256, yy % 256, np.full_like(xx, 7)], axis=-1).astype(np.uint8)


def test_crop_is_the_inclusive_slice_of_the_frame():
    pytest.importorskip("cv2", reason="the crop needs OpenCV (the 'runtime' extra)")
    frame = gradient_frame()
    # 39.5 x 39.5 at 2.0 -> 79 x 79 about (320, 220): x 280.5..359.5, y 180.5..259.5 -> [180:260, 280:360], 80 x 80
    box = (300.25, 200.25, 39.5, 39.5)
    assert crop_box(box, 2.0, FRAME)[:4] == (280, 180, 359, 259)
    np.testing.assert_array_equal(tch.crop_teacher(frame, box, 2.0), frame[180:260, 280:360])


def test_inputs_are_bgr_0_255_nchw():
    pytest.importorskip("cv2", reason="the crop needs OpenCV (the 'runtime' extra)")
    rgb = np.empty(FRAME, np.uint8)
    rgb[...] = (255, 20, 128)  # R, G, B
    inputs = tch.teacher_inputs(rgb, [(270, 190, 100, 100), (10, 10, 50, 60)])
    assert len(inputs) == len(tch.MODELS)
    for x in inputs:
        assert x.shape == (2, 3, 80, 80) and x.dtype == np.float32
        assert (x[:, 0] == 128).all() and (x[:, 1] == 20).all() and (x[:, 2] == 255).all()  # B, G, R; not /255


def test_to_input_moves_channels_first():
    crops = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    x = tch.to_input(crops)
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
    assert x[1, 2, 3, 4] == crops[1, 3, 4, 2]
    assert tch.to_input(crops[0]).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError):
        tch.to_input(np.zeros((4, 5), np.uint8))


def test_teacher_inputs_refuse_a_non_rgb_frame():
    with pytest.raises(ValueError):
        tch.teacher_inputs(np.zeros((H, W), np.uint8), [(0, 0, 10, 10)])


# --- softmax, fusion, decision -----------------------------------------------------------------------


def test_softmax_and_upstream_fusion():
    p = tch.softmax(np.array([[0.0, np.log(2.0), 0.0]]))
    np.testing.assert_allclose(p, [[0.25, 0.5, 0.25]])
    fused = tch.fuse([np.array([[0.2, 0.6, 0.2]]), np.array([[0.4, 0.2, 0.4]])])
    np.testing.assert_allclose(fused, [[0.3, 0.4, 0.3]])
    assert tch.live_probability(fused)[0] == pytest.approx(0.4)
    # upstream's argmax: real wins with P(real) = 0.4 < 0.5 when the attack mass splits
    assert tch.upstream_is_live(fused).tolist() == [True]
    assert tch.upstream_is_live(np.array([[0.55, 0.45, 0.0]])).tolist() == [False]


def test_default_folder_is_local(monkeypatch):
    monkeypatch.setenv(tch.TEACHER_DIR_ENV, "/some/where")
    assert tch.teacher_dir() == Path("/some/where")
    monkeypatch.delenv(tch.TEACHER_DIR_ENV)
    assert tch.teacher_dir() == Path.home() / ".cache" / "tla-edge" / "weights" / "teachers" / "silent-face"


def test_missing_onnxruntime_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(UserError, match=r"tla-edge\[teacher\]"):
        tch.SilentFaceTeacher(tmp_path)


def test_missing_or_wrong_files_are_refused(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the 'teacher' extra)")
    with pytest.raises(UserError, match=tch.TEACHER_DIR_ENV):
        tch.SilentFaceTeacher(tmp_path)
    for m in tch.MODELS:
        (tmp_path / m.file).write_bytes(b"not an onnx model")
    with pytest.raises(UserError, match="SHA-256"):
        tch.SilentFaceTeacher(tmp_path)


# --- the real ONNX pair on a bundled sample frame -------------------------------------------------------


def readme_score(folder: Path, bgr: np.ndarray, box) -> np.ndarray:
    """The shared README's usage snippet, written out independently of the module."""
    import cv2
    import onnxruntime as ort

    p = np.zeros(3)
    for m in tch.MODELS:
        sess = ort.InferenceSession(str(folder / m.file), providers=["CPUExecutionProvider"])
        x, y, w, h = box
        s = min((bgr.shape[0] - 1) / h, (bgr.shape[1] - 1) / w, m.scale)
        cx, cy, nw, nh = x + w / 2, y + h / 2, w * s, h * s
        x1, y1, x2, y2 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
        if x1 < 0: x1, x2 = 0, x2 - x1  # noqa: E701
        if y1 < 0: y1, y2 = 0, y2 - y1  # noqa: E701
        if x2 > bgr.shape[1] - 1: x1, x2 = x1 - (x2 - bgr.shape[1] + 1), bgr.shape[1] - 1  # noqa: E701
        if y2 > bgr.shape[0] - 1: y1, y2 = y1 - (y2 - bgr.shape[0] + 1), bgr.shape[0] - 1  # noqa: E701
        crop = cv2.resize(bgr[int(y1):int(y2) + 1, int(x1):int(x2) + 1], (80, 80))
        z = sess.run(None, {"input": crop.astype(np.float32).transpose(2, 0, 1)[None]})[0][0].astype(np.float64)
        p += np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return p / 2


def test_real_teacher_on_a_bundled_sample_frame(teacher_folder):
    cv2 = pytest.importorskip("cv2", reason="the crop needs OpenCV (the 'runtime' extra)")
    if not any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime")):
        pytest.skip("no LiteRT runtime installed (the 'runtime' extra) for the face detector")
    from tla_edge.runtime.assets import sample_frames_dir
    from tla_edge.runtime.faces import FaceDetector

    bgr = cv2.imread(str(sample_frames_dir() / "01_person.jpg"))
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    with FaceDetector("short", backend="litert") as detector:
        faces = detector.detect(rgb)
    assert len(faces) == 1
    with tch.SilentFaceTeacher(teacher_folder, num_threads=1) as teacher:
        p = teacher.score_faces(rgb, [faces[0], faces[0]])
        assert p.shape == (2, 3)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(p[0], p[1], atol=1e-6)  # one batch of two = the same face twice
        np.testing.assert_allclose(p[0], readme_score(teacher_folder, bgr, tuple(faces[0][:4])), atol=1e-5)
        # the re-rendered portrait: upstream's rule calls it real (class 1 ~0.69, class 2 ~0.31)
        assert tch.upstream_is_live(p).all() and 0.5 < tch.live_probability(p)[0] < 0.9
        # the same face scaled 0-1 instead of 0-255 (the README's caution): no longer the same answer
        wrong = teacher.predict([x / 255.0 for x in tch.teacher_inputs(rgb, [faces[0]])])
        assert not np.allclose(wrong, p[:1], atol=0.05)
    assert "closed" in repr(teacher)
    with pytest.raises(RuntimeError):
        teacher.predict(tch.teacher_inputs(rgb, [faces[0]]))
