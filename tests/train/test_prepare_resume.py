"""tla-edge prepare killed (SIGKILL) before its manifest resumes from its journal; nothing recomputed twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from tla_edge import cli
from tla_edge.train import prepare_resume

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert", reason="the face detector (BlazeFace through LiteRT) needs the 'runtime' extra")

SCALES = "2.0,3.0"
KILL_AT_WRITE = 8
"""The crop write the killed run dies on: the blank image is skipped, three attacks
give crops 1-6, the first real image's crop at 2.0 is 7, and 8 (its 3.0 crop) never lands."""


def make_dataset(nuaa_dir: Path, data: Path) -> Path:
    """A folder dataset: a blank (faceless) image, 3 print attacks and 3 real faces, sorted in that order."""
    picks = {"attack/print": sorted((nuaa_dir / "ImposterRaw" / "0001").glob("*.jpg"))[:3],
             "real": sorted((nuaa_dir / "ClientRaw" / "0001").glob("*.jpg"))[:3]}
    for folder, paths in picks.items():
        (data / folder).mkdir(parents=True)
        for p in paths:
            shutil.copy(p, data / folder / p.name)
    assert cv2.imwrite(str(data / "attack" / "print" / "0000_blank.png"), np.full((240, 320, 3), 128, np.uint8))
    return data


def prepare_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["prepare", str(data), "--out", str(out), "--scales", SCALES, "--quiet", *extra]


def run_killed(args: list[str], kill_at: int) -> int:
    """Runs ``tla-edge`` in a child that SIGKILLs itself on its ``kill_at``-th crop write; returns its rc."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from tla_edge import cli
        from tla_edge.train import prepare
        real, calls = prepare.write_png_atomic, []
        def write(path, rgb):
            calls.append(path)
            if len(calls) == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, rgb)
        prepare.write_png_atomic = write
        sys.exit(cli.main({args!r}))
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300).returncode


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but prepare.json, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "prepare.json"}


@pytest.fixture(scope="module")
def dataset(nuaa_dir, tmp_path_factory) -> Path:
    return make_dataset(nuaa_dir, tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def clean(dataset, tmp_path_factory) -> Path:
    """A run never interrupted: the expected manifest and crops."""
    out = tmp_path_factory.mktemp("clean") / "crops"
    assert cli.main(prepare_args(dataset, out)) == 0
    return out


@pytest.fixture(scope="module")
def killed(dataset, tmp_path_factory) -> Path:
    """What a run SIGKILLed before its manifest leaves: crops and the journal."""
    out = tmp_path_factory.mktemp("killed") / "crops"
    assert run_killed(prepare_args(dataset, out), KILL_AT_WRITE) == -9
    return out


@pytest.fixture()
def detect_calls(monkeypatch) -> list:
    """Counts the face detector's calls in this process."""
    from tla_edge.runtime import faces

    calls: list = []
    real = faces.FaceDetector.detect

    def counting(self, rgb, *a, **k):
        calls.append(rgb.shape)
        return real(self, rgb, *a, **k)

    monkeypatch.setattr(faces.FaceDetector, "detect", counting)
    return calls


def test_the_kill_left_crops_and_a_journal_but_no_manifest(killed, dataset):
    assert not (killed / "manifest.csv").exists() and not (killed / "prepare.json").exists()
    assert len(list(killed.rglob("*.png"))) == KILL_AT_WRITE - 1
    settings, lines = prepare_resume.read_journal(killed)
    assert settings["size"] == 160 and settings["detector"] == "short"
    # the blank image's skip and the three attacks' two crops each; not the real image killed half-way
    attacks = sorted(f"attack/print/{p.name}" for p in (dataset / "attack" / "print").glob("*.jpg"))
    assert [(line["source"], line["scale"], line["skip_reason"]) for line in lines] == [
        ("attack/print/0000_blank.png", "", "no_face"), *[(a, s, "") for a in attacks for s in ("2.0", "3.0")]]


