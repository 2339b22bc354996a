"""Paths of the files bundled in ``tla_edge/runtime/assets``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tla_edge.runtime.metadata import ModelMetadata

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_LIVENESS_MODEL = ASSETS_DIR / "liveness_mnv2_int8.tflite"
SAMPLES_DIR = ASSETS_DIR / "samples"
# Float Keras weights of the default model (the whole model, head included):
# ``tla-edge train CROPS --weights default`` fine-tunes from them.
DEFAULT_LIVENESS_WEIGHTS = ASSETS_DIR / "liveness_default.weights.h5"


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


def default_liveness_models() -> list[Path]:
    """The bundled liveness model and the partners it is fused with (scores averaged), if any.

    The primary model's metadata names its partners (``extra.fusion.models``,
    written by ``tla-edge evaluate --store-fusion`` with the fused threshold); a model
    without a fusion record runs alone.

    Raises:
      FileNotFoundError: the package was installed without its assets.
      ValueError: a malformed fusion record, or one naming a file outside the assets folder.
    """
    from tla_edge.runtime import fused_set, metadata

    primary = default_liveness_model()
    meta = metadata.load(primary)
    fusion = (meta.extra or {}).get("fusion") if meta is not None else None
    names = fusion.get("models") if isinstance(fusion, dict) else None
    # A record of null means no fusion (the model runs alone); anything else must name
    # plain .tflite files beside the primary, never a path out of the assets folder.
    if fusion is not None and not fused_set.fusion_names_ok(names):
        raise ValueError(f"bundled model '{primary}' has a malformed extra.fusion record (models {names!r}); "
                         f"expected a list of .tflite file names inside '{ASSETS_DIR}'; reinstall tla-edge or "
                         "pass --model")
    partners = [ASSETS_DIR / n for n in names or () if n != primary.name]
    for p in partners:
        if not p.is_file():
            raise FileNotFoundError(f"bundled liveness model '{p}' (fused with '{primary.name}') not found; "
                                    "reinstall tla-edge or pass --model")
    return [primary, *partners]


def default_liveness_weights() -> tuple[Path, "ModelMetadata"]:
    """The default model's float weights and the bundled model's metadata.

    The metadata says what to build around the weights: ``architecture``,
    ``input_size``, ``crop_scale`` and ``extra["alpha"]``.

    Raises:
      UserError: the weights file is not installed.
    """
    from tla_edge.runtime import metadata
    from tla_edge.errors import UserError

    if not DEFAULT_LIVENESS_WEIGHTS.is_file():
        raise UserError(
            f"the default model's float weights '{DEFAULT_LIVENESS_WEIGHTS.name}' are not installed "
            f"(looked in {DEFAULT_LIVENESS_WEIGHTS.parent}); reinstall tla-edge, or pass --weights none, "
            "imagenet or a .weights.h5 file"
        )
    meta = metadata.load(default_liveness_model())
    if meta is None:
        raise UserError(f"bundled model '{DEFAULT_LIVENESS_MODEL}' has no metadata; reinstall tla-edge")
    return DEFAULT_LIVENESS_WEIGHTS, meta


def sample_frames_dir() -> Path:
    """The bundled, freely redistributable sample frames."""
    if not SAMPLES_DIR.is_dir():
        raise FileNotFoundError(f"bundled sample frames '{SAMPLES_DIR}' not found")
    return SAMPLES_DIR
