"""Distillation from a teacher: soft targets per source image, blended with the labels (workstation side).

    python scripts/teacher_targets.py CROPS DATA --out targets.csv     # Silent-Face P(real) per image
    tla-edge train CROPS --teacher-targets targets.csv --distill 0.3 ...

A targets file is a CSV ``source,p_live,teacher``: one row per source image of
a crops folder (the manifest's ``source`` column), ``p_live`` the teacher's
probability that the face is real. The teacher judges the source image through
its own crop of the face box ``prepare`` found, so one file serves every scale
and crop rule of that folder.

Training then fits the student to ``(1 - w) * label + w * p_live`` (binary
cross-entropy on soft targets) for every training crop; validation keeps the
hard labels, so the kept epoch and the threshold are chosen as without a
teacher. ``w`` is kept below 0.5: a soft target stays on its label's side of
0.5, so the label alone decides the class (and its class weight) and a teacher
that is wrong about a crop can soften it but never flip it.

The training columns of ``history.csv`` (``accuracy``, ``auc``) compare the
hard labels the soft targets stand for with the model's decisions
(:func:`training_metrics`); until round 8 they compared the soft targets
themselves and read 0 while distilling.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from tla_edge import fileio
from tla_edge.errors import UserError

if TYPE_CHECKING:
    from tla_edge.train.options import Recipe
    from tla_edge.train.split import TrainData

HEADER = ("source", "p_live", "teacher")
MAX_WEIGHT = 0.5
"""``--distill`` must be below this (see the module docstring)."""


def check_weight(weight: float) -> float:
    """The distillation weight, checked: ``0 <= w < 0.5``."""
    if not 0.0 <= float(weight) < MAX_WEIGHT:
        raise UserError(f"--distill {weight:g} is not in [0, {MAX_WEIGHT:g}); expected the teacher's share of "
                        "each target, below one half so the label keeps the class")
    return float(weight)


def targets_text(rows: Iterable[tuple[str, float, str]]) -> str:
    """The CSV text of ``(source, p_live, teacher)`` rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for source, p, teacher in rows:
        w.writerow([source, f"{float(p):.6f}", teacher])
    return buf.getvalue()


def write_targets(path: str | Path, rows: Iterable[tuple[str, float, str]], force: bool = False) -> Path:
    """Writes a targets file atomically (an existing file only with ``force``)."""
    out = fileio.check_writable(Path(path), force)
    fileio.write_text_atomic(out, targets_text(rows))
    return out


def read_targets(paths: Sequence[str | Path]) -> dict[str, tuple[float, str]]:
    """Reads one or more targets files into ``{source: (p_live, teacher)}``.

    Raises:
      FileNotFoundError: a file is missing.
      UserError: a wrong header, a value outside [0, 1] or not a number, or
        two files (or rows) giving one source different values.
    """
    out: dict[str, tuple[float, str]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"teacher targets '{path}' not found; expected a CSV written by "
                                    "scripts/teacher_targets.py")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = tuple(next(reader, ()))
            if header[:2] != HEADER[:2]:
                raise UserError(f"teacher targets '{path}' starts with {list(header)}; expected columns "
                                f"{','.join(HEADER)}")
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                _add_row(out, path, line_no, row)
    return out


def _add_row(out: dict[str, tuple[float, str]], path: Path, line_no: int, row: list[str]) -> None:
    where = f"teacher targets '{path}' line {line_no}"
    if len(row) < 2:
        raise UserError(f"{where} has {len(row)} column(s); expected {','.join(HEADER)}")
    try:
        p = float(row[1])
    except ValueError:
        raise UserError(f"{where}: p_live {row[1]!r} is not a number; expected a probability in [0, 1]") from None
    if not 0.0 <= p <= 1.0:
        raise UserError(f"{where}: p_live {p:g} is not in [0, 1]")
    teacher = row[2] if len(row) > 2 else ""
    if row[0] in out and abs(out[row[0]][0] - p) > 1e-6:
        raise UserError(f"{where}: source {row[0]!r} has p_live {p:g} here and {out[row[0]][0]:g} before; "
                        "expected one value per source image")
    out[row[0]] = (p, teacher)


