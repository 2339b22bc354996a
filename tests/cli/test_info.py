"""modelinfo (FlatBuffer inspection, Edge TPU readiness) and ``tla-edge info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tla_edge import cli

from tla_edge.runtime import metadata

from tla_edge.runtime import modelinfo
from tla_edge.runtime.edgetpu_check import edgetpu_readiness
from tla_edge.runtime.modelinfo import ModelInfo, OpInfo, SubgraphInfo, TensorInfo


def run_cli(argv: list[str], monkeypatch) -> int:
    """``tla_edge.cli.main`` with only the command under test registered.

    Keeps these tests independent of other subcommands' modules.
    """
    monkeypatch.setattr(cli, "COMMANDS", {argv[0]: cli.COMMANDS[argv[0]]})
    return cli.main(argv)


# --- readiness rules on hand-made model descriptions (no TensorFlow) ------------


def t(index: int, dtype: str, shape=(1, 8, 8, 4), const: bool = False, name: str | None = None) -> TensorInfo:
    return TensorInfo(index, name or f"t{index}", dtype, tuple(shape), tuple(shape), is_constant=const)


def model(tensors, ops, inputs=(0,), outputs=None, extra_subgraphs=0) -> ModelInfo:
    outputs = outputs if outputs is not None else (tensors[-1].index,)
    sg = SubgraphInfo("main", tuple(tensors), tuple(ops), tuple(inputs), tuple(outputs))
    empty = SubgraphInfo("other", (), (), (), ())
    return ModelInfo("hand.tflite", 1, 3, "", (sg,) + (empty,) * extra_subgraphs)


def conv_model(act="int8", weights="int8", bias="int32") -> ModelInfo:
    tensors = [t(0, act), t(1, weights, (4, 3, 3, 4), True), t(2, bias, (4,), True), t(3, act)]
    return model(tensors, [OpInfo(0, "CONV_2D", (0, 1, 2), (3,))])


def test_int8_conv_with_int32_bias_is_ready():
    r = edgetpu_readiness(conv_model())
    assert r.ready and r.reasons == []


def test_float_tensors_are_counted_and_named():
    r = edgetpu_readiness(conv_model(act="float32", weights="float32", bias="float32"))
    assert not r.ready
    assert r.reasons == [
        "4 float32 tensors (2 activations, 2 constants), e.g. 't0', 't1', 't2' and 1 more; "
        "the Edge TPU needs full-integer (int8/uint8) quantization"
    ]


def test_int32_is_allowed_only_as_bias_or_shape_constant():
    # int32 activation (e.g. int32 arithmetic) is refused
    tensors = [t(0, "int32"), t(1, "int32", (1,), True), t(2, "int32")]
    info = model(tensors, [OpInfo(0, "ADD", (0, 1), (2,))])
    r = edgetpu_readiness(info)
    assert not r.ready
    assert r.reasons == [
        "3 int32 tensors (2 activations, 1 constants) that are not biases or shape constants, "
        "e.g. 't0', 't1', 't2'; the Edge TPU computes in int8/uint8"
    ]
    # a constant shape operand of RESHAPE is fine
    tensors = [t(0, "int8"), t(1, "int32", (2,), True), t(2, "int8", (1, 256))]
    assert edgetpu_readiness(model(tensors, [OpInfo(0, "RESHAPE", (0, 1), (2,))])).ready
    # ... but the same constant as RESHAPE's data input is not
    tensors = [t(0, "int32", (2,), True), t(1, "int32", (2,), True), t(2, "int32", (2,))]
    r = edgetpu_readiness(model(tensors, [OpInfo(0, "RESHAPE", (0, 1), (2,))], inputs=()))
    assert not r.ready and "2 int32 tensors (1 activations, 1 constants)" in r.reasons[0]


def test_unsupported_op_is_named_with_its_count():
    tensors = [t(0, "int8"), t(1, "int8"), t(2, "int8")]
    ops = [OpInfo(0, "GATHER", (0,), (1,)), OpInfo(1, "GATHER", (1,), (2,))]
    r = edgetpu_readiness(model(tensors, ops))
    assert r.reasons == [
        "op GATHER (2x) is not supported by the Edge TPU; it and every op after it would run on the CPU"
    ]


def test_custom_ops_other_than_the_edgetpu_op_are_refused():
    tensors = [t(0, "uint8"), t(1, "uint8")]
    compiled = edgetpu_readiness(model(tensors, [OpInfo(0, "CUSTOM:edgetpu-custom-op", (0,), (1,))]))
    assert compiled.ready
    assert compiled.notes == ["already compiled by edgetpu_compiler (contains edgetpu-custom-op)"]
    other = edgetpu_readiness(model(tensors, [OpInfo(0, "CUSTOM:MyOp", (0,), (1,))]))
    assert other.reasons == [
        "op CUSTOM:MyOp (1x) is not supported by the Edge TPU; it and every op after it would run on the CPU"
    ]


def test_float_at_the_edges_is_a_note_not_a_reason():
    tensors = [t(0, "float32"), t(1, "int8"), t(2, "int8"), t(3, "float32")]
    ops = [
        OpInfo(0, "QUANTIZE", (0,), (1,)),
        OpInfo(1, "RELU", (1,), (2,)),
        OpInfo(2, "DEQUANTIZE", (2,), (3,)),
    ]
    r = edgetpu_readiness(model(tensors, ops, inputs=(0,), outputs=(3,)))
    assert r.ready
    assert r.notes == [
        "float32 input 't0' is quantized on the CPU by a QUANTIZE op",
        "float32 output 't3' is dequantized on the CPU by a DEQUANTIZE op",
    ]


def test_dequantize_inside_the_graph_is_refused():
    # float16 weights dequantized for a float conv: the fp16 model layout
    tensors = [t(0, "float32"), t(1, "float16", (4, 3, 3, 4), True), t(2, "float32", (4, 3, 3, 4)), t(3, "float32")]
    ops = [OpInfo(0, "DEQUANTIZE", (1,), (2,)), OpInfo(1, "CONV_2D", (0, 2, -1), (3,))]
    r = edgetpu_readiness(model(tensors, ops, inputs=(0,), outputs=(3,)))
    assert not r.ready
    assert r.reasons[0] == (
        "DEQUANTIZE op #0 is inside the graph (output 't2' is not a model output); "
        "the Edge TPU allows it only at the output edge"
    )
    assert any(x.startswith("1 float16 tensors (0 activations, 1 constants)") for x in r.reasons)
    assert any(x.startswith("3 float32 tensors (3 activations, 0 constants)") for x in r.reasons)


def test_dynamic_shapes_subgraphs_and_rank():
    dyn = TensorInfo(0, "in", "int8", (1, 8, 8, 4), (-1, 8, 8, 4))
    info = model([dyn, t(1, "int8", (2, 8, 8, 4))], [OpInfo(0, "RELU", (0,), (1,))], extra_subgraphs=1)
    r = edgetpu_readiness(info)
    assert r.reasons[0] == "2 subgraphs (control flow or signatures); the Edge TPU compiler maps one"
    assert r.reasons[1] == (
        "1 tensors with dynamic shapes, e.g. 'in' [-1, 8, 8, 4]; the Edge TPU needs static shapes "
        "(convert with a fixed batch size of 1)"
    )
    assert (
        "tensor 't1' shape [2, 8, 8, 4] has more than 3 dimensions larger than 1; "
        "the Edge TPU allows at most the 3 innermost"
    ) in r.reasons
    assert not info.static_shapes


def test_model_info_counts():
    info = conv_model(act="float32", weights="float32")
    assert info.float_activations == 2 and info.float_constants == 1
    assert info.dtype_counts == {"float32": 3, "int32": 1}
    assert info.op_histogram == {"CONV_2D": 1}
    assert [x.name for x in info.inputs] == ["t0"] and [x.name for x in info.outputs] == ["t3"]


def test_short_name():
    assert modelinfo.short_name("a/b/Relu6;a/b/BN/mul;a/b/conv") == "a/b/Relu6"
    long = "x" * 100
    assert modelinfo.short_name(long, 20) == "..." + "x" * 17


# --- real .tflite files -----------------------------------------------------------


@pytest.fixture(scope="module")
def static_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny conv net with a fixed batch of 1: float32, full int8, int8 with float I/O, fp16."""
    tf = pytest.importorskip("tensorflow", reason="building test models needs the 'train' extra")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu6")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    net = keras.Model(inp, keras.layers.Dense(1)(x))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(4):
            yield [rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)]

    out = tmp_path_factory.mktemp("info_models")
    paths = {}
    for kind in ("float32", "int8", "int8_float_io", "fp16"):
        conv = tf.lite.TFLiteConverter.from_keras_model(net)
        if kind.startswith("int8"):
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if kind == "int8":
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        elif kind == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        paths[kind] = out / f"tiny_{kind}.tflite"
        paths[kind].write_bytes(conv.convert())
    return paths


