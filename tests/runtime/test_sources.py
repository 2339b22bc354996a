"""Frame sources: every kind, BGR->RGB once, looping, unreadable images, cameras that fail."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from tla_edge.runtime import capture, sources  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.runtime.sources import Frame, bgr_to_rgb, open_source  # noqa: E402

RED_BGR = (0, 0, 255)


def solid_bgr(colour, h=24, w=32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = colour
    return img


def write_png(path: Path, bgr: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), bgr)
    return path


def nuaa_frames(nuaa_dir: Path, n: int) -> list[Path]:
    return sorted((nuaa_dir / "ClientRaw" / "0001").glob("*.jpg"))[:n]


def write_video(path: Path, images: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for img in images:
        writer.write(img)
    writer.release()
    return path


# --- pure ------------------------------------------------------------------------


def test_bgr_to_rgb_swaps_channels_into_a_new_array():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # B, G, R
    rgb = bgr_to_rgb(bgr)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb[0, 0], [30, 20, 10])
    assert not np.shares_memory(rgb, bgr)


@pytest.mark.parametrize(
    "bad,expected",
    [
        (np.zeros((4, 4), np.uint8), "BGR image shape (4, 4) dtype uint8 is not HxWx3 uint8"),
        (np.zeros((4, 4, 3), np.float32), "BGR image shape (4, 4, 3) dtype float32 is not HxWx3 uint8"),
        (np.zeros((4, 4, 4), np.uint8), "BGR image shape (4, 4, 4) dtype uint8 is not HxWx3 uint8"),
    ],
)
def test_bgr_to_rgb_rejects_other_arrays(bad, expected):
    with pytest.raises(ValueError) as info:
        bgr_to_rgb(bad)
    assert str(info.value) == expected


# --- image folders and files -----------------------------------------------------------


def test_folder_frames_are_sorted_rgb_with_increasing_timestamps(tmp_path):
    write_png(tmp_path / "b.png", solid_bgr((255, 0, 0)))  # blue
    write_png(tmp_path / "a.png", solid_bgr(RED_BGR))  # red
    write_png(tmp_path / "c.bmp", solid_bgr((0, 255, 0)))  # green
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as src:
        assert src.kind == "folder" and src.length == 3
        frames = list(src)
    assert [f.name for f in frames] == ["a.png", "b.png", "c.bmp"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(isinstance(f, Frame) for f in frames)
    # A pure-red BGR image arrives as RGB red: converted exactly once.
    np.testing.assert_array_equal(frames[0].rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(frames[1].rgb[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(frames[2].rgb[0, 0], [0, 255, 0])
    assert all(f.rgb.shape == (24, 32, 3) and f.rgb.dtype == np.uint8 for f in frames)
    ts = [f.timestamp_ms for f in frames]
    assert ts == sorted(set(ts))
    assert all(f.decode_ms >= 0 for f in frames)
    assert src.skipped == []


def test_single_image_file(tmp_path):
    path = write_png(tmp_path / "one.jpg", solid_bgr(RED_BGR, 48, 64))
    with open_source(path) as src:
        assert src.kind == "image"
        frames = list(src)
    assert len(frames) == 1 and frames[0].name == "one.jpg"
    r, g, b = frames[0].rgb.reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15  # JPEG is lossy; still red, not blue


def test_folder_loop_repeats_with_global_index_and_increasing_time(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", solid_bgr((i, i, i)))
    with open_source(tmp_path, loop=True) as src:
        frames = list(itertools.islice(src, 8))
    assert [f.name for f in frames] == ["0.png", "1.png", "2.png"] * 2 + ["0.png", "1.png"]
    assert [f.index for f in frames] == list(range(8))
    ts = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))


def test_unreadable_image_is_skipped_counted_and_warned_once(tmp_path, capsys):
    write_png(tmp_path / "a.png", solid_bgr(RED_BGR))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "c.png").write_bytes(b"")
    write_png(tmp_path / "d.png", solid_bgr(RED_BGR))
    with open_source(tmp_path, loop=True) as src:
        frames = list(itertools.islice(src, 6))
    assert [f.name for f in frames] == ["a.png", "d.png"] * 3
    assert src.skipped == [("b.jpg", "not a decodable image"), ("c.png", "empty file")]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2  # once per bad file, not once per loop
    assert err[0] == f"warning: skipped image '{tmp_path / 'b.jpg'}': not a decodable image"


def test_folder_where_no_image_reads_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "b.png").write_bytes(b"garbage too")
    with pytest.raises(UserError) as info:
        list(open_source(tmp_path))
    assert str(info.value) == (
        f"none of the 2 images in folder '{tmp_path}' could be read (first: a.jpg: not a decodable image)"
    )


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError) as info:
        open_source(tmp_path)
    assert str(info.value) == f"image folder '{tmp_path}' has no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff)"


def test_unreadable_single_image(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(UserError) as info:
        list(open_source(path))
    assert str(info.value) == f"cannot read image '{path}': not a decodable image"


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        open_source(tmp_path / "nope.mp4")
    assert str(info.value).startswith(f"source '{tmp_path / 'nope.mp4'}' not found; expected a camera index")


@pytest.mark.parametrize("kw,expected", [({"width": 0}, "capture width 0 is not a positive integer"),
                                         ({"height": -5}, "capture height -5 is not a positive integer")])
def test_bad_capture_size(kw, expected):
    with pytest.raises(ValueError, match=expected):
        open_source(0, **kw)


# --- videos ---------------------------------------------------------------------------


def test_video_of_nuaa_frames(nuaa_dir, tmp_path):
    images = [cv2.imread(str(p)) for p in nuaa_frames(nuaa_dir, 4)]
    path = write_video(tmp_path / "clip.mp4", images, fps=10.0)
    with open_source(str(path)) as src:
        assert src.kind == "video" and src.fps == pytest.approx(10.0)
        assert src.length == 4
        frames = list(src)
    assert [f.name for f in frames] == [f"clip.mp4#{i}" for i in range(4)]
    assert [f.timestamp_ms for f in frames] == [0, 100, 200, 300]
    assert frames[0].rgb.shape == images[0].shape
    # Decoded frames match the source images in RGB order (mp4v is lossy: compare means).
    want = bgr_to_rgb(images[0]).astype(np.float32)
    got = frames[0].rgb.astype(np.float32)
    assert np.abs(got - want).mean() < 8.0
    assert np.abs(got - images[0].astype(np.float32)).mean() > np.abs(got - want).mean()


def test_red_video_arrives_red(tmp_path):
    path = write_video(tmp_path / "red.mp4", [solid_bgr(RED_BGR, 64, 64)] * 2)
    with open_source(path) as src:
        rgb = next(iter(src)).rgb
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    assert r > 200 and b < 40


def test_video_loop(tmp_path):
    images = [solid_bgr((40 * i, 40 * i, 40 * i), 32, 32) for i in range(3)]
    path = write_video(tmp_path / "three.mp4", images)
    with open_source(path, loop=True) as src:
        frames = list(itertools.islice(src, 8))
    assert [f.name for f in frames] == [f"three.mp4#{i}" for i in (0, 1, 2, 0, 1, 2, 0, 1)]
    assert [f.index for f in frames] == list(range(8))
    ts = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    # after the loop the content starts again: frame 3 looks like frame 0
    assert abs(frames[3].rgb.mean() - frames[0].rgb.mean()) < 5


def test_video_that_cannot_be_opened(tmp_path):
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(UserError) as info:
        open_source(path)
    assert str(info.value).startswith(f"cannot open video '{path}'; expected a video file OpenCV can decode")


# --- cameras ---------------------------------------------------------------------------


def test_camera_that_does_not_exist_fails_quickly():
    t0 = time.perf_counter()
    with pytest.raises(UserError) as info:
        open_source("7")
    assert str(info.value).startswith("camera 7 did not open;")
    assert time.perf_counter() - t0 < capture.READ_TIMEOUT_S + 1


class FakeCapture:
    """A cv2.VideoCapture stand-in: ``good`` frames, then reads that fail or block."""

    def __init__(self, good: int, block: threading.Event | None = None) -> None:
        self.good = good
        self.block = block
        self.reads = 0
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop, value):
        return True

    def read(self):
        self.reads += 1
        if self.reads <= self.good:
            return True, solid_bgr(RED_BGR, 8, 8)
        if self.block is not None:
            self.block.wait(10)
        return False, None

    def release(self):
        self.released = True


def test_camera_frames_are_rgb_and_timestamps_increase():
    cap = FakeCapture(good=5)
    src = capture.CaptureSource(0, capture=cap, max_failed_reads=3, read_timeout_s=1.0)
    frames = list(itertools.islice(src, 5))
    src.close()
    assert [f.name for f in frames] == ["camera:0"] * 5
    np.testing.assert_array_equal(frames[0].rgb[0, 0], [255, 0, 0])
    ts = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert src.fps == 30.0 and cap.released


def test_camera_that_stops_delivering_ends_with_an_error_not_a_hang():
    cap = FakeCapture(good=3)
    src = capture.CaptureSource(0, capture=cap, max_failed_reads=5, read_timeout_s=2.0)
    got = []
    t0 = time.perf_counter()
    with pytest.raises(UserError) as info:
        for frame in src:
            got.append(frame)
    assert len(got) == 3
    assert str(info.value).startswith("camera 0 stopped delivering frames after 3 frames (5 failed reads in")
    assert time.perf_counter() - t0 < 2.5
    src.close()


def test_camera_whose_first_read_blocks_times_out():
    release = threading.Event()
    cap = FakeCapture(good=0, block=release)
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError) as info:
            capture.CaptureSource(3, capture=cap, read_timeout_s=0.3)
        assert time.perf_counter() - t0 < 2.0
        assert str(info.value).startswith("camera 3 opened but delivered no frame within 0.3 s;")
    finally:
        release.set()


@pytest.mark.parametrize("url", ["rtsp://192.0.2.1/stream", "http://192.0.2.1/video.mjpg"])
def test_stalled_network_stream_times_out_at_the_first_frame(url):
    release = threading.Event()
    cap = FakeCapture(good=0, block=release)
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError) as info:
            capture.CaptureSource(url, capture=cap, read_timeout_s=0.3)
        assert time.perf_counter() - t0 < 2.0
        assert str(info.value).startswith(f"stream '{url}' opened but delivered no frame within 0.3 s;")
    finally:
        release.set()


def test_stream_that_stalls_mid_way_ends_with_an_error_not_a_hang():
    release = threading.Event()
    cap = FakeCapture(good=2, block=release)
    url = "rtsp://192.0.2.1/stream"
    src = capture.CaptureSource(url, capture=cap, read_timeout_s=0.5)
    got = []
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError) as info:
            for frame in src:
                got.append(frame)
        assert len(got) == 2 and time.perf_counter() - t0 < 3.0
        assert str(info.value).startswith(f"stream '{url}' stopped delivering frames after 2 frames")
        assert [f.name for f in got] == [url, url] and got[1].timestamp_ms > got[0].timestamp_ms
    finally:
        release.set()
        src.close()


@pytest.mark.parametrize("channels", [3, 4])
def test_picamera2_frames_are_converted_to_rgb(monkeypatch, channels):
    """A fake Picamera2: 'RGB888' (and XRGB8888) arrays are B, G, R(, X) in memory."""
    import sys
    import types

    configured = {}

    class FakePicamera2:
        def create_preview_configuration(self, main):
            return {"main": main}

        def configure(self, config):
            configured.update(config["main"])

        def start(self):
            pass

        def capture_array(self):
            img = np.zeros((6, 8, channels), np.uint8)
            img[..., 2] = 255  # red, in B, G, R(, X) order
            img[0, 0, :3] = (10, 20, 30)  # B=10, G=20, R=30
            return img

        def stop(self):
            configured["stopped"] = True

        def close(self):
            configured["closed"] = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    with open_source("picamera2", width=320, height=240) as src:
        frames = list(itertools.islice(src, 2))
    assert configured["size"] == (320, 240) and configured["format"] == "RGB888"
    assert configured["stopped"] and configured["closed"]
    for f in frames:
        assert f.rgb.shape == (6, 8, 3) and f.rgb.dtype == np.uint8 and f.rgb.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(f.rgb[1, 1], [255, 0, 0])
        np.testing.assert_array_equal(f.rgb[0, 0], [30, 20, 10])
    assert frames[1].timestamp_ms > frames[0].timestamp_ms and src.kind == "picamera2"


def test_picamera2_camera_properties_are_public(monkeypatch):
    """What `record` names the camera by, without reaching into the source's picamera2 object."""
    import sys
    import types

    class FakePicamera2:
        camera_properties = {"Model": "imx708"}

        def create_preview_configuration(self, main):
            return {"main": main}

        def configure(self, config):
            pass

        def start(self):
            pass

        def stop(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    src = open_source("picamera2")
    assert src.camera_properties == {"Model": "imx708"}
    src.close()
    assert src.camera_properties == {}


def test_picamera2_missing_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(UserError) as info:
        open_source("picam")
    assert str(info.value).startswith("picamera2 is not installed; on Raspberry Pi OS run")


def test_samples_spec_opens_the_bundled_frames(tmp_path, monkeypatch):
    from tla_edge.runtime.assets import sample_frames_dir
    from tla_edge.runtime.sources import open_source

    monkeypatch.chdir(tmp_path)  # no folder called "samples" here
    with open_source("samples") as src:
        names = [f.name for f in src]
    expected = sorted(p.name for p in sample_frames_dir().glob("*.jpg"))
    assert names == expected and len(names) >= 5


@pytest.mark.parametrize("spec", [10000, "99999999999999999999", 2**31])
def test_camera_index_too_large_for_opencv(spec):
    with pytest.raises(ValueError, match=r"camera index \d+ is larger than 9999; expected the N of /dev/videoN"):
        open_source(spec)


def test_stream_that_cannot_be_opened_is_one_line(capfd):
    import socket

    with socket.socket() as sock:  # a local port nobody listens on: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/stream"
    with pytest.raises(UserError) as info:
        open_source(url)
    assert str(info.value).startswith(f"cannot open stream '{url}' (no answer or refused within")
    assert "Connection" not in capfd.readouterr().err  # FFmpeg's own line stays quiet


# --- images whose header claims a huge size (issue 18, item 7) -------------------


def test_an_image_claiming_100000_px_a_side_is_refused_before_decoding(tmp_path):
    from test_imagesize import jpeg_header, png_header

    for name, data, side in (("huge.png", png_header(100000, 100000), 100000),
                             ("huge.jpg", jpeg_header(60000, 60000), 60000)):
        (tmp_path / name).write_bytes(data + b"\x00" * 40)
        expected = f"image is {side}x{side} px; expected at most 16384 px a side and 100 MP"
        with pytest.raises(ValueError, match=rf"^{expected}$"):  # was a cv2.error traceback
            sources.read_image_bgr(tmp_path / name)


def test_a_huge_image_in_a_folder_is_skipped_and_listed(tmp_path):
    from test_imagesize import TOO_LARGE, png_header

    write_png(tmp_path / "a.png", solid_bgr(RED_BGR))
    (tmp_path / "b.png").write_bytes(png_header(100000, 100000))
    with open_source(tmp_path) as src:
        frames = list(src)
    assert [f.name for f in frames] == ["a.png"]
    assert src.skipped == [("b.png", TOO_LARGE)]
    with pytest.raises(UserError, match=rf"cannot read image '.*b.png': {TOO_LARGE}"):
        list(open_source(tmp_path / "b.png"))
