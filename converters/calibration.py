"""Crops for conversion: calibration sets, the validation holdout, QAT training crops.

Reads a crops folder written by ``tla-edge prepare`` (through
:func:`tla_edge.data.crops.load_crops`) with errors that say what the crops
are for; draws calibration crops stratified by class and attack species; and
decides which part of a folder validates a converted model (parity) and which
part calibrates it and fine-tunes QAT (:func:`held_out`).

The stratified random draw (:func:`stratified_indices`: a quota per class and
species, random within each) is a different idea from the evenly spaced
``limit`` selections of ``prepare`` and ``evaluate`` (deterministic, over an
ordered list), so it stays here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

from tla_edge.data import crops as crops_lib
from tla_edge.data import datasets
from tla_edge.errors import UserError
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.runtime import preprocess

DEFAULT_CALIBRATION_SAMPLES = 300
"""Calibration crops drawn by default."""


class CalibrationSet(NamedTuple):
    """Crops drawn for calibration (or QAT), with what they are."""

    images: np.ndarray
    """``(N, H, W, 3)`` uint8 RGB crops."""
    labels: np.ndarray
    """``(N,)`` 1 real, 0 attack."""
    species: list[str]
    """Attack species per crop (``""`` for real)."""
    sessions: list[str]
    """Capture session per crop."""
    counts: dict[str, int]
    """Crops drawn per stratum: ``"real"`` and each attack species."""
    available: int
    """Crops there were to draw from."""
    crops_dir: str
    """The crops folder."""
    scale: float
    """The crop scale read."""


def stratified_indices(
    strata: Sequence[str], n: int, seed: int = 0
) -> np.ndarray:
    """Draws up to ``n`` indices spread evenly over strata, at random within each.

    Each stratum gets ``n // k`` (the first ones one more for the remainder);
    what a small stratum cannot give goes to the others, so the total is
    ``min(n, len(strata))``.

    Args:
      strata: the stratum of each row, e.g. ``"real"``, ``"print"``.
      n: how many to draw.
      seed: random seed.

    Returns:
      Sorted row indices.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    order = {k: rng.permutation(v).tolist() for k, v in sorted(groups.items())}
    want = min(int(n), len(strata))
    quota = {k: 0 for k in order}
    left = want
    while left > 0:
        open_ = [k for k in order if quota[k] < len(order[k])]
        share, extra = divmod(left, len(open_))
        for j, k in enumerate(open_):
            give = min(share + (1 if j < extra else 0), len(order[k]) - quota[k])
            quota[k] += give
            left -= give
    picked = [i for k in order for i in order[k][: quota[k]]]
    return np.array(sorted(picked), dtype=np.int64)


def strata_of(labels: Sequence[int], species: Sequence[str]) -> list[str]:
    """``"real"`` for bona fide rows, the attack species (or ``"attack"``) otherwise."""
    return ["real" if int(y) == 1 else (s or "attack") for y, s in zip(labels, species)]