def test_parser_agrees_with_the_runtime(static_models, tiny_tflite):
    from tla_edge.runtime.interpreter import make_interpreter

    for path in [*static_models.values(), tiny_tflite["uint8"]]:
        info = modelinfo.inspect_model(path)
        details = make_interpreter(path).get_tensor_details()
        mine = info.subgraphs[0].tensors
        assert len(mine) == len(details), path
        for d, ti in zip(details, mine):
            assert (d["name"], np.dtype(d["dtype"]).name, tuple(d["shape"])) == (ti.name, ti.dtype, ti.shape)
            assert tuple(d["shape_signature"]) == ti.shape_signature
            q = d["quantization_parameters"]
            np.testing.assert_allclose(q["scales"], ti.scale, rtol=1e-7)
            assert list(q["zero_points"]) == list(ti.zero_point)


def test_float_model_is_not_ready(static_models):
    info = modelinfo.inspect_model(static_models["float32"])
    assert info.op_histogram == {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "MEAN": 1}
    assert info.static_shapes and info.num_subgraphs == 1
    assert info.float_activations > 0 and info.float_constants > 0
    r = edgetpu_readiness(info)
    assert not r.ready and len(r.reasons) == 1
    n = info.float_activations + info.float_constants
    assert r.reasons[0].startswith(
        f"{n} float32 tensors ({info.float_activations} activations, {info.float_constants} constants)"
    )


