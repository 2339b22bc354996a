"""The committed tiny models in tests/fixtures/ are what scripts/make_test_fixtures.py writes.

The runtime tests run on them without TensorFlow. Regenerating them with the
TensorFlow that wrote them gives the same bytes; with another version only the
tensors' shapes, types and the input quantization (fixed by the calibration
range, -1..1) are expected to hold, so that is what is compared then.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO, TINY_MODELS

MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
TFLITE = [name for name in TINY_MODELS.values() if name.endswith(".tflite")]


def tensors(path: Path) -> list[tuple]:
    """(name, shape, dtype, quantized) of every tensor, and the input's scale and zero point."""
    from tla_edge.runtime import interpreter

    it = interpreter.make_interpreter(path)
    out = [(d["name"], tuple(d["shape"]), np.dtype(d["dtype"]).name, bool(d["quantization"][0]))
           for d in it.get_tensor_details()]
    inp = it.get_input_details()[0]
    return sorted(out), inp["quantization"]


def test_committed_fixtures_match_their_manifest():
    on_disk = {p.name for p in FIXTURES.iterdir() if p.is_file()} - {"MANIFEST.json"}
    assert on_disk == set(MANIFEST["sha256"]), "tests/fixtures/ and its MANIFEST.json list different files"
    for name, digest in MANIFEST["sha256"].items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, (
            f"{name} changed by hand: re-run scripts/make_test_fixtures.py --force and commit its output")


def test_committed_fixtures_have_the_documented_shape():
    pytest.importorskip("ai_edge_litert", reason="reading a .tflite needs the 'runtime' extra")
    for name in TFLITE:
        details, (scale, zero_point) = tensors(FIXTURES / name)
        shapes = {shape for _, shape, _, _ in details}
        assert (1, 32, 32, 3) in shapes and (1, 1) in shapes, name
        assert (scale != 0) == ("int8" in name), name  # int8 and uint8 models take quantized input
    meta = json.loads((FIXTURES / "tiny_int8.tflite.json").read_text())
    assert meta["input_size"] == [32, 32] and meta["crop_scale"] == 2.0 and meta["threshold"] == 0.5


@pytest.mark.slow
def test_regenerating_reproduces_the_fixtures(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="writing the fixtures needs the 'train' extra")
    pytest.importorskip("ai_edge_litert", reason="reading a .tflite needs the 'runtime' extra")
    out = tmp_path / "fixtures"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_fixtures.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = json.loads((out / "MANIFEST.json").read_text())
    assert set(fresh["sha256"]) == set(MANIFEST["sha256"])
    for name in MANIFEST["sha256"]:
        if name.endswith(".json"):  # the metadata sidecars do not depend on TensorFlow
            assert (out / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    for name in TFLITE:
        if tf.__version__ == MANIFEST["tensorflow"]:
            assert fresh["sha256"][name] == MANIFEST["sha256"][name], f"{name}: same TensorFlow, other bytes"
        (want, want_in), (got, got_in) = tensors(FIXTURES / name), tensors(out / name)
        assert [d[1:] for d in got] == [d[1:] for d in want], name
        assert got_in[0] == pytest.approx(want_in[0], rel=1e-6) and got_in[1] == want_in[1], name
    # tiny.keras is a zip that carries its save date: compare what it holds
    import keras

    for a, b in zip(keras.models.load_model(out / "tiny.keras").get_weights(),
                    keras.models.load_model(FIXTURES / "tiny.keras").get_weights()):
        assert a.shape == b.shape and a.dtype == b.dtype
        if tf.__version__ == MANIFEST["tensorflow"]:
            np.testing.assert_array_equal(a, b)