def test_resume_after_sigkill_equals_a_clean_run_and_recomputes_only_the_rest(killed, clean, tmp_path,
                                                                              detect_calls, dataset, capsys):
    out = tmp_path / "crops"
    shutil.copytree(killed, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert cli.main(prepare_args(dataset, out)) == 0
    assert len(detect_calls) == 3  # the three real images; not the blank one nor the three attacks
    assert files_of(out) == files_of(clean)  # manifest.csv and every crop, byte for byte
    assert not (out / prepare_resume.JOURNAL_NAME).exists()
    kept = [p for p in before if "/real/" not in p.as_posix()]
    assert len(kept) == 6 and all(p.stat().st_mtime_ns == before[p] for p in kept)  # not rewritten
    summary = json.loads((out / "prepare.json").read_text())["summary"]
    assert (summary["processed"], summary["resumed"], summary["crops_written"]) == (3, 4, 6)
    assert "computed now      3  (kept from a previous run: 4)" in capsys.readouterr().out


def test_a_source_changed_since_the_kill_is_computed_again(killed, clean, tmp_path, detect_calls, dataset):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    out = tmp_path / "crops"
    shutil.copytree(killed, out)
    changed = sorted((data / "attack" / "print").glob("*.jpg"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    # the dataset is named by another path: the journal's dataset setting must still match
    journal = out / prepare_resume.JOURNAL_NAME
    text = journal.read_text()
    journal.write_text(text.replace(f'"dataset": "<DIR>/{dataset.name}"', f'"dataset": "<DIR>/{data.name}"'))
    assert cli.main(prepare_args(data, out)) == 0
    assert len(detect_calls) == 4  # the three real images and the changed attack
    assert files_of(out) == files_of(clean)


def test_a_cut_off_last_journal_line_is_ignored(killed, clean, tmp_path, detect_calls, dataset):
    out = tmp_path / "crops"
    shutil.copytree(killed, out)
    journal = out / prepare_resume.JOURNAL_NAME
    journal.write_bytes(journal.read_bytes()[:-25])  # the kill cut the last line short
    assert cli.main(prepare_args(dataset, out)) == 0
    assert len(detect_calls) == 4  # that line's image is computed again
    assert files_of(out) == files_of(clean)


@pytest.mark.parametrize("flags,message", [
    (["--size", "96"], "was prepared with size=160 but this run asks size=96"),
    (["--min-score", "0.7"], "was prepared with min_score=0.6 but this run asks min_score=0.7"),
])
def test_resume_of_a_journal_with_other_settings_is_refused_in_one_line(killed, tmp_path, dataset, capsys,
                                                                       flags, message):
    out = tmp_path / "crops"
    shutil.copytree(killed, out)
    before = files_of(out)
    assert cli.main(prepare_args(dataset, out, *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tla-edge prepare: error: unfinished run in '{out}' "
                                               "(prepare.partial.csv) ") and message in err[0]
    assert files_of(out) == before  # nothing changed
    assert cli.main(prepare_args(dataset, out, *flags, "--force")) == 0  # --force recomputes
    assert not (out / prepare_resume.JOURNAL_NAME).exists() and (out / "manifest.csv").is_file()


def test_a_file_that_is_not_a_journal_is_refused(killed, tmp_path, dataset, capsys):
    out = tmp_path / "crops"
    shutil.copytree(killed, out)
    (out / prepare_resume.JOURNAL_NAME).write_text("crop,source\nx,y\n")
    assert cli.main(prepare_args(dataset, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prepare.partial.csv' is not a journal of tla-edge prepare (first line 'crop,source')" \
        in err[0]


def test_kill_while_adding_a_scale_to_a_finished_folder_resumes_both(dataset, clean, tmp_path, detect_calls):
    out = tmp_path / "crops"
    assert cli.main(["prepare", str(dataset), "--out", str(out), "--scales", "2.0", "--quiet"]) == 0
    first_manifest = (out / "manifest.csv").read_bytes()
    detect_calls.clear()
    assert run_killed(prepare_args(dataset, out), 3) == -9  # two 3.0 crops land, the third never does
    assert (out / "manifest.csv").read_bytes() == first_manifest
    assert len(prepare_resume.read_journal(out)[1]) == 2
    assert cli.main(prepare_args(dataset, out)) == 0
    assert len(detect_calls) == 4  # six faces, two of them journaled
    assert files_of(out) == files_of(clean)
