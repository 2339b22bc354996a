"""Paths of the files bundled in ``tla_edge/assets``."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_LIVENESS_MODEL = ASSETS_DIR / "liveness_mnv2_int8.tflite"
SAMPLES_DIR = ASSETS_DIR / "samples"


def default_liveness_model() -> Path:
    """The bundled int8 liveness model.

    Raises:
      FileNotFoundError: the package was installed without its assets.
    """
    if not DEFAULT_LIVENESS_MODEL.is_file():
        raise FileNotFoundError(
            f"bundled liveness model '{DEFAULT_LIVENESS_MODEL}' not found; "
            "reinstall tla-edge or pass --model"
        )
    return DEFAULT_LIVENESS_MODEL


def sample_frames_dir() -> Path:
    """The bundled, freely redistributable sample frames."""
    if not SAMPLES_DIR.is_dir():
        raise FileNotFoundError(f"bundled sample frames '{SAMPLES_DIR}' not found")
    return SAMPLES_DIR
