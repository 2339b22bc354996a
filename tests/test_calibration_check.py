"""scripts/calibration_check.py: Platt and temperature scaling on validation, on small synthetic runs."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))

import calibration_check as cc  # noqa: E402
import lodo  # noqa: E402


def logistic_sample(rng, n, a0, b0):
    """Scores sigmoid(z) with z uniform, labels drawn from P(live | z) = sigmoid(a0 z + b0)."""
    z = rng.uniform(-5.0, 5.0, n)
    y = (rng.random(n) < cc.sigmoid(a0 * z + b0)).astype(int)
    return cc.sigmoid(z), y


def test_platt_recovers_slope_and_balanced_intercept():
    p, y = logistic_sample(np.random.default_rng(0), 40000, 1.7, -0.8)
    a, b = cc.fit_platt(p, y)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    assert a == pytest.approx(1.7, abs=0.08)
    # class-balanced weights move the intercept by log(n0 / n1): the validation class ratio sets no prior
    assert b == pytest.approx(-0.8 + np.log(n0 / n1), abs=0.08)


def test_temperature_recovered():
    p, y = logistic_sample(np.random.default_rng(1), 40000, 1 / 2.5, 0.0)
    assert cc.fit_temperature(p, y) == pytest.approx(2.5, rel=0.05)
    p, y = logistic_sample(np.random.default_rng(2), 40000, 1 / 0.5, 0.0)
    assert cc.fit_temperature(p, y) == pytest.approx(0.5, rel=0.05)


def test_separable_validation_still_gives_finite_fit():
    p = np.array([0.01, 0.02, 0.03, 0.97, 0.98, 0.99])
    y = np.array([0, 0, 0, 1, 1, 1])
    a, b = cc.fit_platt(p, y)
    assert np.isfinite(a) and np.isfinite(b) and a > 0
    assert np.isfinite(cc.fit_temperature(p, y))


def test_ece_known_answer():
    assert cc.ece(np.array([0.05, 0.95]), np.array([0, 1])) == pytest.approx(0.05)
    assert cc.ece(np.full(4, 0.75), np.array([1, 1, 1, 0])) == pytest.approx(0.0)
    assert cc.ece(np.full(4, 0.25), np.array([1, 1, 1, 0])) == pytest.approx(0.5)


@pytest.mark.parametrize("cal", ["platt", "temperature", "cube"])
def test_eer_threshold_decisions_unchanged_by_monotone_calibration(cal):
    rng = np.random.default_rng(3)
    p_val, y_val = logistic_sample(rng, 600, 1.0, 0.3)
    p_test, _ = logistic_sample(rng, 3000, 0.7, -0.5)
    f = {"platt": lambda: cc.platt(*cc.fit_platt(p_val, y_val)),
         "temperature": lambda: cc.temperature(cc.fit_temperature(p_val, y_val)),
         "cube": lambda: (lambda p: p ** 3)}[cal]()
    inv = cc.invariance(p_val, y_val, ["print"] * len(p_val), p_test, f)
    assert inv["validation_eer_decisions_changed"] == 0
    # a test decision can only change between the two validation scores that bracket the threshold
    assert inv["test_eer_changed_outside_gap"] == 0
    assert inv["test_eer_decisions_changed"] <= inv["test_scores_in_gap"]
    assert inv["validation_apcer_0.05_decisions_changed"] == 0
    assert inv["test_apcer_0.05_decisions_changed"] == 0


def test_temperature_p05_is_raw_05():
    rng = np.random.default_rng(4)
    p, _ = logistic_sample(rng, 500, 1.0, 0.0)
    for t in (0.3, 1.0, 4.0):
        np.testing.assert_array_equal(cc.temperature(t)(p) >= 0.5, p >= 0.5)


# --- end to end, on synthetic lodo runs -----------------------------------------------

def write_manifest(folder, rows):
    folder.mkdir(parents=True)
    cols = ["crop", "source", "label", "species", "subject", "session", "split", "scale"]
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for src, label, species, subject, split in rows:
            w.writerow({"crop": "s1/" + src, "source": src, "label": label, "species": species,
                        "subject": subject, "session": "01", "split": split, "scale": "1.0"})


def write_scores(path, rows):
    with open(path, "w") as f:
        f.write("source,session,subject,label,score\n")
        for src, subject, y, s in rows:
            f.write(f"{src},01,{subject},{y},{s:.6f}\n")


def synthetic_dataset(rng, prefix, species, n):
    """(source, label, species, subject, split, score) of one dataset's crops."""
    out = []
    for i in range(n):
        y = int(i % 2 == 0)
        sp = "" if y else species[i % len(species)]
        score = float(cc.sigmoid(np.array([rng.normal(1.5 if y else -1.5, 1.5)]))[0])
        out.append((f"{prefix}/{i:04d}.jpg", y, sp, f"{prefix}{i % 6:03d}", "test" if i % 3 else "train", score))
    return out


