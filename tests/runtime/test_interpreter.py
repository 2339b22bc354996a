"""The runtime wrapper on tiny generated models: quantized I/O, metadata, bad files."""

import numpy as np
import pytest

from tla_edge.runtime import interpreter as interp_lib
from tla_edge.runtime import metadata
from tla_edge.runtime import preprocess
from tla_edge.runtime import quant
from tla_edge.runtime.interpreter import LivenessModel
from tla_edge.runtime.quant import dequantize, quantize


def test_quantize_dequantize_round_trip_hand_values():
    # scale 0.5, zero point -3: 1.0 -> 2 - 3 = -1; -200 clips to -128; 200 clips to 127
    q = quantize(np.array([1.0, -200.0, 200.0, 0.24]), 0.5, -3, np.int8)
    np.testing.assert_array_equal(q, [-1, -128, 127, -3])
    np.testing.assert_allclose(dequantize(q, 0.5, -3), [1.0, -62.5, 65.0, 0.0])
    # uint8 with zero point 128; int32 widening keeps 0 - 128 exact
    qu = quantize(np.array([-1.0, 0.0, 1.0]), 1 / 128, 128, np.uint8)
    np.testing.assert_array_equal(qu, [0, 128, 255])
    np.testing.assert_allclose(dequantize(qu, 1 / 128, 128), [-1.0, 0.0, 127 / 128])


def _quantize_op_model(tf, n=256):
    """A float-input model whose first op is LiteRT's QUANTIZE, calibrated on [-1, 1]."""
    keras = tf.keras
    inp = keras.Input((n,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))

    def rep():
        for _ in range(4):
            yield [np.linspace(-1, 1, n, dtype=np.float32)[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.int8
    return conv.convert()


def _runtime_quantize(model_bytes, x, **kwargs):
    """The QUANTIZE op's int8 output for float ``x``, and its (scale, zero point), run by the runtime."""
    runtime = interp_lib.import_runtime()
    it = runtime.interpreter_class(model_content=model_bytes, experimental_preserve_all_tensors=True, **kwargs)
    it.allocate_tensors()
    op = next(o for o in it._get_ops_details() if o["op_name"] == "QUANTIZE")
    index = int(op["outputs"][0])
    details = next(t for t in it.get_tensor_details() if t["index"] == index)
    it.set_tensor(it.get_input_details()[0]["index"], np.asarray(x, np.float32)[None])
    it.invoke()
    return it.get_tensor(index).reshape(-1), details["quantization"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pixel_lut_equals_the_runtimes_quantize_op():
    tf = pytest.importorskip("tensorflow")
    model_bytes = _quantize_op_model(tf)
    x = preprocess.normalize(np.arange(256, dtype=np.uint8))
    got, (scale, zp) = _runtime_quantize(model_bytes, x)
    # mobilenet_v2's [-1, 1] at 2/255, the table's case (since round 10 the bundled pair standardises per crop
    # instead: its writer's rounding is tested against quantize() in test_preprocess.py)
    assert (scale, zp) == pytest.approx((2 / 255, -1), rel=1e-5)
    bundled = interp_lib.make_interpreter(__import__("tla_edge.runtime.assets", fromlist=["x"]).default_liveness_model())
    lut = quant.pixel_lut("mobilenet_v2", scale, zp, np.int8)
    np.testing.assert_array_equal(lut, got)
    # the comparison can fail: rounding halves away from zero (LiteRT's reference
    # kernel, not the one the runtime runs by default) differs on 16 grey levels
    v = x / np.float32(scale)
    away = np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)) + zp, -128, 127).astype(np.int8)
    assert int((away != got).sum()) == 16
    ref_kernel = getattr(__import__(type(bundled).__module__, fromlist=["x"]), "OpResolverType", None)
    if ref_kernel is not None:
        got_ref, _ = _runtime_quantize(model_bytes, x, experimental_op_resolver_type=ref_kernel.BUILTIN_REF)
        np.testing.assert_array_equal(got_ref, away)


