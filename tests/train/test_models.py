"""Model builders: structure, argument checks, local weights files (weights=None, tiny inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tla_edge.train import models

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.slow  # builds full-size MobileNetV2 / ResNet34 models


def _convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_mobilenetv2_shape_head_and_named_base():
    model = models.build_mobilenetv2(48, alpha=0.35, weights=None)
    assert model.input_shape == (None, 48, 48, 3)
    assert model.output_shape == (None, 1)
    base = model.get_layer("base")
    assert len(base.layers) == 154  # keras.applications.MobileNetV2 without top, any alpha
    assert model.get_layer("pool").output.shape[-1] == 1280  # alpha < 1 keeps the last 1280
    assert model.get_layer("dropout").rate == pytest.approx(0.3)
    assert model.get_layer("logit").units == 1
    assert model.get_layer("logit").activation is keras.activations.linear  # a logit, not a probability


def test_resnet34_follows_the_paper_table():
    model = models.build_resnet34(64, weights=None)
    assert model.output_shape == (None, 1)
    base = model.get_layer("base")
    convs = _convs(base)
    main = [c for c in convs if "_proj_" not in c.name]
    proj = [c for c in convs if "_proj_" in c.name]
    assert len(main) == 33 and len(proj) == 3  # 33 + the Dense = 34 weighted layers
    conv1 = base.get_layer("conv1_conv")
    assert conv1.kernel_size == (7, 7) and conv1.strides == (2, 2) and conv1.filters == 64
    pool = base.get_layer("pool1")
    assert pool.pool_size == (3, 3) and pool.strides == (2, 2)
    for stage, blocks, filters in zip((2, 3, 4, 5), (3, 4, 6, 3), (64, 128, 256, 512)):
        names = [c.name for c in main if c.name.startswith(f"conv{stage}_")]
        assert len(names) == 2 * blocks
        assert {base.get_layer(n).filters for n in names} == {filters}
        assert all(base.get_layer(n).kernel_size == (3, 3) for n in names)
    # projections exactly where the resolution or width changes (stages 3-5, first block)
    assert sorted(p.name for p in proj) == [
        "conv3_block1_proj_conv", "conv4_block1_proj_conv", "conv5_block1_proj_conv"]
    assert base.output_shape == (None, 2, 2, 512)  # /32


def test_builders_check_arguments_up_front():
    with pytest.raises(ValueError, match=r"MobileNetV2 alpha 0\.3 is not one of"):
        models.build_mobilenetv2(64, alpha=0.3, weights=None)
    with pytest.raises(ValueError, match="input size 16 is too small; expected >= 32"):
        models.build_mobilenetv2(16, alpha=0.35, weights=None)
    with pytest.raises(ValueError, match="input size 16 is too small"):
        models.build_resnet34(16)
    with pytest.raises(ValueError, match=r"dropout 1\.5 is not in \[0, 1\)"):
        models.build_resnet34(32, dropout=1.5)
    with pytest.raises(ValueError, match="not available for resnet34.*local .weights.h5"):
        models.build_resnet34(64, weights="imagenet")
    with pytest.raises(FileNotFoundError, match="weights file 'missing.weights.h5' for mobilenetv2 not found"):
        models.build_mobilenetv2(64, 0.35, weights="missing.weights.h5")
    with pytest.raises(ValueError, match="architecture 'vgg' is not one of"):
        models.build_model("vgg")


def test_base_weights_file_loads_and_a_wrong_one_is_refused(tmp_path):
    donor = models.build_mobilenetv2(32, alpha=0.35, weights=None)
    path = tmp_path / "base.weights.h5"
    donor.get_layer("base").save_weights(str(path))
    model = models.build_mobilenetv2(32, alpha=0.35, weights=str(path))
    for a, b in zip(donor.get_layer("base").weights, model.get_layer("base").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the cached phase-1 features are the pooled base output in inference mode
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    pooled = model.get_layer("base")(x, training=False).numpy().mean(axis=(1, 2))
    np.testing.assert_allclose(models.feature_extractor(model)(x).numpy(), pooled, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"weights file '.*base.weights.h5' does not fit mobilenetv2 alpha=0.5"):
        models.build_mobilenetv2(32, alpha=0.5, weights=str(path))


def test_whole_model_weights_file_loads(tmp_path):
    donor = models.build_resnet34(32, weights=None)
    path = tmp_path / "whole.weights.h5"
    donor.save_weights(str(path))
    model = models.build_resnet34(32, weights=str(path))
    np.testing.assert_array_equal(donor.get_layer("logit").kernel.numpy(), model.get_layer("logit").kernel.numpy())


def test_fine_tune_unfreezes_upper_layers_but_not_batchnorm():
    model = models.build_mobilenetv2(32, alpha=0.35, weights=None)
    models.freeze_base(model)
    assert not model.get_layer("base").trainable_weights
    models.set_fine_tune(model, 100)
    base = model.get_layer("base")
    for i, layer in enumerate(base.layers):
        if isinstance(layer, keras.layers.BatchNormalization) or i < 100:
            assert not layer.trainable, layer.name
        elif layer.weights:
            assert layer.trainable, layer.name
    with pytest.raises(ValueError, match="fine-tune-at 500 is outside the base's layers; expected 0..153"):
        models.set_fine_tune(model, 500)


def test_head_model_shares_the_logit_layer():
    model = models.build_mobilenetv2(32, alpha=0.35, weights=None)
    head = models.head_model(model)
    assert head.input_shape == (None, 1280)
    assert head.get_layer("logit") is model.get_layer("logit")


def test_from_scratch_batchnorm_momentum_is_lowered_but_transfer_keeps_it(tmp_path):
    scratch = models.build_mobilenetv2(32, alpha=0.35, weights=None)
    bns = [l for l in scratch.get_layer("base").layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and {b.momentum for b in bns} == {models.SCRATCH_BN_MOMENTUM}
    path = tmp_path / "b.weights.h5"
    scratch.get_layer("base").save_weights(str(path))
    transfer = models.build_mobilenetv2(32, alpha=0.35, weights=str(path))
    bns = [l for l in transfer.get_layer("base").layers if isinstance(l, keras.layers.BatchNormalization)]
    assert {b.momentum for b in bns} == {0.999}  # Keras' own; frozen anyway in the transfer recipe


def _shared_imagenet_dir():
    """../shared/weights/imagenet next to the checkout, else next to $TLA_EDGE_DATA (as .ci/run sets it)."""
    import os

    from conftest import REPO

    candidates = [REPO.parent / "shared" / "weights" / "imagenet"]
    if os.environ.get("TLA_EDGE_DATA"):
        candidates.append(Path(os.environ["TLA_EDGE_DATA"]).parent / "weights" / "imagenet")
    for d in candidates:
        if (d / "mobilenet_v2_0.35_no_top.weights.h5").is_file():
            return d
    pytest.skip(f"ImageNet MobileNetV2 backbones not found in {' or '.join(map(str, candidates))} "
                "(expected ../shared/weights/imagenet)")


def test_imagenet_weights_file_names_per_alpha():
    assert models.imagenet_weights_name(0.35) == "mobilenet_v2_0.35_no_top.weights.h5"
    assert models.imagenet_weights_name(1.0) == "mobilenet_v2_1.0_no_top.weights.h5"
    assert models.imagenet_weights_name(1) == "mobilenet_v2_1.0_no_top.weights.h5"
    assert models.imagenet_weights_name(0.75) == "mobilenet_v2_0.75_no_top.weights.h5"


def test_imagenet_is_found_offline_in_the_weights_dir(tmp_path, monkeypatch):
    """weights='imagenet' loads the file from $TLA_EDGE_WEIGHTS_DIR without touching the network."""
    import h5py

    shared = _shared_imagenet_dir()
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache copy, no Keras cache
    monkeypatch.setenv(models.WEIGHTS_DIR_ENV, str(shared))
    assert models.local_imagenet_weights(0.35) == shared / "mobilenet_v2_0.35_no_top.weights.h5"
    model = models.build_mobilenetv2(96, alpha=0.35, weights="imagenet")
    # Independent expectation: the first convolution's kernel as stored in the h5 file.
    with h5py.File(shared / "mobilenet_v2_0.35_no_top.weights.h5") as f:
        stored = []
        f.visititems(lambda name, obj: stored.append((name, obj[()]))
                     if hasattr(obj, "shape") and obj.ndim == 4 and obj.shape[2] == 3 else None)
    assert len(stored) == 1, f"expected one 3-channel-input kernel (Conv1) in the file, found {len(stored)}"
    kernel = model.get_layer("base").get_layer("Conv1").kernel.numpy()
    np.testing.assert_array_equal(kernel, stored[0][1])
    assert np.abs(kernel).sum() > 0


def test_imagenet_without_a_local_file_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(models.WEIGHTS_DIR_ENV, str(tmp_path / "empty"))
    assert models.local_imagenet_weights(0.35) is None
    assert models.imagenet_weights_dirs()[0] == tmp_path / "empty"
    assert models.imagenet_weights_dirs()[-1] == tmp_path / ".cache" / "tla-edge" / "weights" / "imagenet"


def _first_layers(colour):
    """The colour layers alone, as a model (image -> what the base receives)."""
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, models.colour_layers(keras, inputs, colour))


def test_grey_gives_every_channel_the_mean_of_the_three():
    x = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    out = np.asarray(_first_layers("grey")(x))
    expected = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert _first_layers("grey").layers[-1].trainable is False  # fixed: training cannot bring colour back


def test_greyworld_removes_each_channels_mean_over_the_image():
    x = np.random.default_rng(2).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    out = np.asarray(_first_layers("greyworld")(x))
    np.testing.assert_allclose(out, x - x.mean(axis=(1, 2), keepdims=True), atol=1e-6)
    assert np.abs(out.mean(axis=(1, 2))).max() < 1e-6


def test_greynorm_standardises_the_luminance_over_the_image():
    from tla_edge.train.colour import GREYNORM_SCALE

    x = np.random.default_rng(5).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    out = np.asarray(_first_layers("greynorm")(x), np.float64)
    g = x.astype(np.float64).mean(axis=-1, keepdims=True)
    mean = g.mean(axis=(1, 2, 3), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    expected = np.repeat(GREYNORM_SCALE * (g - mean) / np.sqrt(var + 1e-3), 3, axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert GREYNORM_SCALE == 0.5 and abs(out.std() - 0.5) < 0.01  # unit spread scaled to ImageNet's ~0.5


def _box_mean_inside(a, k):
    """k x k mean of each pixel's neighbours inside the image (the image's edge not padded with anything)."""
    pad = k // 2
    win = np.lib.stride_tricks.sliding_window_view
    total = win(np.pad(a, pad), (k, k)).sum(axis=(-1, -2))
    count = win(np.pad(np.ones_like(a), pad), (k, k)).sum(axis=(-1, -2))
    return total / count


def test_greyhp_keeps_only_the_fine_detail_of_the_luminance_standardised():
    from tla_edge.train.colour import GREYNORM_SCALE, HP_EPSILON, HP_POOL

    x = np.random.default_rng(6).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    inputs = keras.Input((12, 12, 3))
    out = np.asarray(keras.Model(inputs, models.colour_layers(keras, inputs, "greyhp"))(x), np.float64)
    expected = []
    for img in x.astype(np.float64):
        g = img.mean(axis=-1)
        detail = g - _box_mean_inside(_box_mean_inside(g, HP_POOL), HP_POOL)
        z = (detail - detail.mean()) / np.sqrt(detail.var() + HP_EPSILON)
        expected.append(np.repeat(GREYNORM_SCALE * z[..., None], 3, axis=-1))
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-4, atol=1e-5)
    # a smooth ramp of light across the face (shading) is removed away from the edge (within the boxes'
    # reach of it the ramp's local mean is off centre, which changes the crop's spread: compare shapes)
    ramp = np.linspace(-0.5, 0.5, 12, dtype=np.float32)[None, None, :, None] * np.ones((1, 12, 1, 3), np.float32)
    lit = np.asarray(keras.Model(inputs, models.colour_layers(keras, inputs, "greyhp"))(x[:1] * 0.5 + ramp))
    flat = np.asarray(keras.Model(inputs, models.colour_layers(keras, inputs, "greyhp"))(x[:1] * 0.5))
    inner = (slice(None), slice(4, 8), slice(4, 8))
    assert np.corrcoef(lit[inner].ravel(), flat[inner].ravel())[0, 1] > 0.999
    g = (x[:1] * 0.5 + ramp).mean(axis=-1)[0]  # while the luminance itself is mostly ramp there
    assert np.corrcoef(g[4:8, 4:8].ravel(), (x[0] * 0.5).mean(axis=-1)[4:8, 4:8].ravel())[0, 1] < 0.9


@pytest.mark.parametrize("colour,change", [
    # a colour cast: another offset per channel (greyworld) / a chroma change with the same mean (grey)
    ("greyworld", np.array([0.3, -0.2, 0.1], np.float32)),
    ("grey", None),
    ("greynorm", "exposure"),  # another gain and offset of the luminance, and a chroma change
])
def test_the_whole_model_does_not_see_what_its_colour_layers_remove(colour, change):
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 0.5, (2, 48, 48, 3)).astype(np.float32)
    if change is None:  # move colour between channels, keep every pixel's mean of the three
        d = rng.uniform(-0.3, 0.3, (2, 48, 48, 1)).astype(np.float32)
        other = x + np.concatenate([d, -d, np.zeros_like(d)], axis=-1)
    elif isinstance(change, str):  # exposure: 0.9 x + 0.2, then chroma moved as for grey
        x = rng.uniform(-1, 1, x.shape).astype(np.float32)  # enough spread that the 1e-3 epsilon hardly counts
        d = rng.uniform(-0.2, 0.2, (2, 48, 48, 1)).astype(np.float32)
        other = 0.9 * x + 0.2 + np.concatenate([d, np.zeros_like(d), -d], axis=-1)
    else:
        other = x + change
    model = models.build_mobilenetv2(48, alpha=0.35, weights=None, colour=colour)
    plain = models.build_mobilenetv2(48, alpha=0.35, weights=None)
    plain.set_weights([w for w in model.get_weights() if w.shape != (1, 1, 3, 3)])  # same base, no colour layers

    def rel_change(m):  # pooled features: a random-init logit is ~1e-11, too small to compare
        f = models.feature_extractor(m)
        a, b = (np.asarray(f(v, training=False), np.float64) for v in (x, other))
        return np.linalg.norm(a - b) / np.linalg.norm(a)

    # greynorm: exact but for the epsilon in sqrt(var + 1e-3), ~1e-3 of the scale here
    assert rel_change(model) < (5e-3 if colour == "greynorm" else 1e-4)
    assert rel_change(plain) > 1e-2  # the change is one the base alone does see


def test_feature_extractor_includes_the_colour_layers():
    model = models.build_mobilenetv2(32, alpha=0.35, weights=None, colour="greyworld")
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    feats = np.asarray(models.feature_extractor(model)(x, training=False))
    assert np.abs(feats).max() > 0
    logit = np.asarray(model.get_layer("logit")(feats))  # dropout is off at inference
    np.testing.assert_allclose(logit, np.asarray(model(x, training=False)), rtol=1e-5, atol=0)
    shifted = np.asarray(models.feature_extractor(model)(x + 0.25, training=False))
    np.testing.assert_allclose(shifted, feats, rtol=1e-4, atol=1e-6 * np.abs(feats).max())


def test_unknown_colour_is_refused():
    with pytest.raises(ValueError, match=r"colour 'sepia' is not one of \['rgb', 'grey', 'greyworld', 'greynorm', "
                                         r"'greyhp'\]"):
        models.build_mobilenetv2(32, alpha=0.35, weights=None, colour="sepia")
    with pytest.raises(ValueError, match="colour 'sepia'"):
        models.build_resnet34(32, weights=None, colour="sepia")


def test_grey_folds_into_the_first_convolution():
    """fold_colour: no grey layer left, the first kernel is the source kernel's mean over its input channels
    (grey = the mean of the three), the same outputs, and the source model unchanged."""
    from tla_edge.train.colour import fold_colour

    model = models.build_mobilenetv2(48, alpha=0.35, weights=None, colour="grey")
    before = [w.copy() for w in model.get_weights()]
    folded = fold_colour(model)
    assert "colour_grey" not in [layer.name for layer in folded.layers]
    w = model.get_layer(models.BASE_NAME).get_layer("Conv1").get_weights()[0]
    w_folded = folded.layers[1].get_layer("Conv1").get_weights()[0]
    np.testing.assert_allclose(w_folded, np.repeat(w.mean(axis=2, keepdims=True), 3, axis=2), rtol=1e-6,
                               atol=1e-7)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 48, 48, 3)).astype(np.float32)
    grey_x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)

    def conv1(base, v):  # the first convolution's output: where the fold happens (random-init logits vanish)
        return np.asarray(keras.Model(base.input, base.get_layer("Conv1").output)(v))

    want = conv1(model.get_layer(models.BASE_NAME), grey_x)
    assert want.std() > 0.01
    np.testing.assert_allclose(conv1(folded.layers[1], x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(folded(x, training=False)), np.asarray(model(x, training=False)),
                               rtol=1e-3, atol=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    plain = models.build_mobilenetv2(48, alpha=0.35, weights=None)
    assert fold_colour(plain) is plain
    greyworld = models.build_mobilenetv2(48, alpha=0.35, weights=None, colour="greyworld")
    assert fold_colour(greyworld) is greyworld  # not linear in the pixels alone: it stays


def test_a_converted_grey_model_has_an_rgb_models_ops(tmp_path):
    """The grey layer costs nothing on the device: the converted file has the ops of a model without it."""
    from tla_edge.converters import tflite as tflite_lib
    from tla_edge.runtime import modelinfo
    from tla_edge.train.colour import fold_colour

    def ops(m, path):
        path.write_bytes(tflite_lib.convert(m, "float32"))
        return sorted(op.name for op in modelinfo.inspect_model(path).subgraphs[0].operators)

    tmp = tmp_path
    grey = models.build_mobilenetv2(32, alpha=0.35, weights=None, colour="grey")
    plain = models.build_mobilenetv2(32, alpha=0.35, weights=None)
    assert ops(grey, tmp / "grey.tflite").count("CONV_2D") == ops(plain, tmp / "plain.tflite").count("CONV_2D") + 1
    assert ops(fold_colour(grey), tmp / "folded.tflite") == ops(plain, tmp / "plain2.tflite")


def test_greynorm_converts_to_full_int8_and_computes_the_standardised_luminance(tmp_path):
    """greynorm's layers convert to int8 ops (int8 in and out) and compute what numpy does, to int8 steps."""
    from ai_edge_litert.interpreter import Interpreter

    from tla_edge.converters import tflite as tflite_lib
    from tla_edge.runtime import modelinfo
    from tla_edge.train.colour import GREYNORM_SCALE

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, models.colour_layers(keras, inputs, "greynorm"))
    x = np.random.default_rng(7).uniform(-1, 1, (40, 32, 32, 3)).astype(np.float32)
    x *= np.linspace(0.3, 1.0, 40, dtype=np.float32)[:, None, None, None]  # different contrasts
    path = tmp_path / "greynorm.tflite"
    path.write_bytes(tflite_lib.convert(model, "int8", lambda: ([x[i:i + 1]] for i in range(20))))
    assert "RSQRT" in [op.name for op in modelinfo.inspect_model(path).subgraphs[0].operators]
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    for crop in x[20:]:
        q = np.clip(np.round(crop[None] / s_in + z_in), -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q)
        it.invoke()
        got = (it.get_tensor(out["index"]).astype(np.float64) - z_out) * s_out
        g = ((q.astype(np.float64) - z_in) * s_in).mean(axis=-1, keepdims=True)
        want = GREYNORM_SCALE * (g - g.mean()) / np.sqrt(g.var() + 1e-3)
        inside = np.abs(want) < 127 * s_out - 2 * s_out  # the output range was set on 20 crops: no clipped values
        assert inside.mean() > 0.95
        a, b = got[..., :1][inside], want[inside]
        # int8 variance and RSQRT: a gain error per crop (up to ~27 % on the lowest-contrast ones), not noise
        assert np.corrcoef(a, b)[0, 1] > 0.995
        assert 0.75 < float(a @ b / (b @ b)) < 1.35


