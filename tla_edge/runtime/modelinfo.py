"""What is inside a ``.tflite`` file, and whether the Edge TPU compiler can map it.

A library, shared by ``tla-edge info`` and the converter's Edge TPU report:

    info = inspect_model("model_int8.tflite")
    print(info.inputs[0].dtype, info.op_histogram)
    verdict = edgetpu_readiness(info)      # Readiness(ready, reasons, notes)

The file is read by parsing its FlatBuffer by hand (the TFLite schema's root
``Model`` table and the few tables below it), so inspection needs neither
TensorFlow nor a TFLite runtime, sees every subgraph, and works on models a
runtime cannot load (e.g. one compiled for the Edge TPU, whose custom op needs
the delegate).
"""

from __future__ import annotations

import collections
import dataclasses
import struct
from pathlib import Path
from typing import Any, Iterable, NamedTuple

# tflite::TensorType, index = enum value (schema.fbs), as NumPy-style names.
TENSOR_TYPES = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16",
    "complex64", "int8", "float64", "complex128", "uint64", "resource", "variant",
    "uint32", "uint16", "int4", "bfloat16", "int2", "uint4", "float8_e4m3fn", "float8_e5m2",
)  # fmt: skip

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})

# tflite::BuiltinOperator, index = enum value (schema.fbs of LiteRT 2.3).
BUILTIN_OPS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC",
    "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS",
    "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND",
    "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX",
    "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM",
    "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN",
    "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG",
    "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD",
    "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK",
    "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD",
    "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
    "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK",
    "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND",
    "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D",
    "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE",
    "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT",
    "STABLEHLO_LOGISTIC", "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE",
    "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE",
    "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE", "STABLEHLO_ABS", "STABLEHLO_AND",
    "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL", "STABLEHLO_FLOOR", "STABLEHLO_LOG",
    "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR", "STABLEHLO_POWER",
    "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT", "STABLEHLO_SUBTRACT",
    "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE", "STABLEHLO_CONVERT",
    "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE", "STABLEHLO_PAD",
    "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT",
    "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE",
    "STABLEHLO_SHIFT_LEFT", "STABLEHLO_CBRT", "STABLEHLO_CASE",
)  # fmt: skip

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
"""The custom op ``edgetpu_compiler`` puts in place of the ops it mapped."""

# The operations the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro,
# "Supported operations"), as TFLite builtin names. DEQUANTIZE is accepted only
# where it produces a model output; QUANTIZE anywhere (float->int8 at the input
# edge runs on the CPU, int8->int8 requantization on the Edge TPU).
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE",
    "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV", "HARD_SWISH", "DEQUANTIZE",
})  # fmt: skip

# Where an int32 tensor is allowed: a constant bias, or a constant shape/axis/index
# operand of an op the Edge TPU maps. op -> input positions.
_INT32_OPERANDS: dict[str, frozenset[int]] = {
    "CONV_2D": frozenset({2}),
    "DEPTHWISE_CONV_2D": frozenset({2}),
    "FULLY_CONNECTED": frozenset({2}),
    "TRANSPOSE_CONV": frozenset({0, 3}),  # output shape, bias
    "LSTM": frozenset({12, 13, 14, 15}),  # gate biases
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset({12, 13, 14, 15}),
    "RESHAPE": frozenset({1}),
    "PAD": frozenset({1}),
    "MEAN": frozenset({1}),
    "SUM": frozenset({1}),
    "REDUCE_MAX": frozenset({1}),
    "REDUCE_MIN": frozenset({1}),
    "STRIDED_SLICE": frozenset({1, 2, 3}),
    "SLICE": frozenset({1, 2}),
    "TRANSPOSE": frozenset({1}),
    "RESIZE_BILINEAR": frozenset({1}),
    "RESIZE_NEAREST_NEIGHBOR": frozenset({1}),
    "SPLIT": frozenset({0}),
    "EXPAND_DIMS": frozenset({1}),
}

_EXAMPLES = 3  # tensor names quoted per reason


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


class Readiness(NamedTuple):
    """The Edge TPU verdict of :func:`edgetpu_readiness`."""

    ready: bool
    """True when the Edge TPU compiler can map the whole model."""
    reasons: list[str]
    """Why it cannot, one line per problem (empty when ready)."""
    notes: list[str] = []
    """What the compiler leaves on the CPU without failing (e.g. quantizing a float input)."""


# --- FlatBuffer reading ------------------------------------------------------


