"""Simulated attacks: the physics each step stands for, the draw, and the train flag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tla_edge import cli
from tla_edge.train import simulate

from test_train import make_crops


def rng(seed=0):
    return np.random.default_rng(seed)


def chroma(img):
    x = img.reshape(-1, 3).astype(float)
    return float(np.mean(x.max(1) - x.min(1)))


def test_print_lifts_black_and_loses_saturation():
    black = np.zeros((64, 64, 3), np.uint8)
    # paper reflects at least 5 % where the original was black (times a shading of at least 0.75)
    assert simulate.simulate_print(black, rng()).min() >= int(0.05 * 0.75 * 255)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    out = simulate.simulate_print(red, rng())
    # saturation factor at most 0.85 and the range compressed by the lifted black: chroma shrinks
    assert chroma(out) < 0.85 * chroma(red)
    assert out.dtype == np.uint8 and out.shape == red.shape


def test_replay_shows_the_subpixel_stripes():
    grey = np.full((60, 90, 3), 128, np.uint8)
    out = simulate.simulate_replay(grey, rng(3)).astype(float)
    cols = out.mean(axis=0)  # (W, 3): moire and glare average out along the rows far less than the stripes
    for c in range(3):
        lit = cols[c::3, c].mean()
        dark = np.delete(cols[:, c], np.arange(c, cols.shape[0], 3)).mean()
        assert lit > dark * 1.02, (c, lit, dark)


def test_simulations_are_seeded_and_differ_by_kind():
    img = rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a, b = simulate.simulate_print(img, rng(5)), simulate.simulate_print(img, rng(5))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, simulate.simulate_replay(img, rng(5)))
    with pytest.raises(ValueError, match=r"not an \(H, W, 3\) uint8 RGB array"):
        simulate.simulate_print(img.astype(np.float32), rng())


def test_draw_takes_real_rows_only_and_splits_the_kinds():
    images = rng(2).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    labels = np.array([1, 0] * 10)
    sim = simulate.add_simulated_attacks(images, labels, 0.6, seed=4)
    assert len(sim.images) == 6 == len(sim.kinds) == len(sim.source_rows)  # round(0.6 * 10 real)
    assert set(labels[sim.source_rows]) == {1} and len(set(sim.source_rows.tolist())) == 6
    assert sorted(sim.kinds) == ["print"] * 3 + ["replay"] * 3
    none = simulate.add_simulated_attacks(images, labels, 0.0, seed=4)
    assert none.images.shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match=r"fraction 1.5 is not in \[0, 1\]"):
        simulate.add_simulated_attacks(images, labels, 1.5, seed=0)


@pytest.mark.slow
def test_train_adds_the_simulated_attacks_to_training_only(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    crops = make_crops(tmp_path / "crops", per_group=3)
    out = tmp_path / "model"
    assert cli.main(["train", str(crops), "--out", str(out), "--alpha", "0.35", "--weights", "none",
                     "--epochs", "1", "--batch-size", "8", "--simulated-attacks", "0.5"]) == 0
    extra = json.loads((out / "metadata.json").read_text())["extra"]
    # training part: session 01, 2 subjects x 3 real crops = 6 real -> 3 simulated twins
    sim = extra["data"]["train"]["simulated_attacks"]
    assert sim["fraction_of_real"] == 0.5 and sim["print"] + sim["replay"] == 3
    assert extra["simulated_attacks"] == 0.5
    assert extra["data"]["val"]["crops"] == 12 and "simulated_attacks" not in extra["data"]["val"]
    # balanced class weights count the twins as attacks: 15 crops, 9 attacks
    assert extra["class_weight"]["0"] == pytest.approx(15 / (2 * 9))
    assert cli.main(["train", str(crops), "--out", str(tmp_path / "m2"), "--weights", "none",
                     "--simulated-attacks", "2"]) == 2
    assert "--simulated-attacks 2 is not in [0, 1]" in capsys.readouterr().err
