"""The settings of a training run: :class:`Recipe`, the defaults, the checks made before any data is loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

from tla_edge.errors import UserError

# Epochs when none are given: the full recipe, and the short fine-tune of the
# bundled model (its head and base already fit liveness; a few epochs at the
# transfer rates, 1e-4 then 1e-5, adapt it without forgetting).
EPOCHS = {"epochs": 10, "fine_tune_epochs": 10}
DEFAULT_WEIGHTS_EPOCHS = {"epochs": 2, "fine_tune_epochs": 3}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The settings of one training run (the flags of ``tla-edge train``)."""

    arch: str = "mobilenetv2"
    """``mobilenetv2`` or ``resnet34``."""
    alpha: float = 1.0
    """MobileNetV2 width multiplier."""
    input_size: int | None = None
    """Model input side (None: the crops' side)."""
    weights: str = "imagenet"
    """``imagenet``, ``none`` (from scratch) or a ``.weights.h5`` file."""
    scale: float | None = None
    """Crop scale to train on (None: the only one)."""
    crop_rule: str | None = None
    """Crop rule of the crops to train on, ``"pad"`` or ``"shift"`` (None: the only one
    at that scale); the model is written with it and crops the same way on the device."""
    sessions: str | None = None
    """Use only these comma-separated sessions."""
    val_session: str | None = None
    """Hold out this session for validation."""
    val_subjects: str | None = None
    """Hold out these comma-separated subjects."""
    val_random: float | None = None
    """Random frame split with this validation fraction (leaks; debugging only)."""
    epochs: int = EPOCHS["epochs"]
    """Phase-1 epochs, or all epochs from scratch."""
    fine_tune_epochs: int = EPOCHS["fine_tune_epochs"]
    """Phase-2 epochs (0 skips phase 2)."""
    batch_size: int = 32
    lr: float | None = None
    """Phase-1 learning rate (None: 1e-4; from scratch :data:`SCRATCH_LR`)."""
    fine_tune_lr: float = 1e-5
    fine_tune_at: int = 100
    """First base layer trained in phase 2."""
    seed: int = 0
    patience: int = 5
    """Early-stopping patience in epochs."""
    monitor: str = "val_loss"
    """``val_loss`` or ``val_auc``: early stopping and the kept epoch."""
    target_apcer: float = 0.05
    """APCER of the second operating point kept in the metadata."""
    strategy: str = "default"
    """``default`` or ``mirrored`` (tf.distribute)."""
    mixed_precision: str = "auto"
    """``auto`` (on a GPU only), ``on`` or ``off``."""
    augment: bool = True
    camera_augment: bool = False
    """Add the camera-domain augmentation (:data:`tla_edge.train.augment.CAMERA`)."""
    zoom_in: float = 0.0
    """Chance of a zoomed-in view of a crop (``AugmentConfig.zoom_in_probability``, :mod:`tla_edge.train.augment`)."""
    label_smoothing: float = 0.0
    teacher_targets: tuple[str, ...] = ()
    """Teacher targets files (:mod:`tla_edge.train.distill`); used when ``distill`` > 0."""
    distill: float = 0.0
    """Teacher's share of each training target, in [0, 0.5) (0: labels only)."""
    simulated_attacks: float = 0.0
    """Share of real training crops given a simulated print or replay twin (:mod:`tla_edge.train.simulate`)."""
    colour: str = "rgb"
    """Colour normalisation as the model's first layers (:func:`tla_edge.train.colour.colour_layers`)."""

    @property
    def transfer_weights(self) -> str | None:
        """The weights to start from; None trains from scratch."""
        return None if self.weights.lower() in ("none", "") else self.weights


class DefaultWeights(NamedTuple):
    """Settings after resolving ``weights="default"`` and unset epochs."""

    weights: str
    alpha: float
    input_size: int | None
    scale: float | None
    epochs: int
    fine_tune_epochs: int
    note: str | None
    """One line to tell the user what ``default`` chose (None when not ``default``)."""
    crop_rule: str | None = None
    """The crop rule to train on (``default``: the bundled model's unless given)."""
    colour: str = "rgb"
    """The colour normalisation (``default``: the bundled model's; it is part of its weights' architecture)."""