def test_the_runtime_greynorm_normalization_is_what_the_models_layers_compute():
    """preprocess.normalize(crop, 'greynorm') on uint8 pixels = greynorm's Keras layers on mobilenet_v2 pixels,
    and fold_colour takes those layers out: the folded model on greynorm input = the model on mobilenet_v2 input."""
    from tla_edge.runtime import preprocess
    from tla_edge.train.colour import fold_colour, input_normalization

    rng = np.random.default_rng(8)
    crops = np.clip(rng.uniform(40, 200, (4, 1, 1, 1)) + rng.normal(0, 1, (4, 48, 48, 3))
                    * rng.uniform(5, 50, (4, 1, 1, 1)), 0, 255).astype(np.uint8)
    inputs = keras.Input((48, 48, 3))
    layers_only = keras.Model(inputs, models.colour_layers(keras, inputs, "greynorm"))
    want = np.asarray(layers_only(preprocess.normalize(crops, "mobilenet_v2")))
    got = preprocess.normalize(crops, "greynorm")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    model = models.build_mobilenetv2(48, alpha=0.35, weights=None, colour="greynorm")
    folded = fold_colour(model)
    assert [layer.name for layer in folded.layers][:2] == ["image", models.BASE_NAME]
    assert input_normalization(model, "mobilenet_v2") == "greynorm"
    assert input_normalization(models.build_mobilenetv2(48, alpha=0.35, weights=None, colour="grey"), "unit") == "unit"
    with pytest.raises(ValueError, match="greynorm model trained on 'unit' pixels"):
        input_normalization(model, "unit")
    a = np.asarray(model(preprocess.normalize(crops, "mobilenet_v2"), training=False), np.float64).ravel()
    b = np.asarray(folded(got, training=False), np.float64).ravel()
    assert np.std(a) > 0
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * np.abs(a).max())
    c = np.asarray(folded(preprocess.normalize(crops, "mobilenet_v2"), training=False), np.float64).ravel()
    assert np.abs(c - a).max() > 1e-2 * np.abs(a).max()  # the folded model does need the greynorm input
