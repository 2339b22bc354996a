"""Keras -> TFLite bytes: float32, fp16, dynamic range and full-integer int8.

Every function here returns data and writes nothing (the
``tensorflow/models`` export pattern); :mod:`tla_edge.cli.convert`
writes the files. TensorFlow is imported inside the functions.

Calibration data for int8 comes from real prepared crops
(:func:`calibration_set`), stratified by class and attack species, and goes
through :func:`tla_edge.runtime.preprocess.normalize`, the one preprocessing shared
with training and the runtime (:func:`representative_dataset`).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from tla_edge.runtime import preprocess
from tla_edge.errors import UserError, missing_extra

MODES = ("float32", "fp16", "dynamic", "int8")
"""Conversion modes: float32 (no quantization), fp16 weights, dynamic-range
int8 weights with float activations, full-integer int8."""
IO_TYPES = ("int8", "uint8", "float")
"""Interface of a full-integer model: int8 (TFLite default), uint8 (the
pycoral / Edge TPU convention) or float (QUANTIZE/DEQUANTIZE at the edges)."""
DEFAULT_CALIBRATION_SAMPLES = 300
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as err:
        raise missing_extra("tensorflow", "train") from err
    return tf


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences the converter's Python-level chatter (signature dumps, warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(_io.StringIO()):
            yield


# --- representative data -------------------------------------------------------


def representative_dataset(
    crops: np.ndarray, normalization: str = "mobilenet_v2"
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's representative dataset over uint8 crops.

    Args:
      crops: ``(N, H, W, 3)`` uint8 RGB crops.
      normalization: key of :data:`tla_edge.runtime.preprocess.NORMALIZATIONS`; the
        model's own (from its metadata).

    Returns:
      A function returning a generator of ``[preprocess.normalize(crop)[None]]``
      float32 arrays, one per crop, as ``TFLiteConverter.representative_dataset``
      expects.

    Raises:
      ValueError: ``crops`` is not a non-empty ``(N, H, W, 3)`` uint8 array.
    """
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8 or len(crops) == 0:
        raise ValueError(
            f"calibration crops of shape {crops.shape} dtype {crops.dtype} are not a non-empty "
            "(N, H, W, 3) uint8 array"
        )
    preprocess.normalize(crops[:1], normalization)  # unknown names fail here, not mid-conversion

    def gen() -> Iterator[list[np.ndarray]]:
        for crop in crops:
            yield [preprocess.normalize(crop, normalization)[None]]

    return gen


