"""Image dimensions from a file's header, and the largest frame the runtime accepts.

A 100-byte PNG can claim 100000x100000 pixels: OpenCV's decoder then raises
``cv2.error`` (or allocates gigabytes), and a frame side of 32,767 px or more
aborts MediaPipe's native detector without a word. :func:`header_size` reads
the size that PNG, JPEG, BMP, GIF and WebP files declare, without decoding,
so :func:`check_size` can refuse such an image before any pixel is read.
"""

from __future__ import annotations

import struct

MAX_SIDE = 16384
"""Largest frame side in pixels (MediaPipe aborts at 32,767; no camera comes near)."""
MAX_PIXELS = 100_000_000
"""Largest frame area in pixels (100 MP: 300 MB of RGB)."""

# JPEG start-of-frame markers: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def check_size(width: int, height: int) -> None:
    """Refuses a frame larger than :data:`MAX_SIDE` a side or :data:`MAX_PIXELS` in all.

    Raises:
      ValueError: ``image is 100000x100000 px; expected at most 16384 px a side and 100 MP``.
    """
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ValueError(
            f"image is {width}x{height} px; expected at most {MAX_SIDE} px a side "
            f"and {MAX_PIXELS // 1_000_000} MP"
        )


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the file header declares it; None for a format not read here (TIFF, ...).

    Args:
      data: the file's first bytes (64 KiB find a JPEG's frame header behind most EXIF blocks;
        the whole file always does).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None
