"""scripts/combine_crops.py and scripts/teacher_targets.py: the recipe's data tools, on small folders;
scripts/lodo.py: which runs a recipe's result JSON keeps (on fakes of the finished runs)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from tla_edge.data import crops as crops_lib

sys.path.insert(0, str(REPO / "scripts"))

import combine_crops  # noqa: E402
import lodo  # noqa: E402

from train.test_train import make_crops  # noqa: E402


def rows_of(folder):
    with open(folder / "manifest.csv") as f:
        return list(csv.DictReader(f))


def rename(folder, prefix):
    """Gives a crops folder's people and images other names (another dataset)."""
    rows = rows_of(folder)
    for r in rows:
        r["subject"] = prefix + r["subject"]
        r["source"] = prefix + r["source"]
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def run_script(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / args[0]), *map(str, args[1:])],
                          capture_output=True, text=True)


def test_combine_two_datasets_reads_like_one_crops_folder(tmp_path):
    a = make_crops(tmp_path / "a", per_group=2)
    b = rename(make_crops(tmp_path / "b", per_group=1), "x")
    out = tmp_path / "both"
    r = run_script("combine_crops.py", a, b, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = rows_of(out)
    assert len(rows) == len(rows_of(a)) + len(rows_of(b)) == 24
    assert sorted({r["subject"] for r in rows}) == ["0001", "0002", "x0001", "x0002"]
    # the crops are the inputs' files, through the links (no copies)
    loaded = crops_lib.load_crops(out)
    first = crops_lib.load_crops(a)
    np.testing.assert_array_equal(loaded.images[:len(first)], first.images)
    assert all(not p.is_symlink() and p.resolve().is_file() for p in loaded.crops)
    assert not any(p.is_file() and not p.is_symlink() for p in out.iterdir() if p.name != "manifest.csv")
    # an existing output is kept without --force
    again = run_script("combine_crops.py", a, b, "--out", out)
    assert again.returncode == 2 and f"output '{out}' already exists; pass --force" in again.stderr


def test_combine_keeps_one_split_and_one_dataset_at_two_scales(tmp_path):
    a = make_crops(tmp_path / "a", per_group=2)
    a2 = make_crops(tmp_path / "a2", per_group=2, scale=1.4)  # the same images at another scale
    rows = rows_of(a)
    for i, r in enumerate(rows):
        r["split"] = "train" if i % 2 else "test"
    with open(a / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    n = combine_crops.combine([a, a2], tmp_path / "out", {"a": "train"})
    assert n == len(rows) // 2 + len(rows_of(a2))
    assert sorted({r["scale"] for r in rows_of(tmp_path / "out")}) == ["1.4", "2.7"]


@pytest.mark.parametrize("case, message", [
    ("people", r"subject '0001' is in both .* which share no source image"),
    ("same_crop", r"source image '.*' at scale 2.7 \(pad\) is in both"),
    ("split", r"--split names \['nope'\], not an input folder name"),
])
def test_combine_refuses_merging_people_or_crops(tmp_path, case, message):
    from tla_edge.errors import UserError

    a = make_crops(tmp_path / "a", per_group=1)
    b = make_crops(tmp_path / "b", per_group=1)
    if case == "people":  # other images, same subject names
        rows = rows_of(b)
        rename(b, "x")
        with open(b / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows([dict(r, source="x" + r["source"]) for r in rows])
    with pytest.raises(UserError, match=message):
        combine_crops.combine([a, b], tmp_path / "out", {"nope": "train"} if case == "split" else {})
    assert not (tmp_path / "out").exists()


def test_teacher_targets_score_every_source_image_once(tmp_path):
    """The real Silent-Face pair on the bundled sample frames, one row per source image."""
    pytest.importorskip("onnxruntime")
    from train.test_teacher import find_teacher_dir
    from tla_edge.train import distill

    folder = find_teacher_dir()
    if folder is None:
        pytest.skip("Silent-Face ONNX files not found (expected ../shared/weights/teachers/silent-face)")
    samples = REPO / "tla_edge" / "runtime" / "assets" / "samples"
    data = tmp_path / "data"
    for label in ("real", "attack"):
        (data / label).mkdir(parents=True)
    frames = [samples / "01_person.jpg", samples / "05_printed_photo.jpg"]
    for p, label in zip(frames, ("real", "attack")):
        (data / label / p.name).write_bytes(p.read_bytes())
    crops = tmp_path / "crops"
    from tla_edge import cli

    assert cli.main(["prepare", str(data), "--out", str(crops), "--scales", "1.4,2.7", "--quiet"]) == 0
    out = tmp_path / "t.csv"
    r = run_script("teacher_targets.py", crops, data, "--out", out, "--teacher-dir", folder, "--threads", "1")
    assert r.returncode == 0, r.stderr
    targets = distill.read_targets([out])
    sources = {row["source"] for row in rows_of(crops)}
    assert set(targets) == sources and len(sources) == len(frames)
    assert all(0.0 <= p <= 1.0 and "silent-face" in t for p, t in targets.values())
    # the same number the teacher gives that face on its own (independent call, same box)
    from tla_edge.data import datasets
    from tla_edge.train import teacher as tch

    row = rows_of(crops)[0]
    box = [float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h")]
    with tch.SilentFaceTeacher(folder, num_threads=1) as t:
        p = tch.live_probability(t.score_faces(datasets.read_image_rgb(data / row["source"]), [box]))[0]
    assert targets[row["source"]][0] == pytest.approx(p, abs=1e-6)


# --- scripts/lodo.py: a recipe's JSON keeps the directions run before ---------------------------


def fake_lodo_run(direction, seed):
    """A finished run as lodo.summarise gives it, reduced to what write_result reads."""
    fig = {"acer": 0.1 * (seed + 1), "apcer": 0.2, "bpcer": 0.0, "eer": 0.05, "auc": 0.9,
           "apcer_per_species": {"print": 0.2}}
    return {"direction": direction, "seed": seed, "validation_at_shipped": fig, "test_at_shipped": fig}


@pytest.fixture
def lodo_recipe(tmp_path, monkeypatch):
    """``(parse, recorded, asked_about)``: lodo's arguments for recipe ``r`` in tmp_path, the finished runs
    (direction -> seeds) a fake ``lodo.finished_seeds`` reports (and a fake ``lodo.summarise`` sums up), and
    every direction it was asked about.

    Nothing reads ../shared, runs/ or git: prepare.json, the commit and the host facts are fakes too.
    """
    recorded: dict[str, list[int]] = {}
    asked_about: list[list[str]] = []

    def finished_seeds(args, direction):
        asked_about.append([direction])
        return sorted(recorded.get(direction, []))

    monkeypatch.setattr(lodo, "finished_seeds", finished_seeds)
    monkeypatch.setattr(lodo, "summarise", lambda args, direction, seed, model_dir: fake_lodo_run(direction, seed))
    monkeypatch.setattr(crops_lib, "read_prepare_json", lambda d: {"summary": {"folder": d.name}})
    monkeypatch.setattr(lodo.common, "commit", lambda: "abc123")
    monkeypatch.setattr(lodo, "versions", lambda: {"host": "fake"})
    (tmp_path / "out").mkdir()

    def parse(directions, seeds="0,1"):
        args, train_args = lodo.parse_args([
            "--name", "r", "--nuaa-crops", str(tmp_path / "nuaa"), "--msu-crops", str(tmp_path / "msu"),
            "--work", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out"), "--directions", directions,
            "--seeds", seeds, "--", "--epochs", "1"])
        return args, train_args

    return parse, recorded, asked_about


def test_lodo_keeps_every_recorded_direction_of_the_same_file(lodo_recipe):
    parse, recorded, asked_about = lodo_recipe
    recorded.update({"nuaa-msu": [0, 1], "laptop-android": [0], "both-msutest": [0]})
    args, _ = parse("msu-nuaa")
    # the direction asked first (runs or not), then the recorded ones in lodo's order; android-laptop has none
    assert lodo.kept_directions(args, ["msu-nuaa"]) == ["msu-nuaa", "nuaa-msu", "laptop-android"]
    # both-msutest (its own file, NAME_both.json) is never added, nor even looked for (its crops get built)
    assert not any("both-msutest" in ds for ds in asked_about)
    # several asked: their order kept, none twice
    assert lodo.kept_directions(args, ["laptop-android", "msu-nuaa"]) == ["laptop-android", "msu-nuaa",
                                                                          "nuaa-msu"]


def test_lodo_both_msutest_keeps_only_itself(lodo_recipe):
    parse, recorded, asked_about = lodo_recipe
    recorded.update({"nuaa-msu": [0], "msu-nuaa": [0], "laptop-android": [0], "android-laptop": [1]})
    args, _ = parse("both-msutest")
    assert lodo.kept_directions(args, ["both-msutest"]) == ["both-msutest"]
    assert asked_about == []  # no leave-one-dataset-out direction looked for
    with pytest.raises(SystemExit, match="run both-msutest on its own"):
        lodo.kept_directions(args, ["both-msutest", "nuaa-msu"])


def test_lodo_result_holds_every_kept_direction_complete_on_the_asked(lodo_recipe, tmp_path):
    parse, recorded, _ = lodo_recipe
    recorded.update({"nuaa-msu": [0, 1], "laptop-android": [0], "msu-nuaa": [1]})
    args, train_args = parse("msu-nuaa")
    wanted = 2  # 2 seeds x 1 direction asked
    out = lodo.write_result(args, train_args, wanted, 1.0)
    assert out == tmp_path / "out" / "r.json"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.json"]
    res = json.loads(out.read_text())
    assert sorted((r["direction"], r["seed"]) for r in res["runs"]) == [
        ("laptop-android", 0), ("msu-nuaa", 1), ("nuaa-msu", 0), ("nuaa-msu", 1)]
    assert list(res["directions"]) == ["msu-nuaa", "nuaa-msu", "laptop-android"]
    assert list(res["train_command"]) == ["msu-nuaa", "nuaa-msu", "laptop-android"]
    assert res["directions_asked"] == "msu-nuaa" and res["seeds_asked"] == "0,1"
    assert "--directions msu-nuaa " in res["lodo_command"]
    # 4 runs in all, but one of the 2 asked for: not complete
    assert res["complete"] is False
    assert set(res["mean_by_direction"]) == {"msu-nuaa", "nuaa-msu", "laptop-android"}
    nuaa_msu = res["mean_by_direction"]["nuaa-msu"]["test_at_shipped"]
    assert nuaa_msu["acer"]["n"] == 2 and nuaa_msu["acer"]["mean"] == pytest.approx(0.15)  # seeds 0 and 1
    assert res["data"]["nuaa_prepare"] == {"folder": "nuaa"} and res["data"]["msu_prepare"] == {"folder": "msu"}
    assert (res["commit"], res["host"], res["train_args"]) == ("abc123", {"host": "fake"}, ["--epochs", "1"])

    # both seeds of the asked direction finished: complete, the other directions' runs still there
    recorded["msu-nuaa"] = [0, 1]
    res = json.loads(lodo.write_result(args, train_args, wanted, 1.0).read_text())
    assert res["complete"] is True and len(res["runs"]) == 5
    # the other directions alone, however many runs, never make the asked one complete
    recorded["msu-nuaa"] = []
    recorded["nuaa-msu"] = [0, 1, 2, 3]
    res = json.loads(lodo.write_result(args, train_args, wanted, 1.0).read_text())
    assert res["complete"] is False and len(res["runs"]) == 5
    assert list(res["directions"]) == ["msu-nuaa", "nuaa-msu", "laptop-android"]


def test_a_script_refusing_an_existing_output_says_so_in_one_line():
    """make_golden.py without --force, its committed expectation present: one line naming the file, status 2."""
    golden = REPO / "tests" / "golden" / "bundled_samples.json"
    before = golden.read_bytes()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_golden.py")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("make_golden.py: error: output ") and "bundled_samples.json" in err and "--force" in err
    assert golden.read_bytes() == before


def test_lodo_fused_scores_weighted_by_member():
    a = {"x.jpg": (1, 0.2, "s1"), "y.jpg": (0, 0.8, "s2"), "only_a.jpg": (1, 0.5, "s3")}
    b = {"x.jpg": (1, 0.6, "s1"), "y.jpg": (0, 0.4, "s2")}
    assert lodo.fused_scores([a, b]) == {"x.jpg": (1, pytest.approx(0.4), "s1"), "y.jpg": (0, pytest.approx(0.6), "s2")}
    weighted = lodo.fused_scores([a, b], [0.25, 0.75])  # 0.25 * a + 0.75 * b, sources both scored
    assert weighted == {"x.jpg": (1, pytest.approx(0.5), "s1"), "y.jpg": (0, pytest.approx(0.5), "s2")}


@pytest.mark.parametrize("flags,message", [
    (["--fuse-weights", "1,3"], "--fuse-weights needs --fuse A,B"),
    (["--fuse", "p,q", "--fuse-weights", "1"], "expected 2 non-negative numbers"),
    (["--fuse", "p,q", "--fuse-weights", "1,-1"], "expected 2 non-negative numbers"),
    (["--fuse", "p,q", "--fuse-weights", "0,0"], "not all 0"),
    (["--fuse", "p,q", "--fuse-weights", "a,b"], "is not comma-separated numbers"),
])
def test_lodo_fuse_weights_refused_in_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        lodo.parse_args(["--name", "r", "--nuaa-crops", "n", "--msu-crops", "m", *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err


def test_lodo_fuse_weights_are_normalised():
    args, _ = lodo.parse_args(["--name", "r", "--nuaa-crops", "n", "--msu-crops", "m", "--fuse", "p,q",
                               "--fuse-weights", "1,3"])
    assert args.weights == [0.25, 0.75]
    args, _ = lodo.parse_args(["--name", "r", "--nuaa-crops", "n", "--msu-crops", "m", "--fuse", "p,q"])
    assert args.weights is None


def test_lodo_seed_offset_trains_another_seed_under_the_same_run_name(lodo_recipe, tmp_path):
    parse, recorded, _ = lodo_recipe
    args, train_args = lodo.parse_args([
        "--name", "r", "--nuaa-crops", str(tmp_path / "nuaa"), "--msu-crops", str(tmp_path / "msu"),
        "--work", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out"), "--directions", "nuaa-msu",
        "--seeds", "0,1", "--seed-offset", "2", "--", "--epochs", "1"])
    cmd = lodo.train_command(args, train_args, "nuaa-msu", 1)
    assert cmd[cmd.index("--seed") + 1] == "3"  # run 1 trains with seed 1 + 2
    assert lodo.run_dir(args, "nuaa-msu", 1) == tmp_path / "work" / "r" / "nuaa-msu_seed1"
    recorded.update({"nuaa-msu": [0, 1]})
    result = json.loads(lodo.write_result(args, train_args, 2, 1.0).read_text())
    assert result["seed_offset"] == 2
    assert "--seed SEED+2 " in result["train_command"]["nuaa-msu"]
    assert "--seed-offset 2" in result["lodo_command"]
    # without the option, the seed is the run's own
    args0, _ = parse("nuaa-msu")
    cmd0 = lodo.train_command(args0, train_args, "nuaa-msu", 1)
    assert cmd0[cmd0.index("--seed") + 1] == "1"
