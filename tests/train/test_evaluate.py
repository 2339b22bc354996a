"""tla-edge evaluate with a tiny generated model on hand-made crops and on raw NUAA frames."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tla_edge import cli, metrics

from tla_edge.data import crops as crops_lib

cv2 = pytest.importorskip("cv2")

REQUIRED_KEYS = {
    "apcer", "apcer_per_species", "bpcer", "acer", "hter", "eer", "eer_threshold", "auc", "accuracy",
    "precision", "recall", "f1", "threshold", "confusion_matrix", "bpcer_at_apcer", "n_real", "n_attack",
    "no_face", "model", "data", "split", "per_session",
}


def make_crops(root: Path, size: int = 32, scale: str = "2.0", n: int = 12, seed: int = 0,
               sessions=("01", "02"), rule: str = "pad", append: bool = False) -> Path:
    """A crops folder in the prepare format: random RGB crops, real ones brighter.

    ``append`` adds crops of the same source images at another scale or rule to the folder.
    """
    rng = np.random.default_rng(seed)
    rows = []
    if append:
        with (root / "manifest.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
    for i in range(n):
        label = "real" if i % 2 == 0 else "attack"
        species = "" if label == "real" else ("print" if i % 4 == 1 else "replay")
        low = 60 if label == "real" else 0
        img = rng.integers(low, low + 196, (size, size, 3), dtype=np.uint8)
        crop = f"{crops_lib.scale_dir_name(float(scale), rule)}/{label}/{i:03d}.png"
        (root / crop).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / crop), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append({"crop": crop, "source": f"{label}/{i:03d}.jpg", "label": label, "species": species,
                     "subject": f"{i % 3:04d}", "session": sessions[i % len(sessions)], "split": "test",
                     "scale": scale, "box_x": "0", "box_y": "0", "box_w": "10", "box_h": "10", "det_score": "0.9",
                     "crop_rule": rule})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=crops_lib.MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root


def read_scores(report: Path) -> list[dict[str, str]]:
    with (report / "scores.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def run_cli(*args: str) -> int:
    return cli.main(["evaluate", *map(str, args), "--quiet"])


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    return make_crops(tmp_path_factory.mktemp("ev") / "crops")


@pytest.fixture(scope="module")
def keras_dir(tiny_tflite, tmp_path_factory) -> Path:
    """The tiny model as MODEL_DIR/model.keras + metadata.json, as tla-edge train writes it."""
    d = tmp_path_factory.mktemp("kmodel")
    shutil.copy(tiny_tflite["keras"], d / "model.keras")
    shutil.copy(str(tiny_tflite["float"]) + ".json", d / "metadata.json")
    return d


def test_crops_with_int8_tflite(crops, tiny_tflite, tmp_path):
    out = tmp_path / "report"
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(m)
    assert m["n_real"] == 6 and m["n_attack"] == 6 and m["no_face"] == 0
    assert m["threshold"] == 0.5 and m["threshold_source"] == "model metadata"
    assert set(m["apcer_per_species"]) == {"print", "replay"}
    assert set(m["per_session"]) == {"01", "02"}
    # files written hold portable paths (no machine layout): relative as given, else <DIR>/name
    assert m["model"] == f"<DIR>/{tiny_tflite['int8'].name}" and m["data"] == f"<DIR>/{crops.name}"

    rows = read_scores(out)
    assert len(rows) == 12
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([1 if r["label"] == "real" else 0 for r in rows])
    species = [r["species"] for r in rows]
    again = metrics.compute_metrics(scores, labels, species, m["threshold"])
    for key in ("apcer", "bpcer", "acer", "hter", "auc", "accuracy"):
        assert m[key] == pytest.approx(again[key], abs=1e-5), key
    assert m["confusion_matrix"] == again["confusion_matrix"]
    assert [r["decision"] for r in rows] == ["live" if s >= 0.5 else "spoof" for s in scores]

    # the score of a crop is the runtime's own LivenessModel.score of that PNG
    from tla_edge.runtime.interpreter import LivenessModel

    model = LivenessModel(tiny_tflite["int8"])
    rgb = cv2.cvtColor(cv2.imread(str(crops / "s2.0/real/000.png")), cv2.COLOR_BGR2RGB)
    assert float(rows[0]["score"]) == pytest.approx(model.score(rgb), abs=1e-6)

    for name in ("roc.png", "det.png", "hist.png", "confusion.png", "worst_errors.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100, name
    report = (out / "report.md").read_text()
    assert "| APCER (worst species) |" in report and "| session | real | attack |" in report


def test_refuses_to_overwrite_without_force(crops, tiny_tflite, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out) == 0
    before = (out / "metrics.json").read_text()
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out, "--threshold", "0.1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"tla-edge evaluate: error: output folder '{out}' already holds metrics.json")
    assert err.endswith("pass --force to overwrite them")
    assert (out / "metrics.json").read_text() == before
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out, "--threshold", "1e-9", "--force") == 0
    m = json.loads((out / "metrics.json").read_text())
    # every score is >= 1e-9: every attack accepted, no bona fide rejected
    assert m["threshold"] == 1e-9 and m["threshold_source"] == "--threshold"
    assert m["apcer"] == 1.0 and m["bpcer"] == 0.0
    for bad in ("0", "1", "-1", "nan"):
        with pytest.raises(SystemExit):
            run_cli(crops, "--model", tiny_tflite["int8"], "--out", out, "--threshold", bad, "--force")
        assert f"--threshold: '{bad}' is not strictly between 0 and 1" in capsys.readouterr().err


def test_keras_matches_float_tflite_and_fusion_averages(crops, tiny_tflite, keras_dir, tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="loading model.keras needs the 'train' extra")
    def last_err() -> str:
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert run_cli(crops, "--model", keras_dir / "model.keras", "--out", tmp_path / "k") == 0
    assert run_cli(crops, "--model", tiny_tflite["float"], "--out", tmp_path / "f") == 0
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", tmp_path / "i") == 0
    k = np.array([float(r["score"]) for r in read_scores(tmp_path / "k")])
    f = np.array([float(r["score"]) for r in read_scores(tmp_path / "f")])
    i8 = np.array([float(r["score"]) for r in read_scores(tmp_path / "i")])
    np.testing.assert_allclose(k, f, atol=1e-5)
    # two models without a stored fusion threshold: never the mean of their own thresholds
    assert run_cli(crops, "--model", tiny_tflite["float"], "--model", tiny_tflite["int8"], "--out", tmp_path / "x") == 2
    assert "carry no common fusion threshold" in last_err() and not (tmp_path / "x").exists()
    assert run_cli(crops, "--model", tiny_tflite["float"], "--model", tiny_tflite["int8"], "--threshold", "0.5",
                   "--out", tmp_path / "fused") == 0
    fused = np.array([float(r["score"]) for r in read_scores(tmp_path / "fused")])
    np.testing.assert_allclose(fused, (f + i8) / 2, atol=2e-6)
    m = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert m["fusion"] == "mean of scores" and len(m["models"]) == 2


def test_sessions_filter_and_single_class(tmp_path, tiny_tflite, capsys):
    crops = make_crops(tmp_path / "crops", sessions=("01", "02", "03", "04"))
    # sessions cycle with i: 01 holds i = 0, 4, 8 (real, even i), 02 holds 1, 5, 9 (attacks)
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--sessions", "1,2", "--out", tmp_path / "r") == 0
    rows = read_scores(tmp_path / "r")
    assert {r["session"] for r in rows} == {"01", "02"} and len(rows) == 6
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--sessions", "01", "--out", tmp_path / "r1") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tla-edge evaluate: error: crops '{crops}' (sessions 01) has only real images (3) and no attack "
        "images; expected both real and attack images"
    )


def test_crops_of_another_scale_or_size_are_refused(tmp_path, tiny_tflite, capsys):
    other_scale = make_crops(tmp_path / "a", scale="2.7")
    assert run_cli(other_scale, "--model", tiny_tflite["int8"], "--out", tmp_path / "r") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tla-edge evaluate: error: model '{tiny_tflite['int8']}' expects crops at scale 2 but '{other_scale}' "
        "holds scales 2.7; prepare them with --scales 2"
    )
    other_size = make_crops(tmp_path / "b", size=48)
    assert run_cli(other_size, "--model", tiny_tflite["int8"], "--out", tmp_path / "r") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tla-edge evaluate: error: crops in '{other_size}' at scale 2 are 48x48 but model "
        f"'{tiny_tflite['int8']}' expects 32x32; prepare them with --size 32"
    )


def test_bad_models_and_data(tmp_path, crops, tiny_tflite, keras_dir, capsys):
    def last_err() -> str:
        return capsys.readouterr().err.strip().splitlines()[-1]

    (tmp_path / "m.onnx").write_bytes(b"x")
    assert run_cli(crops, "--model", tmp_path / "m.onnx", "--out", tmp_path / "r") == 2
    assert last_err() == f"tla-edge evaluate: error: model '{tmp_path / 'm.onnx'}' is not a .tflite or .keras file"
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(keras_dir / "model.keras", lone / "model.keras")
    assert run_cli(crops, "--model", lone / "model.keras", "--out", tmp_path / "r") == 2
    assert last_err().startswith(
        f"tla-edge evaluate: error: metadata '{lone / 'metadata.json'}' of model '{lone / 'model.keras'}' not found"
    )
    raw = tmp_path / "raw"
    (raw / "real").mkdir(parents=True)
    (raw / "attack").mkdir()
    assert run_cli(raw, "--model", tiny_tflite["int8"], "--out", tmp_path / "r") == 2
    assert last_err() == (
        f"tla-edge evaluate: error: '{raw}' is not a crops folder (no manifest.csv written by tla-edge prepare); "
        "expected a crops folder, or pass --raw to run the device pipeline on a raw dataset"
    )
    assert run_cli(raw, "--raw", "--model", keras_dir / "model.keras", "--out", tmp_path / "r") == 2
    assert "--raw runs the device pipeline, which needs a .tflite model" in last_err()
    assert run_cli(raw, "--raw", "--model", tiny_tflite["int8"], "--out", tmp_path / "r") == 2
    assert last_err() == (
        f"tla-edge evaluate: error: dataset '{raw}' has no images; expected real and attack images"
    )
    assert not (tmp_path / "r").exists()


def test_raw_frames_through_the_pipeline(nuaa_dir, tiny_tflite, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the face detector (BlazeFace through LiteRT) needs the 'runtime' extra")
    data = tmp_path / "raw"
    for folder, src in ((data / "real" / "0001", nuaa_dir / "ClientRaw" / "0001"),
                        (data / "attack" / "print" / "0001", nuaa_dir / "ImposterRaw" / "0001")):
        folder.mkdir(parents=True)
        for p in sorted(src.glob("*.jpg"))[:3]:
            shutil.copy(p, folder / p.name)
    assert cv2.imwrite(str(data / "real" / "grey.png"), np.full((240, 320, 3), 128, np.uint8))
    (data / "attack" / "print" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "report"
    assert run_cli(data, "--raw", "--model", tiny_tflite["int8"], "--out", out) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(m)
    # ISO/IEC 30107-3: the faceless frame is a bona fide non-response, reported apart,
    # outside BPCER; the end-to-end figure counts it as a rejection
    assert m["n_real"] == 3 and m["n_attack"] == 3
    assert m["no_face"] == 1
    nr = m["non_response"]
    assert (nr["bona_fide"]["presentations"], nr["bona_fide"]["non_responses"]) == (4, 1)
    assert nr["bona_fide"]["by_reason"]["no_face"] == {"count": 1, "rate": 0.25}
    assert nr["attack"]["non_responses"] == 0 and nr["attack"]["presentations"] == 3
    assert m["corrupt"] == 1 and m["corrupt_files"] == ["attack/print/broken.jpg"]
    rows = {r["source"]: r for r in read_scores(out)}
    assert rows["real/grey.png"]["decision"] == "no_face" and rows["real/grey.png"]["score"] == ""
    assert {r["decision"] for k, r in rows.items() if k != "real/grey.png"} <= {"live", "spoof"}
    scored = [(float(r["score"]), r["label"]) for r in rows.values() if r["score"]]
    bona = [sc for sc, lab in scored if lab == "real"]
    assert m["bpcer"] == pytest.approx(sum(sc < m["threshold"] for sc in bona) / 3)
    e2e = m["end_to_end_non_response_as_rejection"]
    assert e2e["bpcer"] == pytest.approx((sum(sc < m["threshold"] for sc in bona) + 1) / 4)
    assert e2e["apcer"] == pytest.approx(m["apcer"])  # no attack non-response here
    assert cv2.imread(str(out / "worst_errors.png")) is not None
    report = (out / "report.md").read_text()
    assert "over processed presentations" in report and "non-response counted as a rejection" in report


def test_missed_attacks_do_not_flatter_apcer_or_auc():
    """Attacks the detector misses are attack non-responses, not 0.0 scores that improve AUC and APCER."""
    import types

    from tla_edge.train import report as ev_lib

    ev = ev_lib.Evaluated()
    rows = [  # (label, score, decision)
        (1, 0.9, "live"), (1, 0.4, "spoof"), (1, None, "face_rotated"),
        (0, 0.7, "live"), (0, 0.1, "spoof"), (0, None, "no_face"), (0, None, "no_face"), (0, None, "error"),
    ]
    for i, (y, score, decision) in enumerate(rows):
        ev.add(f"f{i}.jpg", y, "print", "0001", "01", score, decision)
    scorer = types.SimpleNamespace(path=Path("m.tflite"), describe=lambda: {"path": "m.tflite"})
    m = ev_lib.build_report(ev, 0.5, [scorer], Path("data"), raw=True, threshold_source="--threshold")
    # over processed presentations: bona fide 0.9, 0.4; attacks 0.7, 0.1
    assert (m["n_real"], m["n_attack"]) == (2, 2)
    assert m["apcer"] == 0.5 and m["bpcer"] == 0.5
    assert m["auc"] == 0.75  # pairs (0.9>0.7, 0.9>0.1, 0.4<0.7, 0.4>0.1); scoring misses 0.0 would give 0.875
    assert m["no_face"] == 2  # only missing faces
    assert m["non_response"]["attack"]["non_responses"] == 3
    assert m["non_response"]["attack"]["by_reason"]["error"]["count"] == 1
    assert m["non_response"]["bona_fide"]["by_reason"]["face_rotated"]["count"] == 1
    e2e = m["end_to_end_non_response_as_rejection"]
    assert e2e["apcer"] == pytest.approx(1 / 5) and e2e["bpcer"] == pytest.approx(2 / 3)
    text = ev_lib.format_summary(m, "out")
    assert "| no_face | 2 (40.00 %) | 0 (0.00 %) |" in text and "| face_rotated | 0 (0.00 %) | 1 (33.33 %) |" in text


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_while_writing_the_report_leaves_no_half_report(crops, tiny_tflite, tmp_path, monkeypatch, signame):
    import os
    import signal

    from tla_edge.train import plots

    out = tmp_path / "report"
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def grid_then_signal(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, signame))

    monkeypatch.setattr(plots, "plot_image_grid", grid_then_signal)
    # --threshold changes metrics.json, scores.csv and report.md: none may change
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", out, "--threshold", "0.3", "--force") == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no *.tmp, no staging folder
    fresh = tmp_path / "fresh"
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--out", fresh) == 130
    assert not fresh.exists() or list(fresh.iterdir()) == []


def test_evaluate_releases_its_models(crops, tiny_tflite, tmp_path, monkeypatch):
    from tla_edge.runtime.interpreter import LivenessModel

    opened, closed = [], []
    real_init, real_close = LivenessModel.__init__, LivenessModel.close

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        opened.append(self)

    def close(self):
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(LivenessModel, "__init__", init)
    monkeypatch.setattr(LivenessModel, "close", close)
    assert run_cli(crops, "--model", tiny_tflite["int8"], "--model", tiny_tflite["float"], "--threshold", "0.5",
                   "--out", tmp_path / "r") == 0
    assert len(opened) == 2 and all(m in closed and m.interpreter is None for m in opened)


def _model_copies(tiny_tflite, folder: Path, kinds=("float", "int8")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    models = []
    for kind in kinds:
        path = folder / f"{kind}.tflite"
        path.write_bytes(tiny_tflite[kind].read_bytes())
        shutil.copy(str(tiny_tflite[kind]) + ".json", str(path) + ".json")
        models.append(path)
    return models


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


LOOSE = ("--min-frames", "3", "--max-error", "1")  # 6 + 6 hand-made crops: the checks' own tests are below


def test_store_fusion_writes_fused_copies_and_the_pipeline_uses_them(crops, tiny_tflite, tmp_path, capsys):
    import hashlib

    from tla_edge.runtime import fused_set, metadata
    from tla_edge.runtime.pipeline import Pipeline

    models = _model_copies(tiny_tflite, tmp_path / "in")
    before = _tree_bytes(tmp_path / "in")
    out, fused = tmp_path / "r", tmp_path / "fused"
    assert run_cli(crops, "--model", models[0], "--model", models[1], "--store-fusion", fused, *LOOSE,
                   "--out", out) == 0
    assert "(the input models are unchanged)" in capsys.readouterr().out
    assert _tree_bytes(tmp_path / "in") == before  # never the models given
    m = json.loads((out / "metrics.json").read_text())
    rows = read_scores(out)
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([1 if r["label"] == "real" else 0 for r in rows])
    # independent: the EER threshold of the fused scores, recomputed from scores.csv
    assert m["threshold"] == pytest.approx(metrics.eer(scores, labels)[1], abs=1e-6)
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in models]  # no embedded zip here
    record = {"models": ["float.tflite", "int8.tflite"],  # the order given: the first is the primary
              "partners": sorted(hashes),
              "metadata_sha256": {h: fused_set.metadata_sha256(metadata.load(p)) for h, p in sorted(zip(hashes, models))},
              "threshold": m["threshold"]}
    assert m["fusion_record"] == record
    copies = [fused / p.name for p in models]
    assert sorted(x.name for x in fused.iterdir()) == ["float.tflite", "float.tflite.json", "int8.tflite",
                                                     "int8.tflite.json"]
    for p in copies:
        assert metadata.load(p).extra["fusion"] == record
    with Pipeline(copies, detector=object()) as pipe:
        assert pipe.threshold == pytest.approx(m["threshold"])
    assert all(r["decision"] == ("live" if float(r["score"]) >= m["threshold"] else "spoof") for r in rows)
    # the folder is the set: evaluate --model FOLDER scores as the two files did, at the stored fused threshold
    assert run_cli(crops, "--model", fused, "--out", tmp_path / "again") == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["threshold"] == pytest.approx(m["threshold"])
    assert [float(r["score"]) for r in read_scores(tmp_path / "again")] == pytest.approx(scores.tolist())


@pytest.mark.parametrize("how, message", [
    ("none", r"--store-fusion needs explicit --model files \(two or more .tflite\); got none"),
    ("one", r"--store-fusion needs two or more .tflite --model; got 1"),
    ("twice", r"--model '.*float.tflite' and --model '.*float.tflite' are the same model or share a file name"),
    ("same name", r"--model '.*in/float.tflite' and --model '.*other/float.tflite' are the same model or share"),
    ("package", r"--store-fusion '.*assets' is inside the installed package '.*tla_edge'; expected a folder outside"),
    ("onto input", r"--store-fusion's float.tflite '.*in/float.tflite' is the input --model"),
])
def test_store_fusion_refuses_before_any_work(crops, tiny_tflite, tmp_path, capsys, how, message):
    from tla_edge.runtime import assets

    models = _model_copies(tiny_tflite, tmp_path / "in")
    other = _model_copies(tiny_tflite, tmp_path / "other", kinds=("float",))[0]
    fused = tmp_path / "fused"
    args = {"none": [], "one": ["--model", models[0]], "twice": ["--model", models[0], "--model", models[0]],
            "same name": ["--model", models[0], "--model", other],
            "package": ["--model", models[0], "--model", models[1]],
            "onto input": ["--model", models[0], "--model", models[1]]}[how]
    target = {"package": assets.ASSETS_DIR, "onto input": tmp_path / "in"}.get(how, fused)
    installed = _tree_bytes(assets.ASSETS_DIR)
    assert run_cli(crops, *args, "--store-fusion", target, *LOOSE, "--out", tmp_path / "r", "--force") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and __import__("re").match(rf"tla-edge evaluate: error: {message}", err), err
    assert not fused.exists() and not (tmp_path / "r").exists()
    assert _tree_bytes(assets.ASSETS_DIR) == installed


def _swap_labels(crops_dir: Path, dest: Path) -> Path:
    shutil.copytree(crops_dir, dest)
    text = (dest / "manifest.csv").read_text()
    (dest / "manifest.csv").write_text(text.replace(",real,", ",TMP,").replace(",attack,", ",real,").replace(",TMP,", ",attack,"))
    return dest


@pytest.mark.parametrize("case, extra, message", [
    ("swapped", LOOSE, r"bona fide frames score below the attack frames \(AUC 0.\d+ <= 0.5\)"),
    ("floor", ("--min-frames", "3", "--max-error", "1", "--floor", "0.99"), r"is below the floor 0.99"),
    ("few", ("--max-error", "1"), r"6 bona fide presentations processed, fewer than --min-frames 30; "
                                  r"6 attack presentations processed, fewer than --min-frames 30"),
])
def test_store_fusion_applies_calibrates_checks_and_writes_nothing(crops, tiny_tflite, tmp_path, capsys, case,
                                                                  extra, message):
    models = _model_copies(tiny_tflite, tmp_path / "in")
    data = _swap_labels(crops, tmp_path / "swapped") if case == "swapped" else crops
    fused = tmp_path / "fused"
    assert run_cli(data, "--model", models[0], "--model", models[1], "--store-fusion", fused, *extra,
                   "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "--store-fusion: no fused threshold serves on this data" in err and "nothing written" in err
    assert __import__("re").search(message, err), err
    assert not fused.exists() and not (tmp_path / "r").exists()


def test_store_fusion_is_all_or_nothing(crops, tiny_tflite, tmp_path, monkeypatch, capsys):
    import os

    models = _model_copies(tiny_tflite, tmp_path / "in")
    fused = tmp_path / "fused"
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the third of four renames fails (disk full, a signal, ...)
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    assert run_cli(crops, "--model", models[0], "--model", models[1], "--store-fusion", fused, *LOOSE,
                   "--out", tmp_path / "r") != 0
    assert "No space left on device" in capsys.readouterr().err
    assert len(calls) == 3 and list(fused.iterdir()) == []  # the two renamed are undone, no temp file left


def test_store_fusion_on_an_installed_copy_of_the_bundled_models(tmp_path, monkeypatch, capsys):
    """Every store-fusion path against a copy of the installed assets: the package is never written."""
    from tla_edge.runtime import assets, metadata
    from tla_edge.runtime.pipeline import Pipeline

    real_dir = assets.ASSETS_DIR
    installed = _tree_bytes(real_dir)
    copy = Path(shutil.copytree(real_dir, tmp_path / "site" / "assets",
                                ignore=shutil.ignore_patterns("samples", "*.h5")))
    monkeypatch.setattr(assets, "ASSETS_DIR", copy)
    monkeypatch.setattr(assets, "DEFAULT_LIVENESS_MODEL", copy / assets.DEFAULT_LIVENESS_MODEL.name)
    pair = assets.default_liveness_models()
    assert [p.parent for p in pair] == [copy, copy] and len(pair) == 2
    copied = _tree_bytes(copy)
    for i, member in enumerate(metadata.load(p) for p in pair):  # crops at each member's scale and rule
        data = make_crops(tmp_path / "crops", size=int(member.input_size[0]), scale=f"{member.crop_scale:g}", n=12,
                          rule=member.crop_rule, append=i > 0)
    fused, r = tmp_path / "fused", tmp_path / "r"
    # no --model: refused (it stored into the installed default before)
    assert run_cli(data, "--store-fusion", fused, "--out", r) == 2
    # the same model twice; onto the installed folder itself
    assert run_cli(data, "--model", pair[0], "--model", pair[0], "--store-fusion", fused, "--out", r) == 2
    assert run_cli(data, "--model", pair[0], "--model", pair[1], "--store-fusion", copy, "--out", r, "--force") == 2
    # the real run: both checks loosened for 12 hand-made crops; the copies are new files elsewhere
    code = run_cli(data, "--model", pair[0], "--model", pair[1], "--store-fusion", fused, "--out", r,
                   "--min-frames", "3", "--max-error", "1", "--floor", "0")
    err = capsys.readouterr().err
    assert code in (0, 2) and (code == 0 or "no fused threshold serves" in err), err
    assert _tree_bytes(copy) == copied and _tree_bytes(real_dir) == installed
    if code == 0:
        with Pipeline([fused / p.name for p in pair], detector=object()) as pipe:
            assert pipe.threshold == metadata.load(fused / pair[0].name).extra["fusion"]["threshold"]
