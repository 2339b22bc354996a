#!/usr/bin/env python
"""Does calibrating scores on validation make the shipped threshold travel to an unseen dataset?

For every finished leave-one-dataset-out run in ``--work`` (``scripts/lodo.py``: every recipe folder,
direction and seed with ``metadata.json``, ``validation_scores.csv`` and ``test_scores.csv``), and every
fused pair a lodo result JSON lists through ``--fuse`` (mean score per source image, as lodo.py fuses),
this fits two calibrations of the score's logit ``z = log(p / (1 - p))`` on the **validation** scores only:

- **Platt**: ``p' = sigmoid(a z + b)``, ``a, b`` by logistic regression;
- **temperature**: ``p' = sigmoid(z / T)``, one ``T``.

Both minimise a **class-balanced** negative log-likelihood (each class weighs one half, so the real/attack
ratio of validation sets no prior) with Platt's smoothed targets (``(N+ + 1) / (N+ + 2)`` and
``1 / (N- + 2)``, which keep the fit finite when validation separates the classes), by Newton steps.

How to read it:

- A monotone calibration fitted on validation, with the threshold then chosen on the *same calibrated
  validation scores* (the validation EER, or a validation APCER target), makes the same decisions as the
  raw scores with the raw validation threshold: every validation decision is the same, and a test decision
  can only change for a test score strictly between the two validation scores that bracket the EER
  threshold (the EER threshold is interpolated between them). ``invariance`` counts both, per run.
- What calibration *can* change is shipping a **fixed operating point** instead of the validation EER
  threshold: calibrated probability 0.5, a prior-free decision. ``test_platt_p05`` and
  ``test_temperature_p05`` are the test APCER (worst species, as lodo.py's ``species_figures``), BPCER and
  ACER there, next to ``test_at_shipped`` (the raw scores at the validation EER threshold, the threshold
  lodo.py reports). Temperature scaling has no bias: its p = 0.5 is raw score 0.5, whatever ``T``.
  ``test_at_val_apcer_0.05`` (threshold at a validation APCER of 5 %) is the other fixed operating point;
  it is chosen on validation ranks, so calibration leaves it unchanged (reported once).
- ECE (10 equal-width bins of P(live), every sample weighing the same) before and after calibration, on
  validation (**chose** the calibration, so it flatters) and on test (**chose nothing**).

Every figure is a fraction (0.05 = 5 %). Validation figures chose the epoch, the threshold and the
calibration; test figures chose nothing. Per-species labels come from the crops folders' manifests, as in
lodo.py: ``--nuaa-crops``/``--msu-crops`` when given, else the crops of the recipe's lodo JSON
(``--results-dir``), else the runs' own ``metadata.json`` (the crops each run trained on).

    python scripts/calibration_check.py --work runs/lodo --out benchmarks/results/lodo_calibration.json

The result is written through a temporary name and a rename; an existing ``--out`` is kept unless
``--force``. A Markdown table (mean ± std over seeds, per recipe and direction) is printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lodo  # noqa: E402  (the leave-one-dataset-out protocol: directions, fusion, figures reused)
import protocol  # noqa: E402

from tla_edge import fileio, metrics  # noqa: E402
from tla_edge.errors import UserError  # noqa: E402
from tla_edge.runtime.metadata import portable_path  # noqa: E402

EPS = 1e-9
"""Scores are clipped to [EPS, 1 - EPS] before the logit (a score of exactly 0 or 1 has none)."""
BINS = 10
"""Equal-width bins of the expected calibration error."""
APCER_TARGET = 0.05
CALIBRATIONS = ("platt", "temperature")


# --- calibration ----------------------------------------------------------------

def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def balanced_targets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Platt's smoothed targets and class-balanced weights (each class sums to one half)."""
    y = np.asarray(y)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"{n1} bona fide and {n0} attack scores; expected at least one of each")
    t = np.where(y == 1, (n1 + 1.0) / (n1 + 2.0), 1.0 / (n0 + 2.0))
    w = np.where(y == 1, 0.5 / n1, 0.5 / n0)
    return t, w


