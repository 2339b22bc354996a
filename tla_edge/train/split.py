"""The training data of the recipe: crops loaded, split into training and validation parts.

Validation is by session by default (the last of >= 2 sessions), else by
subject; a random frame split leaks neighbouring frames and is for debugging
only. NumPy only: TensorFlow is not imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from tla_edge.data import datasets
from tla_edge.data import crops as crops_lib
from tla_edge.errors import UserError
from tla_edge.runtime import preprocess
from tla_edge.runtime.metadata import portable_path


def split_validation(
    sessions: Sequence[str],
    subjects: Sequence[str],
    val_session: str | None = None,
    val_subjects: str | Sequence[str] | None = None,
    val_random: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Chooses the validation rows.

    Default: the last session when there are >= 2, else the last fifth of the
    subjects (at least one), sorted.

    Args:
      sessions: session per row.
      subjects: subject per row.
      val_session: hold out this session.
      val_subjects: hold out these subjects (list or comma-separated).
      val_random: hold out this random fraction of rows.
      seed: seed of the random split.

    Returns:
      ``(train_index, val_index, description)``.

    Raises:
      UserError: the requested session or subjects are absent, or no split
        with rows on both sides is possible.
    """
    n = len(sessions)
    all_sessions = sorted({s for s in sessions if s})
    all_subjects = sorted({s for s in subjects if s})
    if val_random is not None:
        if not 0.0 < val_random < 1.0:
            raise UserError(f"--val-random {val_random} is not a fraction in (0, 1)")
        rng = np.random.default_rng(seed)
        is_val = np.zeros(n, bool)
        is_val[rng.permutation(n)[: max(1, int(round(n * val_random)))]] = True
        desc = f"random {val_random:.0%} of frames (leaks neighbouring frames)"
    elif val_session is not None:
        is_val = np.array([datasets.same_id(s, val_session) for s in sessions])
        if not is_val.any():
            raise UserError(f"--val-session {val_session!r} is not in the crops; sessions are {all_sessions}")
        desc = f"session {val_session}"
    elif val_subjects is not None:
        wanted = [s for s in (val_subjects.split(",") if isinstance(val_subjects, str) else val_subjects) if s.strip()]
        datasets.check_known_ids("--val-subjects", wanted, list(subjects), "crops")
        is_val = np.array([any(datasets.same_id(s, w) for w in wanted) for s in subjects])
        if not is_val.any():
            raise UserError(f"--val-subjects {','.join(wanted)} are not in the crops; subjects are {all_subjects}")
        desc = f"subjects {','.join(wanted)}"
    elif len(all_sessions) >= 2:
        last = all_sessions[-1]
        is_val = np.array([s == last for s in sessions])
        desc = f"session {last} (the last of {len(all_sessions)})"
    elif len(all_subjects) >= 2:
        held = all_subjects[-max(1, len(all_subjects) // 5):]
        is_val = np.array([s in held for s in subjects])
        desc = f"subjects {','.join(held)} (the last fifth)"
    else:
        raise UserError(
            f"cannot split by session or subject: the crops have sessions {all_sessions} and "
            f"subjects {all_subjects}; pass --val-random FRACTION"
        )
    if is_val.all():
        raise UserError(f"validation ({desc}) takes every crop; nothing is left to train on")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), desc


def check_classes(labels: np.ndarray, what: str) -> None:
    """Raises UserError unless ``labels`` holds both classes (1 real, 0 attack)."""
    n_real, n_attack = int((labels == 1).sum()), int((labels == 0).sum())
    if n_real == 0 or n_attack == 0:
        have, missing = ("real", "attack") if n_attack == 0 else ("attack", "real")
        raise UserError(
            f"{what} has only {have} crops ({max(n_real, n_attack)}) and no {missing} crops; "
            "expected both real and attack crops"
        )


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights ``n / (2 n_c)`` so each class carries half the loss."""
    n = len(labels)
    return {c: float(n / (2.0 * max(1, int((labels == c).sum())))) for c in (0, 1)}


def data_summary(labels: np.ndarray, sessions: Sequence[str], subjects: Sequence[str]) -> dict:
    """Counts per class, session and subject (real/attack each)."""
    def per(keys: Sequence[str]) -> dict:
        out: dict[str, dict[str, int]] = {}
        for k, y in zip(keys, labels):
            d = out.setdefault(k or "?", {"real": 0, "attack": 0})
            d["real" if y == 1 else "attack"] += 1
        return dict(sorted(out.items()))

    return {
        "crops": int(len(labels)),
        "real": int((labels == 1).sum()),
        "attack": int((labels == 0).sum()),
        "sessions": per(sessions),
        "subjects": per(subjects),
    }


class TrainData(NamedTuple):
    """Crops resized to the model's input, split into training and validation parts."""

    crops: crops_lib.CropSet
    """The crops as loaded (sources, sessions, subjects, species per row)."""
    train_idx: np.ndarray
    """Rows of the training part."""
    val_idx: np.ndarray
    """Rows of the validation part."""
    val_desc: str
    """How validation was chosen, e.g. ``session 02 (the last of 2)``."""
    input_size: int
    """Model input side in pixels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    summary: dict
    """What the metadata keeps about the data (``extra.data``; the folder as a portable path)."""

    def pick(self, column: Sequence[str], part: str) -> list[str]:
        """One per-row column (e.g. ``crops.sessions``) of the ``"train"`` or ``"val"`` part."""
        return [column[i] for i in (self.train_idx if part == "train" else self.val_idx)]


def load_train_data(crops_dir: Path, scale: float | None = None, sessions: str | None = None,
                    val_session: str | None = None, val_subjects: str | None = None,
                    val_random: float | None = None, seed: int = 0,
                    input_size: int | None = None, crop_rule: str | None = None) -> TrainData:
    """Loads a crops folder at one scale and splits it (:func:`split_validation`).

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      scale: the crop scale (None: the only one).
      sessions: keep only these comma-separated sessions.
      val_session, val_subjects, val_random, seed: see :func:`split_validation`.
      input_size: model input side (None: the crops' side; else crops are resized).
      crop_rule: the crops' rule (None: the only one at that scale).

    Raises:
      UserError: a part lacks a class, or no split is possible.
    """
    crops = crops_lib.load_crops(crops_dir, scale=scale, sessions=sessions, crop_rule=crop_rule)
    check_classes(crops.labels, f"crops folder '{crops_dir}' at scale {crops.scale:g}")
    train_idx, val_idx, val_desc = split_validation(crops.sessions, crops.subjects, val_session, val_subjects,
                                                    val_random, seed)
    labels = crops.labels.astype(np.int64)
    check_classes(labels[train_idx], f"the training part (all but {val_desc})")
    check_classes(labels[val_idx], f"the validation part ({val_desc})")
    size = int(input_size or crops.images.shape[1])
    images = preprocess.resize_crops(crops.images, size)
    pick = lambda xs, idx: [xs[i] for i in idx]  # noqa: E731
    summary = {
        "crops_dir": portable_path(crops_dir),
        "scale": crops.scale,
        "crop_rule": crops.crop_rule,
        "crop_size": int(crops.images.shape[1]),
        "validation": val_desc,
        "train": data_summary(labels[train_idx], pick(crops.sessions, train_idx), pick(crops.subjects, train_idx)),
        "val": data_summary(labels[val_idx], pick(crops.sessions, val_idx), pick(crops.subjects, val_idx)),
    }
    return TrainData(crops, train_idx, val_idx, val_desc, size, images[train_idx], labels[train_idx],
                     images[val_idx], labels[val_idx], summary)