def _as_generator(representative: Any) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Accepts a generator function, an iterable or an array of float inputs."""
    if callable(representative):
        source = representative
    else:
        items = list(representative)
        source = lambda: iter(items)  # noqa: E731

    def gen() -> Iterator[list[np.ndarray]]:
        for item in source():
            if isinstance(item, (list, tuple)):
                yield [np.asarray(v, np.float32) for v in item]
            else:
                x = np.asarray(item, np.float32)
                yield [x if x.ndim == 4 else x[None]]

    return gen


# --- conversion ------------------------------------------------------------------


def input_shape(model: Any) -> tuple[int, int, int]:
    """``(H, W, C)`` of a Keras model's single image input.

    Raises:
      ValueError: the model does not take one fully defined NHWC input.
    """
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4 or any(d is None for d in shapes[0][1:]):
        raise ValueError(
            f"model input shapes {shapes} are not one image input [batch, H, W, C] with H, W, C fixed"
        )
    return tuple(int(d) for d in shapes[0][1:])  # type: ignore[return-value]


def output_values(model: Any) -> int:
    """Values per image of a Keras liveness model's single output: 1 (live logit) or 2 (two classes).

    Raises:
      ValueError: several outputs, or an output that is not 1 or 2 values per image.
    """
    shapes = [tuple(t.shape) for t in model.outputs]
    n = None
    if len(shapes) == 1 and len(shapes[0]) >= 2 and all(d is not None for d in shapes[0][1:]):
        n = int(np.prod(shapes[0][1:]))
    if n not in (1, 2):
        raise ValueError(
            f"model output shapes {shapes} are not a liveness score; expected one output "
            "[batch, 1] (live logit or probability) or [batch, 2] (two classes)"
        )
    return n


def dtype_policies(model: Any) -> set[str]:
    """Names of the dtype policies of every layer, nested models included."""
    names = set()
    for layer in model.layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None:
            names.add(str(getattr(policy, "name", policy)))
        if getattr(layer, "layers", None):
            names |= dtype_policies(layer)
    return names


def as_float32(model: Any) -> Any:
    """The same Keras 3 model computing in float32 (e.g. one trained under ``mixed_float16``).

    A mixed-precision model would put float16 casts into every TFLite
    variant; rebuilding it from its config with float32 policies and copying
    the weights gives the float graph the converter expects.

    Args:
      model: a Keras 3 functional model.

    Returns:
      ``model`` itself when every layer is float32 already, else a float32 copy.
    """
    if dtype_policies(model) <= {"float32"}:
        return model

    def fix(obj: Any) -> Any:
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
                obj = {**obj, "config": {**obj["config"], "name": "float32"}}
            return {k: fix(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [fix(v) for v in obj]
        return obj

    clone = model.__class__.from_config(fix(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def frozen_function(model: Any) -> Any:
    """The model's inference graph with batch 1 and its weights as constants.

    A frozen concrete function converts in seconds (``from_keras_model``
    exports a SavedModel first) and works for Keras 3 and tf-keras models,
    including tfmot's quantization-aware ones.
    """
    tf = _tensorflow()
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    h, w, c = input_shape(model)
    spec = tf.TensorSpec((1, h, w, c), tf.float32, name="image")
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return convert_variables_to_constants_v2(fn.get_concrete_function())


def convert(
    model: Any,
    mode: str,
    representative: Any = None,
    io: str = "int8",
) -> bytes:
    """Converts a Keras model (Keras 3 or tf-keras, QAT included) to a TFLite flatbuffer.

    Args:
      model: the model; one image input, e.g. ``(None, 160, 160, 3)`` float.
      mode: one of :data:`MODES`.
      representative: calibration inputs for ``int8``: a function returning a
        generator (see :func:`representative_dataset`), or an iterable of
        float32 ``(1, H, W, 3)`` arrays already normalised. Ignored by the
        other modes.
      io: interface type of an ``int8`` model, one of :data:`IO_TYPES`;
        ignored by the other modes (their interface is float32).

    Returns:
      The ``.tflite`` file's bytes (batch size 1, static shapes).

    Raises:
      ValueError: an unknown mode or io type, or ``int8`` without
        representative data.
    """
    if mode not in MODES:
        raise ValueError(f"conversion mode {mode!r} is not one of {list(MODES)}")
    if io not in IO_TYPES:
        raise ValueError(f"io type {io!r} is not one of {list(IO_TYPES)}")
    if mode == "int8" and representative is None:
        raise ValueError(
            "int8 conversion needs representative data (calibration crops); got none"
        )
    tf = _tensorflow()
    func = frozen_function(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([func], tf.Module())
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # QAT models still need it in TF 2.21 (the converter's metrics step
        # asks for it before it looks for fake-quant ops); it then only fills
        # ranges that training did not record.
        converter.representative_dataset = _as_generator(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float":
            io_type = tf.int8 if io == "int8" else tf.uint8
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
    with _quiet():
        return bytes(converter.convert())


# --- what the file holds ----------------------------------------------------------


class TensorSummary(NamedTuple):
    """Tensor types of a converted model, read back through an interpreter."""

    input_dtype: str
    """NumPy name of the input tensor's type."""
    output_dtype: str
    """NumPy name of the output tensor's type."""
    float_tensors: int
    """Number of float16/32/64 tensors anywhere in the model."""
    tensors: int
    """Number of tensors."""
    dtype_counts: dict[str, int]
    """Type name -> number of tensors."""


