"""TFLite runtime access: import fallback, delegates, quantized input and output.

The quantization maths itself lives in :mod:`tla_edge.runtime.quant`.

Small functions over an interpreter in the pycoral style, plus
:class:`LivenessModel`, which owns one interpreter and its metadata.
Never imports TensorFlow unless neither LiteRT nor tflite-runtime is present.
"""

from __future__ import annotations

import ctypes
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tla_edge.runtime import metadata as metadata_lib
from tla_edge.errors import UserError
from tla_edge.runtime import preprocess
from tla_edge.runtime.cpu import check_num_threads
from tla_edge.runtime.native import quiet_native_logs
from tla_edge.runtime.quant import (
    StandardisedInput, dequantize, pixel_lut, score_from_output, scores_from_output,
)
from tla_edge.runtime.tensors import (  # noqa: F401  (the tensor helpers, re-exported where they were)
    check_image_input, check_output_shape, get_output, input_details, input_size, is_quantized, output_details,
    quantization_params, score_table, set_input,
)

EDGETPU_SHARED_LIB = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}


class Runtime(NamedTuple):
    """The TFLite runtime that was imported."""

    name: str
    """``ai-edge-litert``, ``tflite-runtime`` or ``tensorflow``."""
    interpreter_class: Any
    """Its ``Interpreter`` class."""
    load_delegate: Any
    """Its ``load_delegate`` function."""


def import_runtime() -> Runtime:
    """Imports the best available TFLite runtime: LiteRT, then tflite-runtime, then tf.lite.

    Raises:
      UserError: none is installed.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Runtime("ai-edge-litert", Interpreter, load_delegate)
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Runtime("tflite-runtime", Interpreter, load_delegate)
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return Runtime("tensorflow", tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    except ImportError:
        raise UserError(
            "no TFLite runtime is installed; install the 'runtime' extra: "
            "pip install 'tla-edge[runtime]'"
        ) from None


def check_tflite_file(model_path: str | Path) -> Path:
    """Checks that a path is an existing TFLite flatbuffer.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is not a TFLite model.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' not found")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ValueError(
            f"model file '{path}' is not a TFLite model (no TFL3 flatbuffer identifier)"
        )
    return path


def make_interpreter(
    model_path: str | Path,
    num_threads: int | None = None,
    edgetpu: bool = False,
    edgetpu_device: str | None = None,
):
    """Creates an interpreter for a ``.tflite`` file and allocates its tensors.

    Args:
      model_path: the model file.
      num_threads: CPU threads for the interpreter (None: runtime default).
      edgetpu: load the Edge TPU delegate (the model must be compiled with
        ``edgetpu_compiler``).
      edgetpu_device: e.g. ``"usb"``, ``"usb:0"``, ``"pci:0"``; None for any.

    Returns:
      The interpreter, tensors allocated.

    Raises:
      FileNotFoundError: the model file does not exist.
      ValueError: the file is not a TFLite model, or ``num_threads`` is not None or an integer in [1, 64].
      UserError: the Edge TPU library cannot be loaded.
    """
    check_num_threads(num_threads)
    path = check_tflite_file(model_path)
    runtime = import_runtime()
    delegates = []
    if edgetpu:
        delegates.append(load_edgetpu_delegate(runtime, edgetpu_device))
    kwargs: dict[str, Any] = {"model_path": str(path)}
    if num_threads is not None:
        kwargs["num_threads"] = int(num_threads)
    if delegates:
        kwargs["experimental_delegates"] = delegates
    try:
        with quiet_native_logs():
            interpreter = runtime.interpreter_class(**kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"model file '{path}' could not be loaded: {err}") from err
    return interpreter


def load_edgetpu_delegate(runtime: Runtime | None = None, device: str | None = None):
    """Loads the Edge TPU delegate for this OS.

    Raises:
      UserError: ``libedgetpu`` is not installed or no Edge TPU is attached.
    """
    runtime = runtime or import_runtime()
    system = platform.system()
    lib = EDGETPU_SHARED_LIB.get(system)
    if lib is None:
        raise UserError(f"the Edge TPU is not supported on {system}; expected Linux, macOS or Windows")
    options = {"device": device} if device else {}
    hint = (
        "install libedgetpu (https://coral.ai/docs/accelerator/get-started/, package "
        "libedgetpu1-std) and plug in the Coral, or run without --edgetpu"
    )
    try:
        # Probe the library first: a failed load_delegate leaves a half-built
        # Delegate whose __del__ prints a traceback at exit.
        ctypes.CDLL(lib)
    except OSError as err:
        raise UserError(f"cannot load the Edge TPU delegate '{lib}' ({err}); {hint}") from err
    try:
        return runtime.load_delegate(lib, options)
    except (ValueError, OSError, RuntimeError) as err:
        raise UserError(f"cannot use the Edge TPU delegate '{lib}' ({err}); {hint}") from err