@pytest.fixture
def lodo_tree(tmp_path):
    """Two recipes, each with nuaa-msu and msu-nuaa of seed 0, their crops, and a lodo JSON fusing them."""
    rng = np.random.default_rng(5)
    data = {"nuaa": synthetic_dataset(rng, "nuaa", ["print"], 120),
            "msu": synthetic_dataset(rng, "msu", ["print", "replay"], 180)}
    for key, rows in data.items():
        write_manifest(tmp_path / "crops" / key, [(s, "real" if y else "attack", sp, su, split)
                                                  for s, y, sp, su, split, _ in rows])
    work = tmp_path / "work"
    for k, recipe in enumerate(("r1", "r2")):
        for direction, train, test in (("nuaa-msu", "nuaa", "msu"), ("msu-nuaa", "msu", "nuaa")):
            run = work / recipe / f"{direction}_seed0"
            run.mkdir(parents=True)
            shift = 0.05 * k
            val = [(s, su, y, min(max(p + shift, 0.0), 1.0)) for s, y, _, su, _, p in data[train][:60]]
            tst = [(s, su, y, min(max(p - shift, 0.0), 1.0)) for s, y, _, su, _, p in data[test]]
            write_scores(run / "validation_scores.csv", val)
            write_scores(run / "test_scores.csv", tst)
            y_val = np.array([r[2] for r in val])
            p_val = np.array([float(f"{r[3]:.6f}") for r in val])
            meta = {"threshold": cc.metrics.eer(p_val, y_val)[1],
                    "extra": {"data": {"crops_dir": str(tmp_path / "crops" / train)}}}
            (run / "metadata.json").write_text(json.dumps(meta))
    (work / "r2" / "msu-nuaa_seed1").mkdir()  # unfinished: no scores yet
    results = tmp_path / "results"
    results.mkdir()
    (results / "r1+r2.json").write_text(json.dumps({"lodo_command": (
        f"python scripts/lodo.py --name r1+r2 --nuaa-crops {tmp_path}/crops/nuaa --msu-crops {tmp_path}/crops/msu "
        "--work work --directions nuaa-msu,msu-nuaa --seeds 0 --fuse r1,r2 --")}))
    return tmp_path, work, results


def strings(obj):
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_end_to_end_rows_summary_and_portable_paths(lodo_tree, capsys):
    tmp_path, work, results = lodo_tree
    out = tmp_path / "res" / "cal.json"
    assert cc.main(["--work", str(work), "--out", str(out), "--results-dir", str(results)]) == 0
    text = out.read_text()
    assert str(tmp_path) not in text and str(REPO) not in text
    assert not [v for v in strings(json.loads(text)) if v.startswith("/")]  # no absolute path
    res = json.loads(text)
    keys = sorted((r["recipe"], r["direction"], r["seed"]) for r in res["runs"])
    assert keys == sorted((r, d, 0) for r in ("r1", "r2", "r1+r2") for d in ("nuaa-msu", "msu-nuaa"))
    assert res["skipped"] == []
    assert res["recipes"]["r1"]["crops_from"]["nuaa"].startswith("metadata.json")
    assert res["recipes"]["r1+r2"]["crops_from"]["msu"].startswith("lodo JSON")
    for r in res["runs"]:
        test = lodo.fused_scores([cc.protocol.read_scores(work / m / f"{r['direction']}_seed0" / "test_scores.csv")
                                  for m in (["r1", "r2"] if r["fused"] else [r["recipe"]])])
        tk = sorted(test)
        p, y = np.array([test[k][1] for k in tk]), np.array([test[k][0] for k in tk])
        # the fixed operating point: Platt's p = 0.5 is raw score sigmoid(-b / a); temperature's is 0.5
        n_attack = int((y == 0).sum())
        assert r["test_platt_p05"]["bpcer"] == pytest.approx(
            ((p < r["platt"]["raw_threshold_at_p05"]) & (y == 1)).sum() / (y == 1).sum(), abs=1e-3)
        assert r["test_temperature_p05"]["apcer_pooled"] == pytest.approx(
            ((p >= 0.5) & (y == 0)).sum() / n_attack)
        assert r["test_at_shipped"]["apcer"] == max(r["test_at_shipped"]["apcer_per_species"].values())
        assert r["invariance"]["platt"]["validation_eer_decisions_changed"] == 0
        assert r["invariance"]["temperature"]["test_eer_changed_outside_gap"] == 0
        assert set(r["test_ece"]) == {"raw", "platt", "temperature"}
    fused = next(r for r in res["runs"] if r["fused"])
    assert fused["threshold_shipped"] == fused["threshold_val_eer_recomputed"]
    s = res["summary"]["r1"]["nuaa-msu"]
    assert s["seeds"] == [0] and s["test_platt_p05"]["acer"]["n"] == 1
    printed = capsys.readouterr().out
    assert printed.startswith("| recipe | direction |") and "| r1+r2 | msu-nuaa | 0 |" in printed


def test_refuses_to_overwrite_without_force(lodo_tree, capsys):
    tmp_path, work, results = lodo_tree
    out = tmp_path / "cal.json"
    out.write_text("{}\n")
    assert cc.main(["--work", str(work), "--out", str(out), "--results-dir", str(results)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err and err.startswith("calibration_check.py: error:")
    assert out.read_text() == "{}\n"
    assert cc.main(["--work", str(work), "--out", str(out), "--results-dir", str(results), "--force"]) == 0
    assert json.loads(out.read_text())["runs"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
