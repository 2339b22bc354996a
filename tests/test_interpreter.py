"""The runtime wrapper on tiny generated models: quantized I/O, metadata, bad files."""

import numpy as np
import pytest

from tla_edge import interpreter as interp_lib
from tla_edge import metadata, preprocess
from tla_edge.interpreter import LivenessModel, dequantize, quantize


def test_quantize_dequantize_round_trip_hand_values():
    # scale 0.5, zero point -3: 1.0 -> 2 - 3 = -1; -200 clips to -128; 200 clips to 127
    q = quantize(np.array([1.0, -200.0, 200.0, 0.24]), 0.5, -3, np.int8)
    np.testing.assert_array_equal(q, [-1, -128, 127, -3])
    np.testing.assert_allclose(dequantize(q, 0.5, -3), [1.0, -62.5, 65.0, 0.0])
    # uint8 with zero point 128; int32 widening keeps 0 - 128 exact
    qu = quantize(np.array([-1.0, 0.0, 1.0]), 1 / 128, 128, np.uint8)
    np.testing.assert_array_equal(qu, [0, 128, 255])
    np.testing.assert_allclose(dequantize(qu, 1 / 128, 128), [-1.0, 0.0, 127 / 128])


def test_pixel_lut_equals_quantize_of_normalize():
    lut = interp_lib.pixel_lut("mobilenet_v2", 0.0078125, -1, np.int8)
    px = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(lut, quantize(preprocess.normalize(px), 0.0078125, -1, np.int8))


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
    np.testing.assert_allclose(interp_lib.scores_from_output(np.array([[0.0], [100.0]]), meta), [0.5, 1.0])
    prob = meta.replace(output="probability", live_index=1)
    np.testing.assert_allclose(interp_lib.scores_from_output(np.array([[0.2, 0.8]]), prob), [0.8])
    two_logits = meta.replace(live_index=0)
    np.testing.assert_allclose(
        interp_lib.scores_from_output(np.array([[np.log(3.0), 0.0]]), two_logits), [0.75]
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


def test_metadata_input_size_mismatch(tiny_tflite, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(metadata.embed(tiny_tflite["float"].read_bytes(), metadata.ModelMetadata()))
    with pytest.raises(ValueError, match=r"input is 32x32 but its metadata says 160x160"):
        LivenessModel(path)


def test_without_metadata_input_size_comes_from_the_model(tiny_tflite, tmp_path):
    path = tmp_path / "bare.tflite"
    path.write_bytes(tiny_tflite["float"].read_bytes())
    assert LivenessModel(path).input_size == (32, 32)


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