def soft_targets(labels: np.ndarray, sources: Sequence[str], targets: Mapping[str, tuple[float, str]],
                 weight: float) -> np.ndarray:
    """``(1 - weight) * label + weight * p_live`` per crop, float32.

    Raises:
      UserError: a crop's source image has no target (the first few are named).
    """
    weight = check_weight(weight)
    missing = [s for s in sources if s not in targets]
    if missing:
        raise UserError(f"{len(missing)} of {len(sources)} training crops have no teacher target (e.g. "
                        f"{', '.join(repr(m) for m in missing[:3])}); expected targets for every source image "
                        "of the crops folder")
    p = np.array([targets[s][0] for s in sources], dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return ((1.0 - weight) * y + weight * p).astype(np.float32)


def summary(paths: Sequence[str | Path], targets: Mapping[str, tuple[float, str]], sources: Sequence[str],
            labels: np.ndarray, weight: float) -> dict:
    """What the model's metadata keeps about the distillation (file names, teacher, agreement with the labels)."""
    from tla_edge.runtime.metadata import portable_path

    p = np.array([targets[s][0] for s in sources])
    y = np.asarray(labels)
    teachers = sorted({targets[s][1] for s in sources if targets[s][1]})
    return {
        "weight": weight,
        "targets": [portable_path(x) for x in paths],
        "teacher": teachers,
        "train_crops": int(len(sources)),
        "teacher_agrees_at_0.5": round(float(np.mean((p >= 0.5) == (y == 1))), 4) if len(y) else None,
        "mean_p_live": {"real": round(float(p[y == 1].mean()), 4) if (y == 1).any() else None,
                        "attack": round(float(p[y == 0].mean()), 4) if (y == 0).any() else None},
    }


def fit_targets(recipe: "Recipe", data: "TrainData") -> np.ndarray:
    """The training part's targets: the labels, or with ``recipe.distill`` > 0 the blend with the teacher's."""
    if recipe.distill <= 0:
        return data.y_train.astype(np.float32)
    targets = read_targets(recipe.teacher_targets)
    n = len(data.train_idx)  # rows after these are simulated attacks: their target is their label, 0
    soft = soft_targets(data.y_train[:n], data.pick(data.crops.sources, "train"), targets, recipe.distill)
    return np.concatenate([soft, data.y_train[n:].astype(np.float32)])


def metadata_summary(recipe: "Recipe", data: "TrainData") -> dict | None:
    """``extra.distill`` of a trained model's metadata (None without a teacher)."""
    if recipe.distill <= 0:
        return None
    targets = read_targets(recipe.teacher_targets)
    return summary(recipe.teacher_targets, targets, data.pick(data.crops.sources, "train"),
                   data.y_train[:len(data.train_idx)], recipe.distill)


# --- training metrics on soft targets ------------------------------------------


def training_metrics(keras: Any, soft_targets: bool = False) -> list:
    """``accuracy`` (logit >= 0) and ``auc``; on soft targets, of the hard labels they stand for.

    Keras compares the target itself with the decision: a distilled target
    (0.8 + 0.2 p for a real face, 0.2 p for an attack) never equals 0 or 1, so
    the training columns of ``history.csv`` read 0 while distilling. Each soft
    target stays on its label's side of 0.5 (the distill weight is under 0.5),
    so ``target >= 0.5`` is the label, and that is what these metrics compare.
    Training only: a model compiled with them is recompiled with the plain
    metrics before it is saved (:func:`tla_edge.train.recipe.write_model`), so ``model.keras`` loads
    in any Keras, without tla-edge's classes.
    """
    accuracy = keras.metrics.BinaryAccuracy
    auc = keras.metrics.AUC
    if soft_targets:
        accuracy, auc = _hard_label(keras, accuracy), _hard_label(keras, auc)
    return [accuracy(name="accuracy", threshold=0.0), auc(name="auc", from_logits=True)]


def _hard_label(keras: Any, base: type) -> type:
    """``base`` whose ``update_state`` sees ``y_true >= 0.5`` as 0/1 instead of the soft target."""
    ops = keras.ops

    class HardLabel(base):  # type: ignore[misc, valid-type]
        def update_state(self, y_true, y_pred, sample_weight=None):
            hard = ops.cast(ops.greater_equal(ops.cast(y_true, "float32"), 0.5), "float32")
            return super().update_state(hard, y_pred, sample_weight)

    HardLabel.__name__ = HardLabel.__qualname__ = f"HardLabel{base.__name__}"
    return HardLabel


def soft(targets: np.ndarray | None) -> bool:
    """Whether training targets hold anything but 0 and 1 (distillation's blends)."""
    return targets is not None and not bool(np.isin(np.asarray(targets), (0.0, 1.0)).all())
