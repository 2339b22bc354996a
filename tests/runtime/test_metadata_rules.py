"""Metadata rules of issue 18: suffix case, bare models in a fusion, thread bounds, frame size, gates."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tla_edge.runtime import assets, fused_set, metadata
from tla_edge.runtime.faces import FaceBox
from tla_edge.runtime.interpreter import LivenessModel, make_interpreter
from tla_edge.runtime.pipeline import Pipeline


class FakeDetector:
    def __init__(self, faces=()):
        self.faces = list(faces)

    def detect(self, rgb, timestamp_ms=None):
        return list(self.faces)

    def close(self):
        pass


def test_upper_case_suffix_reads_the_embedded_metadata(tiny_tflite, tmp_path):
    # `M.TFLITE` was read as having no metadata by demo while info read it
    src = tiny_tflite["int8"]
    meta = metadata.load(src)
    p = tmp_path / "M.TFLITE"
    p.write_bytes(metadata.embed(src.read_bytes(), meta.replace(threshold=0.625)))
    assert not metadata.sidecar_path(p).exists()
    assert metadata.load(p).threshold == 0.625


def test_fused_threshold_of_a_model_without_metadata_says_so(tiny_tflite):
    # AttributeError: 'NoneType' object has no attribute 'extra'
    meta = metadata.load(tiny_tflite["float"])
    with pytest.raises(ValueError, match=r"^model 'b.tflite' has no tla-edge metadata, so no fusion threshold; "
                                         r"pass an explicit threshold"):
        fused_set.fused_threshold([("a.tflite", meta), ("b.tflite", None)])


@pytest.mark.parametrize("fusion, why", [
    ({"models": ["liveness_mnv2_int8.tflite", 5]}, r"\['liveness_mnv2_int8.tflite', 5\]"),
    ("abc", "None"),
    ({"models": ["../../x.tflite"]}, r"\['../../x.tflite'\]"),
    ({"models": ["/etc/evil.tflite"]}, r"\['/etc/evil.tflite'\]"),
    ({"models": [".."]}, r"\['..'\]"),
    ({"models": "liveness_mnv2_int8.tflite"}, "'liveness_mnv2_int8.tflite'"),
])
def test_a_malformed_bundled_fusion_record_is_refused(monkeypatch, fusion, why):
    bundled = metadata.load(assets.DEFAULT_LIVENESS_MODEL)
    fake = bundled.replace(extra={**bundled.extra, "fusion": fusion})
    monkeypatch.setattr(metadata, "load", lambda p: fake)
    with pytest.raises(ValueError, match=rf"^bundled model '.*' has a malformed extra.fusion record \(models {why}\); "
                                         r"expected a list of .tflite file names inside"):
        assets.default_liveness_models()


def test_a_null_bundled_fusion_record_runs_the_primary_alone(monkeypatch):
    bundled = metadata.load(assets.DEFAULT_LIVENESS_MODEL)
    monkeypatch.setattr(metadata, "load", lambda p: bundled.replace(extra={**bundled.extra, "fusion": None}))
    assert assets.default_liveness_models() == [assets.DEFAULT_LIVENESS_MODEL]


@pytest.mark.parametrize("threads", [0, 30000, 2**31, 1.5, True])
def test_thread_counts_are_bounded_before_the_runtime_sees_them(tiny_tflite, threads):
    # LivenessModel(num_threads=30000) reached LiteRT: SIGSEGV
    match = rf"^num_threads {threads!r} is not an integer in \[1, 64\] or None$"
    with pytest.raises(ValueError, match=match):
        make_interpreter(tiny_tflite["float"], num_threads=threads)
    with pytest.raises(ValueError, match=match):
        LivenessModel(tiny_tflite["float"], num_threads=threads)
    with pytest.raises(ValueError, match=match):
        Pipeline(tiny_tflite["float"], FakeDetector(), num_threads=threads)


def test_an_oversized_frame_fails_closed_with_any_detector(tiny_tflite):
    calls = []

    class Native(FakeDetector):
        def detect(self, rgb, timestamp_ms=None):
            calls.append(rgb.shape)
            return [FaceBox(0, 0, 50, 50, 0.9)]

    with Pipeline(tiny_tflite["float"], Native()) as pipe:
        frame = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (2, 40000, 3), (0, 0, 1))
        r = pipe.process(frame)
    assert r.decision == "error" and not r.is_live and calls == []
    assert r.error == "detector: image is 40000x2 px; expected at most 16384 px a side and 100 MP"


@pytest.mark.parametrize("name, value, rng", [
    ("max_roll", float("nan"), r"\[0, 180\]"), ("max_roll", -1.0, r"\[0, 180\]"), ("max_roll", 400, r"\[0, 180\]"),
    ("min_face", float("nan"), r"\[0, 16384\]"), ("min_face", float("inf"), r"\[0, 16384\]"),
    ("min_face", -5, r"\[0, 16384\]"), ("max_cut_off", float("nan"), r"\[0, 1\]"),
    ("max_cut_off", 1.5, r"\[0, 1\]"), ("max_cut_off", "0.1", r"\[0, 1\]"), ("max_roll", True, r"\[0, 180\]"),
])
def test_face_gates_must_be_finite_and_in_range(tiny_tflite, name, value, rng):
    # Pipeline(max_roll=nan) switched the rotation gate off
    with pytest.raises(ValueError, match=rf"^{name} {value!r} is not a finite number in {rng}$"):
        Pipeline(tiny_tflite["float"], FakeDetector(), **{name: value})


# --- one rule for embedded and sidecar metadata (issue 18 item 2) -------------------------


def _embedded_with_sidecar(tiny_tflite, tmp_path, sidecar_threshold):
    src = tiny_tflite["int8"]
    meta = metadata.load(src).replace(threshold=0.957)
    p = tmp_path / "X.tflite"
    p.write_bytes(metadata.embed(src.read_bytes(), meta))
    metadata.sidecar_path(p).write_text(json.dumps(meta.replace(threshold=sidecar_threshold).to_dict()))
    return p


def test_a_sidecar_that_disagrees_with_the_embedded_metadata_is_an_error(tiny_tflite, tmp_path):
    # a raised sidecar threshold (0.999) was silently ignored: the embedded 0.957 won
    p = _embedded_with_sidecar(tiny_tflite, tmp_path, 0.999)
    with pytest.raises(ValueError, match=r"^metadata of '.*X.tflite' disagrees with its sidecar '.*X.tflite.json': "
                                         r"threshold: embedded 0.957, sidecar 0.999; expected the same metadata"):
        metadata.load(p)
    with pytest.raises(ValueError, match=r"threshold: embedded 0.957, sidecar 0.999"):
        LivenessModel(p)
    same = _embedded_with_sidecar(tiny_tflite, tmp_path / "ok", 0.957) if (tmp_path / "ok").mkdir() is None else None
    assert metadata.load(same).threshold == 0.957


def test_info_shows_both_values_of_a_disagreeing_sidecar(tiny_tflite, tmp_path, capsys):
    from tla_edge import cli

    p = _embedded_with_sidecar(tiny_tflite, tmp_path, 0.999)
    assert cli.main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert ("metadata   tla-edge/1 (embedded, DISAGREES with sidecar 'X.tflite.json' (threshold: embedded 0.957, "
            "sidecar 0.999): refused until they agree)") in out
    assert "threshold 0.957" in out


# --- the fusion record covers the metadata (issue 18 item 3) ------------------------------


def _sidecar_pair(tiny_tflite, tmp_path, record=None):
    """Two sidecar-only models (as edgetpu_compiler leaves them), fused with a record."""
    paths = []
    for kind in ("float", "int8"):
        p = tmp_path / f"{kind}.tflite"
        p.write_bytes(tiny_tflite[kind].read_bytes())
        shutil.copy(str(tiny_tflite[kind]) + ".json", str(p) + ".json")
        paths.append(p)
    record = record(paths) if record else fused_set.fusion_record(paths, 0.7)
    for p in paths:
        meta = metadata.load(p)
        metadata.sidecar_path(p).write_text(json.dumps(meta.replace(extra={**meta.extra, "fusion": record}).to_dict()))
    return paths


@pytest.mark.parametrize("field, value", [("threshold", 0.01), ("crop_scale", 4.0), ("normalization", "unit"),
                                          ("output", "probability")])
def test_a_sidecar_edited_after_the_fusion_is_refused(tiny_tflite, tmp_path, field, value):
    paths = _sidecar_pair(tiny_tflite, tmp_path)
    with Pipeline(paths, FakeDetector()) as pipe:
        assert pipe.threshold == pytest.approx(0.7)
    d = json.loads(metadata.sidecar_path(paths[1]).read_text())
    d[field] = value
    metadata.sidecar_path(paths[1]).write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"^the metadata of '.*int8.tflite' changed after the fusion threshold was "
                                         r"stored .*pass an explicit threshold"):
        Pipeline(paths, FakeDetector())


def test_a_record_without_metadata_hashes_is_trusted_only_with_embedded_metadata(tiny_tflite, tmp_path):
    def legacy(ps):
        r = fused_set.fusion_record(ps, 0.7)
        del r["metadata_sha256"]
        return r

    paths = _sidecar_pair(tiny_tflite, tmp_path, legacy)
    with pytest.raises(ValueError, match=r"^the fusion record of .* does not cover the metadata, and '.*float.tflite' "
                                         r"has only a sidecar"):
        Pipeline(paths, FakeDetector())
    for p in paths:  # embedded (as the bundled pair): trusted
        p.write_bytes(metadata.embed(p.read_bytes(), metadata.load(p)))
    with Pipeline(paths, FakeDetector()) as pipe:
        assert pipe.threshold == pytest.approx(0.7)


def test_the_bundled_pair_still_fuses():
    pair = assets.default_liveness_models()
    assert 0 < fused_set.fused_threshold([(p, metadata.load(p)) for p in pair]) < 1
