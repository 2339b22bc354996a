"""What is inside a ``.tflite`` file: the library part of ``tla-edge info``.

    info = inspect_model("model_int8.tflite")
    print(info.inputs[0].dtype, info.op_histogram)
    report = describe("model_int8.tflite")   # what `tla-edge info --json` prints

The file is read through the TFLite schema's generated FlatBuffer bindings that
ship with LiteRT (``ai_edge_litert.schema_py_generated``), so inspection needs
neither TensorFlow nor an interpreter, sees every subgraph, and works on models
a runtime cannot load (e.g. one compiled for the Edge TPU, whose custom op
needs the delegate). The Edge TPU verdict is
:func:`tla_edge.runtime.edgetpu_check.edgetpu_readiness`.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
from pathlib import Path
from typing import Any

from ai_edge_litert import schema_py_generated as schema

from tla_edge.fileio import sha256_file

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})



@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph."""

    index: int
    """Index in its subgraph."""
    name: str
    """Tensor name given by the converter."""
    dtype: str
    """NumPy-style type name: ``float32``, ``int8``, ``uint8``, ``int32``..."""
    shape: tuple[int, ...]
    """Static shape."""
    shape_signature: tuple[int, ...]
    """Shape with ``-1`` for dynamic dimensions; equal to ``shape`` when all are static."""
    scale: tuple[float, ...] = ()
    """Quantization scales (one, or one per channel); empty when not quantized."""
    zero_point: tuple[int, ...] = ()
    """Quantization zero points, same length as ``scale``."""
    quantized_dimension: int = 0
    """Channel axis of per-channel quantization."""
    is_constant: bool = False
    """True for weights, biases and other data stored in the file."""
    subgraph: int = 0
    """Index of the subgraph holding the tensor."""

    @property
    def quantization(self) -> tuple[float, int]:
        """``(scale, zero_point)`` of a per-tensor quantized tensor; ``(0.0, 0)`` when not quantized."""
        if not self.scale:
            return 0.0, 0
        return self.scale[0], self.zero_point[0] if self.zero_point else 0

    @property
    def is_static(self) -> bool:
        """True when no dimension is dynamic."""
        return all(d >= 0 for d in self.shape_signature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; per-channel parameters are summarised by their count."""
        scale, zero_point = self.quantization
        return {
            "name": self.name,
            "index": self.index,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "shape_signature": list(self.shape_signature),
            "quantization": {
                "scale": scale,
                "zero_point": zero_point,
                "channels": len(self.scale),
                "quantized_dimension": self.quantized_dimension,
            },
        }


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One operator of a subgraph."""

    index: int
    """Position in its subgraph's execution order."""
    name: str
    """Builtin name (``CONV_2D``) or ``CUSTOM:<custom code>``."""
    inputs: tuple[int, ...]
    """Input tensor indices; -1 for an omitted optional input."""
    outputs: tuple[int, ...]
    """Output tensor indices."""
    subgraph: int = 0
    """Index of the subgraph holding the operator."""


@dataclasses.dataclass(frozen=True)
class SubgraphInfo:
    """One subgraph: its tensors, operators and I/O."""

    name: str
    """Subgraph name (often empty or ``main``)."""
    tensors: tuple[TensorInfo, ...]
    """Every tensor, by index."""
    operators: tuple[OpInfo, ...]
    """Operators in execution order."""
    inputs: tuple[int, ...]
    """Indices of the subgraph's input tensors."""
    outputs: tuple[int, ...]
    """Indices of the subgraph's output tensors."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The structure of one ``.tflite`` file (see :func:`inspect_model`)."""

    path: str
    """The file inspected."""
    file_size: int
    """Size in bytes, appended metadata included."""
    schema_version: int
    """TFLite schema version in the file (3 today)."""
    description: str
    """Converter description, e.g. ``MLIR Converted.``."""
    subgraphs: tuple[SubgraphInfo, ...]
    """Every subgraph; the first is the one a runtime invokes."""
    metadata_names: tuple[str, ...] = ()
    """Names of the flatbuffer's metadata entries (``min_runtime_version``...)."""

    @property
    def num_subgraphs(self) -> int:
        """Number of subgraphs."""
        return len(self.subgraphs)

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The main subgraph's input tensors."""
        sg = self.subgraphs[0]
        return tuple(sg.tensors[i] for i in sg.inputs)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The main subgraph's output tensors."""
        sg = self.subgraphs[0]
        return tuple(sg.tensors[i] for i in sg.outputs)

    @property
    def tensors(self) -> tuple[TensorInfo, ...]:
        """Every tensor of every subgraph."""
        return tuple(t for sg in self.subgraphs for t in sg.tensors)

    @property
    def operators(self) -> tuple[OpInfo, ...]:
        """Every operator of every subgraph."""
        return tuple(op for sg in self.subgraphs for op in sg.operators)

    @property
    def op_histogram(self) -> dict[str, int]:
        """Operator name -> count over all subgraphs, most frequent first."""
        counts = collections.Counter(op.name for op in self.operators)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def dtype_counts(self) -> dict[str, int]:
        """Tensor type -> number of tensors, most frequent first."""
        counts = collections.Counter(t.dtype for t in self.tensors)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def float_activations(self) -> int:
        """Float tensors computed at run time (inputs, outputs, intermediate values)."""
        return sum(1 for t in self.tensors if t.dtype in FLOAT_TYPES and not t.is_constant)

    @property
    def float_constants(self) -> int:
        """Float tensors stored in the file (weights, biases)."""
        return sum(1 for t in self.tensors if t.dtype in FLOAT_TYPES and t.is_constant)

    @property
    def static_shapes(self) -> bool:
        """True when no tensor has a dynamic (``-1``) dimension."""
        return all(t.is_static for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-tensor listing beyond the inputs and outputs)."""
        return {
            "path": self.path,
            "file_size": self.file_size,
            "schema_version": self.schema_version,
            "description": self.description,
            "subgraphs": self.num_subgraphs,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tensors": len(self.tensors),
            "operators": len(self.operators),
            "op_histogram": self.op_histogram,
            "dtype_counts": self.dtype_counts,
            "float_tensors": {
                "activations": self.float_activations,
                "constants": self.float_constants,
            },
            "static_shapes": self.static_shapes,
            "metadata_names": list(self.metadata_names),
        }


# --- reading the flatbuffer through ai_edge_litert's schema bindings ----------

_TENSOR_TYPES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
"""tflite::TensorType value -> NumPy-style name (``float32``, ``int8``...)."""

_BUILTIN_OPS = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
"""tflite::BuiltinOperator value -> name (``CONV_2D``...)."""


def _ints(values: Any) -> tuple[int, ...]:
    """A vector from ``...AsNumpy()`` (0 when absent) as a tuple of ints."""
    return tuple(int(v) for v in values) if not isinstance(values, int) else ()


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _op_name(code: Any) -> str:
    # builtin_code superseded deprecated_builtin_code at 127; readers take the
    # larger of the two (schema_utils.cc).
    builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{_text(code.CustomCode()) or '?'}"
    return _BUILTIN_OPS.get(builtin, f"BUILTIN_{builtin}")


def _tensor(t: Any, index: int, sg_index: int, has_data: list[bool]) -> TensorInfo:
    shape = _ints(t.ShapeAsNumpy())
    buffer = t.Buffer()
    q = t.Quantization()
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    if q is not None:
        scale = tuple(float(v) for v in q.ScaleAsNumpy()) if q.ScaleLength() else ()
        zero_point = _ints(q.ZeroPointAsNumpy())
    return TensorInfo(
        index=index,
        name=_text(t.Name()),
        dtype=_TENSOR_TYPES.get(t.Type(), f"type{t.Type()}"),
        shape=shape,
        shape_signature=_ints(t.ShapeSignatureAsNumpy()) or shape,
        scale=scale,
        zero_point=zero_point,
        quantized_dimension=int(q.QuantizedDimension()) if q is not None else 0,
        is_constant=bool((0 < buffer < len(has_data) and has_data[buffer]) or t.ExternalBuffer() > 0),
        subgraph=sg_index,
    )


def _subgraph(sg: Any, sg_index: int, op_names: list[str], has_data: list[bool]) -> SubgraphInfo:
    tensors = tuple(_tensor(sg.Tensors(i), i, sg_index, has_data) for i in range(sg.TensorsLength()))
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = op.OpcodeIndex()
        name = op_names[code] if code < len(op_names) else f"OPCODE_{code}"
        ops.append(OpInfo(i, name, _ints(op.InputsAsNumpy()), _ints(op.OutputsAsNumpy()), sg_index))
    return SubgraphInfo(
        name=_text(sg.Name()),
        tensors=tensors,
        operators=tuple(ops),
        inputs=_ints(sg.InputsAsNumpy()),
        outputs=_ints(sg.OutputsAsNumpy()),
    )


def _parse(buf: bytes, path: str) -> ModelInfo:
    model = schema.Model.GetRootAs(buf, 0)
    op_names = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    # A buffer holds data when its vector is non-empty or, in files over 2 GB,
    # when it points outside the flatbuffer (offset/size).
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
    has_data = [b.DataLength() > 0 or b.Size() > 0 for b in buffers]
    subgraphs = tuple(
        _subgraph(model.Subgraphs(i), i, op_names, has_data) for i in range(model.SubgraphsLength())
    )
    if not subgraphs:
        raise ValueError(f"model file '{path}' has no subgraph; expected at least one")
    return ModelInfo(
        path=path,
        file_size=len(buf),
        schema_version=int(model.Version()),
        description=_text(model.Description()),
        subgraphs=subgraphs,
        metadata_names=tuple(_text(model.Metadata(i).Name()) for i in range(model.MetadataLength())),
    )


def inspect_model(path: str | Path) -> ModelInfo:
    """Reads the structure of a ``.tflite`` file without loading a runtime.

    Args:
      path: the model file (metadata appended by :mod:`tla_edge.runtime.metadata` is fine).

    Returns:
      The :class:`ModelInfo`.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is not a TFLite flatbuffer, or is truncated/corrupt.
    """
    from tla_edge.runtime.interpreter import check_tflite_file

    path = check_tflite_file(path)
    buf = path.read_bytes()
    try:
        return _parse(buf, str(path))
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ValueError(
            f"model file '{path}' is a damaged TFLite flatbuffer ({err}); expected a complete .tflite"
        ) from err




def short_name(name: str, width: int = 60) -> str:
    """A tensor name fit for one line: the first of the converter's ``;``-joined names, shortened."""
    name = name.split(";")[0]
    return name if len(name) <= width else "..." + name[-(width - 3) :]


# --- the report of `tla-edge info` -------------------------------------------


def describe(path: str | Path) -> dict[str, Any]:
    """Everything ``tla-edge info`` reports about a model, JSON-ready.

    Args:
      path: the ``.tflite`` file.

    Returns:
      :meth:`ModelInfo.to_dict` plus ``sha256``, ``metadata`` (the tla-edge
      metadata dict or None), ``metadata_source``, ``edgetpu``
      (``{"ready", "reasons", "notes"}``) and ``detector`` (see
      :func:`detector_section`; None for a model that is not BlazeFace).

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is a directory, not a TFLite model, or damaged.
    """
    from tla_edge.runtime.assets import ASSETS_DIR
    from tla_edge.runtime.edgetpu_check import edgetpu_readiness
    from tla_edge.runtime.faces import BUNDLED_MODELS as BUNDLED_DETECTORS

    path = Path(path)
    if not path.exists() and str(path) in BUNDLED_DETECTORS:
        path = ASSETS_DIR / BUNDLED_DETECTORS[str(path)]
    if path.is_dir():
        raise ValueError(f"model '{path}' is a directory; expected a .tflite file")
    try:
        info = inspect_model(path)
    except ValueError as err:
        if path.suffix == ".keras":
            raise ValueError(f"{err}; convert a .keras model first with 'tla-edge convert'") from err
        raise
    verdict = edgetpu_readiness(info)
    out = info.to_dict()
    out["sha256"] = sha256_file(path)
    meta, source = _metadata_of(path)
    out["metadata"] = meta
    out["metadata_source"] = source
    out["edgetpu"] = {"ready": verdict.ready, "reasons": verdict.reasons, "notes": verdict.notes}
    out["detector"] = detector_section(info, verdict.ready)
    return out


def detector_section(info: ModelInfo, edgetpu_ready: bool) -> dict[str, Any] | None:
    """What ``info`` says about a BlazeFace face detector; None for any other model.

    A model is BlazeFace when its input and its two outputs (regressors
    ``[1, N, 16]``, scores ``[1, N, 1]``) match a layout of
    :mod:`tla_edge.runtime.blazeface`.

    Returns:
      ``{"layout", "anchors", "backends", "full_integer", "edgetpu"}``:
      ``edgetpu`` says how the detector runs on a Coral, or what it would need.
    """
    from tla_edge.runtime import blazeface

    if len(info.inputs) != 1 or len(info.outputs) != 2:
        return None
    shape = tuple(info.inputs[0].shape)
    outs = sorted((tuple(t.shape) for t in info.outputs), key=lambda s: s[-1])
    for config in blazeface.CONFIGS:
        n, side = config.num_boxes, config.input_size
        if shape == (1, side, side, 3) and outs == [(1, n, 1), (1, n, 16)]:
            break
    else:
        return None
    full_integer = not info.float_activations and not info.float_constants
    fp16 = any(t.dtype == "float16" for t in info.tensors)
    name = "short range" if config == blazeface.SHORT_RANGE else "full range"
    if edgetpu_ready:
        edgetpu = ("ready for edgetpu_compiler; run the compiled model through LiteRT with the Edge TPU "
                   "delegate (tla_edge.runtime.blazeface.BlazeFaceLiteRT(..., edgetpu=True)): MediaPipe Tasks has no "
                   "Edge TPU delegate; anchors, decoding and NMS stay on the CPU")
    else:
        edgetpu = ("needs a full-integer model (int8 weights and activations, int8/uint8 input), which MediaPipe "
                   "does not publish: it ships BlazeFace as float"
                   + (" (float16 weights dequantized at run time)" if fp16 else "") + ". "
                   "Quantize the float model with calibration frames, compile it with edgetpu_compiler, then run "
                   "it through LiteRT with the Edge TPU delegate; until then the detector runs on the CPU "
                   "(mediapipe or litert backend) beside a liveness model on the Edge TPU")
    return {
        "layout": f"BlazeFace {name}: {side}x{side} RGB input, {n} SSD anchors "
                  f"(strides {', '.join(map(str, config.strides))}), 16 regressors + 1 score per anchor",
        "anchors": n,
        "backends": ["mediapipe", "litert"] if not full_integer else ["litert"],
        "full_integer": full_integer,
        "edgetpu": edgetpu,
    }


def _metadata_of(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The model's tla-edge metadata and where it was found (``embedded``, ``sidecar ...``, ``none``)."""
    from tla_edge.runtime import metadata as metadata_lib

    embedded = metadata_lib.read_embedded(path)
    side = metadata_lib.sidecar_path(path)
    if embedded is not None:
        try:
            diff = metadata_lib.disagreement(embedded, metadata_lib.read_sidecar(side)) if side.is_file() else None
        except ValueError as err:
            diff = f"the sidecar is invalid ({' '.join(str(err).split())})"
        if diff is not None:  # both shown: the model is refused until they agree
            return embedded.to_dict(), f"embedded, DISAGREES with sidecar '{side.name}' ({diff}): refused until they agree"
        return embedded.to_dict(), "embedded"
    if not side.is_file():
        return None, "none"
    try:
        meta = metadata_lib.load(path)
    except ValueError as err:  # report it, but still show the rest of the model
        return None, f"invalid sidecar '{side}': {' '.join(str(err).split())}"
    return (meta.to_dict() if meta else None), f"sidecar '{side}'"
