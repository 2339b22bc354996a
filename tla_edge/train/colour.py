"""Colour normalisation as a model's first layers, and folding it away for the device.

``train --colour`` puts a fixed layer in front of the backbone
(:func:`colour_layers`), so the crop and the int8 input stay RGB. ``grey`` is a
linear map of the three channels with no bias, so it can be folded into the
backbone's first convolution (:func:`fold_colour`): the converted model then
has exactly the ops of an RGB model, and costs what it does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COLOURS = ("rgb", "grey", "greyworld", "greynorm", "greyhp")
"""Colour normalisations a model can start with (:func:`colour_layers`)."""
GREY_NAME = "colour_grey"
NORM_NAMES = ("colour_norm", "colour_norm_scale")
"""``greynorm``'s layers after the grey one: :func:`fold_colour` takes the three out of the model."""
GREYNORM_SCALE = 0.5
"""``greynorm``'s standardised luminance is multiplied by this: unit spread becomes the ImageNet input's ~0.5."""
HP_NAMES = ("colour_hp_blur1", "colour_hp_blur2", "colour_hp", "colour_hp_norm", "colour_hp_norm_scale")
"""``greyhp``'s layers after the grey one."""
HP_POOL = 5
"""``greyhp``'s local mean: a ``HP_POOL`` x ``HP_POOL`` box mean, applied twice (about a Gaussian of sigma 2 px)."""
HP_EPSILON = 1e-5
"""``greyhp``'s variance floor, in ``mobilenet_v2`` pixel units squared (a deviation of ~0.4 grey level)."""


def colour_layers(keras: Any, inputs: Any, colour: str) -> Any:
    """The model's first layers for ``colour``; inside the model, so the crop and int8 input stay as they are.

    ``"rgb"`` passes the image on. ``"grey"`` replaces every channel by the
    mean of the three (a fixed 1x1 convolution: chroma removed, the ImageNet
    base still gets three channels). ``"greyworld"`` subtracts from every
    channel its own mean over the image (a colour cast and a brightness offset
    removed, colour contrast kept). ``"greynorm"`` is ``grey`` followed by the
    luminance standardised over the crop (minus its mean, over its standard
    deviation, times :data:`GREYNORM_SCALE`): exposure, gain and contrast
    removed as well. ``"greyhp"`` (an experiment, rule R13-H) is ``grey`` minus
    its local mean (:data:`HP_POOL` box means, twice, over the pixels inside the
    crop), standardised over the crop as ``greynorm``: only fine texture is left
    (paper grain, halftone, a screen's pixel grid, blur), shading and exposure
    gone, the difference-of-Gaussians input of NUAA's own paper; ``convert``
    keeps its layers in the file. All are plain Keras layers that convert to int8 TFLite
    ops (CONV_2D, folded away by :func:`fold_colour` for ``grey``; MEAN and
    SUB; layer normalisation's MEAN, SQUARED_DIFFERENCE, RSQRT, MUL).

    Raises:
      ValueError: ``colour`` is not one of :data:`COLOURS`.
    """
    if colour == "rgb":
        return inputs
    if colour in ("grey", "greynorm", "greyhp"):
        conv = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name=GREY_NAME,
                                   kernel_initializer=keras.initializers.Constant(1.0 / 3.0))
        grey = conv(inputs)
        if colour == "grey":
            return grey
        if colour == "greyhp":
            # 'same' average pooling averages the pixels inside the image only: no dark border
            local = keras.layers.AveragePooling2D(HP_POOL, strides=1, padding="same", name=HP_NAMES[0])(grey)
            local = keras.layers.AveragePooling2D(HP_POOL, strides=1, padding="same", name=HP_NAMES[1])(local)
            detail = keras.layers.Subtract(name=HP_NAMES[2])([grey, local])
            norm = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=HP_EPSILON,
                                                   name=HP_NAMES[3])(detail)
            return keras.layers.Rescaling(GREYNORM_SCALE, name=HP_NAMES[4])(norm)
        # the three channels are equal, so statistics over (H, W, C) are the luminance's over the image
        norm = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=1e-3,
                                               name=NORM_NAMES[0])(grey)
        return keras.layers.Rescaling(GREYNORM_SCALE, name=NORM_NAMES[1])(norm)
    if colour == "greyworld":
        mean = keras.layers.GlobalAveragePooling2D(keepdims=True, name="colour_mean")(inputs)
        return keras.layers.Subtract(name="colour_greyworld")([inputs, mean])
    raise ValueError(f"colour {colour!r} is not one of {list(COLOURS)}")