def load_crop_set(
    crops_dir: str | Path,
    scale: float | None = None,
    input_size: Sequence[int] | None = None,
    sessions: str | Iterable[str] | None = None,
    what: str = "calibration",
    resize: bool = False,
    subjects: str | Iterable[str] | None = None,
    crop_rule: str | None = None,
) -> Any:
    """Reads a crops folder through :func:`tla_edge.data.crops.load_crops`, with clear errors.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      scale: the crop scale the model was trained on (its metadata's
        ``crop_scale``); None when the folder holds one scale.
      input_size: the model's ``(height, width)``; crops of another size are refused.
      sessions: keep only these sessions (None: all).
      what: what the crops are for, for messages (``"calibration"``, ``"validation"``).
      resize: resize crops of another size to ``input_size`` the way
        ``tla-edge train --input-size`` does, instead of refusing them.
      subjects: keep only these subjects (None: all).
      crop_rule: the model's crop rule (its metadata's ``crop_rule``); None
        when the folder holds one rule at that scale.

    Returns:
      The :class:`tla_edge.data.crops.CropSet`.

    Raises:
      FileNotFoundError: the folder does not exist.
      UserError: the folder holds no crops (no manifest, or an empty one), or
        none at this scale / session.
      ValueError: the crops' size differs from ``input_size``.
    """
    crops_dir = Path(crops_dir)
    if not crops_dir.is_dir():
        raise FileNotFoundError(f"{what} crops folder '{crops_dir}' not found")
    if not (crops_dir / datasets.MANIFEST_NAME).is_file():
        found = sum(1 for _ in crops_dir.rglob("*.png"))
        raise UserError(
            f"{what} crops folder '{crops_dir}' has no {datasets.MANIFEST_NAME} "
            f"({found} PNG files); expected a folder written by 'tla-edge prepare DATA --out CROPS'"
        )
    if not crops_lib.read_manifest(crops_dir):
        raise UserError(
            f"{what} crops folder '{crops_dir}' is empty (its manifest lists no crops); "
            "expected crops written by 'tla-edge prepare DATA --out CROPS'"
        )
    if scale is not None:
        scales = sorted({float(r["scale"]) for r in crops_lib.read_manifest(crops_dir)})
        if len(scales) == 1 and abs(scales[0] - float(scale)) > 1e-6:
            raise UserError(
                f"{what} crops in '{crops_dir}' are at crop scale {scales[0]:g} but the model was "
                f"trained at {float(scale):g}; prepare crops with --scales {float(scale):g}"
            )
    crops = crops_lib.load_crops(crops_dir, scale=scale, sessions=sessions, subjects=subjects, crop_rule=crop_rule)
    if input_size is not None:
        got = tuple(int(v) for v in crops.images.shape[1:3])
        want = tuple(int(v) for v in input_size)
        if got != want and resize and want[0] == want[1]:
            # The same resize as training (tla_edge.train.split), so calibration and
            # parity see the pixels the model was trained on.

            crops.images = preprocess.resize_crops(crops.images, want[0])
        elif got != want:
            raise ValueError(
                f"{what} crops in '{crops_dir}' are {got[0]}x{got[1]} but the model's input is "
                f"{want[0]}x{want[1]}; prepare crops with --size {want[0]}, or pass --resize-crops "
                "to resize them as tla-edge train --input-size does"
            )
    return crops


def calibration_set(
    crops_dir: str | Path,
    n: int = DEFAULT_CALIBRATION_SAMPLES,
    seed: int = 0,
    scale: float | None = None,
    input_size: Sequence[int] | None = None,
    sessions: str | Iterable[str] | None = None,
    resize: bool = False,
    subjects: str | Iterable[str] | None = None,
    crop_rule: str | None = None,
) -> CalibrationSet:
    """Draws calibration crops from a prepared crops folder, stratified by class and species.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      n: how many crops (all of them when there are fewer).
      seed: random seed of the draw.
      scale: the model's crop scale (None: the folder's only scale).
      input_size: the model's ``(height, width)``; crops of another size are refused.
      sessions: draw only from these sessions (None: all).
      resize: resize crops of another size (see :func:`load_crop_set`).
      subjects: draw only from these subjects (None: all).
      crop_rule: the model's crop rule (None: the folder's only one at that scale).

    Returns:
      The :class:`CalibrationSet` (uint8 crops; normalise them with
      :func:`representative_dataset`).

    Raises:
      FileNotFoundError, UserError, ValueError: see :func:`load_crop_set`;
        also ValueError for ``n < 1``.
    """
    if int(n) < 1:
        raise ValueError(f"calibration sample count {n!r} is not >= 1")
    crops = load_crop_set(crops_dir, scale, input_size, sessions, "calibration", resize, subjects, crop_rule)
    strata = strata_of(crops.labels, crops.species)
    idx = stratified_indices(strata, n, seed)
    counts: dict[str, int] = {}
    for i in idx:
        counts[strata[i]] = counts.get(strata[i], 0) + 1
    return CalibrationSet(
        images=crops.images[idx],
        labels=np.asarray(crops.labels)[idx].astype(np.int64),
        species=[crops.species[i] if int(crops.labels[i]) == 0 else "" for i in idx],
        sessions=[crops.sessions[i] for i in idx],
        counts=dict(sorted(counts.items())),
        available=len(strata),
        crops_dir=str(crops_dir),
        scale=float(crops.scale),
    )


