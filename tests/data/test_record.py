"""tla-edge record: pure helpers, resuming after an interrupt, and recording NUAA frames from a folder."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tla_edge import cli

from tla_edge.data import datasets

from tla_edge.data import recording, recording_folder
from tla_edge.errors import UserError

from conftest import nuaa_folder
from tla_edge.runtime.sources import Frame


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# --- pure helpers ---------------------------------------------------------------


def test_parse_label():
    assert recording.parse_label("real") == ("real", "")
    assert recording.parse_label("Live") == ("real", "")
    assert recording.parse_label("print") == ("attack", "print")
    assert recording.parse_label("replay") == ("attack", "replay")
    assert recording.parse_label("spoof") == ("attack", "attack")
    with pytest.raises(UserError, match=r"--label '\.\./x' is not real or an attack species"):
        recording.parse_label("../x")
    with pytest.raises(UserError, match="--subject 'a/b' is not a plain name"):
        recording.check_id("--subject", "a/b")
    assert recording.check_id("--session", "") == ""


def test_frame_problem_keeps_one_usable_face_only():
    shape = (480, 640, 3)
    assert recording.frame_problem([], shape) == "no_face"
    assert recording.frame_problem([(100, 100, 80, 80), (300, 100, 80, 80)], shape) == "several_faces"
    assert recording.frame_problem([(100, 100, 20, 20)], shape) == "face_too_small"
    assert recording.frame_problem([(600, 100, 80, 80)], shape) == "face_cut_off"  # half outside on the right
    assert recording.frame_problem([(100, 100, 80, 80)], shape) is None


def test_class_folder_and_manifest_line():
    assert recording.class_folder("real", "", "ann") == Path("real/ann")
    assert recording.class_folder("attack", "print", "") == Path("attack/print")
    line = recording.manifest_line({"path": "real/a,b.jpg", "label": "real"})
    assert line.endswith("\n") and line.count("\n") == 1
    assert next(csv.reader([line]))[:2] == ["real/a,b.jpg", "real"]  # the comma is quoted


# --- interrupt and resume ---------------------------------------------------------


def _frames(n: int, interrupt_after: int | None = None) -> Iterator[Frame]:
    rng = np.random.default_rng(n)
    for i in range(n):
        if interrupt_after is not None and i == interrupt_after:
            raise KeyboardInterrupt
        yield Frame(i, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), i * 33, f"f{i}", 0.0)


def _rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_interrupted_run_keeps_its_frames_and_a_second_run_appends(tmp_path):
    out = tmp_path / "rec"
    rec = recording.Recorder(out, "attack", "print", "s1", "01", "fake", "cam")
    result = recording.record(_frames(10, interrupt_after=3), rec, detector=None)
    assert result["stopped"] == "interrupted" and result["kept"] == 3
    rows = _rows(out)
    assert len(rows) == 3 and all((out / r["path"]).is_file() for r in rows)
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    # A killed writer can tear the last manifest line: the next run drops it, then appends.
    with open(out / "manifest.csv", "a") as f:
        f.write("attack/print/s1/torn.jpg,att")
    assert recording_folder.check_out_dir(out) is True
    rec2 = recording.Recorder(out, "attack", "print", "s1", "01", "fake", "cam")
    rec2.run_id = rec.run_id  # same second: names must still be new
    result = recording.record(_frames(4), rec2, detector=None, every=2)
    assert result["kept"] == 2 and result["looked_at"] == 2 and result["seen"] == 4
    rows = _rows(out)
    assert len(rows) == 5 and len({r["path"] for r in rows}) == 5
    assert all((out / r["path"]).is_file() for r in rows)
    assert [r["frame"] for r in rows] == ["f0", "f1", "f2", "f0", "f2"]  # the torn row is gone
    assert len(list((out / "attack" / "print" / "s1").iterdir())) == 5  # nothing overwritten
    data = datasets.load_dataset(out)
    assert data.layout == "csv" and len(data) == 5
    assert {(r.label, r.species, r.subject, r.session) for r in data} == {("attack", "print", "s1", "01")}


def test_frames_limit_stops(tmp_path):
    rec = recording.Recorder(tmp_path / "rec", "real", "", "", "", "fake", "cam", fmt="png")
    result = recording.record(_frames(10), rec, detector=None, frames=4)
    assert result["kept"] == 4 and result["stopped"] == "4 frames"
    rows = _rows(tmp_path / "rec")
    assert [r["path"].split("/")[0] for r in rows] == ["real"] * 4 and rows[0]["resolution"] == "64x48"
    # PNG is lossless: the file holds the frame exactly (RGB in, RGB back)
    first = datasets.read_image_rgb(tmp_path / "rec" / rows[0]["path"])
    assert np.array_equal(first, next(_frames(10)).rgb)


# --- refusals: one line, nothing lost ---------------------------------------------


def _folder_dataset(root: Path) -> Path:
    import cv2

    for sub in ("real/a", "attack/print/a"):
        (root / sub).mkdir(parents=True)
        cv2.imwrite(str(root / sub / "x.png"), np.zeros((8, 8, 3), np.uint8))
    return root


def test_refuses_to_record_into_another_dataset(tmp_path, capsys):
    other = _folder_dataset(tmp_path / "other")
    before = _files(other)
    rc = cli.main(["record", "--source", str(tmp_path), "--label", "real", "--out", str(other), "--headless"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith(f"tla-edge record: error: --out '{other}' holds a dataset of the folder layout")
    assert _files(other) == before
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        recording_folder.check_out_dir(tmp_path / "file.txt")
    with pytest.raises(UserError, match="holds 1 other files or folders"):
        (tmp_path / "misc").mkdir()
        (tmp_path / "misc" / "notes.txt").write_text("x")
        recording_folder.check_out_dir(tmp_path / "misc")


def test_refuses_to_record_into_nuaa(nuaa_dir, tmp_path, capsys):
    rc = cli.main(["record", "--source", str(tmp_path), "--label", "real", "--out", str(nuaa_dir), "--headless"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "holds a dataset of the nuaa layout, not a recording" in err


def test_source_without_a_face_writes_nothing(tmp_path, capsys):
    import cv2

    src = tmp_path / "blank"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), np.full((240, 320, 3), 40 * i, np.uint8))
    out = tmp_path / "rec"
    rc = cli.main(["record", "--source", str(src), "--label", "real", "--out", str(out), "--headless"])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert rc == 2 and err.startswith("tla-edge record: error: source")
    assert "gave 3 frames but none with one usable face (skipped: no_face 3); nothing was written" in err
    assert not out.exists()


# --- real frames ------------------------------------------------------------------


def test_record_nuaa_folder_as_a_camera(nuaa_dir, tmp_path, capsys):
    real = nuaa_folder(nuaa_dir, tmp_path, "real", "0001", "01", 8)
    prints = nuaa_folder(nuaa_dir, tmp_path, "print", "0001", "01", 6)
    out = tmp_path / "rec"
    assert cli.main(["record", "--source", str(real), "--label", "real", "--subject", "0001", "--session", "01",
                     "--every", "2", "--out", str(out), "--headless"]) == 0
    assert "kept 4 of 4 frames looked at (8 read) as real" in capsys.readouterr().out
    assert cli.main(["record", "--source", str(prints), "--label", "print", "--subject", "0001",
                     "--session", "01", "--out", str(out), "--headless", "--frames", "5"]) == 0
    summary = capsys.readouterr().out
    assert "appended to" in summary and "now 9 frames (print 5, real 4)" in summary
    rows = _rows(out)
    assert tuple(rows[0]) == recording.COLUMNS
    # frames are NUAA's own, in source order (every 2nd of the real ones)
    assert [r["frame"] for r in rows[:4]] == sorted(p.name for p in real.iterdir())[::2]
    assert {r["camera"] for r in rows} == {real.name, prints.name}
    assert {r["resolution"] for r in rows} == {"640x480"}
    data = datasets.load_dataset(out)
    assert data.layout == "csv"
    assert sorted((r.label, r.species) for r in data) == [("attack", "print")] * 5 + [("real", "")] * 4
    assert {(r.subject, r.session) for r in data} == {("0001", "01")}
    # the JPEG holds the NUAA frame (quality 95: close, not exact)
    got = datasets.read_image_rgb(out / rows[0]["path"]).astype(int)
    want = datasets.read_image_rgb(real / rows[0]["frame"]).astype(int)
    assert np.abs(got - want).mean() < 3.0


def test_refuses_a_crops_folder_and_reads_a_recording_through_its_manifest(tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    (crops / "manifest.csv").write_text("crop,source,label,scale\ns3.5/a.png,a.jpg,real,3.5\n")
    with pytest.raises(UserError, match="holds a crops folder written by tla-edge prepare, not a recording"):
        recording_folder.check_out_dir(crops)
    # real/ + attack/ alone is the folder layout (no session); with a recording's manifest, the CSV layout
    data = _folder_dataset(tmp_path / "data")
    assert datasets.detect_layout(data) == "folder"
    (data / "manifest.csv").write_text(
        recording.manifest_line({c: c for c in recording.COLUMNS})
        + recording.manifest_line({"path": "real/a/x.png", "label": "real", "subject": "a", "session": "07"}))
    assert datasets.detect_layout(data) == "csv"
    assert [(r.subject, r.session) for r in datasets.load_dataset(data)] == [("a", "07")]


# --- one manifest reader, one label vocabulary (issue 18, items 9, 10, 11) ----------------


def _recording(out: Path, frames: int = 2) -> Path:
    rec = recording.Recorder(out, "real", "", "s1", "01", "fake", "cam", fmt="png")
    recording.record(_frames(frames), rec, detector=None)
    return out


def test_appending_to_a_manifest_with_a_one_column_row_is_refused_by_line(tmp_path, capsys):
    out = _recording(tmp_path / "rec")
    with open(out / "manifest.csv", "a") as f:
        f.write("stray\n")
    # was a TypeError traceback from the summary, after the frames were recorded
    with pytest.raises(UserError, match=r"^CSV '.*manifest.csv' line 4 has 1 column\(s\); expected 11 \(path,label,"):
        recording_folder.check_out_dir(out)
    with pytest.raises(UserError, match=r"line 4 has 1 column"):
        recording_folder.recording_summary(out)


def test_record_labels_are_read_back_as_written():
    # `--label 1` was filed as attack species "1" while the CSV reader takes 1 as real
    assert recording.parse_label("1") == ("real", "")
    assert recording.parse_label("bona-fide") == ("real", "")
    assert recording.parse_label("0") == ("attack", "attack")
    assert recording.parse_label("print_attack") == ("attack", "print")
    for text in ("real", "1", "live", "print", "0", "spoof", "print_attack", "banana"):
        label, species = recording.parse_label(text)
        read_label, read_species = datasets.parse_label(label)
        assert (read_label, species or read_species or "attack") == (label, species or "attack")


def test_a_manifest_with_a_non_utf8_byte_is_refused_not_read_as_folders(tmp_path):
    out = _recording(tmp_path / "rec")
    (out / "manifest.csv").write_bytes((out / "manifest.csv").read_bytes().replace(b"cam", b"c\xe9m", 1))
    # was read as the folder layout: subjects and sessions gone
    with pytest.raises(UserError, match=r"^CSV '.*manifest.csv' is not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        datasets.load_dataset(out)


def test_duplicated_manifest_rows_are_refused_with_their_lines(tmp_path):
    out = _recording(tmp_path / "rec")
    lines = (out / "manifest.csv").read_text().splitlines(keepends=True)
    (out / "manifest.csv").write_text("".join(lines + lines[1:2]))
    with pytest.raises(UserError, match=r"^CSV '.*' lines 2 and 4 list 'real/s1/01_.*\.png' twice; expected each image once$"):
        datasets.load_dataset(out)


def test_rows_naming_missing_images_are_counted_and_named(tmp_path):
    out = _recording(tmp_path / "rec", frames=3)
    rows = _rows(out)
    (out / rows[1]["path"]).unlink()
    data = datasets.load_dataset(out)
    assert len(data) == 2 and data.missing == 1
    assert data.notes == [f"1 CSV rows name files missing on disk and were skipped (first: line 3 '{rows[1]['path']}')"]


# --- two writers, one folder (issue 18, item 4) ---------------------------------------------


def test_two_runs_started_in_the_same_second_get_different_run_ids(tmp_path):
    # run ids were to the second: two runs collided on file names, one frame replaced another
    ids = {recording.Recorder(tmp_path / "rec", "real", "", "", "", "fake", "cam").run_id for _ in range(20)}
    assert len(ids) == 20


def test_a_second_writer_into_one_folder_is_refused_and_the_first_keeps_its_frames(tmp_path):
    out = tmp_path / "rec"
    first = recording.Recorder(out, "real", "", "s1", "01", "fake", "cam", fmt="png")
    second = recording.Recorder(out, "attack", "print", "s1", "01", "fake", "cam", fmt="png")
    frame = next(_frames(1)).rgb
    first.write(frame, "f0")
    with pytest.raises(UserError, match=r"^--out '.*rec' is being written by another tla-edge record \(lock "):
        second.write(frame, "g0")
    first.write(frame, "f1")
    first.close()
    second.write(frame, "g0")  # the lock is released with the first run
    second.close()
    rows = _rows(out)
    assert [r["frame"] for r in rows] == ["f0", "f1", "g0"]
    assert len({r["path"] for r in rows}) == 3 and all((out / r["path"]).is_file() for r in rows)


def test_a_stream_that_stalls_says_the_kept_frames_are_saved(tmp_path):
    # it ended with rc 2 and the stream's message only, as if everything was lost
    def stalling() -> Iterator[Frame]:
        yield from _frames(3)
        raise UserError("stream 'rtsp://cam' delivered no frame for 5 s")

    rec = recording.Recorder(tmp_path / "rec", "real", "", "", "", "fake", "cam", fmt="png")
    with pytest.raises(UserError, match=r"^stream 'rtsp://cam' delivered no frame for 5 s; the 3 frames kept before "
                                        r"it are saved in '.*rec' \(run the same command again to add more\)$"):
        recording.record(stalling(), rec, detector=None)
    assert len(_rows(tmp_path / "rec")) == 3
