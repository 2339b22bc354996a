"""tla-edge evaluate --raw on file and folder names that are not UTF-8, under a strict UTF-8 console."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert", reason="the device pipeline needs the 'runtime' extra")


def escaped(name: bytes) -> str:
    """How a report shows a name: UTF-8 kept, any other byte as ``\\xNN``."""
    return name.decode("utf-8", "backslashreplace")


def test_evaluate_raw_names_a_file_that_is_not_utf8_and_scores_every_image(nuaa_dir, tmp_path):
    data = os.path.join(os.fsencode(tmp_path), b"donn\xe9es")  # the dataset folder itself is not UTF-8
    real = sorted((nuaa_dir / "ClientRaw" / "0001").glob("*.jpg"))[:3]
    fake = sorted((nuaa_dir / "ImposterRaw" / "0001").glob("*.jpg"))[:3]
    placed = {  # where the folder layout expects them: real/[subject/], attack/<species>/
        b"real/a.jpg": real[0], b"real/caf\xe9_real.jpg": real[1], b"real/s\xf6/b.jpg": real[2],
        b"attack/print/c.jpg": fake[0], b"attack/print/caf\xe9_print.jpg": fake[1], b"attack/print/d.jpg": fake[2],
    }
    for rel, src in placed.items():
        dest = os.path.join(data, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    run = subprocess.run([sys.executable, "-m", "tla_edge.cli", "evaluate", data, "--raw", "--out", str(out),
                          "--quiet"], cwd=REPO, env=env, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode("utf-8", "backslashreplace")
    stdout = run.stdout.decode("utf-8")  # strict: the console got UTF-8 only
    assert "on <DIR>/donn\\xe9es" in stdout and "processed 3 bona fide, 3 attacks" in stdout

    # every output is UTF-8 text (strict) and names each image, the odd ones as \xNN
    with (out / "scores.csv").open(encoding="utf-8", newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert set(rows) == {escaped(rel) for rel in placed}
    assert rows["real/caf\\xe9_real.jpg"]["label"] == "real" and rows["real/s\\xf6/b.jpg"]["subject"] == "s\\xf6"
    assert all(r["decision"] in ("live", "spoof") and 0.0 <= float(r["score"]) <= 1.0 for r in rows.values())
    text = (out / "metrics.json").read_text(encoding="utf-8")
    assert "\\udc" not in text  # no lone surrogate smuggled into the JSON
    metrics = json.loads(text)
    assert metrics["data"] == "<DIR>/donn\\xe9es" and metrics["corrupt"] == 0
    assert metrics["n_real"] == 3 and metrics["n_attack"] == 3  # all six scored
    assert set(metrics["per_subject"]) == {"", "s\\xf6"}
    (out / "report.md").read_text(encoding="utf-8")
    assert all((out / name).stat().st_size > 0 for name in ("roc.png", "det.png", "hist.png", "worst_errors.png"))