@pytest.mark.parametrize("kind,dtype", [("int8", np.int8), ("uint8", np.uint8), ("float", np.float32)])
def test_model_io_dtypes_are_read_from_the_file(tiny_tflite, kind, dtype):
    model = LivenessModel(tiny_tflite[kind])
    assert np.dtype(model._in["dtype"]) == dtype
    assert np.dtype(model._out["dtype"]) == dtype
    assert model.input_size == (32, 32)
    assert interp_lib.is_quantized(model._in) == (kind != "float")


def test_quantized_models_agree_with_float(tiny_tflite):
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    ref = LivenessModel(tiny_tflite["float"]).score_batch(crops)
    for kind in ("int8", "uint8"):
        got = LivenessModel(tiny_tflite[kind]).score_batch(crops)
        assert np.all((got >= 0) & (got <= 1))
        # int8 I/O error on a probability: a few quantization steps at most
        np.testing.assert_allclose(got, ref, atol=0.05)


def test_set_input_get_output_use_the_tensors_own_parameters(tiny_tflite):
    it = interp_lib.make_interpreter(tiny_tflite["int8"], num_threads=1)
    d = interp_lib.input_details(it)
    scale, zp = interp_lib.quantization_params(d)
    x = preprocess.normalize(np.full((1, 32, 32, 3), 255, np.uint8))
    interp_lib.set_input(it, x)
    stored = it.get_tensor(d["index"])
    np.testing.assert_array_equal(stored, quantize(x, scale, zp, np.int8))
    it.invoke()
    out = interp_lib.get_output(it)
    o = interp_lib.output_details(it)
    oscale, ozp = interp_lib.quantization_params(o)
    np.testing.assert_allclose(out, dequantize(it.get_tensor(o["index"]), oscale, ozp))


def test_scores_from_output_forms():
    meta = metadata.ModelMetadata()
    np.testing.assert_allclose(quant.scores_from_output(np.array([[0.0], [100.0]]), meta), [0.5, 1.0])
    prob = meta.replace(output="probability", live_index=1)
    np.testing.assert_allclose(quant.scores_from_output(np.array([[0.2, 0.8]]), prob), [0.8])
    two_logits = meta.replace(live_index=0)
    np.testing.assert_allclose(
        quant.scores_from_output(np.array([[np.log(3.0), 0.0]]), two_logits), [0.75]
    )


def test_metadata_embedded_round_trip(tiny_tflite, tmp_path):
    meta = metadata.ModelMetadata(input_size=(32, 32), crop_scale=3.5, threshold=0.42, architecture="tiny")
    data = metadata.embed(tiny_tflite["int8"].read_bytes(), meta)
    path = tmp_path / "embedded.tflite"
    path.write_bytes(metadata.embed(data, meta))  # embedding twice keeps one copy
    assert path.stat().st_size == len(data)
    model = LivenessModel(path)
    assert model.meta.crop_scale == 3.5 and model.threshold == pytest.approx(0.42)
    assert metadata.strip_embedded(path.read_bytes()) == tiny_tflite["int8"].read_bytes()


def test_metadata_crop_rule_round_trip_and_default(tiny_tflite, tmp_path):
    shift = metadata.ModelMetadata(input_size=(32, 32), crop_rule="shift")
    assert shift.to_dict()["crop_rule"] == "shift"
    assert metadata.ModelMetadata.from_dict(shift.to_dict()) == shift
    # "pad" is not written, and a file without the field means "pad": older files read as before
    pad = metadata.ModelMetadata(input_size=(32, 32))
    assert "crop_rule" not in pad.to_dict()
    assert metadata.ModelMetadata.from_dict(pad.to_dict()).crop_rule == "pad"
    path = tmp_path / "shift.tflite"
    path.write_bytes(metadata.embed(tiny_tflite["float"].read_bytes(), shift))
    assert LivenessModel(path).meta.crop_rule == "shift"
    with pytest.raises(ValueError, match=r"^metadata crop_rule 'padded' is not one of 'pad', 'shift'$"):
        metadata.ModelMetadata.from_dict({**pad.to_dict(), "crop_rule": "padded"})


