"""Image sizes read from file headers, and the largest frame the runtime accepts (issue 18, item 7)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from tla_edge.runtime import imagesize

TOO_LARGE = "image is 100000x100000 px; expected at most 16384 px a side and 100 MP"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A 69-byte PNG (8-bit RGB) claiming ``width`` x ``height``: IHDR, a tiny IDAT, IEND.

    OpenCV 5 answers 100000x100000 with a ``cv2.error`` (its pixel limit), not None.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 50))
            + _chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, then a baseline SOF0 claiming ``width`` x ``height``, then EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def test_header_size_of_hand_made_headers():
    assert imagesize.header_size(png_header(100000, 100000)) == (100000, 100000)
    assert imagesize.header_size(jpeg_header(640, 480)) == (640, 480)
    bmp = b"BM" + b"\x00" * 16 + struct.pack("<ii", 40, -30)  # top-down BMP: negative height
    assert imagesize.header_size(bmp) == (40, 30)
    assert imagesize.header_size(b"GIF89a" + struct.pack("<HH", 7, 5)) == (7, 5)
    assert imagesize.header_size(b"II*\x00" + b"\x00" * 20) is None  # TIFF: checked after decoding
    assert imagesize.header_size(b"\xff\xd8\xff") is None  # truncated JPEG


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_header_size_agrees_with_opencvs_encoders(ext):
    cv2 = pytest.importorskip("cv2")
    ok, data = cv2.imencode(ext, np.zeros((5, 7, 3), np.uint8))
    assert ok
    assert imagesize.header_size(data.tobytes()) == (7, 5)


@pytest.mark.parametrize(
    "size,ok",
    [((16384, 6000), True), ((16385, 1), False), ((1, 16385), False), ((10000, 10000), True), ((10001, 10000), False)],
)
def test_check_size_caps_a_side_and_the_area(size, ok):
    if ok:
        imagesize.check_size(*size)
    else:
        with pytest.raises(ValueError, match=rf"image is {size[0]}x{size[1]} px; expected at most 16384 px"):
            imagesize.check_size(*size)
