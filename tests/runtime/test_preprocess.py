"""Crop geometry and normalisation on hand-made boxes and frames."""

import cv2
import numpy as np
import pytest

from tla_edge.runtime import preprocess
from tla_edge.runtime.preprocess import crop_face, crop_region, face_problem, normalize

H, W = 480, 640


def gradient_frame() -> np.ndarray:
    """A frame whose pixel at (y, x) is (x % 256, y % 256, 7): location is readable from colour."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx % 256, yy % 256, np.full_like(xx, 7)], axis=-1).astype(np.uint8)


def test_region_is_square_and_centred():
    r = crop_region((300, 200, 40, 60), 2.0, (H, W, 3))
    assert r.side == 120  # 2 x the longer side (60)
    assert (r.x0 + r.side / 2, r.y0 + r.side / 2) == (320, 230)  # box centre
    assert r.outside_fraction == 0.0


def test_region_never_shifts_at_frame_edges():
    # A 100 px face touching each edge: the window stays centred on the face
    # and the part outside the frame is reported, not moved inside.
    cases = {
        "left": ((0, 190, 100, 100), (-100, 90)),
        "right": ((540, 190, 100, 100), (440, 90)),
        "top": ((270, 0, 100, 100), (170, -100)),
        "bottom": ((270, 380, 100, 100), (170, 280)),
    }
    for name, (box, (x0, y0)) in cases.items():
        r = crop_region(box, 3.0, (H, W))
        assert (r.x0, r.y0, r.side) == (x0, y0, 300), name
        # 300x300 window, 100 columns or rows of it outside the frame
        assert r.outside_fraction == pytest.approx(100 * 300 / 300**2), name


def test_region_in_a_corner():
    r = crop_region((0, 0, 100, 100), 3.0, (H, W))
    assert (r.x0, r.y0) == (-100, -100)
    assert r.outside_fraction == pytest.approx(1 - (200 * 200) / 300**2)


def test_crop_inside_frame_matches_the_pixels():
    frame = gradient_frame()
    crop = crop_face(frame, (100, 100, 32, 32), scale=1.0, size=32)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, frame[100:132, 100:132])


@pytest.mark.parametrize(
    "box,pad_rows,pad_cols",
    [
        ((0, 200, 40, 40), slice(None), slice(0, 40)),  # left edge: left third padded
        ((600, 200, 40, 40), slice(None), slice(80, 120)),  # right edge
        ((300, 0, 40, 40), slice(0, 40), slice(None)),  # top edge
        ((300, 440, 40, 40), slice(80, 120), slice(None)),  # bottom edge
    ],
)
def test_crop_pads_outside_the_frame(box, pad_rows, pad_cols):
    frame = np.full((H, W, 3), 200, np.uint8)
    crop = crop_face(frame, box, scale=3.0, size=120)  # 120 px window -> no resize
    assert (crop[pad_rows, pad_cols] == preprocess.PAD_VALUE).all()
    # the face itself is at the centre and keeps the frame's pixels
    assert (crop[40:80, 40:80] == 200).all()


def test_crop_fully_outside_is_all_padding():
    crop = crop_face(np.full((H, W, 3), 255, np.uint8), (2000, 2000, 10, 10), 2.0, 16)
    assert (crop == preprocess.PAD_VALUE).all()


def test_crop_resizes_to_rectangular_size():
    crop = crop_face(gradient_frame(), (200, 200, 80, 80), 2.0, (96, 64))
    assert crop.shape == (96, 64, 3)


def test_normalizations():
    px = np.array([0, 127, 255], np.uint8)
    np.testing.assert_allclose(normalize(px, "mobilenet_v2"), [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(normalize(px, "unit"), [0.0, 127 / 255, 1.0], atol=1e-6)
    np.testing.assert_allclose(normalize(px, "raw"), [0.0, 127.0, 255.0])
    assert normalize(px).dtype == np.float32


def test_face_problem():
    assert face_problem((100, 100, 80, 80), (H, W)) is None
    assert face_problem((100, 100, 20, 80), (H, W), min_face=40) == "face_too_small"
    # half the face outside the left edge
    assert face_problem((-40, 100, 80, 80), (H, W)) == "face_cut_off"
    # a sliver outside is tolerated
    assert face_problem((-4, 100, 80, 80), (H, W), max_cut_off=0.15) is None


@pytest.mark.parametrize(
    "frame,message",
    [
        (np.zeros((480, 640), np.uint8), r"frame shape \(480, 640\) dtype uint8 is not HxWx3 uint8"),
        (np.zeros((4, 4, 3), np.float32), r"frame shape \(4, 4, 3\) dtype float32 is not HxWx3 uint8"),
        ([[1, 2, 3]], r"frame of type list is not a numpy HxWx3 uint8 array"),
    ],
)
def test_bad_frames(frame, message):
    with pytest.raises(ValueError, match=message):
        crop_face(frame, (0, 0, 10, 10))


def test_bad_scale_box_and_normalization():
    frame = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"crop scale 0 is not > 0"):
        crop_face(frame, (0, 0, 5, 5), scale=0)
    with pytest.raises(ValueError, match=r"face box size 0.0x5.0 is not positive"):
        crop_face(frame, (0, 0, 0, 5))
    with pytest.raises(ValueError, match=r"unknown normalization 'imagenet'"):
        normalize(frame, "imagenet")


def test_atomic_writes_refuse_overwrite_and_keep_the_umask_mode(tmp_path):
    import os

    from tla_edge import fileio
    from tla_edge.errors import UserError

    out = tmp_path / "sub" / "out.json"
    fileio.write_json_atomic(fileio.check_writable(out, force=False), {"a": 1})
    assert out.read_text().strip().startswith("{")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(UserError, match=r"output '.*out.json' already exists; pass --force to overwrite it"):
        fileio.check_writable(out, force=False)
    fileio.check_writable(out, force=True)


# --- the "shift" rule: shrunk to fit, moved inside the frame, never padded -----------


def test_shift_region_in_the_middle_is_the_pad_region():
    assert crop_region((300, 200, 40, 60), 2.0, (H, W, 3), "shift") == (260, 170, 120, 0.0)
    assert crop_region((300, 200, 40, 60), 2.0, (H, W, 3), "pad") == (260, 170, 120, 0.0)


@pytest.mark.parametrize(
    "name,box,x0,y0",
    [
        # a 100 px face touching each edge, 300 px window; pad would start at -100 or end 100 past the edge
        ("left", (0, 190, 100, 100), 0, 90),
        ("right", (540, 190, 100, 100), 640 - 300, 90),
        ("top", (270, 0, 100, 100), 170, 0),
        ("bottom", (270, 380, 100, 100), 170, 480 - 300),
        ("corner", (0, 0, 100, 100), 0, 0),
    ],
)
def test_shift_region_moves_inside_the_frame_at_each_edge(name, box, x0, y0):
    assert crop_region(box, 3.0, (H, W), "shift") == (x0, y0, 300, 0.0), name


@pytest.mark.parametrize(
    "box,rows,cols",
    [
        ((0, 200, 40, 40), slice(160, 280), slice(0, 120)),  # left edge: window 0..120, not -40..80
        ((600, 200, 40, 40), slice(160, 280), slice(520, 640)),  # right edge
        ((300, 0, 40, 40), slice(0, 120), slice(260, 380)),  # top edge
        ((300, 440, 40, 40), slice(360, 480), slice(260, 380)),  # bottom edge
    ],
)
def test_shift_crop_at_each_edge_is_the_frame_never_padding(box, rows, cols):
    frame = gradient_frame()
    crop = crop_face(frame, box, scale=3.0, size=120, rule="shift")  # 120 px window -> no resize
    np.testing.assert_array_equal(crop, frame[rows, cols])
    assert (crop[..., 2] == 7).all()  # every pixel is the frame's (its blue is 7), none is PAD_VALUE


def test_shift_window_larger_than_the_frame_shrinks_to_its_shorter_side():
    h, w = 100, 160
    # box centre (80, 50); 4 x 40 = 160 px wanted, min(160, 100, 160) = 100 px kept
    assert crop_region((60, 30, 40, 40), 4.0, (h, w), "shift") == (30, 0, 100, 0.0)
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([xx, yy, np.full_like(xx, 7)], axis=-1).astype(np.uint8)
    crop = crop_face(frame, (60, 30, 40, 40), scale=4.0, size=100, rule="shift")
    np.testing.assert_array_equal(crop, frame[0:100, 30:130])
    # a window wider than a portrait frame: its width, moved to the left edge for a face there
    assert crop_region((0, 60, 40, 40), 4.0, (w, h), "shift") == (0, 30, 100, 0.0)


def test_unknown_crop_rule_is_refused():
    with pytest.raises(ValueError, match=r"^crop rule 'mirror' is not one of 'pad', 'shift'$"):
        crop_region((0, 0, 10, 10), 2.0, (H, W), "mirror")
    with pytest.raises(ValueError, match=r"crop rule 'Shift' is not one of"):
        crop_face(gradient_frame(), (0, 0, 10, 10), 2.0, 16, rule="Shift")


def bilinear_reference(window: np.ndarray, size: int) -> np.ndarray:
    """Float64 bilinear samples of a window on a size x size grid, pixel centre to pixel centre, edges clamped."""
    side = window.shape[0]
    p = np.clip((np.arange(size) + 0.5) * side / size - 0.5, 0, side - 1)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, side - 1)
    w = (p - i0)[:, None, None]
    rows = window[i0].astype(np.float64) * (1 - w) + window[i1] * w
    w = (p - i0)[None, :, None]
    return rows[:, i0] * (1 - w) + rows[:, i1] * w


def halvings_reference(side: int, out: int) -> int:
    """The number of 2x2 means: the largest k with side / 2**k still at least the output (0 when upscaling)."""
    k = 0
    while side / 2 ** (k + 1) >= out:
        k += 1
    return k


@pytest.mark.parametrize("side,out", [(322, 160), (480, 160), (172, 160), (211, 96), (415, 96), (100, 160), (640, 64)])
@pytest.mark.parametrize("rule", ["shift", "pad"])
def test_crop_inside_the_frame_is_box_means_then_bilinear(side, out, rule):
    """The window's own pixels: its centre trimmed to a multiple of 2**k, 2**k x 2**k means (k = as many halvings as
    leave at least the output), then bilinear to the output: within 0.5 grey levels per halving plus 1 of the float64
    computation (each halving rounds to uint8, and the bilinear weights are rounded to 1/256)."""
    rng = np.random.default_rng(side)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (720, 960, 3), dtype=np.uint8), (0, 0), 1.0)
    frame[::7] = 255  # hard edges too: print-like lines
    box = (480.0 - side / 4.0, 360.0 - side / 4.0, side / 2.0, side / 2.0)  # scale 2.0: window `side`, inside
    region = preprocess.crop_region(box, 2.0, frame.shape, rule)
    assert region.side == side and region.outside_fraction == 0.0
    window = frame[region.y0:region.y0 + side, region.x0:region.x0 + side].astype(np.float64)
    k = halvings_reference(side, out)
    f = 2 ** k
    kept = side // f * f
    off = (side - kept) // 2
    means = window[off:off + kept, off:off + kept].reshape(kept // f, f, kept // f, f, 3).mean(axis=(1, 3))
    ref = bilinear_reference(means, out)
    crop = preprocess.crop_face(frame, box, 2.0, out, rule)
    diff = np.abs(crop.astype(np.float64) - ref)
    assert crop.shape == (out, out, 3) and diff.max() <= 0.5 * k + 1.0, diff.max()


def integer_bilinear(window: np.ndarray, size: int) -> np.ndarray:
    """Bilinear with 8-bit integer weights (w0 + w1 = 256) per axis, one rounding at the end: no float in a pixel.

    Weights: the sample position's fraction rounded to 1/256 (pixel centre to
    pixel centre, edges replicated). Each output is the exact integer sum of four
    taps over 65536, rounded half up. Arithmetic like this gives the same bytes
    on every CPU.
    """
    side = window.shape[0]
    x = (np.arange(size) + 0.5) * (1.0 / (size / side)) - 0.5
    i0 = np.floor(x).astype(np.int64)
    w1 = np.rint((x - i0) * 256).astype(np.int64)
    w0 = 256 - w1
    left = i0 < 0
    i0, w0, w1 = np.where(left, 0, i0), np.where(left, 256, w0), np.where(left, 0, w1)
    i1 = np.minimum(i0 + 1, side - 1)
    a = window.astype(np.int64)
    rows = a[:, i0] * w0[None, :, None] + a[:, i1] * w1[None, :, None]
    full = rows[i0] * w0[:, None, None] + rows[i1] * w1[:, None, None]
    return ((full + (1 << 15)) >> 16).astype(np.uint8)


@pytest.mark.parametrize("rule,box", [
    ("shift", (420.0, 300.0, 120.0, 120.0)),  # 2.7x window of 324 px inside the frame
    ("shift", (10.0, 10.0, 80.0, 100.0)),  # near a corner: shifted inside
    ("pad", (-30.0, 250.0, 100.0, 100.0)),  # leaves the frame on the left: padded
    ("pad", (900.0, 650.0, 90.0, 90.0)),  # leaves it at the bottom-right corner
    ("shift", (300.0, 200.0, 20.0, 24.0)),  # a 64 px window, upscaled to 96: no means
    ("shift", (200.0, 100.0, 150.0, 190.4)),  # 514 px: 2 halvings to 96 (trimmed by 1 px each side), 1 to 160
    ("pad", (500.0, 300.0, 36.0, 40.0)),  # 108 px: no halving to 96 (bilinear only), none to 160 (upscaled)
])
@pytest.mark.parametrize("out", [96, 160])
def test_crop_is_integer_arithmetic_bit_for_bit(rule, box, out):
    """The crop is exact 2x2 means, (sum + 2) >> 2, then the integer bilinear above, byte for byte.

    This is what lets a Raspberry Pi cut the same pixels as the x86 machine that
    prepared the training crops: OpenCV's plain bilinear computes its weights in
    float, and under arm64 emulation 16 % of a crop's values came out one grey
    level off, flipping near-threshold decisions.
    """
    rng = np.random.default_rng(out)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (720, 960, 3), dtype=np.uint8), (0, 0), 0.8)
    region = preprocess.crop_region(box, 2.7, frame.shape, rule)
    padded = np.full((region.side + 2000, region.side + 2000, 3), preprocess.PAD_VALUE, np.uint8)
    padded[1000:1000 + 720, 1000:1000 + 960] = frame  # the frame inside a sea of padding
    window = padded[1000 + region.y0:1000 + region.y0 + region.side, 1000 + region.x0:1000 + region.x0 + region.side]
    k = halvings_reference(region.side, out)
    kept = region.side // 2 ** k * 2 ** k
    off = (region.side - kept) // 2
    window = window[off:off + kept, off:off + kept]
    for _ in range(k):
        n = window.shape[0] // 2
        s = window.astype(np.int64).reshape(n, 2, n, 2, 3).sum(axis=(1, 3))
        window = ((s + 2) >> 2).astype(np.uint8)
    expected = window if window.shape[0] == out else integer_bilinear(window, out)
    np.testing.assert_array_equal(preprocess.crop_face(frame, box, 2.7, out, rule), expected)


def test_four_channel_bilinear_is_the_three_channel_bytes():
    """The crop's bilinear runs on RGBA for speed: byte for byte OpenCV's three-channel bit-exact resize,
    over window sides from 8 to 420 px (up and down), square and rectangular outputs, strided views."""
    rng = np.random.default_rng(7)
    for _ in range(400):
        h = int(rng.integers(8, 421))
        w = h if rng.random() < 0.7 else int(rng.integers(8, 421))
        out_h = int(rng.choice([64, 96, 128, 160]))
        out_w = out_h if rng.random() < 0.7 else int(rng.choice([64, 96, 160]))
        window = rng.integers(0, 256, (h + 1, w + 2, 3), dtype=np.uint8)[1:, 1:-1]  # a view with row padding
        expected = cv2.resize(window, (out_w, out_h), interpolation=cv2.INTER_LINEAR_EXACT)
        np.testing.assert_array_equal(preprocess._bilinear_exact(window, out_w, out_h), expected)


def test_greynorm_standardises_the_grey_plane_of_each_crop():
    """normalize(..., 'greynorm') against the formula: mean of the three channels in mobilenet_v2 units,
    minus its mean over the crop, over sqrt(variance + 1e-3), times 0.5, in all three channels."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    got = normalize(crops, "greynorm")
    for crop, out in zip(crops, got):
        g = crop.astype(np.float64).sum(axis=-1) / 3 / 127.5 - 1
        want = 0.5 * (g - g.mean()) / np.sqrt(g.var() + 1e-3)
        for c in range(3):
            np.testing.assert_allclose(out[..., c], want, rtol=1e-5, atol=1e-6)
    one = normalize(crops[0], "greynorm")  # one crop or a batch: per crop either way
    np.testing.assert_allclose(one, got[0], rtol=1e-6)
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(normalize(flat, "greynorm"), np.zeros((8, 8, 3), np.float32))  # no NaN on a flat crop


@pytest.mark.parametrize("scale,zero_point,dtype", [(0.0137, 3, np.int8), (0.02, 128, np.uint8)])
def test_the_quantized_greynorm_input_is_quantize_of_normalize(scale, zero_point, dtype):
    from tla_edge.runtime.quant import StandardisedInput, quantize

    rng = np.random.default_rng(1)
    for k in range(20):
        level, spread = rng.uniform(30, 220), rng.uniform(2, 60)  # dim and flat to bright and busy
        crop = np.clip(level + spread * rng.normal(0, 1, (96, 96, 3)), 0, 255).astype(np.uint8)
        want = quantize(normalize(crop, "greynorm"), scale, zero_point, dtype)
        got = StandardisedInput("greynorm", scale, zero_point, dtype, (96, 96))(crop)
        assert got.dtype == dtype and got.shape == (96, 96, 3)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and diff.mean() < 1e-3  # float32 against float64: a half step at most, rarely
        dst = np.empty((96, 96, 3), dtype)
        assert StandardisedInput("greynorm", scale, zero_point, dtype, (96, 96))(crop, dst=dst) is dst
        np.testing.assert_array_equal(dst, got)