# --- which crops validate, which calibrate ------------------------------------------


class Holdout(NamedTuple):
    """Which crops validate (parity) and which calibrate and fine-tune."""

    kind: str | None
    """``"sessions"``, ``"subjects"`` or None (validate on all crops)."""
    values: list[str]
    """The held-out sessions or subjects."""
    source: str
    """Where the choice came from: ``--val-session``, ``--val-subjects``, ``metadata`` or ``none``."""

    def describe(self) -> str:
        """E.g. ``session 02`` or ``subjects 0008,0009``; ``all crops`` without a holdout."""
        if self.kind is None:
            return "all crops"
        word = self.kind[:-1] if len(self.values) == 1 else self.kind
        return f"{word} {','.join(self.values)}"

    def filters(self, held_out: bool, crops_dir: Path | None = None) -> dict[str, list[str] | None]:
        """``load_crops`` filters for the held-out rows, or for the others (needs ``crops_dir``)."""
        if self.kind is None:
            return {"sessions": None, "subjects": None}
        values = self.values
        if not held_out:
            column = self.kind[:-1]  # manifest columns are "session" and "subject"
            present = sorted({r.get(column, "") for r in crops_lib.read_manifest(crops_dir)})
            values = [v for v in present if not any(datasets.same_id(v, h) for h in self.values)]
            if not values:
                return {"sessions": None, "subjects": None}
        return {"sessions": values if self.kind == "sessions" else None,
                "subjects": values if self.kind == "subjects" else None}


def held_out(meta: metadata_lib.ModelMetadata | None, val_session: str | None,
             val_subjects: str | None, val_dir: Path | None = None) -> Holdout:
    """The validation part: the flags, else what the model was validated on (its metadata).

    ``tla-edge train`` records its crops folder and the crops per session and
    subject of its training and validation parts; when ``val_dir`` is that
    folder and the validation sessions (or subjects) are disjoint from the
    training ones, those are held out here too. Another folder is used whole.

    Args:
      meta: the model's metadata (None: no holdout from it).
      val_session: validate on this session only (``--val-session``).
      val_subjects: validate on these comma-separated subjects only (``--val-subjects``).
      val_dir: the validation crops folder.

    Returns:
      The :class:`Holdout`.
    """
    if val_session:
        return Holdout("sessions", [val_session], "--val-session")
    if val_subjects:
        return Holdout("subjects", [v.strip() for v in val_subjects.split(",") if v.strip()], "--val-subjects")
    data = ((meta.extra if meta else {}) or {}).get("data") or {}
    trained_on = data.get("crops_dir")
    if val_dir is not None and (not trained_on or Path(trained_on).resolve() != Path(val_dir).resolve()):
        return Holdout(None, [], "none")
    train, val = data.get("train") or {}, data.get("val") or {}
    for kind in ("sessions", "subjects"):
        v = sorted(k for k in (val.get(kind) or {}) if k and k != "?")
        t = {k for k in (train.get(kind) or {}) if k and k != "?"}
        if v and t and not (set(v) & t):
            return Holdout(kind, v, "metadata")
    return Holdout(None, [], "none")


# --- the crops of a convert run ---------------------------------------------------------


class CropOptions(NamedTuple):
    """Where the calibration, validation and QAT crops come from."""

    calib: Path | None = None
    """Crops folder to calibrate int8 and fine-tune QAT on (None: the one in the model's metadata)."""
    calib_samples: int = DEFAULT_CALIBRATION_SAMPLES
    """Calibration crops, stratified by class and attack species."""
    val: Path | None = None
    """Crops folder for the parity check (None: ``calib``'s)."""
    val_session: str | None = None
    """Validate on this session only, calibrate on the others."""
    val_subjects: str | None = None
    """Validate on these comma-separated subjects only, calibrate on the others."""
    resize: bool = False
    """Resize crops of another size to the model's input (else refuse them)."""
    seed: int = 0
    """Seed of the calibration draw and of QAT shuffling."""