def resolve_default_weights(weights: str, arch: str, crops_dir: Path, alpha: float | None = None,
                            input_size: int | None = None, scale: float | None = None,
                            epochs: int | None = None, fine_tune_epochs: int | None = None,
                            crop_rule: str | None = None, colour: str | None = None) -> DefaultWeights:
    """Fills unset epochs; turns ``weights="default"`` into the bundled file and its model's settings.

    ``alpha`` None means 1.0, or the bundled model's with ``default``.

    Raises:
      UserError: the weights are not installed, ``arch``, ``alpha`` or
        ``input_size`` contradicts them, or ``crops_dir`` holds no crops at the
        bundled model's scale.
    """
    default = weights.strip().lower() == "default"
    fill = DEFAULT_WEIGHTS_EPOCHS if default else EPOCHS
    epochs = fill["epochs"] if epochs is None else epochs
    fine_tune_epochs = fill["fine_tune_epochs"] if fine_tune_epochs is None else fine_tune_epochs
    if not default:
        return DefaultWeights(weights, 1.0 if alpha is None else alpha, input_size, scale, epochs,
                              fine_tune_epochs, None, crop_rule, colour or "rgb")
    from tla_edge.data import crops as crops_lib
    from tla_edge.runtime.assets import default_liveness_weights

    path, meta = default_liveness_weights()
    if arch != meta.architecture:
        raise UserError(f"--weights default is a {meta.architecture} model; --arch {arch} cannot start from it")
    alpha = _bundled_setting("--alpha", alpha, float(meta.extra.get("alpha", 1.0)), meta.architecture)
    input_size = int(_bundled_setting("--input-size", input_size, int(meta.input_size[0]), meta.architecture))
    bundled_colour = str(meta.extra.get("colour", "rgb"))
    if colour is not None and colour != bundled_colour:
        raise UserError(f"--colour {colour} contradicts --weights default (a {meta.architecture} of colour "
                        f"{bundled_colour}); expected --colour left out (or {bundled_colour}), or other --weights")
    bundled_scale = float(meta.crop_scale)
    scale = bundled_scale if scale is None else scale
    crop_rule = crop_rule or meta.crop_rule
    if crops_lib.is_crops_dir(crops_dir):
        rows = crops_lib.read_manifest(crops_dir)
        scales = sorted({float(r["scale"]) for r in rows})
        if all(abs(s - scale) > 1e-6 for s in scales):
            raise UserError(
                f"crops folder '{crops_dir}' holds scales {', '.join(f'{s:g}' for s in scales)}; --weights "
                f"default fine-tunes a model of crop scale {scale:g}: prepare them with --scales {scale:g}"
                + ("" if crop_rule == "pad" else f" --crop-rule {crop_rule}")
            )
        rules = sorted({crops_lib.row_rule(r) for r in rows if abs(float(r["scale"]) - scale) < 1e-6})
        if crop_rule not in rules:
            raise UserError(
                f"crops folder '{crops_dir}' holds crop rule {', '.join(rules)} at scale {scale:g}; --weights default "
                f"fine-tunes a model that crops by the '{crop_rule}' rule: prepare them with --scales {scale:g} "
                f"--crop-rule {crop_rule}"
            )
    scale_text = f"crop scale {scale:g}" + ("" if abs(scale - bundled_scale) < 1e-6
                                            else f" (--scale; the bundled model's is {bundled_scale:g})")
    note = (f"tla-edge train: --weights default: {meta.architecture} alpha {alpha:g}, input "
            f"{input_size}, {scale_text}, crop rule {crop_rule}, colour {bundled_colour}, {epochs} + "
            f"{fine_tune_epochs} epochs")
    return DefaultWeights(str(path), alpha, input_size, scale, epochs, fine_tune_epochs, note, crop_rule,
                          bundled_colour)