def tensor_summary(tflite: bytes | str | Path) -> TensorSummary:
    """Reads a model's input/output types and counts its float tensors.

    Args:
      tflite: the model's bytes or file.

    Returns:
      The :class:`TensorSummary`, from the interpreter's tensor details.
    """
    from tla_edge.runtime.interpreter import import_runtime

    runtime = import_runtime()
    if isinstance(tflite, (bytes, bytearray)):
        interpreter = runtime.interpreter_class(model_content=bytes(tflite))
    else:
        interpreter = runtime.interpreter_class(model_path=str(tflite))
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    counts: dict[str, int] = {}
    for d in details:
        name = np.dtype(d["dtype"]).name
        counts[name] = counts.get(name, 0) + 1
    floats = sum(1 for d in details if np.dtype(d["dtype"]) in FLOAT_DTYPES)
    return TensorSummary(
        input_dtype=np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        output_dtype=np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
        float_tensors=floats,
        tensors=len(details),
        dtype_counts=dict(sorted(counts.items())),
    )


# --- calibration crops -------------------------------------------------------------


class CalibrationSet(NamedTuple):
    """Crops drawn for calibration (or QAT), with what they are."""

    images: np.ndarray
    """``(N, H, W, 3)`` uint8 RGB crops."""
    labels: np.ndarray
    """``(N,)`` 1 real, 0 attack."""
    species: list[str]
    """Attack species per crop (``""`` for real)."""
    sessions: list[str]
    """Capture session per crop."""
    counts: dict[str, int]
    """Crops drawn per stratum: ``"real"`` and each attack species."""
    available: int
    """Crops there were to draw from."""
    crops_dir: str
    """The crops folder."""
    scale: float
    """The crop scale read."""