def test_int8_model_is_ready(static_models):
    info = modelinfo.inspect_model(static_models["int8"])
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert info.inputs[0].quantization[0] > 0
    assert info.float_activations == 0 and info.float_constants == 0
    assert set(info.dtype_counts) == {"int8", "int32"}
    assert edgetpu_readiness(info) == (True, [], [])


def test_int8_with_float_io_is_ready_with_notes(static_models):
    r = edgetpu_readiness(modelinfo.inspect_model(static_models["int8_float_io"]))
    assert r.ready, r.reasons
    assert [n.split("'")[0] for n in r.notes] == ["float32 input ", "float32 output "]


def test_fp16_model_is_not_ready(static_models):
    r = edgetpu_readiness(modelinfo.inspect_model(static_models["fp16"]))
    assert not r.ready
    assert any(x.startswith("DEQUANTIZE op #") for x in r.reasons)
    assert any(" float16 tensors (0 activations, " in x for x in r.reasons)


def test_dynamic_batch_model_is_not_ready(tiny_tflite):
    r = edgetpu_readiness(modelinfo.inspect_model(tiny_tflite["int8"]))
    assert not r.ready
    assert r.reasons[0].endswith("the Edge TPU needs static shapes (convert with a fixed batch size of 1)")


def test_damaged_flatbuffer(tmp_path, static_models):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(static_models["int8"].read_bytes()[:200])
    with pytest.raises(ValueError, match=r"model file '.*cut.tflite' is a damaged TFLite flatbuffer"):
        modelinfo.inspect_model(bad)


# --- tla-edge info ---------------------------------------------------------------