def _bundled_setting(flag: str, given: float | None, bundled: float, arch: str) -> float:
    """The bundled model's value of a setting ``--weights default`` fixes; an explicit other value is refused."""
    if given is not None and abs(float(given) - bundled) > 1e-9:
        raise UserError(f"{flag} {given:g} contradicts --weights default (a {arch} of {flag[2:]} {bundled:g}); "
                        f"expected {flag} left out (or {bundled:g}), or other --weights")
    return bundled


def check_recipe(recipe: Recipe, crops_dir: Path) -> None:
    """Checks the settings before any data is loaded.

    Raises:
      UserError: a setting out of range, named as its flag.
      FileNotFoundError: the crops folder or the weights file is missing.
    """
    from tla_edge.train import distill

    distill.check_weight(recipe.distill)
    if recipe.distill > 0 and not recipe.teacher_targets:
        raise UserError(f"--distill {recipe.distill:g} needs --teacher-targets FILE (scripts/teacher_targets.py "
                        "writes one)")
    if recipe.teacher_targets and recipe.distill == 0:
        raise UserError("--teacher-targets is given but --distill is 0; expected --distill W with 0 < W < 0.5")
    if not 0.0 <= recipe.simulated_attacks <= 1.0:
        raise UserError(f"--simulated-attacks {recipe.simulated_attacks:g} is not in [0, 1]; expected the share "
                        "of real training crops given a simulated attack twin")
    if recipe.camera_augment and not recipe.augment:
        raise UserError("--camera-augment contradicts --no-augment; expected one of them")
    if not 0.0 <= recipe.zoom_in <= 1.0:
        raise UserError(f"--zoom-in {recipe.zoom_in:g} is not in [0, 1]; expected the chance of a zoomed-in view")
    if recipe.zoom_in and not recipe.augment:
        raise UserError("--zoom-in contradicts --no-augment; expected one of them")
    for f in recipe.teacher_targets:
        if not Path(f).is_file():
            raise FileNotFoundError(f"teacher targets '{f}' not found; expected a CSV written by "
                                    "scripts/teacher_targets.py")
    from tla_edge.train.colour import COLOURS

    if recipe.colour not in COLOURS:
        raise UserError(f"--colour {recipe.colour!r} is not one of {', '.join(COLOURS)}")
    if not 0.0 <= recipe.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing {recipe.label_smoothing:g} is not in [0, 1)")
    for name in ("epochs", "fine_tune_epochs", "patience", "fine_tune_at"):
        if getattr(recipe, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(recipe, name)} is negative; expected >= 0")
    from_scratch = recipe.transfer_weights is None
    if recipe.epochs == 0 and (from_scratch or recipe.fine_tune_epochs == 0):
        raise UserError(
            "--epochs 0" + ("" if from_scratch else " with --fine-tune-epochs 0")
            + " trains nothing; expected at least one epoch"
        )
    if recipe.batch_size < 1:
        raise UserError(f"--batch-size {recipe.batch_size} is not >= 1")
    for name in ("lr", "fine_tune_lr"):
        v = getattr(recipe, name)
        if v is not None and not v > 0:
            raise UserError(f"--{name.replace('_', '-')} {v} is not > 0")
    if not 0.0 <= recipe.target_apcer <= 1.0:
        raise UserError(f"--target-apcer {recipe.target_apcer} is not in [0, 1]")
    if not Path(crops_dir).is_dir():
        raise FileNotFoundError(f"crops folder '{crops_dir}' not found; expected a folder written by tla-edge prepare")


def check_weights(recipe: Recipe) -> None:
    """Fails early on weights that cannot be used (ResNet34 has no ImageNet weights; a missing file)."""
    from tla_edge.train import models

    weights = recipe.transfer_weights
    if recipe.arch == "resnet34" and weights == "imagenet":
        # Same message as the builder, before minutes of data loading.
        models.build_resnet34(32, "imagenet")
    if weights is not None and weights != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' not found; expected 'imagenet', 'none' or a .weights.h5 file")
