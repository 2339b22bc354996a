"""Keras model builders: MobileNetV2 and ResNet34 with a one-logit liveness head.

Both builders return a ``keras.Model`` that takes the crop normalised by
:func:`tla_edge.runtime.preprocess.normalize` (``"mobilenet_v2"``: ``x / 127.5 - 1``)
and ends with ``Dense(1)``: one logit of *live* (``sigmoid(logit) = P(live)``).
The convolutional base is a nested model named :data:`BASE_NAME`, so the
two-phase recipe in :mod:`tla_edge.train.recipe` can freeze it, cache its features
and later unfreeze its upper layers; the head layers are named
:data:`POOL_NAME`, :data:`DROPOUT_NAME` and :data:`LOGIT_NAME`.

TensorFlow is imported inside the functions: ``import tla_edge.train.models`` is
cheap and works without the ``train`` extra.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tla_edge.runtime import preprocess
from tla_edge.errors import import_tensorflow
from tla_edge.runtime.quant import scores_from_output
from tla_edge.runtime.metadata import ModelMetadata
from tla_edge.progress import Progress
from tla_edge.train.colour import COLOURS, colour_layers  # noqa: F401 - re-exported

ARCHITECTURES = ("mobilenetv2", "resnet34")
MOBILENETV2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MIN_INPUT_SIZE = 32
# BatchNorm momentum when training from scratch: Keras' MobileNetV2 uses 0.999,
# whose moving statistics still reflect the initialisation after a few hundred
# steps, so short runs validate at chance level.
SCRATCH_BN_MOMENTUM = 0.9
BASE_NAME = "base"
POOL_NAME = "pool"
DROPOUT_NAME = "dropout"
LOGIT_NAME = "logit"
# ResNet34 (He et al. 2016, Table 1; the TLA paper's Table I): basic blocks per stage.
RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET34_FILTERS = (64, 128, 256, 512)


def _keras() -> Any:
    import_tensorflow()
    import keras

    return keras


def _check_common(input_size: int, dropout: float, colour: str = "rgb") -> None:
    if colour not in COLOURS:
        raise ValueError(f"colour {colour!r} is not one of {list(COLOURS)}")
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"input size {input_size!r} is not an integer number of pixels")
    if input_size < MIN_INPUT_SIZE:
        raise ValueError(f"input size {input_size} is too small; expected >= {MIN_INPUT_SIZE} pixels")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout {dropout!r} is not in [0, 1)")


# Where ``weights="imagenet"`` looks for a local backbone before asking Keras to
# download one: $TLA_EDGE_WEIGHTS_DIR, then ~/.cache/tla-edge/weights/imagenet.
# Files are named per width, as in the project's shared weights folder:
# mobilenet_v2_<alpha>_no_top.weights.h5 (alpha written as 0.35, 1.0, ...).
WEIGHTS_DIR_ENV = "TLA_EDGE_WEIGHTS_DIR"


def imagenet_weights_dirs() -> list[Path]:
    """The folders searched for local ImageNet backbones, in order."""
    dirs = [Path(os.environ[WEIGHTS_DIR_ENV]).expanduser()] if os.environ.get(WEIGHTS_DIR_ENV) else []
    return dirs + [Path.home() / ".cache" / "tla-edge" / "weights" / "imagenet"]


def imagenet_weights_name(alpha: float) -> str:
    """File name of the ImageNet MobileNetV2 backbone of width ``alpha``."""
    return f"mobilenet_v2_{float(alpha):g}_no_top.weights.h5".replace("_1_no", "_1.0_no")


def local_imagenet_weights(alpha: float) -> Path | None:
    """The first local ImageNet backbone file for ``alpha``, None when there is none."""
    for d in imagenet_weights_dirs():
        if (d / imagenet_weights_name(alpha)).is_file():
            return d / imagenet_weights_name(alpha)
    return None


def _weights_path(weights: str | Path | None, arch: str) -> Path | None:
    """Returns the local weights file, None for no file; checks that it exists."""
    if weights is None or (isinstance(weights, str) and weights in ("imagenet", "none", "")):
        return None
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file '{path}' for {arch} not found; expected 'imagenet', None or "
            "an existing .weights.h5 file"
        )
    return path


def _head(keras: Any, inputs: Any, features: Any, dropout: float, name: str) -> Any:
    x = keras.layers.GlobalAveragePooling2D(name=POOL_NAME)(features)
    x = keras.layers.Dropout(dropout, name=DROPOUT_NAME)(x)
    # float32 logit even under a mixed_float16 policy: the loss needs it.
    logit = keras.layers.Dense(1, name=LOGIT_NAME, dtype="float32")(x)
    return keras.Model(inputs, logit, name=name)


def load_weights_file(model: Any, path: Path, description: str) -> None:
    """Loads a ``.weights.h5`` file into the whole model, else into its base.

    Args:
      model: a model built by this module.
      path: the weights file, saved from a whole model or from its base only.
      description: what was built, for the error, e.g. ``"mobilenetv2 alpha=0.35"``.

    Raises:
      ValueError: the file fits neither the model nor its base.
    """
    errors = []
    for target in (model, model.get_layer(BASE_NAME)):
        try:
            # Keras only warns when a file's layers do not match and keeps the
            # fresh weights: a partial load must count as a failure.
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                target.load_weights(str(path))
            return
        except Exception as err:  # noqa: BLE001 - Keras raises many types here
            errors.append(" ".join(str(err).split())[:300])
    raise ValueError(f"weights file '{path}' does not fit {description}: {errors[-1]}")


def build_mobilenetv2(
    input_size: int = 160,
    alpha: float = 1.0,
    weights: str | Path | None = "imagenet",
    dropout: float = 0.3,
    colour: str = "rgb",
) -> Any:
    """Builds MobileNetV2 (no top) + GlobalAveragePooling2D + Dropout + Dense(1) logit.

    With weights to transfer (``"imagenet"`` or a file) the base is called with
    ``training=False``, so its BatchNorm layers stay in inference mode in both
    phases (the Keras transfer-learning recipe); from scratch (``None``) it
    runs in training mode like any other layer.

    Args:
      input_size: side of the square input in pixels, >= 32.
      alpha: width multiplier, one of :data:`MOBILENETV2_ALPHAS`.
      weights: ``"imagenet"`` (Keras' download; needs the network or its
        cache), None (random init), or a ``.weights.h5`` file of the whole
        model or of the base only.
      dropout: dropout rate before the logit.
      colour: the colour normalisation in front of the base (:func:`colour_layers`).

    Returns:
      The uncompiled ``keras.Model``; its base is the layer named ``"base"``.

    Raises:
      ValueError: alpha, input size, dropout, colour or the weights file is invalid.
      FileNotFoundError: the weights file does not exist.
    """
    _check_common(input_size, dropout, colour)
    if float(alpha) not in MOBILENETV2_ALPHAS:
        raise ValueError(f"MobileNetV2 alpha {alpha!r} is not one of {list(MOBILENETV2_ALPHAS)}")
    path = _weights_path(weights, "mobilenetv2")
    transfer = weights == "imagenet" or path is not None
    if weights == "imagenet" and (local := local_imagenet_weights(alpha)) is not None:
        path = local  # offline: the backbone file in a documented folder, same weights as Keras' download
    keras = _keras()
    base_weights = "imagenet" if weights == "imagenet" and path is None else None
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(input_size, input_size, 3),
            alpha=float(alpha),
            include_top=False,
            weights=base_weights,
            name=BASE_NAME,
        )
    except Exception as err:  # download failure, no cached file
        if base_weights != "imagenet":
            raise
        raise ValueError(
            f"could not get ImageNet weights for MobileNetV2 alpha={alpha} input {input_size}: "
            f"{' '.join(str(err).split())[:200]}; pass a local .weights.h5 file, put "
            f"{imagenet_weights_name(alpha)} in ${WEIGHTS_DIR_ENV} or {imagenet_weights_dirs()[-1]}, or pass 'none'"
        ) from err
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = colour_layers(keras, inputs, colour)
    if transfer:
        features = base(x, training=False)
    else:
        _set_bn_momentum(keras, base, SCRATCH_BN_MOMENTUM)
        features = base(x)
    model = _head(keras, inputs, features, dropout, f"mobilenetv2_{float(alpha):.2f}_{input_size}")
    if path is not None:
        load_weights_file(model, path, f"mobilenetv2 alpha={alpha} input {input_size}")
    return model


def _set_bn_momentum(keras: Any, base: Any, momentum: float) -> None:
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _conv_bn(keras: Any, x: Any, filters: int, kernel: int, stride: int, name: str, relu: bool) -> Any:
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=SCRATCH_BN_MOMENTUM, epsilon=1.001e-5, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(keras: Any, x: Any, filters: int, stride: int, name: str) -> Any:
    """Two 3x3 convolutions; a 1x1 projection shortcut when the shape changes."""
    in_filters = x.shape[-1]
    if stride != 1 or in_filters != filters:
        shortcut = _conv_bn(keras, x, filters, 1, stride, f"{name}_proj", relu=False)
    else:
        shortcut = x
    y = _conv_bn(keras, x, filters, 3, stride, f"{name}_1", relu=True)
    y = _conv_bn(keras, y, filters, 3, 1, f"{name}_2", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet34_base(input_size: int = 160) -> Any:
    """The ResNet34 convolutional base (no pooling, no top), built by hand.

    conv1 7x7/2 with 64 filters, BN, ReLU, 3x3/2 max pool, then basic blocks
    ``[3, 4, 6, 3]`` with 64/128/256/512 filters; the first block of stages
    3-5 halves the resolution and uses a 1x1 projection shortcut. 33
    convolutions on the main path (+ 3 projections); with the final Dense
    that makes the 34 weighted layers.

    Args:
      input_size: side of the square input, >= 32.

    Returns:
      A ``keras.Model`` named ``"base"`` from the image to the last feature map.
    """
    _check_common(input_size, 0.0)
    keras = _keras()
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _conv_bn(keras, inputs, 64, 7, 2, "conv1", relu=True)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for stage, (blocks, filters) in enumerate(zip(RESNET34_BLOCKS, RESNET34_FILTERS), start=2):
        for block in range(blocks):
            stride = 2 if (block == 0 and stage > 2) else 1
            x = _basic_block(keras, x, filters, stride, f"conv{stage}_block{block + 1}")
    return keras.Model(inputs, x, name=BASE_NAME)


def build_resnet34(
    input_size: int = 160,
    weights: str | Path | None = None,
    dropout: float = 0.3,
    colour: str = "rgb",
) -> Any:
    """Builds ResNet34 + GlobalAveragePooling2D + Dropout + Dense(1) logit.

    Keras ships no ImageNet ResNet34, so transfer needs a local weights file
    (of the whole model or of its base, e.g. converted from torchvision).

    Args:
      input_size: side of the square input in pixels, >= 32.
      weights: None (random init) or a ``.weights.h5`` file; ``"imagenet"``
        is refused.
      dropout: dropout rate before the logit.

    Returns:
      The uncompiled ``keras.Model``; its base is the layer named ``"base"``.

    Raises:
      ValueError: ``"imagenet"``, a bad input size or dropout, or a weights
        file that does not fit.
      FileNotFoundError: the weights file does not exist.
    """
    if weights == "imagenet":
        raise ValueError(
            "weights 'imagenet' are not available for resnet34 (Keras has no ImageNet "
            "ResNet34); pass a local .weights.h5 file or 'none'"
        )
    _check_common(input_size, dropout, colour)
    path = _weights_path(weights, "resnet34")
    keras = _keras()
    base = resnet34_base(input_size)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = colour_layers(keras, inputs, colour)
    features = base(x, training=False) if path is not None else base(x)
    model = _head(keras, inputs, features, dropout, f"resnet34_{input_size}")
    if path is not None:
        load_weights_file(model, path, f"resnet34 input {input_size}")
    return model


def build_model(
    arch: str,
    input_size: int = 160,
    alpha: float = 1.0,
    weights: str | Path | None = "imagenet",
    dropout: float = 0.3,
    colour: str = "rgb",
) -> Any:
    """Dispatches to :func:`build_mobilenetv2` or :func:`build_resnet34`.

    Raises:
      ValueError: an unknown architecture (or any builder error).
    """
    if arch == "mobilenetv2":
        return build_mobilenetv2(input_size, alpha, weights, dropout, colour)
    if arch == "resnet34":
        return build_resnet34(input_size, weights, dropout, colour)
    raise ValueError(f"architecture {arch!r} is not one of {list(ARCHITECTURES)}")


def set_fine_tune(model: Any, fine_tune_at: int) -> int:
    """Unfreezes the base from layer ``fine_tune_at`` on, keeping BatchNorm frozen.

    The head stays trainable. Recompile the model afterwards.

    Args:
      model: a model built by this module.
      fine_tune_at: index of the first base layer to train (0 = all).

    Returns:
      The number of trainable weight tensors in the base.

    Raises:
      ValueError: ``fine_tune_at`` is negative or past the base's last layer.
    """
    keras = _keras()
    base = model.get_layer(BASE_NAME)
    if not 0 <= fine_tune_at < len(base.layers):
        raise ValueError(
            f"fine-tune-at {fine_tune_at} is outside the base's layers; expected 0.."
            f"{len(base.layers) - 1}"
        )
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= fine_tune_at and not isinstance(
            layer, keras.layers.BatchNormalization
        )
    return len(base.trainable_weights)


def freeze_base(model: Any) -> None:
    """Freezes the whole base (phase 1: only the head trains)."""
    model.get_layer(BASE_NAME).trainable = False


def feature_extractor(model: Any) -> Any:
    """The model from the image to the pooled base features (inference mode), colour layers included.

    A sub-model of ``model``'s own graph: it shares every layer, and the base
    runs as the model calls it (in inference mode where weights were transferred).
    """
    keras = _keras()
    return keras.Model(model.inputs[0], model.get_layer(POOL_NAME).output, name="features")


def head_model(model: Any) -> Any:
    """A model from pooled features to the logit that shares the head's layers.

    Training it trains the full model's head: the cheap phase 1 on cached
    features.
    """
    keras = _keras()
    dropout = model.get_layer(DROPOUT_NAME)
    logit = model.get_layer(LOGIT_NAME)
    width = model.get_layer(POOL_NAME).output.shape[-1]
    inputs = keras.Input((width,), name="features")
    return keras.Model(inputs, logit(dropout(inputs)), name="head")


def keras_scores(
    model: Any,
    crops: np.ndarray,
    meta: ModelMetadata,
    batch_size: int = 64,
    desc: str = "keras model",
    bar: Progress | None = None,
) -> np.ndarray:
    """P(live) of a Keras model for uint8 crops, through the shared normalisation.

    Args:
      model: Keras 3 or tf-keras model giving the output described by ``meta``.
      crops: ``(N, H, W, 3)`` uint8 RGB.
      meta: the model's metadata (normalization, output kind, live index).
      batch_size: crops per forward pass.
      desc: progress label of the bar this call opens when ``bar`` is None.
      bar: an open progress bar to advance instead (e.g. shared by several models).

    Returns:
      ``(N,)`` float64 scores.
    """
    if bar is None:
        with Progress(len(crops), desc, unit="img") as own:
            return keras_scores(model, crops, meta, batch_size, bar=own)
    outs = []
    for start in range(0, len(crops), batch_size):
        batch = preprocess.normalize(crops[start : start + batch_size], meta.normalization)
        out = model(batch, training=False)
        outs.append(np.asarray(out, np.float32).reshape(len(batch), -1))
        bar.update(len(batch))
    return scores_from_output(np.concatenate(outs), meta)