class LivenessModel:
    """A ``.tflite`` liveness model with its metadata; scores uint8 RGB crops.

    Attributes:
      path: the model file.
      meta: its :class:`~tla_edge.runtime.metadata.ModelMetadata` (from the model or
        its sidecar; without either, only when ``threshold`` is given).
      interpreter: the runtime interpreter (None once closed).
      last_invoke_ms: time of the last ``invoke()`` alone, in milliseconds.

    Args:
      path: the ``.tflite`` file.
      num_threads: CPU threads for the interpreter.
      edgetpu: load the Edge TPU delegate.
      meta: metadata to use instead of the model's own.
      threshold: overrides the metadata's threshold; required for a model
        without tla-edge metadata (whose input size is then read from the
        model and the rest are defaults: logit output, mobilenet_v2
        normalization, the default crop scale).

    Raises:
      ValueError: the file is not a liveness model (input not one image,
        output not 1 or 2 values), its metadata or ``threshold`` is invalid,
        or it has no metadata and no ``threshold``.
    """

    def __init__(
        self,
        path: str | Path,
        num_threads: int | None = None,
        edgetpu: bool = False,
        meta: metadata_lib.ModelMetadata | None = None,
        threshold: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.interpreter = None
        if threshold is not None:
            threshold = metadata_lib.check_threshold(threshold, "threshold")
        interpreter = make_interpreter(self.path, num_threads=num_threads, edgetpu=edgetpu)
        check_image_input(interpreter, self.path)
        found = meta or metadata_lib.load(self.path)
        size = input_size(interpreter)
        if found is None:
            if threshold is None:
                raise ValueError(
                    f"model '{self.path}' has no tla-edge metadata (embedded or "
                    f"'{metadata_lib.sidecar_path(self.path).name}'), so its threshold and "
                    "preprocessing are unknown; pass --threshold (API: threshold=) to use it anyway"
                )
            found = metadata_lib.ModelMetadata(input_size=size)
        elif tuple(found.input_size) != size:
            raise ValueError(
                f"model '{self.path}' input is {size[0]}x{size[1]} but its metadata says "
                f"{found.input_size[0]}x{found.input_size[1]}"
            )
        metadata_lib.check_metadata_values(found, f"model '{self.path}' metadata")
        check_output_shape(interpreter, found, self.path)
        if threshold is not None:
            found = found.replace(threshold=threshold)
        self.meta = found
        self.interpreter = interpreter
        self._in = input_details(self.interpreter)
        self._out = output_details(self.interpreter)
        self._size = (int(size[0]), int(size[1]))
        self._in_index = int(self._in["index"])
        self._out_index = int(self._out["index"])
        self._out_q = quantization_params(self._out) if is_quantized(self._out) else None
        self._score_table = score_table(self._out, self.meta)
        self._lut = None
        self._standardise: StandardisedInput | None = None  # a per-crop normalization's input writer
        if is_quantized(self._in):
            scale, zp = quantization_params(self._in)
            if self.meta.normalization in preprocess.STANDARDISED:
                self._standardise = StandardisedInput(self.meta.normalization, scale, zp,
                                                      np.dtype(self._in["dtype"]), self._size)
            else:
                self._lut = pixel_lut(self.meta.normalization, scale, zp, np.dtype(self._in["dtype"]))
        self.last_invoke_ms = 0.0

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self._size

    @property
    def threshold(self) -> float:
        """The decision threshold from the metadata (or the ``threshold`` given)."""
        return float(self.meta.threshold)

    def close(self) -> None:
        """Releases the interpreter and any delegate it holds; later calls raise. Safe to call twice."""
        self.interpreter = None

    def __enter__(self) -> "LivenessModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def crop(self, rgb: np.ndarray, box) -> np.ndarray:
        """The model's uint8 crop of one face, via the shared crop function and the model's crop rule."""
        return preprocess.crop_face(rgb, box, self.meta.crop_scale, self.input_size, self.meta.crop_rule)

    def crop_trusted(self, rgb: np.ndarray, box) -> np.ndarray:
        """:meth:`crop` of a frame its caller has checked (:meth:`Pipeline.process` does, once)."""
        return preprocess.crop_face_trusted(rgb, box, self.meta.crop_scale, self.input_size, self.meta.crop_rule)

    def _check_crop(self, crop: np.ndarray) -> None:
        if crop.shape != (*self._size, 3) or crop.dtype != np.uint8:
            raise ValueError(
                f"crop shape {crop.shape} dtype {crop.dtype} is not {self._size[0]}x{self._size[1]}x3 uint8"
            )

    def input_tensor(self, crop: np.ndarray) -> np.ndarray:
        """The model's input for one uint8 crop (quantized through a lookup table when int8/uint8, or per crop)."""
        self._check_crop(crop)
        if self._lut is not None:
            import cv2  # the runtime extra's OpenCV; cv2.LUT is ~4x faster than fancy indexing

            return cv2.LUT(crop, self._lut.view(np.uint8)).view(self._lut.dtype)[None]
        if self._standardise is not None:
            return self._standardise(crop)[None]
        return preprocess.normalize(crop, self.meta.normalization)[None]

    def set_input(self, crop: np.ndarray) -> None:
        """Writes the model's input for one uint8 crop straight into the interpreter's input tensor.

        The same values as ``set_tensor(input_tensor(crop))``, without the
        intermediate array: a quantized model's lookup table writes into the
        tensor's own buffer. Then :meth:`invoke_input`.

        Raises:
          ValueError: the crop is not the model's input size, uint8 RGB.
          RuntimeError: the model is closed.
        """
        self._check_crop(crop)
        if self.interpreter is None:
            raise RuntimeError(f"liveness model '{self.path}' is closed")
        # A view of the tensor's buffer, dropped on return: LiteRT refuses to
        # invoke while one is alive (its buffers may move).
        dst = self.interpreter.tensor(self._in_index)()[0]
        if self._lut is not None:
            import cv2

            target = dst.view(np.uint8)
            written = cv2.LUT(crop, self._lut.view(np.uint8), dst=target)
            if written is not target:  # OpenCV allocated instead of writing in place
                target[...] = written
        elif self._standardise is not None:
            self._standardise(crop, dst=dst)
        else:
            dst[...] = preprocess.normalize(crop, self.meta.normalization)

    @property
    def input_key(self) -> tuple:
        """What the model's input is made of besides the crop: two models with equal keys write equal inputs
        from one crop (normalization, input dtype, size and quantization), so one may copy the other's."""
        q = quantization_params(self._in) if is_quantized(self._in) else None
        return self.meta.normalization, str(np.dtype(self._in["dtype"])), self._size, q

    def copy_input_from(self, other: "LivenessModel") -> None:
        """Copies ``other``'s input tensor into this model's: what :meth:`set_input` would write from the crop
        ``other``'s input was set from, when both :attr:`input_key` are equal (the caller's to check).

        Raises:
          RuntimeError: either model is closed.
        """
        if self.interpreter is None or other.interpreter is None:
            raise RuntimeError(f"liveness model '{self.path if self.interpreter is None else other.path}' is closed")
        # views of both buffers, dropped on return (LiteRT refuses to invoke while one is alive)
        np.copyto(self.interpreter.tensor(self._in_index)(), other.interpreter.tensor(other._in_index)())

    def invoke_input(self) -> np.ndarray:
        """Runs the input already set (:meth:`set_input`); returns the raw output, dequantized.

        Sets :attr:`last_invoke_ms` (``invoke()`` alone). One call at a time per model.

        Raises:
          RuntimeError: the model is closed.
        """
        out = self._invoke_raw()
        if self._out_q is not None:
            return dequantize(out, *self._out_q)
        return out.astype(np.float32)

    def _invoke_raw(self) -> np.ndarray:
        """``invoke()`` on the input already set, timed into :attr:`last_invoke_ms`; the output tensor as stored."""
        interpreter = self.interpreter
        if interpreter is None:
            raise RuntimeError(f"liveness model '{self.path}' is closed")
        t0 = time.perf_counter()
        interpreter.invoke()
        self.last_invoke_ms = (time.perf_counter() - t0) * 1e3
        return interpreter.get_tensor(self._out_index)

    def invoke_score(self) -> float:
        """Runs the input already set (:meth:`set_input`); returns the live probability.

        ``score_from_output(invoke_input(), meta)``, bit for bit: a quantized
        one-value output (the bundled models') is looked up in the table of
        every value it can take (:func:`score_table`), built when the model
        loaded; any other output, or a value the table marks as refused, takes
        that path itself and raises its error. Sets :attr:`last_invoke_ms`.

        Raises:
          RuntimeError: the model is closed.
          ValueError: the output is not a valid score (see :func:`~tla_edge.runtime.quant.score_from_output`).
        """
        table = self._score_table
        if table is None:
            return score_from_output(self.invoke_input(), self.meta)
        out = self._invoke_raw()
        score = table.get(int(out.flat[0]))
        if score is None:  # refused: the full path says why
            return score_from_output(dequantize(out, *self._out_q), self.meta)
        return score

    def invoke_tensor(self, x: np.ndarray) -> np.ndarray:
        """Runs one prepared input tensor (:meth:`input_tensor`); returns the raw output, dequantized.

        Raises:
          RuntimeError: the model is closed.
        """
        if self.interpreter is None:
            raise RuntimeError(f"liveness model '{self.path}' is closed")
        self.interpreter.set_tensor(self._in_index, x)
        return self.invoke_input()

    def score(self, crop: np.ndarray) -> float:
        """Live probability in [0, 1] for one uint8 RGB crop of the model's input size."""
        self.set_input(crop)
        return float(scores_from_output(self.invoke_input(), self.meta)[0])

    def score_batch(self, crops: np.ndarray) -> np.ndarray:
        """Live probabilities ``(N,)`` for ``(N, H, W, 3)`` uint8 crops."""
        return np.array([self.score(c) for c in crops], dtype=np.float64)