def test_metadata_input_size_mismatch(tiny_tflite, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(metadata.embed(tiny_tflite["float"].read_bytes(), metadata.ModelMetadata()))
    with pytest.raises(ValueError, match=r"input is 32x32 but its metadata says 160x160"):
        LivenessModel(path)


def test_without_metadata_a_threshold_is_required(tiny_tflite, tmp_path):
    path = tmp_path / "bare.tflite"
    path.write_bytes(tiny_tflite["float"].read_bytes())
    with pytest.raises(ValueError, match=r"model '.*bare.tflite' has no tla-edge metadata .* pass --threshold"):
        LivenessModel(path)
    model = LivenessModel(path, threshold=0.7)
    assert model.input_size == (32, 32) and model.threshold == 0.7


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("threshold", -1, r"threshold -1 is not strictly between 0 and 1"),
        ("threshold", 0.0, r"threshold 0.0 is not strictly between 0 and 1"),
        ("threshold", 1.0, r"threshold 1.0 is not strictly between 0 and 1"),
        ("threshold", 7, r"threshold 7 is not strictly between 0 and 1"),
        ("threshold", "0.5", r"threshold '0.5' is not a number"),
        ("threshold", None, r"threshold None is not a number"),
        ("crop_scale", 0, r"crop_scale 0 is not a number in \(0, 10\]"),
        ("crop_scale", -2.0, r"crop_scale -2.0 is not a number in \(0, 10\]"),
        ("crop_scale", 1e9, r"crop_scale 1000000000.0 is not a number in \(0, 10\]"),
        ("live_index", 2, r"live_index 2 is not 0 or 1"),
        ("live_index", -1, r"live_index -1 is not 0 or 1"),
        ("live_index", 0.5, r"live_index 0.5 is not 0 or 1"),
        ("crop_rule", "mirror", r"crop_rule 'mirror' is not one of 'pad', 'shift'"),
        ("crop_rule", 1, r"crop_rule 1 is not one of 'pad', 'shift'"),
    ],
)
@pytest.mark.parametrize("where", ["sidecar", "embedded"])
def test_bad_metadata_values_are_refused_at_load(tiny_tflite, tmp_path, field, value, message, where):
    import json

    d = metadata.ModelMetadata(input_size=(32, 32)).to_dict()
    d[field] = value
    path = tmp_path / "m.tflite"
    body = tiny_tflite["float"].read_bytes()
    if where == "sidecar":
        path.write_bytes(body)
        metadata.sidecar_path(path).write_text(json.dumps(d))
    else:
        # embed() serializes a ModelMetadata; write the bad dict the same way by hand
        good = metadata.embed(body, metadata.ModelMetadata(input_size=(32, 32)))
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(metadata.EMBEDDED_NAME, json.dumps(d))
        path.write_bytes(metadata.strip_embedded(good) + buf.getvalue())
    with pytest.raises(ValueError, match=r"m.tflite.*" + message):
        LivenessModel(path)
    with pytest.raises(ValueError, match=message):
        LivenessModel(path, threshold=0.5)  # an explicit threshold does not excuse bad metadata


def test_metadata_that_is_not_utf8_or_not_an_object(tiny_tflite, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite["float"].read_bytes())
    metadata.sidecar_path(path).write_bytes(b'{"threshold": "\xff\xfe"}')  # Latin-1 bytes, not UTF-8
    with pytest.raises(ValueError, match=r"metadata file '.*m.tflite.json' is not valid tla-edge metadata"):
        LivenessModel(path)
    metadata.sidecar_path(path).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"metadata file '.*m.tflite.json' is not valid tla-edge metadata"):
        LivenessModel(path)


@pytest.mark.parametrize(
    "outputs,shapes",
    [
        (lambda tf, x: tf.keras.layers.Dense(5)(x), r"\[\(1, 5\)\]"),
        (lambda tf, x: [tf.keras.layers.Dense(1)(x), tf.keras.layers.Dense(1)(x)], r"\[\(1, 1\), \(1, 1\)\]"),
        (lambda tf, x: tf.keras.layers.Conv2D(1, 3, padding="same")(x), r"\[\(1, 8, 8, 1\)\]"),
    ],
)
def test_model_that_is_not_a_liveness_model_is_refused(tmp_path, outputs, shapes):
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((8, 8, 3))
    x = inp if "Conv2D" in str(outputs.__code__.co_names) else tf.keras.layers.Flatten()(inp)
    model = tf.keras.Model(inp, outputs(tf, x))
    path = tmp_path / "other.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(ValueError, match=r"outputs " + shapes + r" are not a liveness score; expected one output"):
        LivenessModel(path, threshold=0.5)


