"""tla-edge convert's parity gate end to end: a broken int8 conversion is refused by default,
``--parity report`` writes it with its verdict recorded, a healthy one passes either way.

A tiny CNN (32x32) trained for a few seconds on bright "real" and dark
"attack" synthetic crops stands for the model; the broken conversion is the
int8 conversion of the same network with its logit negated (an inverted
output, as a sign or label mix-up in a converter would give).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")
pytestmark = pytest.mark.slow  # every test here runs the converter

from tla_edge import cli  # noqa: E402
from tla_edge.converters import export as export_lib  # noqa: E402
from tla_edge.runtime import metadata as metadata_lib  # noqa: E402

# The tiny CNN and the 64 synthetic crops, shared with tests/converters/test_convert.py.
import convert_helpers  # noqa: E402

crops_dir = convert_helpers.crops_dir  # fixture: 64 synthetic crops, scale 3
model_dir = convert_helpers.model_dir  # fixture: the trained tiny CNN (model.keras + metadata.json)


@pytest.fixture
def inverted_conversion(monkeypatch):
    """Every conversion turns out the int8 model of the network with its logit negated."""
    import keras

    original = export_lib.convert_job

    def broken(model, *args, **kwargs):
        inverted = keras.Model(model.inputs, keras.layers.Rescaling(-1.0)(model.outputs[0]))
        return original(inverted, *args, **kwargs)

    monkeypatch.setattr(export_lib, "convert_job", broken)


def convert(*argv) -> int:
    return cli.main(["convert", *map(str, argv)])


def test_broken_conversion_is_refused_by_default(model_dir, crops_dir, tmp_path, capsys, inverted_conversion):
    out = tmp_path / "m_int8.tflite"
    report = tmp_path / "r.json"
    assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--report", report) == 1
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if "degraded" in line]
    assert len(err) == 1 and err[0].startswith("tla-edge convert: error: int8 model is degraded: ")
    assert "its scores do not follow the float model's (Pearson r -" in err[0]
    assert err[0].endswith("not written (check the calibration crops, or pass --parity report to write it "
                           "with this verdict recorded)")
    assert "tla-edge convert: error: failed: int8" in captured.err
    assert "int8: DEGRADED, NOT SAVED (--parity enforce)" in captured.out
    assert not out.exists() and not metadata_lib.sidecar_path(out).exists()
    row = json.loads(report.read_text())["models"][0]
    assert (row["written"], row["parity_gate"], row["parity"]["verdict"]) == (False, "enforce", "degraded")
    assert row["parity"]["pearson"] < -0.9


def test_parity_report_writes_and_records_the_verdict(model_dir, crops_dir, tmp_path, capsys,
                                                      inverted_conversion):
    out = tmp_path / "m_int8.tflite"
    report = tmp_path / "r.json"
    assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--report", report,
                   "--parity", "report") == 0
    captured = capsys.readouterr()
    warn = [line for line in captured.err.splitlines() if "degraded" in line]
    assert len(warn) == 1 and warn[0].startswith("tla-edge convert: warning: int8 model is degraded: ")
    assert warn[0].endswith("; written anyway (--parity report), the verdict recorded in its metadata")
    assert "error" not in captured.err
    assert "int8: DEGRADED, written (--parity report)" in captured.out
    meta = metadata_lib.load(out)
    assert meta.extra["parity"]["verdict"] == "degraded" and meta.extra["parity"]["gate"] == "report"
    assert meta.extra["degraded"] == meta.extra["parity"]["degraded"] and "do not follow" in meta.extra["degraded"]
    assert metadata_lib.read_embedded(out).extra["parity"]["verdict"] == "degraded"  # in the file too
    row = json.loads(report.read_text())["models"][0]
    assert (row["written"], row["parity_gate"], row["parity"]["verdict"]) == (True, "report", "degraded")


def test_healthy_conversion_passes_under_either_mode(model_dir, crops_dir, tmp_path, capsys):
    for mode in ("enforce", "report"):
        out = tmp_path / f"{mode}_int8.tflite"
        assert convert(model_dir, "--int8", "--calib", crops_dir, "--out", out, "--parity", mode) == 0, \
            capsys.readouterr().err
        parity = metadata_lib.load(out).extra["parity"]
        assert parity["verdict"] == "pass" and parity["gate"] == mode and parity["degraded"] is None
        assert parity["pearson"] >= 0.9 and parity["agreement_clear_ci"][1] >= 0.9
        assert "degraded" not in metadata_lib.load(out).extra
