"""Whether ``edgetpu_compiler`` can map a model to the Edge TPU, and why not.

    verdict = edgetpu_readiness(inspect_model("model_int8.tflite"))  # Readiness(ready, reasons, notes)

The rules follow the Coral model requirements; each step below checks one of
them and says, in one line per problem, which op or tensors break it.
"""

from __future__ import annotations

import collections
from typing import Iterable, NamedTuple

from tla_edge.runtime.modelinfo import FLOAT_TYPES, ModelInfo, OpInfo, SubgraphInfo, TensorInfo, short_name

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


class Readiness(NamedTuple):
    """The Edge TPU verdict of :func:`edgetpu_readiness`."""

    ready: bool
    """True when the Edge TPU compiler can map the whole model."""
    reasons: list[str]
    """Why it cannot, one line per problem (empty when ready)."""
    notes: list[str] = []
    """What the compiler leaves on the CPU without failing (e.g. quantizing a float input)."""


def _names(tensors: Iterable[TensorInfo]) -> str:
    tensors = list(tensors)
    shown = ", ".join(f"'{short_name(t.name)}'" for t in tensors[:_EXAMPLES])
    return shown + (f" and {len(tensors) - _EXAMPLES} more" if len(tensors) > _EXAMPLES else "")


def _graph_reasons(info: ModelInfo) -> list[str]:
    """One subgraph, static shapes."""
    reasons = []
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
    return reasons


def _op_reasons(info: ModelInfo, notes: list[str]) -> list[str]:
    """Only ops the Edge TPU maps; a model already compiled gets a note."""
    compiled = f"CUSTOM:{EDGETPU_CUSTOM_OP}"
    unsupported = collections.Counter(
        op.name for op in info.operators if op.name not in EDGETPU_OPS and op.name != compiled
    )
    reasons = [
        f"op {name} ({count}x) is not supported by the Edge TPU; it and every op after it "
        "would run on the CPU"
        for name, count in sorted(unsupported.items())
    ]
    if any(op.name == compiled for op in info.operators):
        notes.append("already compiled by edgetpu_compiler (contains edgetpu-custom-op)")
    return reasons


def _wiring(sg: SubgraphInfo) -> tuple[dict[int, list[tuple[OpInfo, int]]], dict[int, OpInfo]]:
    """Tensor index -> the (op, input position) consuming it, and -> the op producing it."""
    consumers: dict[int, list[tuple[OpInfo, int]]] = collections.defaultdict(list)
    producers: dict[int, OpInfo] = {}
    for op in sg.operators:
        for pos, t in enumerate(op.inputs):
            if t >= 0:
                consumers[t].append((op, pos))
        for t in op.outputs:
            producers[t] = op
    return consumers, producers


def _inner_dequantize_reasons(sg: SubgraphInfo) -> list[str]:
    """DEQUANTIZE only at the output edge; an fp16 model has one per weight tensor: one line says it."""
    inner = [op for op in sg.operators
             if op.name == "DEQUANTIZE" and not all(t in sg.outputs for t in op.outputs)]
    reasons = [
        f"DEQUANTIZE op #{op.index} is inside the graph (output "
        f"'{short_name(sg.tensors[op.outputs[0]].name)}' is not a model output); the Edge TPU "
        "allows it only at the output edge"
        for op in inner[:1]
    ]
    if len(inner) > 1:
        reasons.append(f"{len(inner) - 1} more DEQUANTIZE ops inside the graph, ops "
                       + ", ".join(f"#{op.index}" for op in inner[1:6]) + (", ..." if len(inner) > 6 else ""))
    return reasons


def _tensor_type_problem(t: TensorInfo, sg: SubgraphInfo, consumers, producers, notes: list[str]) -> str | None:
    """The dtype a tensor is refused for (None when the Edge TPU takes it); edge floats become notes."""
    uses = consumers.get(t.index, [])
    if t.dtype in ("int8", "uint8"):
        return None
    if t.dtype == "int32":
        allowed = t.is_constant and all(pos in _INT32_OPERANDS.get(op.name, ()) for op, pos in uses)
        return None if allowed else "int32"
    if t.dtype in FLOAT_TYPES:
        if t.index in sg.inputs and uses and all(op.name == "QUANTIZE" for op, _ in uses):
            notes.append(f"{t.dtype} input '{short_name(t.name)}' is quantized on the CPU by a QUANTIZE op")
            return None
        producer = producers.get(t.index)
        if t.index in sg.outputs and producer is not None and producer.name == "DEQUANTIZE":
            notes.append(f"{t.dtype} output '{short_name(t.name)}' is dequantized on the CPU by a DEQUANTIZE op")
            return None
    return t.dtype


def _rank_reason(t: TensorInfo) -> str | None:
    """Activations with at most 3 dimensions larger than 1."""
    if not t.is_constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
        return (f"tensor '{short_name(t.name)}' shape {list(t.shape)} has more than 3 dimensions larger "
                "than 1; the Edge TPU allows at most the 3 innermost")
    return None


def _dtype_reasons(bad_by_dtype: dict[str, list[TensorInfo]]) -> list[str]:
    """One line per refused dtype, with counts and example names."""
    reasons = []
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
    return reasons


def edgetpu_readiness(info: ModelInfo) -> Readiness:
    """Says whether ``edgetpu_compiler`` can map the whole model to the Edge TPU, and why not.

    The checks follow the Coral model requirements: every tensor int8/uint8
    except int32 biases and int32 shape/axis/index constants of mapped ops;
    float tensors only at the edges (a float input consumed by QUANTIZE, a
    float output produced by DEQUANTIZE); static shapes; one subgraph;
    activations with at most 3 dimensions larger than 1; only mapped ops. A
    model already compiled (its ``edgetpu-custom-op``) is ready.

    Args:
      info: from :func:`tla_edge.runtime.modelinfo.inspect_model`.

    Returns:
      The :class:`Readiness`; each reason names the offending op or tensors.
    """
    notes: list[str] = []
    reasons = _graph_reasons(info) + _op_reasons(info, notes)
    bad_by_dtype: dict[str, list[TensorInfo]] = collections.defaultdict(list)
    for sg in info.subgraphs:
        consumers, producers = _wiring(sg)
        reasons += _inner_dequantize_reasons(sg)
        for t in sg.tensors:
            problem = _tensor_type_problem(t, sg, consumers, producers, notes)
            if problem is not None:
                bad_by_dtype[problem].append(t)
            rank = _rank_reason(t)
            if rank is not None:
                reasons.append(rank)
    reasons += _dtype_reasons(bad_by_dtype)
    return Readiness(not reasons, reasons, notes)