def stratified_indices(
    strata: Sequence[str], n: int, seed: int = 0
) -> np.ndarray:
    """Draws up to ``n`` indices spread evenly over strata, at random within each.

    Each stratum gets ``n // k`` (the first ones one more for the remainder);
    what a small stratum cannot give goes to the others, so the total is
    ``min(n, len(strata))``.

    Args:
      strata: the stratum of each row, e.g. ``"real"``, ``"print"``.
      n: how many to draw.
      seed: random seed.

    Returns:
      Sorted row indices.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    order = {k: rng.permutation(v).tolist() for k, v in sorted(groups.items())}
    want = min(int(n), len(strata))
    quota = {k: 0 for k in order}
    left = want
    while left > 0:
        open_ = [k for k in order if quota[k] < len(order[k])]
        share, extra = divmod(left, len(open_))
        for j, k in enumerate(open_):
            give = min(share + (1 if j < extra else 0), len(order[k]) - quota[k])
            quota[k] += give
            left -= give
    picked = [i for k in order for i in order[k][: quota[k]]]
    return np.array(sorted(picked), dtype=np.int64)


def strata_of(labels: Sequence[int], species: Sequence[str]) -> list[str]:
    """``"real"`` for bona fide rows, the attack species (or ``"attack"``) otherwise."""
    return ["real" if int(y) == 1 else (s or "attack") for y, s in zip(labels, species)]


def load_crop_set(
    crops_dir: str | Path,
    scale: float | None = None,
    input_size: Sequence[int] | None = None,
    sessions: str | Iterable[str] | None = None,
    what: str = "calibration",
    resize: bool = False,
    subjects: str | Iterable[str] | None = None,
) -> Any:
    """Reads a crops folder through :func:`tla_edge.data.datasets.load_crops`, with clear errors.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      scale: the crop scale the model was trained on (its metadata's
        ``crop_scale``); None when the folder holds one scale.
      input_size: the model's ``(height, width)``; crops of another size are refused.
      sessions: keep only these sessions (None: all).
      what: what the crops are for, for messages (``"calibration"``, ``"validation"``).
      resize: resize crops of another size to ``input_size`` the way
        ``tla-edge train --input-size`` does, instead of refusing them.
      subjects: keep only these subjects (None: all).

    Returns:
      The :class:`tla_edge.data.datasets.CropSet`.

    Raises:
      FileNotFoundError: the folder does not exist.
      UserError: the folder holds no crops (no manifest, or an empty one), or
        none at this scale / session.
      ValueError: the crops' size differs from ``input_size``.
    """
    from tla_edge.data import datasets

    crops_dir = Path(crops_dir)
    if not crops_dir.is_dir():
        raise FileNotFoundError(f"{what} crops folder '{crops_dir}' not found")
    if not (crops_dir / datasets.MANIFEST_NAME).is_file():
        found = sum(1 for _ in crops_dir.rglob("*.png"))
        raise UserError(
            f"{what} crops folder '{crops_dir}' has no {datasets.MANIFEST_NAME} "
            f"({found} PNG files); expected a folder written by 'tla-edge prepare DATA --out CROPS'"
        )
    if not datasets.read_manifest(crops_dir):
        raise UserError(
            f"{what} crops folder '{crops_dir}' is empty (its manifest lists no crops); "
            "expected crops written by 'tla-edge prepare DATA --out CROPS'"
        )
    if scale is not None:
        scales = sorted({float(r["scale"]) for r in datasets.read_manifest(crops_dir)})
        if len(scales) == 1 and abs(scales[0] - float(scale)) > 1e-6:
            raise UserError(
                f"{what} crops in '{crops_dir}' are at crop scale {scales[0]:g} but the model was "
                f"trained at {float(scale):g}; prepare crops with --scales {float(scale):g}"
            )
    crops = datasets.load_crops(crops_dir, scale=scale, sessions=sessions, subjects=subjects)
    if input_size is not None:
        got = tuple(int(v) for v in crops.images.shape[1:3])
        want = tuple(int(v) for v in input_size)
        if got != want and resize and want[0] == want[1]:
            # The same resize as training (tla_edge.cli.train), so calibration and
            # parity see the pixels the model was trained on.

            crops.images = preprocess.resize_crops(crops.images, want[0])
        elif got != want:
            raise ValueError(
                f"{what} crops in '{crops_dir}' are {got[0]}x{got[1]} but the model's input is "
                f"{want[0]}x{want[1]}; prepare crops with --size {want[0]}, or pass --resize-crops "
                "to resize them as tla-edge train --input-size does"
            )
    return crops


def calibration_set(
    crops_dir: str | Path,
    n: int = DEFAULT_CALIBRATION_SAMPLES,
    seed: int = 0,
    scale: float | None = None,
    input_size: Sequence[int] | None = None,
    sessions: str | Iterable[str] | None = None,
    resize: bool = False,
    subjects: str | Iterable[str] | None = None,
) -> CalibrationSet:
    """Draws calibration crops from a prepared crops folder, stratified by class and species.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      n: how many crops (all of them when there are fewer).
      seed: random seed of the draw.
      scale: the model's crop scale (None: the folder's only scale).
      input_size: the model's ``(height, width)``; crops of another size are refused.
      sessions: draw only from these sessions (None: all).
      resize: resize crops of another size (see :func:`load_crop_set`).
      subjects: draw only from these subjects (None: all).

    Returns:
      The :class:`CalibrationSet` (uint8 crops; normalise them with
      :func:`representative_dataset`).

    Raises:
      FileNotFoundError, UserError, ValueError: see :func:`load_crop_set`;
        also ValueError for ``n < 1``.
    """
    if int(n) < 1:
        raise ValueError(f"calibration sample count {n!r} is not >= 1")
    crops = load_crop_set(crops_dir, scale, input_size, sessions, "calibration", resize, subjects)
    strata = strata_of(crops.labels, crops.species)
    idx = stratified_indices(strata, n, seed)
    counts: dict[str, int] = {}
    for i in idx:
        counts[strata[i]] = counts.get(strata[i], 0) + 1
    return CalibrationSet(
        images=crops.images[idx],
        labels=np.asarray(crops.labels)[idx].astype(np.int64),
        species=[crops.species[i] if int(crops.labels[i]) == 0 else "" for i in idx],
        sessions=[crops.sessions[i] for i in idx],
        counts=dict(sorted(counts.items())),
        available=len(strata),
        crops_dir=str(crops_dir),
        scale=float(crops.scale),
    )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
