"""tla-edge convert: modes, int8 tensor types, calibration, parity, Edge TPU, metadata, bad input.

A tiny CNN (32x32) trained for a few seconds to tell bright synthetic "real"
crops from dark "attack" ones, and crops folders written in the
``tla-edge prepare`` layout, keep every conversion to a few seconds.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")
pytestmark = pytest.mark.slow  # every test here runs the converter

from tla_edge import cli, fileio  # noqa: E402
from tla_edge.runtime import metadata as metadata_lib  # noqa: E402
from tla_edge.converters import calibration as calibration_lib  # noqa: E402
from tla_edge.converters import edgetpu as edgetpu_lib  # noqa: E402
from tla_edge.converters import parity as parity_lib  # noqa: E402
from tla_edge.converters import tflite as tflite_lib  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.runtime.interpreter import LivenessModel  # noqa: E402

# The tiny model, the synthetic crops and their folders are shared with
# tests/cli/test_convert_parity.py; test_qat.py takes SIZE, synthetic_crops and
# write_crops from here.
import convert_helpers  # noqa: E402
from convert_helpers import COLUMNS, SIZE, synthetic_crops, write_crops  # noqa: E402

crops_dir = convert_helpers.crops_dir  # fixture: 64 synthetic crops, scale 3, sessions 01 and 02
model_dir = convert_helpers.model_dir  # fixture: the trained tiny CNN (model.keras + metadata.json)


@pytest.fixture(scope="module")
def blank_crops_dir(tmp_path_factory) -> Path:
    """Calibration that cannot work: every crop the same flat grey."""
    images = np.full((16, SIZE, SIZE, 3), 128, np.uint8)
    labels = np.array([1, 0] * 8)
    return write_crops(tmp_path_factory.mktemp("blank"), images, labels, ["" if y else "print" for y in labels])


@pytest.fixture(scope="module")
def keras_model(model_dir):
    import keras

    return keras.saving.load_model(str(model_dir / "model.keras"), compile=False)


def convert_cli(*argv: str) -> int:
    return cli.main(["convert", *map(str, argv)])


def representative(n: int = 8):
    images, _, _ = synthetic_crops(n, seed=3)
    return tflite_lib.representative_dataset(images)


# --- library: modes and tensor types -------------------------------------------------


@pytest.mark.parametrize("mode", tflite_lib.MODES)
def test_each_mode_converts_and_runs(keras_model, mode, tmp_path):
    data = tflite_lib.convert(keras_model, mode, representative() if mode == "int8" else None)
    assert data[4:8] == b"TFL3"
    path = tmp_path / f"m_{mode}.tflite"
    path.write_bytes(data)
    model = LivenessModel(path, meta=metadata_lib.ModelMetadata(input_size=(SIZE, SIZE)))
    images, labels, _ = synthetic_crops(8, seed=11)
    scores = model.score_batch(images)
    # The trained toy model separates the classes; every conversion must keep that.
    assert scores[labels == 1].min() > scores[labels == 0].max()


def test_int8_file_has_int8_io_and_no_float_tensor(keras_model):
    s = tflite_lib.tensor_summary(tflite_lib.convert(keras_model, "int8", representative()))
    assert (s.input_dtype, s.output_dtype) == ("int8", "int8")
    assert s.float_tensors == 0, s.dtype_counts
    assert s.dtype_counts.get("int8", 0) > 0


def test_float32_file_is_float(keras_model):
    s = tflite_lib.tensor_summary(tflite_lib.convert(keras_model, "float32"))
    assert (s.input_dtype, s.output_dtype) == ("float32", "float32")
    assert s.float_tensors > 0


def test_uint8_io(keras_model):
    s = tflite_lib.tensor_summary(tflite_lib.convert(keras_model, "int8", representative(), io="uint8"))
    assert (s.input_dtype, s.output_dtype) == ("uint8", "uint8")


def test_float_io_around_int8_body(keras_model):
    s = tflite_lib.tensor_summary(tflite_lib.convert(keras_model, "int8", representative(), io="float"))
    assert (s.input_dtype, s.output_dtype) == ("float32", "float32")
    assert s.float_tensors == 2  # the input and the output, nothing inside


def test_convert_argument_errors(keras_model):
    with pytest.raises(ValueError, match="needs representative data"):
        tflite_lib.convert(keras_model, "int8")
    with pytest.raises(ValueError, match=r"conversion mode 'int4' is not one of"):
        tflite_lib.convert(keras_model, "int4")
    with pytest.raises(ValueError, match=r"io type 'int16' is not one of"):
        tflite_lib.convert(keras_model, "int8", representative(), io="int16")
    with pytest.raises(ValueError, match=r"shape \(4, 4\) dtype uint8 are not"):
        tflite_lib.representative_dataset(np.zeros((4, 4), np.uint8))


def test_representative_dataset_uses_shared_normalisation():
    from tla_edge.runtime import preprocess

    images, _, _ = synthetic_crops(4, seed=5)
    got = [x[0] for x in tflite_lib.representative_dataset(images, "unit")()]
    assert len(got) == 4 and got[0].shape == (1, SIZE, SIZE, 3) and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[2][0], preprocess.normalize(images[2], "unit"))


# --- calibration crops -----------------------------------------------------------------


def test_stratified_indices_spread_over_strata():
    strata = ["real"] * 50 + ["print"] * 40 + ["replay"] * 4
    idx = calibration_lib.stratified_indices(strata, 30, seed=0)
    picked = [strata[i] for i in idx]
    # 10 each, but replay has only 4: its 6 go to the others (13 + 13 or 14 + 12).
    assert picked.count("replay") == 4
    assert picked.count("real") + picked.count("print") == 26
    assert abs(picked.count("real") - picked.count("print")) <= 1
    assert len(set(idx.tolist())) == 30
    assert calibration_lib.stratified_indices(strata, 500).size == len(strata)
    np.testing.assert_array_equal(idx, calibration_lib.stratified_indices(strata, 30, seed=0))


def test_calibration_set_is_stratified_by_class_and_species(crops_dir):
    cal = calibration_lib.calibration_set(crops_dir, n=24, seed=0, scale=3.0, input_size=(SIZE, SIZE))
    assert cal.images.shape == (24, SIZE, SIZE, 3) and cal.images.dtype == np.uint8
    assert cal.counts == {"print": 8, "real": 8, "replay": 8}
    assert cal.available == 64
    only_02 = calibration_lib.calibration_set(crops_dir, n=8, sessions=["02"])
    assert set(only_02.sessions) == {"02"}


def test_calibration_errors(tmp_path, crops_dir):
    with pytest.raises(FileNotFoundError, match="calibration crops folder '.*nowhere' not found"):
        calibration_lib.calibration_set(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"has no manifest.csv \(0 PNG files\)"):
        calibration_lib.calibration_set(empty)
    (empty / "manifest.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(UserError, match="is empty \\(its manifest lists no crops\\)"):
        calibration_lib.calibration_set(empty)
    with pytest.raises(ValueError, match=r"are 32x32 but the model's input is 64x64; prepare crops with --size 64"):
        calibration_lib.calibration_set(crops_dir, input_size=(64, 64))
    with pytest.raises(UserError, match="at crop scale 3 but the model was trained at 2.7"):
        calibration_lib.calibration_set(crops_dir, scale=2.7)


# --- parity maths on hand-made scores ----------------------------------------------------


def test_compare_identical_scores_is_perfect():
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    r = parity_lib.compare(s, s, y, None, metadata_lib.ModelMetadata())
    assert r.agreement == 1.0 and r.max_abs_diff == 0.0 and r.pearson == pytest.approx(1.0)
    assert r.delta_acer == 0.0 and r.delta_eer == 0.0 and r.degraded is None


def test_compare_flags_collapse_and_disagreement():
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    flat = np.full(6, 0.62)
    r = parity_lib.compare(s, flat, y, None, metadata_lib.ModelMetadata())
    assert r.converted_std == 0.0 and np.isnan(r.pearson)
    assert r.agreement == pytest.approx(0.5)
    assert "scores barely vary" in r.degraded and "agrees with the float model on 50.0% of 6 crops" in r.degraded


def test_compare_rederives_threshold_by_the_source_rule():
    y = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    b = a * 0.5 + 0.45  # a monotone shift, as quantization can cause: 0.9 .. 0.5
    meta = metadata_lib.ModelMetadata(threshold=0.5, extra={"thresholds": {"eer": 0.2, "apcer_0.05": 0.5}})
    assert parity_lib.threshold_rule(meta) == "apcer_0.05"
    r = parity_lib.compare(a, b, y, None, meta)
    assert r.converted_threshold == pytest.approx(0.8)  # the lowest score accepting no attack
    assert r.agreement == pytest.approx(0.5) and r.agreement_own == 1.0
    assert set(r.thresholds) == {"eer", "apcer_0.05"}


def test_compare_one_class_keeps_the_source_threshold():
    r = parity_lib.compare(np.array([0.9, 0.8]), np.array([0.85, 0.8]), np.array([1, 1]), None,
                           metadata_lib.ModelMetadata(threshold=0.4))
    assert r.converted_threshold == 0.4 and r.float_metrics is None and r.delta_acer is None


# --- Edge TPU ------------------------------------------------------------------------------


def test_edgetpu_readiness_int8_ready_float_not(keras_model, tmp_path):
    good = tmp_path / "good.tflite"
    good.write_bytes(tflite_lib.convert(keras_model, "int8", representative()))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tflite_lib.convert(keras_model, "float32"))
    ready, lines = edgetpu_lib.readiness_lines(good)
    assert ready and lines[0] == "Edge TPU: ready (good.tflite)"
    ready, lines = edgetpu_lib.readiness_lines(bad)
    assert not ready and lines[0] == "Edge TPU: NOT ready (bad.tflite)"
    assert any("float32 tensors" in line for line in lines[1:])


COMPILER_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: m_int8.tflite
Input size: 11.20KiB
Output model: m_int8_edgetpu.tflite
Output size: 48.02KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: m_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower.
Number of operations that will run on Edge TPU: 5
Number of operations that will run on CPU: 1

Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
QUANTIZE                       1          Mapped to Edge TPU
LOGISTIC                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
"""