class _Table:
    """A FlatBuffer table: field access by slot number over the file's bytes."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self._vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vt_len = struct.unpack_from("<H", buf, self._vt)[0]

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry >= self._vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self._vt + entry)[0]

    def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
        off = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, slot: int) -> int | None:
        off = self._field(slot)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, slot: int) -> "_Table | None":
        at = self._target(slot)
        return None if at is None else _Table(self.buf, at)

    def string(self, slot: int) -> str:
        at = self._target(slot)
        if at is None:
            return ""
        n = struct.unpack_from("<I", self.buf, at)[0]
        return bytes(self.buf[at + 4 : at + 4 + n]).decode("utf-8", "replace")

    def vector_len(self, slot: int) -> int:
        at = self._target(slot)
        return 0 if at is None else struct.unpack_from("<I", self.buf, at)[0]

    def scalars(self, slot: int, fmt: str) -> tuple:
        at = self._target(slot)
        if at is None:
            return ()
        n = struct.unpack_from("<I", self.buf, at)[0]
        return struct.unpack_from(f"<{n}{fmt}", self.buf, at + 4)

    def tables(self, slot: int) -> list["_Table"]:
        at = self._target(slot)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        out = []
        for i in range(n):
            elem = at + 4 + 4 * i
            out.append(_Table(self.buf, elem + struct.unpack_from("<I", self.buf, elem)[0]))
        return out


def _op_name(code: _Table) -> str:
    # builtin_code (slot 3, int32) superseded deprecated_builtin_code (slot 0,
    # int8) at 127; readers take the larger of the two (schema_utils.cc).
    builtin = max(code.scalar(0, "b", 0), code.scalar(3, "i", 0))
    if builtin == BUILTIN_OPS.index("CUSTOM"):
        return f"CUSTOM:{code.string(1) or '?'}"
    return BUILTIN_OPS[builtin] if 0 <= builtin < len(BUILTIN_OPS) else f"BUILTIN_{builtin}"


def _parse(buf: bytes, path: str) -> ModelInfo:
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    op_names = [_op_name(c) for c in model.tables(1)]
    # A buffer holds data when its vector is non-empty or, in files over 2 GB,
    # when it points outside the flatbuffer (offset/size, slots 1 and 2).
    has_data = [b.vector_len(0) > 0 or b.scalar(2, "Q", 0) > 0 for b in model.tables(4)]
    subgraphs = []
    for sg_index, sg in enumerate(model.tables(2)):
        tensors = []
        for t_index, t in enumerate(sg.tables(0)):
            type_code = t.scalar(1, "b", 0)
            dtype = TENSOR_TYPES[type_code] if 0 <= type_code < len(TENSOR_TYPES) else f"type{type_code}"
            shape = tuple(int(d) for d in t.scalars(0, "i"))
            signature = tuple(int(d) for d in t.scalars(7, "i")) or shape
            buffer = t.scalar(2, "I", 0)
            constant = (0 < buffer < len(has_data) and has_data[buffer]) or t.scalar(10, "I", 0) > 0
            q = t.table(4)
            scale: tuple[float, ...] = ()
            zero_point: tuple[int, ...] = ()
            qdim = 0
            if q is not None:
                scale = tuple(float(s) for s in q.scalars(2, "f"))
                zero_point = tuple(int(z) for z in q.scalars(3, "q"))
                qdim = int(q.scalar(6, "i", 0))
            tensors.append(
                TensorInfo(
                    index=t_index,
                    name=t.string(3),
                    dtype=dtype,
                    shape=shape,
                    shape_signature=signature,
                    scale=scale,
                    zero_point=zero_point,
                    quantized_dimension=qdim,
                    is_constant=bool(constant),
                    subgraph=sg_index,
                )
            )
        ops = []
        for o_index, op in enumerate(sg.tables(3)):
            code = op.scalar(0, "I", 0)
            name = op_names[code] if code < len(op_names) else f"OPCODE_{code}"
            ops.append(
                OpInfo(o_index, name, tuple(op.scalars(1, "i")), tuple(op.scalars(2, "i")), sg_index)
            )
        subgraphs.append(
            SubgraphInfo(
                name=sg.string(4),
                tensors=tuple(tensors),
                operators=tuple(ops),
                inputs=tuple(sg.scalars(1, "i")),
                outputs=tuple(sg.scalars(2, "i")),
            )
        )
    if not subgraphs:
        raise ValueError(f"model file '{path}' has no subgraph; expected at least one")
    return ModelInfo(
        path=path,
        file_size=len(buf),
        schema_version=int(model.scalar(0, "I", 0)),
        description=model.string(3),
        subgraphs=tuple(subgraphs),
        metadata_names=tuple(m.string(0) for m in model.tables(6)),
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


# --- Edge TPU readiness ------------------------------------------------------


def short_name(name: str, width: int = 60) -> str:
    """A tensor name fit for one line: the first of the converter's ``;``-joined names, shortened."""
    name = name.split(";")[0]
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def _names(tensors: Iterable[TensorInfo]) -> str:
    tensors = list(tensors)
    shown = ", ".join(f"'{short_name(t.name)}'" for t in tensors[:_EXAMPLES])
    return shown + (f" and {len(tensors) - _EXAMPLES} more" if len(tensors) > _EXAMPLES else "")


