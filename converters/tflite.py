"""Keras -> TFLite bytes: float32, fp16, dynamic range and full-integer int8.

Every function here returns data and writes nothing (the
``tensorflow/models`` export pattern); :mod:`tla_edge.converters.export`
writes the files. TensorFlow is imported inside the functions.

Calibration data for int8 comes from real prepared crops
(:func:`tla_edge.converters.calibration.calibration_set`), stratified by
class and attack species, and goes through
:func:`tla_edge.runtime.preprocess.normalize`, the one preprocessing shared
with training and the runtime (:func:`representative_dataset`).
"""

from __future__ import annotations

import contextlib
import io as _io
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from tla_edge import fileio
from tla_edge.errors import import_tensorflow
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime import preprocess

MODES = ("float32", "fp16", "dynamic", "int8")
"""Conversion modes: float32 (no quantization), fp16 weights, dynamic-range
int8 weights with float activations, full-integer int8."""
IO_TYPES = ("int8", "uint8", "float")
"""Interface of a full-integer model: int8 (TFLite default), uint8 (the
pycoral / Edge TPU convention) or float (QUANTIZE/DEQUANTIZE at the edges)."""
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


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
    tf = import_tensorflow()
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
    tf = import_tensorflow()
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


# --- the Keras model -------------------------------------------------------------------


class Source(NamedTuple):
    """The Keras model being converted."""

    path: Path
    """The ``.keras`` file."""
    model: Any
    """The loaded model (float32)."""
    meta: metadata_lib.ModelMetadata
    """Its metadata (defaults when there was none)."""
    sha256: str
    """SHA-256 of the ``.keras`` file."""
    converter: dict[str, str]
    """TensorFlow and Keras versions."""


def resolve_model(path: Path) -> Path:
    """The ``.keras`` file named by MODEL (a file, or a folder holding ``model.keras``).

    Raises:
      FileNotFoundError: nothing there, or a folder without ``model.keras``.
      ValueError: the file is not a Keras zip archive.
    """
    path = metadata_lib.model_file(path)
    if not path.exists():
        raise FileNotFoundError(f"model '{path}' not found; expected MODEL.keras or a model folder")
    ok = path.suffix == ".keras" and zipfile.is_zipfile(path)
    if ok:
        with zipfile.ZipFile(path) as zf:
            ok = "config.json" in zf.namelist()
    if not ok:
        raise ValueError(
            f"model '{path}' is not a Keras model; expected a .keras file (zip with config.json) "
            "written by tla-edge train or keras.Model.save"
        )
    return path


def load_model(model_path: Path, meta: metadata_lib.ModelMetadata | None,
               log: Callable[[str], None]) -> Source:
    """Loads the Keras model as float32 and checks it against its metadata.

    Args:
      model_path: the ``.keras`` file (:func:`resolve_model`).
      meta: its metadata (None: defaults for its input size, with a warning).
      log: receives the warnings, one line each.

    Returns:
      The :class:`Source`: model, metadata, file SHA-256 and converter versions.

    Raises:
      UserError: TensorFlow is not installed.
      ValueError: the file does not load, is not a liveness model, or its
        input size differs from its metadata's.
    """
    tf = import_tensorflow()
    import keras

    try:
        model = keras.saving.load_model(str(model_path), compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise ValueError(
            f"model '{model_path}' could not be loaded as a Keras model: {' '.join(str(err).split())[:300]}"
        ) from err
    if dtype_policies(model) - {"float32"}:
        log(f"the model computes in {sorted(dtype_policies(model) - {'float32'})}; "
            "converting a float32 copy")
        model = as_float32(model)
    h, w, _ = input_shape(model)
    output_values(model)
    if meta is None:
        meta = metadata_lib.ModelMetadata(input_size=(h, w))
        log(f"warning: no metadata.json beside '{model_path}'; using defaults "
            f"(normalization {meta.normalization}, crop scale {meta.crop_scale:g}, threshold 0.5)")
    elif tuple(meta.input_size) != (h, w):
        raise ValueError(
            f"model '{model_path}' input is {h}x{w} but its metadata says "
            f"{meta.input_size[0]}x{meta.input_size[1]}"
        )
    return Source(model_path, model, meta, fileio.sha256_file(model_path),
                  {"tensorflow": tf.__version__, "keras": keras.__version__})
