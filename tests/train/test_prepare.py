"""tla-edge prepare on real NUAA frames and on generated folder datasets; the progress helper."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tla_edge import cli

from tla_edge.data import datasets
from tla_edge.data import crops as crops_lib

from tla_edge.cli import prepare
from tla_edge.train import prepare as prepare_lib
from tla_edge.progress import Progress, format_duration, progress

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert", reason="the face detector (BlazeFace through LiteRT) needs the 'runtime' extra")


def manifest_rows(crops: Path) -> list[dict[str, str]]:
    with (crops / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def prepare_json(crops: Path) -> dict:
    return json.loads((crops / "prepare.json").read_text())


@pytest.fixture(scope="module")
def nuaa_crops(nuaa_dir, tmp_path_factory) -> Path:
    """12 NUAA frames spread over both classes and sessions, cropped at 2.0 and 3.0."""
    out = tmp_path_factory.mktemp("prep") / "crops"
    rc = cli.main(["prepare", str(nuaa_dir), "--out", str(out), "--scales", "2.0,3.0", "--limit", "12", "--quiet"])
    assert rc == 0
    return out


def test_nuaa_sample_crops_are_160_and_face_centred(nuaa_crops):
    rows = manifest_rows(nuaa_crops)
    assert list(rows[0].keys()) == list(crops_lib.MANIFEST_COLUMNS)
    info = prepare_json(nuaa_crops)
    s = info["summary"]
    assert s["images"] == 12 and s["no_face"] == 0 and s["corrupt"] == 0
    assert s["crops_per_scale"] == {"2.0": 12, "3.0": 12} and len(rows) == 24
    assert s["per_class"] == {"attack": 6, "real": 6}
    assert set(s["per_session"]) == {"01", "02"}
    assert info["settings"]["size"] == 160 and info["settings"]["scales"] == [2.0, 3.0]
    assert {r["crop"].split("/")[0] for r in rows} == {"s2.0", "s3.0"}

    from tla_edge.runtime.faces import FaceDetector

    with FaceDetector("short", mode="image") as det:
        for r in rows:
            bgr = cv2.imread(str(nuaa_crops / r["crop"]))
            assert bgr.shape == (160, 160, 3)
            if r["scale"] != "2.0":
                continue
            faces = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            assert faces, f"no face re-detected in {r['crop']}"
            cx, cy = faces[0].center
            # crop side = 2 x the box's longer side: the face is ~80 px wide, centred at (80, 80)
            assert abs(cx - 80) < 12 and abs(cy - 80) < 12, (r["crop"], faces[0])
            assert 55 < max(faces[0].width, faces[0].height) < 105, (r["crop"], faces[0])


def test_nuaa_sample_loads_as_cropset(nuaa_crops):
    cs = crops_lib.load_crops(nuaa_crops, scale=3.0)
    assert cs.images.shape == (12, 160, 160, 3)
    assert int(cs.labels.sum()) == 6
    assert set(cs.species) == {"", "print"}
    assert all(src.startswith(("ClientRaw/", "ImposterRaw/")) for src in cs.sources)


def test_resume_recomputes_nothing_then_only_the_new_scale(nuaa_crops, nuaa_dir, tmp_path, capsys):
    out = tmp_path / "crops"
    shutil.copytree(nuaa_crops, out)
    src = str(nuaa_dir)  # prepare.json stores it portable (tla_edge.runtime.metadata.portable_path)
    assert prepare_json(nuaa_crops)["settings"]["dataset"] == f"<DIR>/{nuaa_dir.name}"  # outside the checkout
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    args = ["prepare", src, "--out", str(out), "--scales", "2.0,3.0", "--limit", "12", "--quiet"]
    assert cli.main(args) == 0
    s = prepare_json(out)["summary"]
    assert s["processed"] == 0 and s["resumed"] == 12 and s["crops_written"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    assert "computed now      0  (kept from a previous run: 12)" in capsys.readouterr().out

    args[5] = "2.0,3.0,4.0"
    assert cli.main(args) == 0
    s = prepare_json(out)["summary"]
    assert s["processed"] == 12 and s["crops_written"] == 12
    assert s["crops_per_scale"] == {"2.0": 12, "3.0": 12, "4.0": 12}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    runs = prepare_json(out)["runs"]
    assert [r["processed"] for r in runs] == [12, 0, 12]

    assert cli.main(["prepare", src, "--out", str(out), "--scales", "2.0", "--limit", "12", "--quiet", "--force"]) == 0
    s = prepare_json(out)["summary"]
    assert s["processed"] == 12 and s["crops_written"] == 12 and s["crops_per_scale"] == {"2.0": 12}
    assert len(manifest_rows(out)) == 12 and len(prepare_json(out)["runs"]) == 1


def test_resume_with_other_settings_is_refused(nuaa_crops, nuaa_dir, tmp_path, capsys):
    out = tmp_path / "crops"
    shutil.copytree(nuaa_crops, out)
    src = str(nuaa_dir)
    assert cli.main(["prepare", src, "--out", str(out), "--size", "96", "--limit", "12"]) == 2
    err = capsys.readouterr().err
    assert "tla-edge prepare: error: crops folder" in err
    assert "was prepared with size=160 but this run asks size=96" in err
    # crops made by another crop implementation are never mixed with new ones
    info = prepare_json(out)
    info["settings"]["crop_fingerprint"] = "0123456789abcdef"
    (out / "prepare.json").write_text(json.dumps(info))
    assert cli.main(["prepare", src, "--out", str(out), "--scales", "2.0,3.0", "--limit", "12"]) == 2
    err = capsys.readouterr().err
    assert "was made by another version of the crop (crop_fingerprint '0123456789abcdef', now '" in err
    assert "pass --force to recompute them" in err


def test_crop_rule_shift_writes_its_own_folder_beside_the_padded_crops(nuaa_crops, nuaa_dir, tmp_path, capsys):
    out = tmp_path / "crops"
    shutil.copytree(nuaa_crops, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    args = ["prepare", str(nuaa_dir), "--out", str(out), "--scales", "2.0", "--limit", "12", "--quiet"]
    # another rule is other crops: a resume computes them, beside the padded ones
    assert cli.main(args + ["--crop-rule", "shift"]) == 0
    info = prepare_json(out)
    assert info["summary"]["processed"] == 12 and info["summary"]["crops_written"] == 12
    assert info["summary"]["crops_per_scale"] == {"2.0": 12, "2.0_shift": 12, "3.0": 12}
    assert set(info["settings"]["crop_rules"]) == {"pad", "shift"}
    assert info["settings"]["crop_rules"]["pad"] == info["settings"]["crop_fingerprint"]
    assert [r["crop_rule"] for r in info["runs"]] == ["pad", "shift"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the padded crops are untouched
    rows = manifest_rows(out)
    shift_rows = [r for r in rows if r["crop_rule"] == "shift"]
    assert len(shift_rows) == 12 and all(r["crop"].startswith("s2.0_shift/") for r in shift_rows)
    assert {r["crop_rule"] for r in rows if not r["crop"].startswith("s2.0_shift/")} == {"pad"}
    # a second shift run finds them all
    assert cli.main(args + ["--crop-rule", "shift"]) == 0
    assert prepare_json(out)["summary"]["processed"] == 0
    # readers choose a rule where a scale has two
    with pytest.raises(Exception, match=r"holds crop rules pad, shift at scale 2; choose one"):
        crops_lib.load_crops(out, scale=2.0)
    shifted = crops_lib.load_crops(out, scale=2.0, crop_rule="shift")
    assert shifted.crop_rule == "shift" and len(shifted) == 12
    assert crops_lib.load_crops(out, scale=3.0).crop_rule == "pad"
    with pytest.raises(Exception, match=r"has no 'shift' crops at scale 3 .* --scales 3 --crop-rule shift"):
        crops_lib.load_crops(out, scale=3.0, crop_rule="shift")
    # the shift crop of a frame is the device's shift crop of its detected face
    row = shifted.sources.index(shift_rows[0]["source"])
    rgb = datasets.read_image_rgb(nuaa_dir / shift_rows[0]["source"])
    box = tuple(float(shift_rows[0][k]) for k in ("box_x", "box_y", "box_w", "box_h"))
    from tla_edge.runtime import preprocess

    np.testing.assert_array_equal(shifted.images[row], preprocess.crop_face(rgb, box, 2.0, 160, "shift"))


def test_resume_of_a_rule_made_by_another_version_is_refused(nuaa_crops, nuaa_dir, tmp_path, capsys):
    out = tmp_path / "crops"
    shutil.copytree(nuaa_crops, out)
    info = prepare_json(out)
    info["settings"]["crop_rules"] = {"shift": "0123456789abcdef"}
    (out / "prepare.json").write_text(json.dumps(info))
    args = ["prepare", str(nuaa_dir), "--out", str(out), "--scales", "2.0", "--limit", "12", "--quiet"]
    assert cli.main(args + ["--crop-rule", "shift"]) == 2
    assert "holds 'shift' crops made by another version of that rule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args + ["--crop-rule", "mirror"])
    assert exit_info.value.code == 2 and "invalid choice: 'mirror'" in capsys.readouterr().err


def test_crop_fingerprint_follows_the_crop_pixels(monkeypatch):
    from tla_edge.runtime import preprocess

    before = prepare_lib.crop_fingerprint()
    assert before == prepare_lib.crop_fingerprint() and len(before) == 16
    original = preprocess.crop_face
    monkeypatch.setattr(preprocess, "crop_face", lambda *a, **k: original(*a, **k) // 2)
    assert prepare_lib.crop_fingerprint() != before
    monkeypatch.undo()
    assert prepare_lib.crop_fingerprint("shift") not in (before, prepare_lib.crop_fingerprint())


def write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_folder_dataset_skips_corrupt_and_faceless_images(nuaa_dir, tmp_path, capsys):
    data = tmp_path / "folder"
    real = sorted((nuaa_dir / "ClientRaw" / "0001").glob("*.jpg"))[:2]
    fake = sorted((nuaa_dir / "ImposterRaw" / "0001").glob("*.jpg"))[:2]
    for folder, files in ((data / "real" / "0001", real), (data / "attack" / "print" / "0001", fake)):
        folder.mkdir(parents=True)
        for p in files:
            shutil.copy(p, folder / p.name)
    (data / "real" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (data / "real" / "empty.jpg").write_bytes(b"")
    write_image(data / "attack" / "print" / "grey.png", np.full((240, 320, 3), 128, np.uint8))

    out = tmp_path / "crops"
    assert cli.main(["prepare", str(data), "--out", str(out), "--scales", "2.7", "--size", "64", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "skipped           no face 1, corrupt 2, errors 0" in printed
    info = prepare_json(out)
    assert info["summary"]["corrupt"] == 2 and info["summary"]["no_face"] == 1
    assert {(s["source"], s["reason"]) for s in info["skipped"]} == {
        ("real/bad.jpg", "corrupt"),
        ("real/empty.jpg", "corrupt"),
        ("attack/print/grey.png", "no_face"),
    }
    rows = manifest_rows(out)
    assert len(rows) == 4
    assert {(r["label"], r["species"], r["subject"]) for r in rows} == {("real", "", "0001"), ("attack", "print", "0001")}
    assert all(cv2.imread(str(out / r["crop"])).shape == (64, 64, 3) for r in rows)
    # A resume keeps the skipped images skipped rather than decoding them again.
    assert cli.main(["prepare", str(data), "--out", str(out), "--scales", "2.7", "--size", "64", "--quiet"]) == 0
    info = prepare_json(out)
    assert info["summary"]["processed"] == 0 and info["summary"]["corrupt"] == 2


# --- bad input, through the CLI -------------------------------------------------


def _err(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_empty_dataset(tmp_path, capsys):
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "attack").mkdir()
    assert cli.main(["prepare", str(tmp_path / "data"), "--out", str(tmp_path / "c")]) == 2
    assert _err(capsys) == (
        f"tla-edge prepare: error: dataset '{tmp_path / 'data'}' has no images; expected real and attack images"
    )
    assert not (tmp_path / "c").exists()


def test_single_class_dataset(tmp_path, capsys):
    for i in range(2):
        write_image(tmp_path / "data" / "real" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    assert cli.main(["prepare", str(tmp_path / "data"), "--out", str(tmp_path / "c")]) == 2
    assert _err(capsys) == (
        f"tla-edge prepare: error: dataset '{tmp_path / 'data'}' has only real images (2) and no attack "
        "images; expected both real and attack images"
    )


def test_unknown_layout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prepare", str(tmp_path), "--out", str(tmp_path / "c"), "--layout", "coco"])
    assert exc.value.code == 2
    assert "argument --layout: invalid choice: 'coco'" in capsys.readouterr().err


def test_folder_without_layout(tmp_path, capsys):
    write_image(tmp_path / "data" / "pics" / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert cli.main(["prepare", str(tmp_path / "data"), "--out", str(tmp_path / "c")]) == 2
    err = _err(capsys)
    assert err.startswith(f"tla-edge prepare: error: dataset folder '{tmp_path / 'data'}' matches no layout; expected")
    assert "real/ and attack/<species>/" in err


def test_output_folder_that_is_not_a_crops_folder(tmp_path, capsys):
    for label in ("real", "attack"):
        write_image(tmp_path / "data" / label / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert cli.main(["prepare", str(tmp_path / "data"), "--out", str(tmp_path / "c")]) == 2
    assert "exists, is not empty and holds no manifest.csv" in _err(capsys)
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


def test_bad_scales_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare", str(tmp_path), "--out", str(tmp_path / "c"), "--scales", "2.7,big"])
    assert "scale 'big' is not a number; expected comma-separated positive numbers" in capsys.readouterr().err


# --- pure helpers ---------------------------------------------------------------


def test_parse_scales():
    assert prepare.parse_scales("2.7, 4.0,2.7") == [2.7, 4.0]
    with pytest.raises(argparse.ArgumentTypeError, match="scale '-1' is not > 0"):
        prepare.parse_scales("-1")
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        prepare.parse_scales(" , ")


def test_select_records_spreads_the_limit(tmp_path):
    recs = [datasets.Record(tmp_path / f"{i}.jpg", "real" if i < 50 else "attack", "", "", "", "train" if i % 2 else "test")
            for i in range(100)]
    picked = prepare_lib.select_records(recs, limit=4)
    assert [r.path.name for r in picked] == ["0.jpg", "33.jpg", "66.jpg", "99.jpg"]
    assert {r.split for r in prepare_lib.select_records(recs, split="train")} == {"train"}


def test_progress_bar_text():
    buf = io.StringIO()  # not a TTY: plain lines, first and last only at this pace
    bar = Progress(4, "work", unit="img", stream=buf, log_interval=3600)
    for _ in range(4):
        bar.update(postfix="ok 1")
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("work   25% |######                  |  1/4") and lines[0].endswith("ok 1")
    assert lines[1].startswith("work  100% |########################|  4/4")
    assert format_duration(75.2) == "1:15" and format_duration(3725) == "1:02:05"
    buf = io.StringIO()
    assert list(progress(range(3), desc="x", stream=buf)) == [0, 1, 2]
    assert "3/3" in buf.getvalue().splitlines()[-1]
    quiet = io.StringIO()
    with Progress(2, stream=quiet, enabled=False) as bar:
        bar.update(2)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(nuaa_dir, tmp_path, monkeypatch, capsys, signame):
    """Before the first manifest flush: a manifest is still written and the folder resumes."""
    import os
    import signal

    from tla_edge.data import datasets as ds

    real_read = ds.read_image_rgb
    calls = []

    def read_then_signal(path):
        calls.append(path)
        if len(calls) == 3:
            os.kill(os.getpid(), getattr(signal, signame))
        return real_read(path)

    monkeypatch.setattr(ds, "read_image_rgb", read_then_signal)
    before = signal.getsignal(getattr(signal, signame))  # SIG_DFL, or SIG_IGN under nohup
    out = tmp_path / "crops"
    args = ["prepare", str(nuaa_dir), "--out", str(out), "--scales", "2.0", "--limit", "8", "--quiet"]
    assert cli.main(args) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "tla-edge: interrupted"
    assert (out / "manifest.csv").is_file() and not list(out.rglob("*.tmp"))
    assert signal.getsignal(getattr(signal, signame)) == before  # restored after the run
    monkeypatch.setattr(ds, "read_image_rgb", real_read)
    assert cli.main(args) == 0  # resumes
    assert len({r["source"] for r in manifest_rows(out)}) == 8


def test_file_name_that_is_not_utf8_is_named_skipped_and_resumable(nuaa_dir, tmp_path, capsys):
    import os

    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "attack" / "print").mkdir(parents=True)
    real = sorted((nuaa_dir / "ClientRaw" / "0001").glob("*.jpg"))[0].read_bytes()
    (data / "real" / "a.jpg").write_bytes(real)
    (data / "attack" / "print" / "b.jpg").write_bytes(sorted((nuaa_dir / "ImposterRaw" / "0001").glob("*.jpg"))[0].read_bytes())
    with open(os.path.join(os.fsencode(data / "real"), b"bad\xff.jpg"), "wb") as f:
        f.write(real)
    out = tmp_path / "crops"
    args = ["prepare", str(data), "--out", str(out), "--scales", "2.0", "--quiet"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "tla-edge prepare: warning: skipping '" in err and "bad\\xff.jpg': its file name is not valid UTF-8" in err
    assert {r["source"] for r in manifest_rows(out)} == {"real/a.jpg", "attack/print/b.jpg"}
    assert prepare_json(out)["data"]["names_not_utf8"] == ["real/bad\\xff.jpg"]  # portable: relative to DATA
    assert cli.main(args) == 0  # resumes
    assert len(manifest_rows(out)) == 2


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--size", "100000"], "argument --size: '100000' is not in [16, 1024] pixels"),
        (["--size", "8"], "argument --size: '8' is not in [16, 1024] pixels"),
        (["--scales", "0.01"], "argument --scales: scale '0.01' is not in [0.5, 10]"),
        (["--scales", "2.7,1000"], "argument --scales: scale '1000' is not in [0.5, 10]"),
    ],
)
def test_size_and_scales_outside_sane_bounds(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["prepare", str(tmp_path), "--out", str(tmp_path / "c"), *flags])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_missing_files_named_by_nuaa_lists_are_said_on_the_console(nuaa_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "nuaa"
    for folder in ("ClientRaw", "ImposterRaw"):
        (data / folder / "0001").mkdir(parents=True)
        for p in sorted((nuaa_dir / folder / "0001").glob("*.jpg"))[:2]:
            shutil.copy(p, data / folder / "0001" / p.name)
    for name in ("client_train_raw.txt", "imposter_train_raw.txt"):
        shutil.copy(nuaa_dir / name, data / name)
    out = tmp_path / "crops"
    assert cli.main(["prepare", str(data), "--out", str(out), "--scales", "2.0", "--quiet"]) == 0
    err = capsys.readouterr().err
    listed = sum(1 for n in ("client_train_raw.txt", "imposter_train_raw.txt")
                 for line in (nuaa_dir / n).read_text().splitlines() if line.strip())
    assert f"tla-edge prepare: warning: {listed - 4} files named by the dataset's lists are missing" in err
    assert len(prepare_json(out)["data"]["missing_files"]) == 20


def test_prepare_crop_equals_the_device_crop_pixel_for_pixel(nuaa_dir, tmp_path):
    """What training sees (prepare's PNG) is what the device feeds the model on the same frame."""
    import shutil

    import cv2

    from tla_edge.runtime.pipeline import Pipeline

    data = tmp_path / "data"
    picks = {"real": sorted((nuaa_dir / "ClientRaw" / "0009").glob("*.jpg"))[:2],
             "attack/print": sorted((nuaa_dir / "ImposterRaw" / "0009").glob("*.jpg"))[:2]}
    for folder, paths in picks.items():
        (data / folder).mkdir(parents=True)
        for p in paths:
            shutil.copy(p, data / folder / p.name)
    # every bundled member's crop: its crop scale, crop rule and input size
    from tla_edge.runtime import assets
    from tla_edge.runtime import metadata

    members = [metadata.load(m) for m in assets.default_liveness_models()]
    size = int(members[0].input_size[0])
    assert all(tuple(m.input_size) == (size, size) for m in members)
    outs = {}
    for rule in sorted({m.crop_rule for m in members}):
        outs[rule] = tmp_path / f"crops_{rule}"
        scales = ",".join(f"{m.crop_scale:g}" for m in members if m.crop_rule == rule)
        assert cli.main(["prepare", str(data), "--out", str(outs[rule]), "--scales", scales, "--size", str(size),
                         "--crop-rule", rule, "--quiet"]) == 0
    with Pipeline(video=False, live_frames=1) as pipe:
        assert [(m.meta.crop_scale, m.meta.crop_rule) for m in pipe.models] == [
            (m.crop_scale, m.crop_rule) for m in members]
        checked = 0
        for model in pipe.models:
            rows = [r for r in manifest_rows(outs[model.meta.crop_rule])
                    if abs(float(r["scale"]) - model.meta.crop_scale) < 1e-6]
            assert len(rows) == 4 and model.input_size == (size, size)
            for row in rows:
                frame = cv2.cvtColor(cv2.imread(str(data / row["source"])), cv2.COLOR_BGR2RGB)
                result = pipe.process(frame)
                assert result.face is not None
                device = model.crop(frame, result.face)
                written = cv2.cvtColor(cv2.imread(str(outs[model.meta.crop_rule] / row["crop"])), cv2.COLOR_BGR2RGB)
                np.testing.assert_array_equal(written, device)
                assert float(row["box_x"]) == pytest.approx(result.face.x, abs=0.005)
                checked += 1
        assert checked == 4 * len(members)


def test_prepare_killed_before_its_first_manifest_is_rerun_not_refused(nuaa_crops, nuaa_dir, tmp_path, capsys):
    # SIGKILL in the first 30 s left crops without manifest.csv, and the re-run refused the folder
    out = tmp_path / "crops"
    shutil.copytree(nuaa_crops, out, ignore=shutil.ignore_patterns("manifest.csv", "prepare.json"))
    (out / "s2.0" / ".x.png.1234.tmp").write_bytes(b"half")  # a temp file the kill left behind
    assert not (out / "manifest.csv").exists() and any(out.rglob("*.png"))
    args = ["prepare", str(nuaa_dir), "--out", str(out), "--scales", "2.0,3.0", "--limit", "12", "--quiet"]
    assert cli.main(args) == 0
    assert len(manifest_rows(out)) == 24 and prepare_json(out)["summary"]["crops_written"] == 24
    # anything else in a folder without a manifest is still refused
    other = tmp_path / "other"
    shutil.copytree(nuaa_crops, other, ignore=shutil.ignore_patterns("manifest.csv", "prepare.json"))
    (other / "notes.txt").write_text("mine")
    assert cli.main(["prepare", str(nuaa_dir), "--out", str(other), "--scales", "2.0", "--quiet"]) == 2
    assert "is not empty and holds no manifest.csv" in capsys.readouterr().err