class CropSets(NamedTuple):
    """The crops a run uses, and how they were chosen."""

    holdout: Holdout
    """Which part of the validation folder validates."""
    val_dir: Path
    """Validation crops folder."""
    val: Any
    """Validation crops (a :class:`tla_edge.data.crops.CropSet`)."""
    val_desc: str
    """E.g. ``'crops/' session 02 (held out in training)``, for messages."""
    calib_dir: Path | None
    """Calibration (and QAT) crops folder."""
    train_filters: dict[str, list[str] | None]
    """``load_crops`` filters of the calibration and QAT part."""
    train_desc: str
    """E.g. ``sessions 01`` or ``all crops``."""
    calib: CalibrationSet | None
    """The calibration draw (None: no int8 model in this run)."""


def choose_crop_folders(meta: metadata_lib.ModelMetadata | None, calib: Path | None, val: Path | None,
                        needs_int8: bool, log: Callable[[str], None]) -> tuple[Path | None, Path]:
    """``(calib_dir, val_dir)``: the folders given, else the crops the model was trained on.

    Args:
      meta: the model's metadata (its ``extra["data"]["crops_dir"]`` is the fallback).
      calib: calibration crops folder given (None: the fallback).
      val: validation crops folder given (None: the calibration folder).
      needs_int8: an int8 model is to be written, so calibration crops are required.
      log: receives a note when the fallback is used.

    Raises:
      UserError: int8 without calibration crops, or no validation crops at all.
    """
    data_hint = ((meta.extra if meta else {}) or {}).get("data", {}).get("crops_dir")
    calib_dir = calib
    if calib_dir is None and data_hint and Path(data_hint).is_dir():
        calib_dir = Path(data_hint)
        log(f"using the crops the model was trained on: {calib_dir}")
    if needs_int8 and calib_dir is None:
        raise UserError(
            "int8 needs calibration crops: pass --calib CROPS (a folder written by tla-edge prepare)"
        )
    val_dir = val or calib_dir
    if val_dir is None:
        raise UserError(
            "the parity check needs validation crops: pass --val CROPS or --calib CROPS "
            "(a folder written by tla-edge prepare)"
        )
    return calib_dir, Path(val_dir)


def crop_sets(meta: metadata_lib.ModelMetadata, calib_dir: Path | None, val_dir: Path, crops: CropOptions,
              needs_int8: bool, log: Callable[[str], None]) -> CropSets:
    """Validation crops (the held-out part when one is known) and the calibration draw from the rest.

    Args:
      meta: the model's metadata (crop scale, input size, what training held out).
      calib_dir, val_dir: from :func:`choose_crop_folders`.
      crops: the holdout flags, sample count, seed and resize choice.
      needs_int8: draw calibration crops.
      log: receives one line on the validation part and one on the calibration draw.

    Raises:
      FileNotFoundError, UserError, ValueError: see
        :func:`tla_edge.converters.calibration.load_crop_set`.
    """
    size = tuple(meta.input_size)
    holdout = held_out(meta, crops.val_session, crops.val_subjects, val_dir)
    val = load_crop_set(
        val_dir, meta.crop_scale, size, what="validation", resize=crops.resize, crop_rule=meta.crop_rule,
        **holdout.filters(held_out=True),
    )
    val_desc = f"'{val_dir}' {holdout.describe()}" + (
        " (held out in training)" if holdout.source == "metadata" else "")
    log(f"parity on {len(val.labels)} crops of {val_desc}")
    train_filters: dict[str, list[str] | None] = {"sessions": None, "subjects": None}
    if calib_dir is not None and holdout.kind and Path(calib_dir).resolve() == val_dir.resolve():
        train_filters = holdout.filters(held_out=False, crops_dir=Path(calib_dir))
    train_desc = next((f"{k} {','.join(v)}" for k, v in train_filters.items() if v), "all crops")
    calib = None
    if needs_int8:
        calib = calibration_set(
            calib_dir, crops.calib_samples, crops.seed, meta.crop_scale, size,
            resize=crops.resize, crop_rule=meta.crop_rule, **train_filters,
        )
        log(f"calibrating on {len(calib.labels)} of {calib.available} crops of '{calib_dir}' "
            f"{train_desc} "
            f"({', '.join(f'{k} {v}' for k, v in calib.counts.items())})")
    return CropSets(holdout, val_dir, val, val_desc, calib_dir, train_filters, train_desc, calib)