def test_two_class_model_live_index_must_exist(tiny_tflite, tmp_path):
    import json

    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite["float"].read_bytes())
    metadata.sidecar_path(path).write_text(json.dumps({**metadata.ModelMetadata(input_size=(32, 32)).to_dict(), "live_index": 1}))
    with pytest.raises(ValueError, match=r"has 1 output value\(s\) per image but its metadata live_index is 1"):
        LivenessModel(path)


@pytest.mark.parametrize(
    "raw,output",
    [
        (np.inf, "logit"), (-np.inf, "logit"), (np.nan, "logit"), (3.4e38, "logit"), (-2e4, "logit"),
        (1.5, "probability"), (-0.1, "probability"), (np.inf, "probability"),
    ],
)
def test_raw_output_checked_before_the_sigmoid(raw, output):
    meta = metadata.ModelMetadata(output=output)
    with pytest.raises(ValueError, match=r"model output .* is not a (finite logit|probability)"):
        quant.scores_from_output(np.array([[raw]]), meta)
    with pytest.raises(ValueError, match=r"model output .* is not a (finite logit|probability)"):
        quant.scores_from_output(np.array([[0.0, raw]]), meta.replace(live_index=1))
    # a large but plausible logit is still a score
    assert quant.scores_from_output(np.array([[60.0]]), metadata.ModelMetadata())[0] == pytest.approx(1.0)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model file '.*nope.tflite' not found"):
        LivenessModel(tmp_path / "nope.tflite")


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"this is a jpeg, honest")
    with pytest.raises(ValueError, match=r"is not a TFLite model \(no TFL3 flatbuffer identifier\)"):
        LivenessModel(bad)


def test_model_whose_input_is_not_an_image(tmp_path):
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((10,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(1)(inp))
    path = tmp_path / "vector.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(ValueError, match=r"input shape \(1, 10\) is not an image; expected \[1, H, W, 3\]"):
        LivenessModel(path)


def test_bad_crop_shape(tiny_tflite):
    model = LivenessModel(tiny_tflite["int8"])
    with pytest.raises(ValueError, match=r"crop shape \(16, 16, 3\) dtype uint8 is not 32x32x3 uint8"):
        model.score(np.zeros((16, 16, 3), np.uint8))


def test_edgetpu_delegate_missing_is_a_clear_error(tiny_tflite):
    from tla_edge.errors import UserError

    with pytest.raises(UserError, match=r"cannot load the Edge TPU delegate 'libedgetpu.so.1'.*install libedgetpu"):
        LivenessModel(tiny_tflite["int8"], edgetpu=True)


def test_embedding_is_reproducible(tiny_tflite):
    meta = metadata.ModelMetadata(input_size=(32, 32))
    body = tiny_tflite["int8"].read_bytes()
    assert metadata.embed(body, meta) == metadata.embed(body, meta)


def test_model_file_resolves_a_train_folder(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"model folder '.*m' holds no model.keras"):
        metadata.model_file(folder)
    (folder / "model.keras").write_bytes(b"")
    assert metadata.model_file(folder) == folder / "model.keras"
    assert metadata.model_file(tmp_path / "x.tflite") == tmp_path / "x.tflite"


def test_portable_path_never_stores_the_machines_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert metadata.portable_path("crops/nuaa") == "crops/nuaa"
    assert metadata.portable_path(tmp_path / "crops" / "nuaa") == "crops/nuaa"
    assert metadata.portable_path("/somewhere/else/crops") == "<DIR>/crops"


def test_bundled_sidecar_holds_no_machine_specific_path():
    from tla_edge.runtime.assets import default_liveness_model

    text = metadata.sidecar_path(default_liveness_model()).read_text()
    assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text


def test_score_from_output_is_scores_from_output_bit_for_bit():
    """The frame path's one-value shortcut: the same float as the batch function, the same refusals."""
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(0, 4, 20000), rng.normal(0, 60, 5000),
                             [0.0, -0.0, 1e4, -1e4, 36.7, -36.7, 745.0, -745.0, 1e-300, -1e-300]])
    logit = metadata.ModelMetadata()
    prob = metadata.ModelMetadata(output="probability")
    for x in logits:
        for dtype in (np.float32, np.float64):
            out = np.array([[x]], dtype)
            assert quant.score_from_output(out, logit) == float(quant.scores_from_output(out, logit)[0])
    for p in np.concatenate([rng.random(2000), [0.0, 1.0]]):
        out = np.array([[p]], np.float32)
        assert quant.score_from_output(out, prob) == float(quant.scores_from_output(out, prob)[0])
    two = metadata.ModelMetadata(live_index=1)  # two columns: the batch function itself
    assert quant.score_from_output(np.array([[0.3, 1.2]]), two) == float(
        quant.scores_from_output(np.array([[0.3, 1.2]]), two)[0])
    for meta, raw in ((logit, np.nan), (logit, np.inf), (logit, 2e4), (prob, 1.5), (prob, -0.1), (prob, np.nan)):
        with pytest.raises(ValueError) as batch:
            quant.scores_from_output(np.array([[raw]]), meta)
        with pytest.raises(ValueError) as one:
            quant.score_from_output(np.array([[raw]]), meta)
        assert str(one.value) == str(batch.value)