def _nll(x: np.ndarray, theta: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    m = x @ theta
    return float(np.sum(w * (t * np.logaddexp(0.0, -m) + (1.0 - t) * np.logaddexp(0.0, m))))


def fit_logistic(x: np.ndarray, y: np.ndarray, theta0: np.ndarray, iters: int = 100) -> np.ndarray:
    """Minimises the class-balanced NLL of ``sigmoid(x @ theta)`` by Newton steps with backtracking."""
    t, w = balanced_targets(y)
    theta = np.asarray(theta0, np.float64).copy()
    for _ in range(iters):
        p = sigmoid(x @ theta)
        g = x.T @ (w * (p - t))
        if np.max(np.abs(g)) < 1e-12:
            break
        h = (x * (w * p * (1.0 - p))[:, None]).T @ x + 1e-12 * np.eye(x.shape[1])
        step = np.linalg.solve(h, g)
        base, lr = _nll(x, theta, t, w), 1.0
        while _nll(x, theta - lr * step, t, w) > base - 1e-4 * lr * float(g @ step) and lr > 1e-10:
            lr /= 2.0
        theta = theta - lr * step
    return theta


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit(score) + b)``."""
    z = logit(scores)
    a, b = fit_logistic(np.column_stack([z, np.ones_like(z)]), labels, np.array([1.0, 0.0]))
    return float(a), float(b)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """``T`` of ``sigmoid(logit(score) / T)``."""
    z = logit(scores)
    (s,) = fit_logistic(z[:, None], labels, np.array([1.0]))
    return float(1.0 / s)


def platt(a: float, b: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: sigmoid(a * logit(p) + b)


def temperature(t: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: sigmoid(logit(p) / t)


def ece(scores: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of P(live): sum over equal-width bins of (share) * |live rate - mean score|."""
    p, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def invariance(p_val: np.ndarray, y_val: np.ndarray, sp_val: list[str], p_test: np.ndarray,
               cal: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Decisions of the raw scores at the raw validation threshold vs the calibrated scores at the threshold
    chosen again on the calibrated validation scores (validation EER; validation APCER 5 %)."""
    c_val, c_test = cal(p_val), cal(p_test)
    t_raw, t_cal = metrics.eer(p_val, y_val)[1], metrics.eer(c_val, y_val)[1]
    lo = float(np.max(p_val[p_val < t_raw])) if (p_val < t_raw).any() else -np.inf
    hi = float(np.min(p_val[p_val >= t_raw])) if (p_val >= t_raw).any() else np.inf
    changed = (p_test >= t_raw) != (c_test >= t_cal)
    in_gap = (p_test > lo) & (p_test < hi)
    a_raw = metrics.threshold_at_apcer(p_val, y_val, sp_val, APCER_TARGET)
    a_cal = metrics.threshold_at_apcer(c_val, y_val, sp_val, APCER_TARGET)
    return {
        "validation_eer_decisions_changed": int(((p_val >= t_raw) != (c_val >= t_cal)).sum()),
        "test_eer_decisions_changed": int(changed.sum()),
        "test_eer_changed_outside_gap": int((changed & ~in_gap).sum()),
        "test_scores_in_gap": int(in_gap.sum()),
        "validation_apcer_0.05_decisions_changed": int(((p_val >= a_raw) != (c_val >= a_cal)).sum()),
        "test_apcer_0.05_decisions_changed": int(((p_test >= a_raw) != (c_test >= a_cal)).sum()),
    }


# --- the runs ---------------------------------------------------------------------

def finished(run: Path) -> bool:
    return all((run / f).is_file() for f in ("metadata.json", "validation_scores.csv", "test_scores.csv"))


def lodo_jsons(results_dir: Path) -> list[dict]:
    """``{name, fuse, nuaa, msu}`` of each lodo result JSON, from its ``lodo_command``."""
    out = []
    for f in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            cmd = json.loads(f.read_text()).get("lodo_command")
        except (OSError, ValueError, AttributeError):
            continue
        if not cmd:
            continue
        argv = shlex.split(cmd)
        argv = argv[:argv.index("--")] if "--" in argv else argv
        opt = {k: argv[i + 1] for i, k in enumerate(argv[:-1]) if k.startswith("--")}
        if "--name" in opt:
            out.append({"name": opt["--name"], "fuse": opt.get("--fuse"), "nuaa": opt.get("--nuaa-crops"),
                        "msu": opt.get("--msu-crops"), "file": f.name})
    return out


def recipes(work: Path, results_dir: Path) -> list[dict]:
    """Every recipe folder of ``work`` with a finished run, then every fused pair a lodo JSON lists."""
    jsons = lodo_jsons(results_dir)
    out = []
    for folder in sorted(p for p in work.iterdir() if p.is_dir()) if work.is_dir() else []:
        if any(finished(r) for r in folder.glob("*_seed*")):
            src = next((j for j in jsons if j["name"] == folder.name and not j["fuse"]), None)
            out.append({"name": folder.name, "members": [folder.name], "json": src})
    seen = set()
    for j in jsons:
        if j["fuse"] and j["name"] not in seen:
            seen.add(j["name"])
            out.append({"name": j["name"], "members": j["fuse"].split(","), "json": j})
    return out


def crops_for(recipe: dict, work: Path, args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, str]]:
    """The crops folder of each dataset key (nuaa, msu, both) and where each came from."""
    crops: dict[str, Path] = {}
    origin: dict[str, str] = {}
    for key in ("nuaa", "msu"):
        given = getattr(args, f"{key}_crops")
        if given is not None:
            crops[key], origin[key] = Path(given), "command line"
        elif recipe["json"] and recipe["json"].get(key):
            crops[key], origin[key] = Path(recipe["json"][key]), f"lodo JSON {recipe['json']['file']}"
    for member in recipe["members"]:
        for run in sorted((work / member).glob("*_seed*")):
            direction = run.name.rsplit("_seed", 1)[0]
            if direction not in lodo.DIRECTIONS or not (run / "metadata.json").is_file():
                continue
            key = lodo.DIRECTIONS[direction]["train"]
            try:
                trained_on = json.loads((run / "metadata.json").read_text())["extra"]["data"]["crops_dir"]
            except (KeyError, TypeError, ValueError):
                continue
            if key not in crops and (Path(trained_on) / "manifest.csv").is_file():
                crops[key], origin[key] = Path(trained_on), f"metadata.json of {member}/{run.name}"
    return crops, origin


_ANNOTATIONS: dict[str, dict] = {}


def annotations(crops_dir: Path) -> dict[str, dict[str, str]]:
    key = str(crops_dir.resolve())
    if key not in _ANNOTATIONS:
        _ANNOTATIONS[key] = lodo.annotations(crops_dir)
    return _ANNOTATIONS[key]


def species_of(keys: list[str], ann: dict, where: str) -> list[str]:
    missing = [k for k in keys if k not in ann]
    if missing:
        raise KeyError(f"{len(missing)} {where} sources are not in the crops manifest (first: {missing[0]})")
    return [ann[k].get("species") or "attack" for k in keys]


def figures_of(scores: np.ndarray, labels: np.ndarray, species: list[str], threshold: float) -> dict:
    f = lodo.species_figures(scores, labels, species, threshold)
    keep = ("apcer", "apcer_per_species", "bpcer", "acer", "apcer_pooled", "eer", "auc", "n_real", "n_attack")
    return {"threshold": float(threshold), **{k: f[k] for k in keep}}


def check_run(recipe: dict, direction: str, seed: int, work: Path, crops: dict[str, Path]) -> dict:
    d = lodo.DIRECTIONS[direction]
    dirs = [work / m / f"{direction}_seed{seed}" for m in recipe["members"]]
    fused = len(dirs) > 1
    meta = json.loads((dirs[0] / "metadata.json").read_text())
    for key in (d["train"], d["test"]):
        if key not in crops:
            raise KeyError(f"no crops folder known for '{key}' (pass --{key}-crops)")
    train_ann, test_ann = annotations(crops[d["train"]]), annotations(crops[d["test"]])
    val = lodo.fused_scores([protocol.read_scores(m / "validation_scores.csv") for m in dirs])
    test = lodo.fused_scores([protocol.read_scores(m / "test_scores.csv") for m in dirs])
    if d.get("test_split"):
        test = {k: v for k, v in test.items() if k in test_ann and test_ann[k].get("split") == d["test_split"]}
    vk, tk = sorted(val), sorted(test)
    y_val, p_val = np.array([val[k][0] for k in vk]), np.array([val[k][1] for k in vk])
    y_test, p_test = np.array([test[k][0] for k in tk]), np.array([test[k][1] for k in tk])
    sp_val, sp_test = species_of(vk, train_ann, "validation"), species_of(tk, test_ann, "test")

    recomputed = float(metrics.eer(p_val, y_val)[1])
    shipped = recomputed if fused else float(meta["threshold"])  # as lodo.summarise
    thr_apcer = float(metrics.threshold_at_apcer(p_val, y_val, sp_val, APCER_TARGET))
    a, b = fit_platt(p_val, y_val)
    t = fit_temperature(p_val, y_val)
    cals = {"platt": platt(a, b), "temperature": temperature(t)}
    cal_val = {n: c(p_val) for n, c in cals.items()}
    cal_test = {n: c(p_test) for n, c in cals.items()}
    return {
        "recipe": recipe["name"], "direction": direction, "seed": seed, "fused": fused,
        "model_dir": [portable_path(m) for m in dirs] if fused else portable_path(dirs[0]),
        "n_validation": len(vk), "n_test": len(tk),
        "threshold_shipped": shipped,
        "threshold_val_eer_recomputed": recomputed,
        "platt": {"a": a, "b": b, "raw_threshold_at_p05": float(sigmoid(np.array([-b / a]))[0])},
        "temperature": {"T": t, "raw_threshold_at_p05": 0.5},
        "validation_at_shipped": figures_of(p_val, y_val, sp_val, shipped),
        "validation_platt_p05": figures_of(cal_val["platt"], y_val, sp_val, 0.5),
        "validation_temperature_p05": figures_of(cal_val["temperature"], y_val, sp_val, 0.5),
        "test_at_shipped": figures_of(p_test, y_test, sp_test, shipped),
        "test_platt_p05": figures_of(cal_test["platt"], y_test, sp_test, 0.5),
        "test_temperature_p05": figures_of(cal_test["temperature"], y_test, sp_test, 0.5),
        "threshold_val_apcer_0.05": thr_apcer,
        "test_at_val_apcer_0.05": figures_of(p_test, y_test, sp_test, thr_apcer),
        "validation_ece": {"raw": ece(p_val, y_val), **{n: ece(cal_val[n], y_val) for n in cals}},
        "test_ece": {"raw": ece(p_test, y_test), **{n: ece(cal_test[n], y_test) for n in cals}},
        "invariance": {n: invariance(p_val, y_val, sp_val, p_test, c) for n, c in cals.items()},
    }


def runs_of(recipe: dict, work: Path) -> list[tuple[str, int]]:
    """(direction, seed) of every finished run of the recipe (for a fused pair: every member finished)."""
    found = []
    for run in (work / recipe["members"][0]).glob("*_seed*"):
        direction, seed = run.name.rsplit("_seed", 1)
        if direction in lodo.DIRECTIONS and seed.isdigit() and all(
                finished(work / m / run.name) for m in recipe["members"]):
            found.append((list(lodo.DIRECTIONS).index(direction), int(seed), direction))
    return [(d, s) for _, s, d in sorted(found)]


# --- summary and table --------------------------------------------------------------

PARTS = ("validation_at_shipped", "validation_platt_p05", "validation_temperature_p05", "test_at_shipped",
         "test_platt_p05", "test_temperature_p05", "test_at_val_apcer_0.05")


def spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summary(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["recipe"], {}).setdefault(r["direction"], []).append(r)
    res = {}
    for recipe, by_dir in out.items():
        res[recipe] = {}
        for direction, rs in by_dir.items():
            s = {"seeds": [r["seed"] for r in rs]}
            for part in PARTS:
                s[part] = {k: spread([r[part][k] for r in rs]) for k in ("apcer", "bpcer", "acer")}
            for part in ("validation_ece", "test_ece"):
                s[part] = {k: spread([r[part][k] for r in rs]) for k in ("raw", *CALIBRATIONS)}
            s["threshold_shipped"] = spread([r["threshold_shipped"] for r in rs])
            s["platt_a"] = spread([r["platt"]["a"] for r in rs])
            s["platt_b"] = spread([r["platt"]["b"] for r in rs])
            s["platt_raw_threshold_at_p05"] = spread([r["platt"]["raw_threshold_at_p05"] for r in rs])
            s["temperature_T"] = spread([r["temperature"]["T"] for r in rs])
            s["invariance_totals"] = {n: {k: int(sum(r["invariance"][n][k] for r in rs))
                                          for k in rs[0]["invariance"][n]} for n in CALIBRATIONS}
            res[recipe][direction] = s
    return res


def pct(s: dict) -> str:
    return f"{100 * s['mean']:.1f}" + (f"±{100 * s['std']:.1f}" if s["n"] > 1 else "")


def num(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f}" + (f"±{s['std']:.{digits}f}" if s["n"] > 1 else "")


def table(summ: dict) -> str:
    head = ("| recipe | direction | seeds | shipped thr. (val EER) | Platt p=0.5 as raw thr. | T | "
            "test APCER / BPCER / ACER % at shipped | test … at Platt p=0.5 | test … at T p=0.5 (= raw 0.5) | "
            "val ECE % raw / Platt / T | test ECE % raw / Platt / T |")
    lines = [head, "|" + "|".join([" --- "] * 11) + "|"]
    for recipe, by_dir in summ.items():
        for direction, s in by_dir.items():
            ops = [" / ".join(pct(s[p][k]) for k in ("apcer", "bpcer", "acer"))
                   for p in ("test_at_shipped", "test_platt_p05", "test_temperature_p05")]
            eces = [" / ".join(pct(s[p][k]) for k in ("raw", *CALIBRATIONS)) for p in ("validation_ece", "test_ece")]
            lines.append(f"| {recipe} | {direction} | {','.join(map(str, s['seeds']))} | "
                         f"{num(s['threshold_shipped'])} | {num(s['platt_raw_threshold_at_p05'])} | "
                         f"{num(s['temperature_T'], 2)} | {' | '.join(ops)} | {' | '.join(eces)} |")
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/lodo"), help="lodo.py's run folder (default: runs/lodo)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lodo_calibration.json"), help="result JSON")
    p.add_argument("--results-dir", type=Path, default=Path("benchmarks/results/lodo"),
                   help="lodo.py's result JSONs: their crops folders and --fuse pairs")
    p.add_argument("--nuaa-crops", type=Path, default=None, help="NUAA crops folder (species labels) for every run")
    p.add_argument("--msu-crops", type=Path, default=None, help="MSU-MFSD crops folder for every run")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "calibration_check.py"
    try:
        fileio.check_writable(args.out, args.force)
        if not args.work.is_dir():
            raise UserError(f"--work '{args.work}' is not a folder; expected lodo.py's run folder")
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows, skipped, sources = [], [], {}
    for recipe in recipes(args.work, args.results_dir):
        crops, origin = crops_for(recipe, args.work, args)
        sources[recipe["name"]] = {"members": recipe["members"],
                                   "crops": {k: portable_path(v) for k, v in crops.items()}, "crops_from": origin}
        for direction, seed in runs_of(recipe, args.work):
            try:
                rows.append(check_run(recipe, direction, seed, args.work, crops))
            except (KeyError, ValueError, OSError) as err:
                skipped.append({"recipe": recipe["name"], "direction": direction, "seed": seed,
                                "reason": str(err).strip("'\"")})
    summ = summary(rows)
    result = {
        "what": ("Score calibration fitted on validation (Platt: sigmoid(a*logit+b); temperature: "
                 "sigmoid(logit/T); class-balanced NLL, Platt's smoothed targets), and the test APCER "
                 "(worst species) / BPCER / ACER at calibrated p = 0.5 next to the raw scores at the shipped "
                 "threshold (validation EER). See scripts/calibration_check.py's docstring."),
        "protocol": ("validation = held-out subjects of the training data: chose the epoch, the shipped "
                     "threshold and the calibration; test = the other dataset (or camera), which chose "
                     "nothing. Figures are fractions (0.05 = 5 %). ECE: 10 equal-width bins."),
        "calibration": {"logit_clip": EPS, "weights": "class-balanced (each class one half)",
                        "targets": "Platt: (N+ + 1)/(N+ + 2) and 1/(N- + 2)", "ece_bins": BINS},
        "work": portable_path(args.work),
        "results_dir": portable_path(args.results_dir),
        "recipes": sources,
        "runs": rows,
        "skipped": skipped,
        "summary": summ,
        "commit": lodo.common.commit(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    fileio.write_json_atomic(args.out, result)
    print(table(summ))
    print(f"\n{len(rows)} runs ({len(skipped)} skipped) -> {portable_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