def fold_colour(model: Any) -> Any:
    """``model`` with its ``grey`` layer folded into the base's first convolution; else ``model`` itself.

    The grey layer is a 1x1 convolution without bias, ``y = x @ G``, and the
    base's first layer a convolution without bias on ``y`` (zero padding maps
    to zero through ``G``), so ``conv(x @ G, W) = conv(x, G @ W)``: one kernel,
    the same function up to float rounding, and no extra op in the converted
    file. The model is rebuilt as a chain (input, base, head layers), the base
    a copy whose first kernel is ``G @ W``; the source model is not changed. A
    model without a grey layer, or whose base does not start with a bias-free
    convolution, is returned as it is.

    ``greynorm``'s statistics change with every crop, so nothing folds them
    into a kernel: its three layers are taken out instead, and the returned
    model takes what they computed, the runtime's ``"greynorm"`` normalization
    (:data:`tla_edge.runtime.preprocess.STANDARDISED`, see
    :func:`input_normalization`): the same function in float, with exact
    statistics where int8 ones were off by up to a quarter on low-contrast
    crops, and an RGB model's ops (the layers in int8 doubled a member's invoke).
    """
    import keras

    names = [layer.name for layer in model.layers]
    if GREY_NAME not in names or HP_NAMES[0] in names:  # greyhp (an experiment): its layers stay in the file
        return model
    if NORM_NAMES[0] in names:
        return _without_greynorm(keras, model, names)
    grey = model.get_layer(GREY_NAME)
    base_index = names.index(GREY_NAME) + 1
    base = model.layers[base_index]
    first = getattr(base, "layers", [None, None])[1]
    if not isinstance(first, keras.layers.Conv2D) or first.use_bias or names.index(GREY_NAME) != 1:
        return model
    clone = keras.models.clone_model(base)
    clone.set_weights(base.get_weights())
    kernel = first.get_weights()[0]  # (h, w, 3, filters)
    g = grey.get_weights()[0][0, 0]  # (3 in, 3 out)
    clone.layers[1].set_weights([np.einsum("io,hwof->hwif", g, kernel).astype(kernel.dtype)])
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name)
    x = clone(inputs, training=False)
    for layer in model.layers[base_index + 1:]:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _without_greynorm(keras: Any, model: Any, names: list[str]) -> Any:
    """``model`` from the base on: its input is what greynorm's layers gave the base."""
    if names[1:4] != [GREY_NAME, *NORM_NAMES]:
        raise ValueError(f"model '{model.name}' does not start with greynorm's layers: {names[:4]}")
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name)
    x = model.layers[4](inputs, training=False)
    for layer in model.layers[5:]:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def input_normalization(model: Any, normalization: str) -> str:
    """The normalization the input of ``fold_colour(model)`` takes: ``"greynorm"`` where greynorm's layers
    were taken out (the model trained on ``"mobilenet_v2"`` pixels), else ``normalization`` as it is.

    Raises:
      ValueError: a greynorm model trained on other pixels than ``"mobilenet_v2"``'s.
    """
    if NORM_NAMES[0] not in [layer.name for layer in model.layers]:
        return normalization
    if normalization != "mobilenet_v2":
        raise ValueError(f"a greynorm model trained on {normalization!r} pixels; expected 'mobilenet_v2'")
    return "greynorm"
