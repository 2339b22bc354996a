#!/usr/bin/env python3
"""Renders the bundled sample frames from a public-domain photograph.

The source is NASA's portrait of astronaut Eileen Collins (public domain, a
work of the U.S. federal government), as shipped in the scikit-image wheel
(``skimage/data/astronaut.png``). No dataset image is used. The frames are
640x480 like a webcam's: the photo framed as a camera would see a person, the
face at a frame edge, a far face, a frame without a face, and the photo as a
*printed* picture (paper border, perspective, flatter contrast) held in front
of a desk — a synthetic print presentation.

    python scripts/make_sample_frames.py            # pip-downloads scikit-image
    python scripts/make_sample_frames.py --wheel scikit_image-0.26.0-...whl
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tla_edge" / "assets" / "samples"
W, H = 640, 480


def load_astronaut(wheel: str | None) -> np.ndarray:
    """The astronaut photo as BGR, from a scikit-image wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-image==0.26.0", "-d", tmp],
                check=True,
            )
            wheel = glob.glob(f"{tmp}/scikit_image-*.whl")[0]
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read("skimage/data/astronaut.png")
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def backdrop(seed: int) -> np.ndarray:
    """A plain room-like background: a soft vertical gradient with mild noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(150, 95, H, dtype=np.float32)[:, None, None]
    tint = np.array([1.0, 0.97, 0.9], np.float32)
    img = ramp * tint + rng.normal(0, 3, (H, W, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def place(canvas: np.ndarray, img: np.ndarray, x: int, y: int) -> np.ndarray:
    """Pastes ``img`` with its top-left at (x, y), clipped to the canvas."""
    out = canvas.copy()
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    out[y0:y1, x0:x1] = img[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def printed(photo: np.ndarray, seed: int) -> np.ndarray:
    """The photo as a print held in front of a desk: border, flattened tones, perspective."""
    rng = np.random.default_rng(seed)
    flat = (photo.astype(np.float32) * 0.75 + 40).clip(0, 255)  # paper: lower contrast
    flat = cv2.GaussianBlur(flat, (3, 3), 0) + rng.normal(0, 4, flat.shape)  # print grain
    page = np.full((photo.shape[0] + 60, photo.shape[1] + 60, 3), 235, np.float32)
    page[30:-30, 30:-30] = flat
    page = page.clip(0, 255).astype(np.uint8)
    ph, pw = page.shape[:2]
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    dst = np.float32([[90, 20], [560, 40], [550, 470], [80, 455]])
    warp = cv2.getPerspectiveTransform(src, dst)
    scene = backdrop(seed + 1)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), warp, (W, H))
    sheet = cv2.warpPerspective(page, warp, (W, H))
    scene[mask > 0] = sheet[mask > 0]
    # two fingers holding the bottom edge
    for cx in (200, 440):
        cv2.ellipse(scene, (cx, 462), (24, 42), 0, 0, 360, (120, 150, 205), -1)
    return scene


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=str, default=None, help="a scikit-image wheel (else pip download)")
    parser.add_argument("--force", action="store_true", help="overwrite existing frames")
    args = parser.parse_args(argv)
    photo = load_astronaut(args.wheel)  # 512x512, face about 116 px wide
    # Scaled so the face is ~175 px wide, as a webcam sees a person at arm's
    # length (the short-range detector's working range).
    person = cv2.resize(photo, (770, 770), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(photo, (150, 150), interpolation=cv2.INTER_AREA)
    head = photo[10:330, 40:420]  # head and shoulders, for the print
    frames = {
        "01_person.jpg": place(backdrop(0), person, -13, 1),
        "02_person_left_edge.jpg": place(backdrop(1), person, -238, 1),
        "03_person_far.jpg": place(backdrop(2), small, 250, 170),
        "04_no_face.jpg": backdrop(3),
        "05_printed_photo.jpg": printed(head, 4),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, img in frames.items():
        path = OUT / name
        if path.exists() and not args.force:
            print(f"keeping {path} (pass --force to overwrite)")
            continue
        tmp = path.with_name(f".{name}.tmp.jpg")
        cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        tmp.replace(path)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
