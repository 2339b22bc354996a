"""Tensor access for TFLite interpreters: details, quantization parameters, the image input's checks, I/O.

Shared by :class:`tla_edge.runtime.interpreter.LivenessModel` (which re-exports
these names), the detector backends, the converters and the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime.quant import dequantize, quantize, score_from_output


def input_details(interpreter) -> dict[str, Any]:
    """The first input tensor's details."""
    return interpreter.get_input_details()[0]


def output_details(interpreter) -> dict[str, Any]:
    """The first output tensor's details."""
    return interpreter.get_output_details()[0]


def quantization_params(details: dict[str, Any]) -> tuple[float, int]:
    """``(scale, zero_point)`` of a tensor; ``(0.0, 0)`` when it is not quantized."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def is_quantized(details: dict[str, Any]) -> bool:
    """True for an int8/uint8 tensor with a non-zero scale."""
    return np.dtype(details["dtype"]) in (np.int8, np.uint8) and quantization_params(details)[0] > 0


def input_size(interpreter) -> tuple[int, int]:
    """The image input's ``(height, width)``, read from the model."""
    return tuple(int(v) for v in input_details(interpreter)["shape"][1:3])  # type: ignore[return-value]


def check_image_input(interpreter, model_path: str | Path = "model") -> None:
    """Raises ValueError unless the model's input is one NHWC RGB image.

    Raises:
      ValueError: names the input shape and dtype received.
    """
    d = input_details(interpreter)
    shape = tuple(int(v) for v in d["shape"])
    dtype = np.dtype(d["dtype"])
    if len(shape) != 4 or shape[3] != 3 or shape[1] < 8 or shape[2] < 8 or shape[0] not in (1, -1):
        raise ValueError(
            f"model '{model_path}' input shape {shape} is not an image; expected [1, H, W, 3]"
        )
    if dtype not in (np.float32, np.int8, np.uint8):
        raise ValueError(
            f"model '{model_path}' input dtype {dtype} is not float32, int8 or uint8"
        )


def set_input(interpreter, x: np.ndarray) -> None:
    """Sets the first input from float values, quantizing with the tensor's own parameters."""
    d = input_details(interpreter)
    dtype = np.dtype(d["dtype"])
    if is_quantized(d):
        scale, zp = quantization_params(d)
        x = quantize(x, scale, zp, dtype)
    interpreter.set_tensor(d["index"], np.asarray(x, dtype=dtype).reshape(d["shape"]))


def get_output(interpreter) -> np.ndarray:
    """The first output as float values, dequantized with its own parameters."""
    d = output_details(interpreter)
    out = interpreter.get_tensor(d["index"])
    if is_quantized(d):
        scale, zp = quantization_params(d)
        return dequantize(out, scale, zp)
    return out.astype(np.float32)


def score_table(out_details: dict, meta: metadata_lib.ModelMetadata) -> dict[int, float] | None:
    """Every value a quantized one-value output can take -> its live probability, or None for other outputs.

    Each entry is ``score_from_output(dequantize(q), meta)`` itself, so the
    table gives the same float64, bit for bit, as that path on the frame; a
    value that path refuses (a probability dequantized outside [0, 1]) has no
    entry, and :meth:`tla_edge.runtime.interpreter.LivenessModel.invoke_score`
    takes the path to raise its error. 256 entries, built once per model
    load: the frame path then reads its score with one lookup instead of a
    dozen small numpy calls.
    """
    dtype = np.dtype(out_details["dtype"])
    if not is_quantized(out_details) or dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    if int(np.prod(out_details["shape"][1:])) != 1:
        return None
    scale, zp = quantization_params(out_details)
    info = np.iinfo(dtype)
    table: dict[int, float] = {}
    for q in range(int(info.min), int(info.max) + 1):
        try:
            table[q] = score_from_output(dequantize(np.array([[q]], dtype), scale, zp), meta)
        except ValueError:
            continue
    return table


def check_output_shape(interpreter, meta: metadata_lib.ModelMetadata, model_path: str | Path = "model") -> int:
    """Checks the model has one output of 1 or 2 values per image; returns that count.

    Raises:
      ValueError: names the output shapes received, or a live index outside them.
    """
    outs = interpreter.get_output_details()
    shapes = [tuple(int(v) for v in d["shape"]) for d in outs]
    per_image = int(np.prod(shapes[0][1:])) if len(outs) == 1 and len(shapes[0]) >= 1 else 0
    if len(outs) != 1 or len(shapes[0]) < 2 or shapes[0][0] not in (1, -1) or per_image not in (1, 2):
        raise ValueError(
            f"model '{model_path}' outputs {shapes} are not a liveness score; expected one output "
            "of shape [1, 1] (live logit or probability) or [1, 2] (two classes)"
        )
    if meta.live_index >= per_image:
        raise ValueError(
            f"model '{model_path}' has {per_image} output value(s) per image but its metadata "
            f"live_index is {meta.live_index}"
        )
    return per_image