def test_info_text(static_models, tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.tflite"
    meta = metadata.ModelMetadata(input_size=(16, 16), threshold=0.25, architecture="tiny")
    path.write_bytes(metadata.embed(static_models["int8"].read_bytes(), meta))
    assert run_cli(["info", str(path)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert f"model      {path}" in out
    assert "int8     [1, 16, 16, 3]" in out and "zero_point" in out
    assert "ops        CONV_2D 1, DEPTHWISE_CONV_2D 1, FULLY_CONNECTED 1, MEAN 1" in out
    assert "float      0 activations, 0 constants" in out
    assert "metadata   tla-edge/1 (embedded): input 16x16" in out and "threshold 0.25" in out
    assert "Edge TPU   ready" in out


def test_info_json_float(static_models, monkeypatch, capsys):
    assert run_cli(["info", str(static_models["float32"]), "--json"], monkeypatch) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["file_size"] == static_models["float32"].stat().st_size
    assert d["inputs"][0]["dtype"] == "float32" and d["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert d["metadata"] is None and d["metadata_source"] == "none"
    assert d["edgetpu"]["ready"] is False and "float32 tensors" in d["edgetpu"]["reasons"][0]
    assert d["float_tensors"]["activations"] > 0 and d["static_shapes"] is True
    assert len(d["sha256"]) == 64


def test_info_check_edgetpu_exit_code(static_models, monkeypatch, capsys):
    assert run_cli(["info", str(static_models["float32"]), "--check-edgetpu"], monkeypatch) == 1
    assert run_cli(["info", str(static_models["int8"]), "--check-edgetpu"], monkeypatch) == 0


def test_info_sidecar_metadata(tiny_tflite, monkeypatch, capsys):
    assert run_cli(["info", str(tiny_tflite["int8"]), "--json"], monkeypatch) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["metadata"]["input_size"] == [32, 32] and d["metadata_source"].startswith("sidecar '")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "nope.tflite", r"^tla-edge info: error: model file '.*nope.tflite' not found$"),
        (
            lambda p: (p / "x.tflite").write_bytes(b"not a model at all") and p / "x.tflite",
            r"^tla-edge info: error: model file '.*x.tflite' is not a TFLite model \(no TFL3 flatbuffer identifier\)$",
        ),
        (
            lambda p: (p / "m.keras").write_bytes(b"PK\x03\x04 zip") and p / "m.keras",
            r"is not a TFLite model .*; convert a .keras model first with 'tla-edge convert'$",
        ),
        (lambda p: (p / "empty").mkdir() or p / "empty",
         r"^tla-edge info: error: model folder '.*empty' holds no .tflite file; expected a model file, or a "
         r"folder written by tla-edge calibrate --out DIR or evaluate --store-fusion DIR$"),
    ],
    ids=["missing", "not-tflite", "keras", "empty-directory"],
)
def test_info_bad_input_is_one_line(tmp_path, monkeypatch, capsys, make, message):
    path = make(tmp_path)
    assert run_cli(["info", str(path)], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert __import__("re").search(message, err), err


# --- `tla-edge info` on every bundled model: byte-identical to the committed expectation ---

from conftest import REPO  # noqa: E402

GOLDEN_INFO = REPO / "tests" / "golden" / "info"
BUNDLED_TFLITE = sorted((REPO / "tla_edge" / "runtime" / "assets").glob("*.tflite"))


@pytest.mark.parametrize("flags,suffix", [([], ".txt"), (["--json"], ".json")], ids=["text", "json"])
@pytest.mark.parametrize("path", BUNDLED_TFLITE, ids=lambda p: p.stem)
def test_info_unchanged_on_bundled_models(path, flags, suffix, monkeypatch, capsys):
    """The expectations were saved before the reader moved onto ai_edge_litert's schema bindings."""
    monkeypatch.chdir(REPO)
    code = run_cli(["info", *flags, str(path.relative_to(REPO))], monkeypatch)
    expected = (GOLDEN_INFO / (path.stem + suffix)).read_text(encoding="utf-8")
    assert code == 0
    assert capsys.readouterr().out == expected
