"""Quantization-aware training (QAT) of a trained Keras 3 liveness model.

tensorflow-model-optimization (tfmot) 0.8.1 quantizes tf-keras (Keras 2)
models only, so the architecture is rebuilt in ``tf_keras`` (MobileNetV2
from ``tf_keras.applications`` with the same alpha and input, the same head),
the weights are copied layer by layer from the Keras 3 model, and
``tfmot.quantization.keras.quantize_model`` wraps it. A short fine-tune on
the training crops (normalised by :func:`tla_edge.runtime.preprocess.normalize`)
lets the weights adapt to int8 rounding; :func:`tla_edge.converters.tflite.convert`
then writes the int8 model.

tfmot pins ``absl-py~=1.2`` while MediaPipe needs ``absl-py~=2.3``; it is
installed with ``--no-deps`` by ``scripts/install_qat.sh``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Iterator

import numpy as np

from tla_edge.runtime import preprocess
from tla_edge.errors import UserError, import_tensorflow, missing_extra

INSTALL_COMMAND = (
    "bash scripts/install_qat.sh (it runs: pip install dm-tree attrs six scipy mock tf-keras && "
    "pip install --no-deps tensorflow-model-optimization==0.8.1)"
)
SUPPORTED = ("mobilenetv2",)
# Head layers of tla_edge.train.models and what they become in tf_keras.
_HEAD_LAYERS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout", "Dense", "Flatten",
                "BatchNormalization", "Activation", "ReLU", "Rescaling", "Conv2D")
DEFAULT_EPOCHS = 2
DEFAULT_LR = 1e-5
DEFAULT_BATCH_SIZE = 32
TARGETS = ("labels", "teacher")
"""What QAT fine-tuning learns: the manifest's labels, or the float model's scores."""


def import_tfmot() -> Any:
    """Imports tensorflow-model-optimization without switching ``tf.keras`` to Keras 2.

    tfmot sets ``TF_USE_LEGACY_KERAS=1`` when imported (it then uses
    ``tf_keras`` itself); ``tf.keras`` is resolved to Keras 3 first and the
    variable is put back, so the rest of the process keeps Keras 3.

    Raises:
      UserError: tfmot (or one of its dependencies) is not installed; the
        message gives the install command.
    """
    tf = import_tensorflow()
    try:
        import tf_keras  # noqa: F401
    except ImportError as err:
        raise missing_extra(getattr(err, "name", None) or "tf_keras", "train") from err
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    if not before:
        # tf.keras is chosen on first use; tfmot's import sets TF_USE_LEGACY_KERAS=1
        # before touching it, which would make it tf-keras for the whole process.
        tf.keras.version()
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as err:
        raise UserError(
            f"--qat needs tensorflow-model-optimization, which is not importable "
            f"({getattr(err, 'name', None) or err}); install it with: {INSTALL_COMMAND}"
        ) from err
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


def _is_model(layer: Any) -> bool:
    return hasattr(layer, "layers") and bool(getattr(layer, "layers", None))


def weight_layers(model: Any) -> list[Any]:
    """Layers that hold weights, in order, nested models expanded in place."""
    out = []
    for layer in model.layers:
        if _is_model(layer):
            out += weight_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


def copy_weights(source: Any, target: Any) -> int:
    """Copies weights layer by layer, in the order of the weight-bearing layers.

    Args:
      source: the trained model (Keras 3).
      target: the rebuilt model (tf-keras), same architecture.

    Returns:
      Number of weight tensors copied.

    Raises:
      ValueError: the models differ in weight-bearing layers or in a shape;
        names the first mismatch.
    """
    src, dst = weight_layers(source), weight_layers(target)
    if len(src) != len(dst):
        raise ValueError(
            f"the rebuilt tf-keras model has {len(dst)} layers with weights but the Keras model "
            f"has {len(src)}; the architectures differ"
        )
    copied = 0
    for i, (a, b) in enumerate(zip(src, dst)):
        wa, wb = a.get_weights(), b.get_weights()
        sa, sb = [tuple(w.shape) for w in wa], [tuple(w.shape) for w in wb]
        if sa != sb:
            raise ValueError(
                f"weight shapes differ at weight layer #{i}: Keras '{a.name}' {sa} vs rebuilt "
                f"tf-keras '{b.name}' {sb}; the architectures differ"
            )
        b.set_weights(wa)
        copied += len(wa)
    return copied


def _find_base(model: Any) -> tuple[int, Any]:
    """Index and layer of the nested MobileNetV2 base in the top model."""
    for i, layer in enumerate(model.layers):
        if _is_model(layer) and any(l.name == "Conv1" for l in layer.layers):
            return i, layer
    raise UserError(
        f"model '{model.name}' has no nested MobileNetV2 base (a sub-model with a 'Conv1' layer); "
        "expected a model built by tla_edge.train.models.build_mobilenetv2"
    )


def mobilenetv2_alpha(model: Any, meta: Any = None) -> float:
    """The width multiplier of a MobileNetV2 model.

    Read from the model name ``mobilenetv2_<alpha>_<size>`` (tla_edge.train.models),
    else the base's name, else the metadata's ``extra["alpha"]``.

    Raises:
      UserError: none of them says.
    """
    names = [model.name]
    try:
        names.append(_find_base(model)[1].name)
    except UserError:
        pass
    for name in names:
        m = re.match(r"mobilenetv2_(\d+(?:\.\d+)?)_\d+", name)
        if m:
            return float(m.group(1))
    alpha = (getattr(meta, "extra", None) or {}).get("alpha")
    if alpha:
        return float(alpha)
    raise UserError(
        f"cannot tell the MobileNetV2 width multiplier of model '{model.name}': its name is not "
        "mobilenetv2_<alpha>_<size> and the metadata has no extra.alpha"
    )


def _translate(tfk: Any, layer: Any) -> Any:
    """A tf-keras layer equal to one Keras 3 head layer (weights copied later)."""
    kind = type(layer).__name__
    cfg = layer.get_config()
    name = layer.name
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return getattr(tfk.layers, kind)(keepdims=bool(cfg.get("keepdims", False)), name=name)
    if kind == "Dropout":
        return tfk.layers.Dropout(float(cfg["rate"]), name=name)
    if kind == "Dense":
        return tfk.layers.Dense(
            int(cfg["units"]), activation=cfg.get("activation", "linear"),
            use_bias=bool(cfg.get("use_bias", True)), name=name,
        )
    if kind == "Flatten":
        return tfk.layers.Flatten(name=name)
    if kind == "BatchNormalization":
        return tfk.layers.BatchNormalization(
            axis=cfg.get("axis", -1), momentum=float(cfg.get("momentum", 0.99)),
            epsilon=float(cfg.get("epsilon", 1e-3)), center=bool(cfg.get("center", True)),
            scale=bool(cfg.get("scale", True)), name=name,
        )
    if kind == "Activation":
        return tfk.layers.Activation(cfg["activation"], name=name)
    if kind == "ReLU":
        return tfk.layers.ReLU(max_value=cfg.get("max_value"), name=name)
    if kind == "Rescaling":
        return tfk.layers.Rescaling(cfg["scale"], cfg.get("offset", 0.0), name=name)
    if kind == "Conv2D":  # e.g. train --colour grey's fixed 1x1 convolution in front of the base
        return tfk.layers.Conv2D(
            int(cfg["filters"]), tuple(cfg["kernel_size"]), strides=tuple(cfg.get("strides", (1, 1))),
            padding=cfg.get("padding", "valid"), activation=cfg.get("activation", "linear"),
            use_bias=bool(cfg.get("use_bias", True)), trainable=bool(cfg.get("trainable", True)), name=name,
        )
    raise UserError(
        f"layer '{name}' ({kind}) around the MobileNetV2 base cannot be rebuilt in tf-keras for "
        f"QAT; supported: {', '.join(_HEAD_LAYERS)}"
    )


def rebuild_tf_keras(model: Any, meta: Any = None) -> Any:
    """Rebuilds a Keras 3 liveness model in tf-keras, flat (no nested model), and copies its weights.

    tfmot cannot quantize a model nested inside another, so the MobileNetV2
    base is built with ``input_tensor`` in the same graph as the head.

    Args:
      model: a Keras 3 model from :func:`tla_edge.train.models.build_mobilenetv2`
        (input -> [layers] -> MobileNetV2 base -> head layers, a chain).
      meta: its metadata (architecture, alpha fallback).

    Returns:
      The tf-keras model, weights equal to the source's.

    Raises:
      UserError: an unsupported architecture (ResNet34 included) or layer.
      ValueError: the weights do not fit (see :func:`copy_weights`).
    """
    check_architecture(meta)
    import tf_keras as tfk

    from tla_edge.converters.tflite import input_shape

    base_index, base = _find_base(model)
    alpha = mobilenetv2_alpha(model, meta)
    h, w, c = input_shape(model)
    inputs = tfk.Input((h, w, c), name="image")
    x = inputs
    for layer in model.layers[1:base_index]:
        x = _translate(tfk, layer)(x)
    tf_base = tfk.applications.MobileNetV2(
        input_tensor=x, alpha=alpha, include_top=False, weights=None
    )
    x = tf_base.output
    for layer in model.layers[base_index + 1:]:
        x = _translate(tfk, layer)(x)
    rebuilt = tfk.Model(inputs, x, name=f"{model.name}_tf_keras")
    copy_weights(model, rebuilt)
    return rebuilt


def quantize(model: Any, freeze_batchnorm: bool = True) -> Any:
    """Wraps a tf-keras model for QAT with ``tfmot.quantization.keras.quantize_model``.

    Args:
      model: from :func:`rebuild_tf_keras`.
      freeze_batchnorm: keep BatchNorm statistics fixed while fine-tuning
        (the Keras fine-tuning recipe; a few epochs on a small set would
        otherwise drag them).
    """
    tfmot = import_tfmot()
    if freeze_batchnorm:
        import tf_keras as tfk

        for layer in model.layers:
            if isinstance(layer, tfk.layers.BatchNormalization):
                layer.trainable = False
    return tfmot.quantization.keras.quantize_model(model)


def _batches(
    images: np.ndarray, targets: np.ndarray, normalization: str, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled batches, normalised by the shared preprocessing function."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch_size):
            idx = np.sort(order[start : start + batch_size])
            yield preprocess.normalize(images[idx], normalization), targets[idx].astype(np.float32)[:, None]


def fine_tune(
    qat_model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: str = "mobilenet_v2",
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    verbose: int = 2,
    soft_targets: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Fine-tunes a QAT model on uint8 crops with a one-logit binary loss.

    Args:
      qat_model: from :func:`quantize`.
      images: ``(N, H, W, 3)`` uint8 training crops.
      labels: ``(N,)`` 1 real, 0 attack.
      normalization: the model's normalisation (its metadata's).
      epochs: passes over the crops; 0 skips training.
      batch_size: crops per step.
      lr: Adam learning rate (small: the weights are already trained).
      seed: shuffling seed.
      verbose: Keras verbosity (2: one line per epoch).
      soft_targets: ``(N,)`` P(live) to learn instead of the labels, e.g. the
        float model's own scores (distillation: the QAT model learns to
        reproduce the float model under int8 rounding rather than to refit
        the labels). Classes are then not re-weighted.

    Returns:
      The Keras history (``loss``, ``accuracy`` per epoch); empty for 0 epochs.

    Raises:
      ValueError: empty or mismatched inputs, or a single class.
    """
    import tf_keras as tfk

    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"QAT fine-tuning got {len(images)} crops and {len(labels)} labels")
    if epochs <= 0:
        return {}
    n_real, n_attack = int((labels == 1).sum()), int((labels == 0).sum())
    if n_real == 0 or n_attack == 0:
        raise ValueError(
            f"QAT fine-tuning crops hold {n_real} real and {n_attack} attack; expected both classes"
        )
    tfk.utils.set_random_seed(seed)
    qat_model.compile(
        optimizer=tfk.optimizers.Adam(lr),
        loss=tfk.losses.BinaryCrossentropy(from_logits=True),
        metrics=[tfk.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    n = len(labels)
    class_weight: dict[int, float] | None = {0: n / (2.0 * n_attack), 1: n / (2.0 * n_real)}
    targets = labels.astype(np.float32)
    if soft_targets is not None:
        targets = np.asarray(soft_targets, np.float32).reshape(-1)
        if targets.shape != labels.shape:
            raise ValueError(f"{targets.size} soft targets for {labels.size} crops")
        class_weight = None
    steps = int(np.ceil(n / batch_size))
    # Keras prints its per-epoch lines to stdout; the command keeps stdout for results.
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        hist = qat_model.fit(
            _batches(images, targets, normalization, batch_size, seed),
            steps_per_epoch=steps, epochs=epochs, class_weight=class_weight, verbose=verbose,
        )
    finally:
        sys.stdout = stdout
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def qat_model(
    model: Any,
    meta: Any,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    verbose: int = 2,
    target: str = "teacher",
) -> tuple[Any, dict[str, Any]]:
    """Rebuild in tf-keras, copy weights, quantize-wrap, fine-tune.

    Args:
      model: the trained Keras 3 model.
      meta: its :class:`~tla_edge.runtime.metadata.ModelMetadata`.
      images, labels: training crops (uint8) and labels (1 real, 0 attack).
      epochs, batch_size, lr, seed, verbose: see :func:`fine_tune`.
      target: what the fine-tune learns, one of :data:`TARGETS`: ``"teacher"``
        (the float model's own scores on the same crops: the QAT model learns
        to reproduce it under int8 rounding) or ``"labels"`` (the manifest's
        classes: it refits them, and on a held-out session drifts away from
        the float model).

    Returns:
      ``(qat_model, info)``: the fine-tuned tf-keras QAT model, ready for
      :func:`tla_edge.converters.tflite.convert` in ``int8`` mode, and a
      JSON-ready summary (alpha, crops, epochs, history, seconds).
    """
    if target not in TARGETS:
        raise ValueError(f"QAT target {target!r} is not one of {list(TARGETS)}")
    t0 = time.perf_counter()
    soft = None
    if target == "teacher" and epochs > 0:
        from tla_edge.train.models import keras_scores

        soft = keras_scores(model, images, meta, desc="QAT teacher")
    rebuilt = rebuild_tf_keras(model, meta)
    wrapped = quantize(rebuilt)
    history = fine_tune(
        wrapped, images, labels, meta.normalization, epochs, batch_size, lr, seed, verbose, soft
    )
    info = {
        "alpha": mobilenetv2_alpha(model, meta),
        "crops": int(len(labels)),
        "real": int((np.asarray(labels) == 1).sum()),
        "attack": int((np.asarray(labels) == 0).sum()),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "target": target,
        "history": history,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    return wrapped, info


def check_architecture(meta: Any) -> None:
    """Raises UserError unless the metadata's architecture can be rebuilt for QAT."""
    arch = (getattr(meta, "architecture", None) or "unknown").lower()
    if arch not in SUPPORTED and arch != "unknown":
        raise UserError(
            f"QAT supports {', '.join(SUPPORTED)} only, not {arch!r} (it needs a tf-keras rebuild "
            "of the architecture for tensorflow-model-optimization); convert it with post-training "
            "int8 instead (--int8 without --qat)"
        )
