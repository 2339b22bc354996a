"""The bundled default: one model, or a primary model and the partners its fusion record names."""

from __future__ import annotations

import json
import shutil

import pytest

from tla_edge.runtime import assets

from tla_edge.runtime import fused_set, metadata


def _copy_model(src, dst, fusion=None):
    meta = metadata.load(src)
    extra = {k: v for k, v in (meta.extra or {}).items() if k != "fusion"}
    if fusion is not None:
        extra["fusion"] = fusion
    new = meta.replace(extra=extra)
    dst.write_bytes(metadata.embed(metadata.strip_embedded(src.read_bytes()), new))
    metadata.sidecar_path(dst).write_text(json.dumps(new.to_dict()))


def test_default_models_follow_the_fusion_record(tmp_path, monkeypatch):
    bundled = assets.DEFAULT_LIVENESS_MODEL
    primary, partner = tmp_path / "liveness_mnv2_int8.tflite", tmp_path / "liveness_mnv2_s2.0_int8.tflite"
    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    monkeypatch.setattr(assets, "DEFAULT_LIVENESS_MODEL", primary)
    _copy_model(bundled, primary)
    assert assets.default_liveness_models() == [primary]  # no fusion record: alone
    shutil.copy(primary, partner)
    record = {"partners": sorted([metadata.model_sha256(primary), metadata.model_sha256(partner)]),
              "threshold": 0.6, "models": [primary.name, partner.name]}
    _copy_model(bundled, primary, record)
    assert assets.default_liveness_models() == [primary, partner]
    partner.unlink()
    with pytest.raises(FileNotFoundError, match="liveness_mnv2_s2.0_int8.tflite' .*fused with"):
        assets.default_liveness_models()


def test_the_installed_default_loads_as_a_pipeline_would():
    models = assets.default_liveness_models()
    assert models[0] == assets.DEFAULT_LIVENESS_MODEL and all(m.is_file() for m in models)
    if len(models) > 1:  # a fused default must carry its own fused threshold
        metas = [(m, metadata.load(m)) for m in models]
        assert 0.0 < fused_set.fused_threshold(metas) < 1.0


def test_the_own_camera_guide_quotes_the_bundled_thresholds():
    # the guide said 0.82 while the bundled model holds 0.957 alone and 0.907 fused
    from conftest import REPO

    guide = (REPO / "docs" / "own-camera.md").read_text(encoding="utf-8")
    meta = metadata.load(assets.DEFAULT_LIVENESS_MODEL)
    alone, fused = meta.threshold, meta.extra["fusion"]["threshold"]
    intro = guide[: guide.index("1. **record**")]
    assert f"fused {fused:.3f}" in intro and f"alone {alone:.3f}" in intro
    assert "0.82" not in guide
