"""QAT: tf-keras rebuild of the Keras 3 MobileNetV2, weight copy, tfmot wrapping, int8 output.

Small models only (MobileNetV2 alpha 0.35 at 32x32, a handful of crops).
"""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")
pytestmark = pytest.mark.slow  # builds, rebuilds or converts Keras models

from tla_edge import cli  # noqa: E402
from tla_edge.runtime import metadata as metadata_lib  # noqa: E402
from tla_edge.runtime import preprocess  # noqa: E402
from tla_edge.converters import qat  # noqa: E402
from tla_edge.converters import tflite as tflite_lib  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.runtime.interpreter import LivenessModel  # noqa: E402

from test_convert import SIZE, synthetic_crops, write_crops  # noqa: E402

META = metadata_lib.ModelMetadata(input_size=(SIZE, SIZE), crop_scale=3.0, architecture="mobilenetv2",
                                  extra={"alpha": 0.35, "thresholds": {"eer": 0.5}})


def _perturb(model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and head weights, so a wrong copy shows in the outputs.

    A fresh MobileNetV2 gives the same output for every input (its features die out);
    BatchNorm statistics measured on crops, layer after layer, make its outputs vary.
    """
    import keras

    from tla_edge.train import models

    rng = np.random.default_rng(seed)
    base = model.get_layer(models.BASE_NAME)
    x = preprocess.normalize(synthetic_crops(16, seed=seed)[0])
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(base.input, [layer.input for layer in bns])
    for i, layer in enumerate(bns):
        acts = probe.predict(x, verbose=0)[i]
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([
            (gamma * rng.uniform(0.8, 1.2, gamma.shape)).astype(np.float32),
            (beta + rng.normal(0, 0.1, beta.shape)).astype(np.float32),
            acts.mean(axis=(0, 1, 2)), acts.var(axis=(0, 1, 2)) + 1e-3,
        ])
    logit = model.get_layer(models.LOGIT_NAME)
    logit.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in logit.get_weights()])


@pytest.fixture(scope="module")
def mnv2():
    from tla_edge.train import models

    model = models.build_mobilenetv2(SIZE, alpha=0.35, weights=None)
    _perturb(model)
    return model


def test_rebuild_in_tf_keras_computes_the_same(mnv2):
    import tf_keras

    rebuilt = qat.rebuild_tf_keras(mnv2, META)
    assert isinstance(rebuilt, tf_keras.Model)
    assert not any(qat._is_model(layer) for layer in rebuilt.layers)  # flat: tfmot needs it
    x = preprocess.normalize(synthetic_crops(6, seed=2)[0])
    want = np.asarray(mnv2(x, training=False))
    got = rebuilt.predict(x, verbose=0)
    assert want.std() > 1e-3  # the outputs differ between crops, so equality means something
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert qat.mobilenetv2_alpha(mnv2) == 0.35


def test_rebuild_keeps_a_grey_colour_layer_and_refuses_greyworld():
    """--colour grey (a fixed 1x1 Conv2D before the base) rebuilds and computes the same; greyworld's
    two-input Subtract is not a chain layer, and greynorm's layer normalisation is not translated: one
    line naming each."""
    import tf_keras

    from tla_edge.train import models

    grey = models.build_mobilenetv2(SIZE, alpha=0.35, weights=None, colour="grey")
    _perturb(grey)
    rebuilt = qat.rebuild_tf_keras(grey, META)
    conv = rebuilt.get_layer("colour_grey")
    assert isinstance(conv, tf_keras.layers.Conv2D) and not conv.trainable
    np.testing.assert_array_equal(conv.get_weights()[0], np.full((1, 1, 3, 3), 1 / 3, np.float32))
    x = preprocess.normalize(synthetic_crops(6, seed=3)[0])
    want = np.asarray(grey(x, training=False))
    assert want.std() > 1e-3
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), want, rtol=1e-4, atol=1e-4)
    greyworld = models.build_mobilenetv2(SIZE, alpha=0.35, weights=None, colour="greyworld")
    with pytest.raises(UserError, match=r"^layer 'colour_greyworld' \(Subtract\) around the MobileNetV2 base "
                                        r"cannot be rebuilt in tf-keras for QAT; supported: "):
        qat.rebuild_tf_keras(greyworld, META)
    greynorm = models.build_mobilenetv2(SIZE, alpha=0.35, weights=None, colour="greynorm")
    with pytest.raises(UserError, match=r"^layer 'colour_norm' \(LayerNormalization\) around the MobileNetV2 base "
                                        r"cannot be rebuilt in tf-keras for QAT; supported: "):
        qat.rebuild_tf_keras(greynorm, META)


def test_weight_mismatch_is_named(mnv2):
    import tf_keras

    from tla_edge.train import models

    wider = tf_keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.5,
                                              include_top=False, weights=None)
    with pytest.raises(ValueError, match=r"has 104 layers with weights but the Keras model has 105; "
                                         r"the architectures differ"):
        qat.copy_weights(mnv2, wider)
    with pytest.raises(ValueError, match=r"weight shapes differ at weight layer #\d+: Keras '\w+' "
                                         r"\[.*\] vs rebuilt tf-keras '\w+' \[.*\]; the architectures differ"):
        qat.copy_weights(mnv2.get_layer(models.BASE_NAME), wider)


def test_resnet34_is_refused_for_qat():
    meta = META.replace(architecture="resnet34")
    with pytest.raises(UserError, match=r"QAT supports mobilenetv2 only, not 'resnet34'.*\(--int8 without --qat\)"):
        qat.check_architecture(meta)


def test_missing_tfmot_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("tensorflow_model_optimization"):
            raise ImportError("No module named 'tensorflow_model_optimization'",
                              name="tensorflow_model_optimization")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UserError) as err:
        qat.import_tfmot()
    assert str(err.value) == (
        "--qat needs tensorflow-model-optimization, which is not importable "
        "(tensorflow_model_optimization); install it with: bash scripts/install_qat.sh (it runs: "
        "pip install dm-tree attrs six scipy mock tf-keras && "
        "pip install --no-deps tensorflow-model-optimization==0.8.1)"
    )


def test_tfmot_import_keeps_keras_3():
    import os

    qat.import_tfmot()
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    import tensorflow as tf

    assert tf.keras.version().startswith("3.")


@pytest.mark.slow
def test_convert_qat_end_to_end(mnv2, tmp_path, capsys):
    """--int8 --qat on a small MobileNetV2: PTQ and QAT int8 files, both int8 end to end."""
    images, labels, species = synthetic_crops(16, seed=4)
    crops = write_crops(tmp_path / "crops", images, labels, species)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    mnv2.save(model_dir / "model.keras")
    (model_dir / "metadata.json").write_text(json.dumps(META.to_dict()))
    rc = cli.main(["convert", str(model_dir), "--int8", "--qat", "--calib", str(crops),
                   "--calib-samples", "8", "--qat-epochs", "1", "--qat-batch-size", "8",
                   "--allow-degraded", "--out-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    ptq, qat_file = tmp_path / "out" / "model_int8.tflite", tmp_path / "out" / "model_int8_qat.tflite"
    assert ptq.is_file() and qat_file.is_file()
    s = tflite_lib.tensor_summary(qat_file)
    assert (s.input_dtype, s.output_dtype, s.float_tensors) == ("int8", "int8", 0)
    meta = LivenessModel(qat_file).meta
    assert meta.extra["quantization"] == "int8_qat"
    assert meta.extra["qat"]["epochs"] == 1 and meta.extra["qat"]["crops"] == 16
    assert len(meta.extra["qat"]["history"]["loss"]) == 1
    assert meta.extra["qat"]["target"] == "teacher"  # the default: distil the float model
    assert "QAT: 16 crops, 1 epochs" in captured.out and "target teacher" in captured.out
    assert "calibrating int8_qat" in captured.err


@pytest.mark.slow
def test_qat_of_a_grey_model_folds_the_grey_layer_as_ptq_does(tmp_path, capsys):
    """--qat on a --colour grey model: the QAT file has the PTQ file's convolutions (grey folded into Conv1 first)."""
    from tla_edge.runtime import modelinfo
    from tla_edge.train import models

    grey = models.build_mobilenetv2(SIZE, alpha=0.35, weights=None, colour="grey")
    _perturb(grey)
    images, labels, species = synthetic_crops(16, seed=6)
    crops = write_crops(tmp_path / "crops", images, labels, species)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    grey.save(model_dir / "model.keras")
    (model_dir / "metadata.json").write_text(json.dumps(META.replace(extra={**META.extra, "colour": "grey"}).to_dict()))
    rc = cli.main(["convert", str(model_dir), "--int8", "--qat", "--calib", str(crops), "--calib-samples", "8",
                   "--qat-epochs", "1", "--qat-batch-size", "8", "--allow-degraded", "--out-dir", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err

    def ops(name):
        return sorted(op.name for op in modelinfo.inspect_model(tmp_path / "out" / name).subgraphs[0].operators)

    # MobileNetV2's 35 convolutions in both, no colour layer (the two converters differ in other ops)
    assert ops("model_int8_qat.tflite").count("CONV_2D") == ops("model_int8.tflite").count("CONV_2D") == 35