@pytest.mark.parametrize("kind", ["int8", "uint8", "float"])
def test_invoke_score_is_the_documented_score_bit_for_bit(tiny_tflite, kind):
    """The frame path's table lookup gives the score the public path gives, on every crop; float outputs skip it."""
    model = LivenessModel(tiny_tflite[kind])
    assert (model._score_table is None) == (kind == "float")
    rng = np.random.default_rng(3)
    for crop in rng.integers(0, 256, (25, 32, 32, 3), dtype=np.uint8):
        expected = model.score(crop)  # set_input, invoke_input, scores_from_output
        model.set_input(crop)
        got = model.invoke_score()
        assert got == expected and isinstance(got, float)
        if kind != "float":
            q = int(model.interpreter.get_tensor(model._out_index).flat[0])
            scale, zp = model._out_q
            x = (q - zp) * scale  # the logit, independently: float64 throughout
            assert got == pytest.approx(1.0 / (1.0 + np.exp(-x)), rel=1e-6, abs=1e-12)


def test_score_table_covers_every_value_and_leaves_out_what_the_path_refuses():
    logit = metadata.ModelMetadata()
    prob = metadata.ModelMetadata(output="probability")
    details = {"dtype": np.int8, "shape": np.array([1, 1]), "quantization": (0.25, -3)}
    table = interp_lib.score_table(details, logit)
    assert sorted(table) == list(range(-128, 128))
    assert table[-3] == 0.5 and table[5] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-12)
    # a uint8 probability whose top values dequantize past 1: no entry, so the full path raises
    details = {"dtype": np.uint8, "shape": np.array([1, 1]), "quantization": (1 / 200, 0)}
    table = interp_lib.score_table(details, prob)
    assert sorted(table) == list(range(0, 201)) and table[200] == 1.0
    assert interp_lib.score_table({**details, "shape": np.array([1, 2])}, prob) is None  # two columns
    assert interp_lib.score_table({**details, "dtype": np.float32, "quantization": (0.0, 0)}, prob) is None


def test_invoke_score_of_a_refused_value_takes_the_full_path_and_its_error(tiny_tflite):
    model = LivenessModel(tiny_tflite["int8"])
    model.meta = model.meta.replace(output="probability")  # read as a probability, most of its logits are refused
    model._score_table = interp_lib.score_table(model._out, model.meta)
    assert 0 < len(model._score_table) < 256

    def outcome(call):
        try:
            return call()
        except ValueError as err:
            return f"ValueError: {err}"

    refused = 0
    for crop in np.random.default_rng(4).integers(0, 256, (25, 32, 32, 3), dtype=np.uint8):
        model.set_input(crop)
        got = outcome(model.invoke_score)
        out = model.interpreter.get_tensor(model._out_index)
        expected = outcome(lambda: quant.score_from_output(dequantize(out, *model._out_q), model.meta))
        assert got == expected
        refused += isinstance(got, str)
    assert refused > 0  # the refusal path ran
    model.close()
    with pytest.raises(RuntimeError, match="closed"):
        model.invoke_score()