def test_parse_compiler_log():
    r = edgetpu_lib.parse_compiler_log(COMPILER_LOG)
    assert (r.ops_total, r.ops_tpu, r.ops_cpu, r.subgraphs) == (6, 5, 1, 1)
    assert r.version == "16.0.384591198" and r.unmapped == {"LOGISTIC": 1}
    # Without the summary lines the table alone gives the counts (the table seen twice counts once).
    table = COMPILER_LOG.split("Operator ")[1]
    r = edgetpu_lib.parse_compiler_log("Total number of operations: 6\nOperator " + table + table)
    assert (r.ops_total, r.ops_tpu, r.ops_cpu) == (6, 5, 1)


def fake_compiler(folder: Path) -> Path:
    """An executable that behaves like edgetpu_compiler -s -o DIR MODEL (copies the model)."""
    folder.mkdir(exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys, pathlib\n"
        "args = sys.argv[1:]\n"
        "out = pathlib.Path(args[args.index('-o') + 1]); src = pathlib.Path(args[-1])\n"
        "shutil.copy(src, out / (src.stem + '_edgetpu.tflite'))\n"
        f"print({COMPILER_LOG!r})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


# --- the command ----------------------------------------------------------------------------


def test_convert_carries_the_settings_train_default_rebuilds_from(model_dir, crops_dir, tmp_path, capsys):
    """alpha, target APCER and the colour normalisation travel into the converted file's metadata:
    train --weights default builds its model from them (a grey model's weights do not fit an rgb one)."""
    import shutil

    src = tmp_path / "model"
    shutil.copytree(model_dir, src)
    meta = metadata_lib.ModelMetadata.from_dict(json.loads((src / "metadata.json").read_text()))
    settings = {"alpha": 0.35, "target_apcer": 0.05, "colour": "grey"}
    (src / "metadata.json").write_text(json.dumps(meta.replace(extra={**meta.extra, **settings}).to_dict()))
    out = tmp_path / "m_int8.tflite"
    assert convert_cli(src, "--int8", "--calib", crops_dir, "--calib-samples", 16, "--out", out) == 0, \
        capsys.readouterr().err
    extra = LivenessModel(out).meta.extra
    assert {k: extra.get(k) for k in settings} == settings



def test_convert_int8_writes_model_metadata_and_summary(model_dir, crops_dir, tmp_path, capsys):
    out = tmp_path / "liveness_int8.tflite"
    rc = convert_cli(model_dir, "--int8", "--calib", crops_dir, "--calib-samples", 16, "--out", out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.is_file() and (tmp_path / "liveness_int8.tflite.json").is_file()
    assert f"wrote {out} (" in captured.out
    assert "Edge TPU: ready (liveness_int8.tflite)" in captured.out
    assert "convert summary:" in captured.out and "int8" in captured.out
    # The runtime reads the metadata back: threshold re-derived on the int8 scores, crop scale kept.
    model = LivenessModel(out)
    meta = model.meta
    assert meta.crop_scale == 3.0 and meta.input_size == (SIZE, SIZE)
    parity = meta.extra["parity"]
    assert model.threshold == pytest.approx(parity["converted_threshold"])
    assert model.threshold == pytest.approx(meta.extra["thresholds"]["eer"])
    assert parity["agreement"] >= 0.95 and parity["pearson"] > 0.9 and parity["degraded"] is None
    assert meta.extra["quantization"] == "int8" and meta.extra["io"] == "int8"
    assert meta.extra["calibration"]["crops"] == 16
    assert meta.extra["source_model"]["sha256"] == fileio.sha256_file(model_dir / "model.keras")
    # Embedded and sidecar agree.
    assert metadata_lib.read_embedded(out).to_dict() == json.loads((tmp_path / "liveness_int8.tflite.json").read_text())
    # Validated on the other session than calibrated? Both given by one folder without a session: all crops.
    assert parity["n"] == 64
    # No machine-specific path in what ships with the model: the crops folder is a placeholder.
    assert meta.extra["calibration"]["crops_dir"] == f"<DIR>/{crops_dir.name}"
    assert meta.extra["validation"]["crops_dir"] == f"<DIR>/{crops_dir.name}"
    for text in (json.dumps(metadata_lib.read_embedded(out).to_dict()),  # the embedded zip is deflated
                 (tmp_path / "liveness_int8.tflite.json").read_text()):
        assert str(crops_dir) not in text and str(tmp_path) not in text


def test_convert_all_to_out_dir_with_val_session_and_report(model_dir, crops_dir, tmp_path, capsys):
    rc = convert_cli(model_dir, "--all", "--calib", crops_dir, "--calib-samples", 8, "--val-session", "2",
                     "--io", "uint8", "--out-dir", tmp_path / "out", "--report", tmp_path / "r.json")
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"model_{m}.tflite{s}" for m in tflite_lib.MODES for s in ("", ".json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["model"] for m in report["models"]] == list(tflite_lib.MODES)
    assert report["validation"] == {"crops_dir": f"<DIR>/{crops_dir.name}", "part": "session 2",
                                    "source": "--val-session", "crops": 32}
    by = {m["model"]: m for m in report["models"]}
    assert (by["int8"]["input"], by["int8"]["output"], by["int8"]["float_tensors"]) == ("uint8", "uint8", 0)
    assert by["float32"]["parity"]["max_abs_diff"] < 1e-4
    assert by["float32"]["edgetpu_ready"] is False and by["int8"]["edgetpu_ready"] is True
    # Calibrated on the session not validated on.
    assert LivenessModel(tmp_path / "out" / "model_int8.tflite").meta.extra["calibration"]["part"] == "sessions 01"
    # Float modes keep the source threshold; int8 gets its own.
    assert by["fp16"]["threshold"] == 0.5 and by["int8"]["threshold_source"] == "re-derived"
    assert LivenessModel(tmp_path / "out" / "model_fp16.tflite").meta.extra["thresholds"] == {"eer": 0.5}


def test_holdout_from_training_metadata(model_dir, crops_dir, tmp_path, capsys):
    """Validated on the subjects training held out; calibrated on the others."""
    import shutil

    held = tmp_path / "model"
    shutil.copytree(model_dir, held)
    meta = metadata_lib.load(held / "model.keras")
    data = {"crops_dir": str(crops_dir),
            "train": {"subjects": {"0001": {}, "0002": {}}, "sessions": {"01": {}, "02": {}}},
            "val": {"subjects": {"0003": {}}, "sessions": {"01": {}, "02": {}}}}
    (held / "metadata.json").write_text(json.dumps(meta.replace(extra={**meta.extra, "data": data}).to_dict()))
    rc = convert_cli(held, "--int8", "--calib", crops_dir, "--calib-samples", 64, "--out-dir", tmp_path / "o",
                     "--report", tmp_path / "r.json")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["validation"]["part"] == "subject 0003" and report["validation"]["source"] == "metadata"
    assert report["validation"]["crops"] == 21  # rows 2, 5, 8, ... of 64
    assert report["calibration"]["crops"] == 43  # every other row: all of them, fewer than 64
    assert "(held out in training)" in captured.err
    # Another crops folder than the one trained on is used whole.
    other = tmp_path / "other"
    shutil.copytree(crops_dir, other)
    rc = convert_cli(held, "--float32", "--val", other, "--out-dir", tmp_path / "o2", "--report", tmp_path / "r2.json")
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r2.json").read_text())["validation"]["crops"] == 64


def test_blank_calibration_collapses_and_fails(model_dir, crops_dir, blank_crops_dir, tmp_path, capsys):
    out = tmp_path / "blank_int8.tflite"
    rc = convert_cli(model_dir, "--int8", "--calib", blank_crops_dir, "--val", crops_dir, "--out", out)
    err = capsys.readouterr().err
    assert rc == 1
    assert "tla-edge convert: error: int8 model is degraded:" in err
    assert "not written (check the calibration crops, or pass --parity report to write it with this verdict recorded)" in err
    assert not out.exists()
    rc = convert_cli(model_dir, "--int8", "--calib", blank_crops_dir, "--val", crops_dir, "--out", out,
                     "--allow-degraded")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "written anyway (--allow-degraded)" in captured.err and "DEGRADED" in captured.out
    assert "degraded" in LivenessModel(out).meta.extra


def test_refuses_to_overwrite_without_force(model_dir, crops_dir, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep me")
    rc = convert_cli(model_dir, "--float32", "--val", crops_dir, "--out", out)
    assert rc == 2
    assert f"tla-edge convert: error: output '{out}' already exists; pass --force to overwrite it" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert convert_cli(model_dir, "--float32", "--val", crops_dir, "--out", out, "--force") == 0
    assert out.read_bytes()[4:8] == b"TFL3"


def test_edgetpu_compiler_absent_keeps_cpu_model(model_dir, crops_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(edgetpu_lib, "find_compiler", lambda: None)
    out = tmp_path / "m_int8.tflite"
    rc = convert_cli(model_dir, "--int8", "--calib", crops_dir, "--calib-samples", 8, "--edgetpu", "--out", out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning: edgetpu_compiler not found on PATH" in captured.err
    assert "apt-get install edgetpu-compiler" in captured.err and "x86-64 Linux" in captured.err
    assert out.is_file() and not (tmp_path / "m_int8_edgetpu.tflite").exists()


def test_edgetpu_compiler_present_writes_compiled_model(model_dir, crops_dir, tmp_path, capsys, monkeypatch):
    bin_dir = fake_compiler(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "m_int8.tflite"
    rc = convert_cli(model_dir, "--int8", "--calib", crops_dir, "--calib-samples", 8, "--edgetpu", "--out", out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    compiled = tmp_path / "m_int8_edgetpu.tflite"
    assert compiled.is_file() and "Edge TPU ops 5/6, CPU 1, subgraphs 1" in captured.out
    meta = metadata_lib.load(compiled)
    assert meta.extra["edgetpu"]["ops_tpu"] == 5
    assert meta.threshold == metadata_lib.load(out).threshold


# --- bad input, pinned by message -------------------------------------------------------------


def test_missing_model(tmp_path, capsys):
    assert convert_cli(tmp_path / "nope.keras", "--float32") == 2
    assert capsys.readouterr().err.strip() == (
        f"tla-edge convert: error: model '{tmp_path / 'nope.keras'}' not found; "
        "expected MODEL.keras or a model folder"
    )


def test_model_folder_without_model(tmp_path, capsys):
    assert convert_cli(tmp_path, "--float32") == 2
    assert f"model folder '{tmp_path}' holds no model.keras" in capsys.readouterr().err


def test_non_keras_file(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    assert convert_cli(bad, "--float32") == 2
    assert f"tla-edge convert: error: model '{bad}' is not a Keras model; expected a .keras file" in capsys.readouterr().err


def test_no_mode(model_dir, capsys):
    assert convert_cli(model_dir) == 2
    assert "choose what to write: --int8, --fp16, --dynamic, --float32 or --all" in capsys.readouterr().err


def test_int8_without_calibration(model_dir, tmp_path, capsys):
    assert convert_cli(model_dir, "--int8", "--out", tmp_path / "x.tflite") == 2
    assert "int8 needs calibration crops: pass --calib CROPS" in capsys.readouterr().err


def test_empty_calibration_folder(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert_cli(model_dir, "--int8", "--calib", empty, "--out", tmp_path / "x.tflite") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"validation crops folder '{empty}' has no manifest.csv" in err


def test_crops_of_the_wrong_size(model_dir, tmp_path, capsys):
    images = np.zeros((4, 48, 48, 3), np.uint8)
    big = write_crops(tmp_path / "big", images, [1, 0, 1, 0], ["", "print", "", "print"])
    assert convert_cli(model_dir, "--int8", "--calib", big, "--out", tmp_path / "x.tflite") == 2
    assert "crops in '" in (err := capsys.readouterr().err)
    assert "are 48x48 but the model's input is 32x32; prepare crops with --size 32" in err


@pytest.mark.parametrize("where", ["/proc/tla_edge_test.tflite", "/proc/no_such_dir/x.tflite"])
def test_unwritable_output(model_dir, crops_dir, where, capsys):
    assert convert_cli(model_dir, "--float32", "--val", crops_dir, "--out", where) == 2
    err = capsys.readouterr().err
    assert err.startswith("tla-edge convert: error: ") and err.count("\n") == 1
    assert "/proc" in err and ("not writable" in err or "cannot create output directory" in err)


def test_out_with_several_models(model_dir, crops_dir, tmp_path, capsys):
    assert convert_cli(model_dir, "--all", "--calib", crops_dir, "--out", tmp_path / "x.tflite") == 2
    assert "--out names one file but this run writes 4 models (float32, fp16, dynamic, int8); use --out-dir DIR" in capsys.readouterr().err


def load_convert_timing():
    """benchmarks/convert_timing.py (a harness, not a package module), loaded from its file."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("convert_timing", REPO / "benchmarks" / "convert_timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_merge_joins_parity_and_latency(tmp_path):
    benchmark = load_convert_timing()

    f = tmp_path / "m_int8.tflite"
    parity = {"pearson": 0.99, "agreement": 0.995, "agreement_own_threshold": 0.997, "max_abs_diff": 0.2,
              "mean_abs_diff": 0.01, "degraded": None,
              "float": {"acer": 0.10, "eer": 0.09}, "converted": {"acer": 0.12, "eer": 0.095},
              "converted_own_threshold": {"acer": 0.104, "eer": 0.095}}
    report = {"source": {"file": "model.keras"}, "validation": {"part": "session 02"}, "calibration": {"crops": 300},
              "wall_s": 12.0,
              "models": [{"model": "int8", "file": str(f), "written": True, "bytes": 700_000, "input": "int8",
                          "output": "int8", "float_tensors": 0, "threshold": 0.61, "threshold_source": "re-derived",
                          "parity": parity, "edgetpu_ready": True, "convert_s": 3.0}]}
    stats = lambda m: {"median": m, "p90": m + 1}  # noqa: E731
    bench = {"configurations": [{"model": {"path": str(f)}, "threads": 1, "fps": 50.0,
                                 "stages": {"invoke": stats(2.0), "total": stats(9.0)},
                                 "raw_invoke_ms": {"liveness": stats(1.8)}}]}
    row = benchmark.merge(report, bench)["models"][0]
    assert row["acer_change_points"] == pytest.approx(0.4)  # own threshold: 10.4 % vs 10.0 %
    assert row["size_mb"] == 0.7 and row["io"] == ["int8", "int8"]
    assert row["latency_ms"] == {"threads": 1, "invoke_median": 2.0, "invoke_p90": 3.0, "raw_invoke_median": 1.8,
                                 "raw_invoke_p90": 2.8, "total_median": 9.0, "fps": 50.0}
    assert "latency_ms" not in benchmark.merge(report, None)["models"][0]


def test_mixed_precision_model_converts_as_float32(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((SIZE, SIZE, 3))
        x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert tflite_lib.dtype_policies(model) == {"mixed_float16", "float32"}
    fixed = tflite_lib.as_float32(model)
    assert tflite_lib.dtype_policies(fixed) == {"float32"}
    x = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fixed(x)), np.asarray(model(x)), rtol=1e-2, atol=1e-2)
    s = tflite_lib.tensor_summary(tflite_lib.convert(fixed, "float32"))
    assert "float16" not in s.dtype_counts
    assert tflite_lib.as_float32(fixed) is fixed


def test_report_cannot_overwrite_a_model(model_dir, crops_dir, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert convert_cli(model_dir, "--float32", "--val", crops_dir, "--out", out, "--report", out) == 2
    assert "two outputs would share a name:" in capsys.readouterr().err


def test_model_that_is_not_a_liveness_model_is_refused(tmp_path, crops_dir, capsys):
    """Five outputs per image converted and ran before; now convert refuses it in one line."""
    import tensorflow as tf

    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(inp)
    path = tmp_path / "five.keras"
    tf.keras.Model(inp, tf.keras.layers.Dense(5)(x)).save(path)
    assert convert_cli(path, "--float32", "--calib", crops_dir, "--out", tmp_path / "five.tflite") == 2
    err = capsys.readouterr().err.strip()
    assert err == ("tla-edge convert: error: model output shapes [(None, 5)] are not a liveness score; expected "
                   "one output [batch, 1] (live logit or probability) or [batch, 2] (two classes)")
    assert not (tmp_path / "five.tflite").exists()


def texture_crops(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real = sharp noise, attack = the same noise blurred; brightness and contrast drawn at random for both,
    so only texture tells them apart (what greynorm keeps)."""
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * (n // 2), np.int64)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, y in enumerate(labels):
        noise = rng.normal(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
        if y == 0:
            noise = cv2.GaussianBlur(noise, (0, 0), 1.5)
            noise /= noise.std()
        images[i] = np.clip(rng.uniform(60, 190) + rng.uniform(15, 40) * noise, 0, 255).astype(np.uint8)
    return images, labels, ["" if y == 1 else "print" for y in labels]


def test_convert_takes_greynorm_out_of_the_model_and_the_runtime_computes_it(tmp_path, capsys):
    """--colour greynorm: the int8 file has the plain model's ops (no layer normalisation), its metadata
    says normalization 'greynorm', and through the runtime it scores as the Keras model with the layers in."""
    import keras

    from tla_edge.runtime import modelinfo, preprocess
    from tla_edge.train.colour import colour_layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = colour_layers(keras, inputs, "greynorm")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(x), name="tiny")
    images, labels, species = texture_crops(160, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(preprocess.normalize(images[:96]), labels[:96].astype("float32"), epochs=30, batch_size=32, verbose=0)
    src = tmp_path / "model"
    src.mkdir()
    model.save(src / "model.keras")
    meta = metadata_lib.ModelMetadata(input_size=(SIZE, SIZE), crop_scale=3.0, threshold=0.5, architecture="tiny",
                                      extra={"thresholds": {"eer": 0.5}, "colour": "greynorm"})
    (src / "metadata.json").write_text(json.dumps(meta.to_dict()))
    crops = write_crops(tmp_path / "crops", images[96:], labels[96:], species[96:])
    out = tmp_path / "greynorm_int8.tflite"
    assert convert_cli(src, "--int8", "--calib", crops, "--out", out) == 0, capsys.readouterr().err
    lm = LivenessModel(out)
    assert lm.meta.normalization == "greynorm" and lm.meta.extra["colour"] == "greynorm"
    ops = [op.name for op in modelinfo.inspect_model(out).subgraphs[0].operators]
    assert "RSQRT" not in ops and "SQUARED_DIFFERENCE" not in ops and ops.count("CONV_2D") == 2
    held = images[96:]
    want = 1 / (1 + np.exp(-np.asarray(model.predict(preprocess.normalize(held), verbose=0)).ravel()))
    got = np.array([lm.score(c) for c in held])
    assert np.std(want) > 0.1  # the Keras model tells the two apart
    assert np.corrcoef(want, got)[0, 1] > 0.98
    # the input written straight into the tensor is the one input_tensor() gives
    lm.set_input(held[0])
    written = lm.interpreter.get_tensor(lm.interpreter.get_input_details()[0]["index"])
    np.testing.assert_array_equal(written, lm.input_tensor(held[0]))
