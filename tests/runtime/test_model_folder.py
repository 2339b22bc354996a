"""A folder as ``--model`` / ``Pipeline(model=...)``: the model or the fused set it holds (calibrate --out DIR)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tla_edge import cli
from tla_edge.runtime import assets, fused_set, metadata
from tla_edge.runtime.benchmark import model_set
from tla_edge.runtime.pipeline import Pipeline

SAMPLES = assets.SAMPLES_DIR


def copy_model(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = Path(shutil.copy2(src, folder / src.name))
    if metadata.sidecar_path(src).is_file():
        shutil.copy2(metadata.sidecar_path(src), metadata.sidecar_path(dst))
    return dst


@pytest.fixture
def kiosk(tmp_path) -> Path:
    """The bundled pair copied into a folder, as `tla-edge calibrate --out DIR` leaves a set."""
    for m in assets.default_liveness_models():
        copy_model(m, tmp_path / "kiosk")
    return tmp_path / "kiosk"


def test_a_set_folder_gives_its_members_primary_first(kiosk):
    # the bundled order (primary first) is what the set's record says; a folder listing is alphabetical,
    # which would put the 1.4x partner first
    expected = [m.name for m in assets.default_liveness_models()]
    assert sorted(expected) != expected
    assert [p.name for p in fused_set.set_files(kiosk)] == expected
    assert [p.parent for p in fused_set.set_files(kiosk)] == [kiosk, kiosk]
    assert [p.name for p in model_set(kiosk)] == expected  # bench's --model DIR
    assert [p.name for p in fused_set.expand_models([kiosk, assets.default_liveness_model()])] == [*expected,
                                                                                                   expected[0]]


def test_a_file_or_a_one_model_folder_is_that_model(tiny_tflite, tmp_path):
    assert fused_set.set_files(tiny_tflite["int8"]) == [tiny_tflite["int8"]]
    one = copy_model(tiny_tflite["int8"], tmp_path / "one")
    assert fused_set.set_files(tmp_path / "one") == [one]


def test_a_train_folder_is_left_for_the_keras_loader(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_bytes(b"")
    assert fused_set.set_files(tmp_path / "run") == [tmp_path / "run"]


def test_folders_that_are_not_one_model_or_set_are_refused(tiny_tflite, kiosk, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^model folder '.*empty' holds no .tflite file; expected a model file"):
        fused_set.set_files(tmp_path / "empty")
    for kind in ("float", "int8"):  # two models that were never fused
        copy_model(tiny_tflite[kind], tmp_path / "loose")
    with pytest.raises(ValueError, match=r"^model folder '.*loose' holds 2 .tflite files \(tiny_float.tflite, "
                                         r"tiny_int8.tflite\) that are not one fused set; expected one model"):
        fused_set.set_files(tmp_path / "loose")
    copy_model(tiny_tflite["int8"], kiosk)  # a set plus a stranger
    with pytest.raises(ValueError, match=r"holds 3 .tflite files .* not one fused set"):
        fused_set.set_files(kiosk)


def test_a_set_with_a_member_missing_is_refused(kiosk):
    partner = fused_set.set_files(kiosk)[1]
    partner.unlink()
    metadata.sidecar_path(partner).unlink()
    # one file left: it is loaded as a model alone, at its own threshold (not the fused one)
    [alone] = fused_set.set_files(kiosk)
    with Pipeline(kiosk, FakeDetector()) as pipe:
        assert len(pipe.models) == 1 and pipe.models[0].path == alone
        assert pipe.threshold == pytest.approx(metadata.load(alone).threshold)


class FakeDetector:
    def detect(self, rgb, timestamp_ms=None):
        return []

    def close(self):
        pass


def test_pipeline_on_a_set_folder_is_the_set(kiosk):
    import cv2

    pair = assets.default_liveness_models()
    bundled = fused_set.fused_threshold([(p, metadata.load(p)) for p in pair])
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(SAMPLES.glob("*.jpg"))]
    assert len(frames) == 5
    with Pipeline(kiosk, live_frames=1, smoothing=1) as folder, Pipeline(pair, live_frames=1, smoothing=1) as files:
        assert [m.path.name for m in folder.models] == [p.name for p in pair]
        assert folder.threshold == pytest.approx(bundled)
        for rgb in frames:
            a, b = folder.process(rgb), files.process(rgb)
            assert (a.decision, a.raw_score) == (b.decision, b.raw_score)


@pytest.fixture
def run_cli(capsys):
    def run(*argv: str):
        code = cli.main([*map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_demo_takes_a_set_folder(kiosk, run_cli):
    code, out, err = run_cli("demo", "--headless", "--source", SAMPLES, "--model", kiosk)
    pair = assets.default_liveness_models()
    code2, out2, err2 = run_cli("demo", "--headless", "--source", SAMPLES, "--model", pair[0], "--model", pair[1])
    assert code == code2 == 0, (err, err2)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    lines2 = [json.loads(x) for x in out2.splitlines() if x.startswith("{")]
    assert len(lines) == len(list(SAMPLES.glob("*.jpg")))
    assert [(x["decision"], x.get("score")) for x in lines] == [(x["decision"], x.get("score")) for x in lines2]


def test_a_bad_model_folder_is_one_line(tmp_path, run_cli):
    (tmp_path / "nothing").mkdir()
    code, out, err = run_cli("demo", "--headless", "--source", SAMPLES, "--model", tmp_path / "nothing")
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "holds no .tflite file" in err
    assert "Traceback" not in err


def test_info_on_a_set_folder_reports_each_member_and_the_fused_threshold(kiosk, run_cli):
    pair = assets.default_liveness_models()
    # the expectation from the bundled sidecars themselves, not from the code under test
    record = json.loads(metadata.sidecar_path(pair[0]).read_text())["extra"]["fusion"]
    code, out, err = run_cli("info", kiosk)
    assert code == 0, err
    head, *members = out.split("\n\n")
    assert head.startswith(f"set        {kiosk}: 2 models fused by their mean score, primary first: "
                           f"{pair[0].name}, {pair[1].name}")
    assert f"fused threshold {record['threshold']:.4g} (its record matches the files)" in head
    assert [m.splitlines()[0] for m in members] == ["member 1 of 2 (primary)", "member 2 of 2"]
    assert [m.splitlines()[1] for m in members] == [f"model      {kiosk / p.name}" for p in pair]
    assert f"fusion     the primary of a set of 2, with {pair[1].name}: fused threshold" in members[0]
    assert f"fusion     a partner of a set of 2, with {pair[0].name}: fused threshold" in members[1]

    code, out, err = run_cli("info", kiosk, "--json")
    d = json.loads(out)
    assert code == 0 and d["models"] == [p.name for p in pair] and d["fusion_ok"] is True
    assert d["fused_threshold"] == pytest.approx(record["threshold"])
    assert [m["sha256"] for m in d["members"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in pair]
    assert run_cli("info", kiosk, "--check-edgetpu")[0] == 0  # both members are full int8


def test_info_says_when_a_set_folders_record_no_longer_matches(kiosk, run_cli):
    partner = fused_set.set_files(kiosk)[1]
    meta = metadata.load(partner)
    # its own threshold edited after the fusion, in the file and its sidecar alike
    meta = meta.replace(threshold=0.5 if meta.threshold != 0.5 else 0.6)
    partner.write_bytes(metadata.embed(partner.read_bytes(), meta))
    metadata.sidecar_path(partner).write_text(json.dumps(meta.to_dict(), indent=2))
    code, out, err = run_cli("info", kiosk)
    assert code == 0, err  # info reports; loading the set is what refuses
    assert "NO valid fused threshold: " in out.split("\n\n")[0]
    with pytest.raises(ValueError):
        fused_set.fused_threshold([(p, metadata.load(p)) for p in fused_set.set_files(kiosk)])


def test_info_on_a_one_model_folder_and_on_folders_that_are_not_models(tiny_tflite, tmp_path, run_cli):
    copy_model(tiny_tflite["int8"], tmp_path / "one")
    code, out, err = run_cli("info", tmp_path / "one")
    assert code == 0 and out.splitlines()[:2] == [f"folder     {tmp_path / 'one'}: one model",
                                                  f"model      {tmp_path / 'one' / 'tiny_int8.tflite'}"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_bytes(b"")
    code, out, err = run_cli("info", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is a tla-edge train folder (model.keras, no .tflite)" in err and "tla-edge convert" in err
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("info", tmp_path / "empty")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds no .tflite file" in err