def edgetpu_readiness(info: ModelInfo) -> Readiness:
    """Says whether ``edgetpu_compiler`` can map the whole model to the Edge TPU, and why not.

    The checks follow the Coral model requirements: every tensor int8/uint8
    except int32 biases and int32 shape/axis/index constants of mapped ops;
    float tensors only at the edges (a float input consumed by QUANTIZE, a
    float output produced by DEQUANTIZE); static shapes; one subgraph;
    activations with at most 3 dimensions larger than 1; only mapped ops. A
    model already compiled (its ``edgetpu-custom-op``) is ready.

    Args:
      info: from :func:`inspect_model`.

    Returns:
      The :class:`Readiness`; each reason names the offending op or tensors.
    """
    reasons: list[str] = []
    notes: list[str] = []
    if info.num_subgraphs != 1:
        reasons.append(
            f"{info.num_subgraphs} subgraphs (control flow or signatures); the Edge TPU compiler maps one"
        )

    dynamic = [t for t in info.tensors if not t.is_static]
    if dynamic:
        t = dynamic[0]
        reasons.append(
            f"{len(dynamic)} tensors with dynamic shapes, e.g. '{short_name(t.name)}' {list(t.shape_signature)}; "
            "the Edge TPU needs static shapes (convert with a fixed batch size of 1)"
        )

    unsupported = collections.Counter()
    for op in info.operators:
        if op.name not in EDGETPU_OPS and op.name != f"CUSTOM:{EDGETPU_CUSTOM_OP}":
            unsupported[op.name] += 1
    for name, count in sorted(unsupported.items()):
        reasons.append(
            f"op {name} ({count}x) is not supported by the Edge TPU; it and every op after it "
            "would run on the CPU"
        )
    if any(op.name == f"CUSTOM:{EDGETPU_CUSTOM_OP}" for op in info.operators):
        notes.append("already compiled by edgetpu_compiler (contains edgetpu-custom-op)")

    bad_by_dtype: dict[str, list[TensorInfo]] = collections.defaultdict(list)
    for sg in info.subgraphs:
        consumers: dict[int, list[tuple[OpInfo, int]]] = collections.defaultdict(list)
        producers: dict[int, OpInfo] = {}
        for op in sg.operators:
            for pos, t in enumerate(op.inputs):
                if t >= 0:
                    consumers[t].append((op, pos))
            for t in op.outputs:
                producers[t] = op
        inner = [op for op in sg.operators
                 if op.name == "DEQUANTIZE" and not all(t in sg.outputs for t in op.outputs)]
        for op in inner[:1]:
            reasons.append(
                f"DEQUANTIZE op #{op.index} is inside the graph (output "
                f"'{short_name(sg.tensors[op.outputs[0]].name)}' is not a model output); the Edge TPU "
                "allows it only at the output edge"
            )
        if len(inner) > 1:
            # An fp16 model has one per weight tensor: one line says it.
            reasons.append(f"{len(inner) - 1} more DEQUANTIZE ops inside the graph, ops "
                           + ", ".join(f"#{op.index}" for op in inner[1:6]) + (", ..." if len(inner) > 6 else ""))
        for t in sg.tensors:
            uses = consumers.get(t.index, [])
            if t.dtype in ("int8", "uint8"):
                pass
            elif t.dtype == "int32":
                if t.is_constant and all(
                    pos in _INT32_OPERANDS.get(op.name, ()) for op, pos in uses
                ):
                    pass
                else:
                    bad_by_dtype["int32"].append(t)
            elif t.dtype in FLOAT_TYPES:
                if t.index in sg.inputs and uses and all(op.name == "QUANTIZE" for op, _ in uses):
                    notes.append(f"{t.dtype} input '{short_name(t.name)}' is quantized on the CPU by a QUANTIZE op")
                elif t.index in sg.outputs and producers.get(t.index) is not None and (
                    producers[t.index].name == "DEQUANTIZE"
                ):
                    notes.append(f"{t.dtype} output '{short_name(t.name)}' is dequantized on the CPU by a DEQUANTIZE op")
                else:
                    bad_by_dtype[t.dtype].append(t)
            else:
                bad_by_dtype[t.dtype].append(t)
            if not t.is_constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
                reasons.append(
                    f"tensor '{short_name(t.name)}' shape {list(t.shape)} has more than 3 dimensions larger "
                    "than 1; the Edge TPU allows at most the 3 innermost"
                )
    for dtype, tensors in sorted(bad_by_dtype.items()):
        n_const = sum(t.is_constant for t in tensors)
        kinds = f"{len(tensors) - n_const} activations, {n_const} constants"
        if dtype == "int32":
            reasons.append(
                f"{len(tensors)} int32 tensors ({kinds}) that are not biases or shape constants, "
                f"e.g. {_names(tensors)}; the Edge TPU computes in int8/uint8"
            )
        else:
            reasons.append(
                f"{len(tensors)} {dtype} tensors ({kinds}), e.g. {_names(tensors)}; the Edge TPU "
                "needs full-integer (int8/uint8) quantization"
            )
    return Readiness(not reasons, reasons, notes)
