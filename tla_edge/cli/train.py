"""Train a liveness model on prepared crops (the TLA two-phase recipe).

With weights to transfer (``--weights imagenet`` or a file), phase 1 trains
the head on the frozen base's pooled features, computed once (seconds), and
phase 2 fine-tunes the base from layer ``--fine-tune-at`` on with BatchNorm
frozen, at a lower rate, with augmentation. With ``--weights none`` every
layer trains from the start in one phase.

Validation is by session by default (the last of >= 2 sessions), else by
subject; a random frame split (``--val-random``) leaks neighbouring frames
and is for debugging only. The decision threshold written to the metadata is
the validation EER threshold; the threshold at ``--target-apcer`` is kept in
``extra.thresholds``.

Writes MODEL_DIR/model.keras, metadata.json, history.csv,
learning_curves.png, validation_scores.csv and checkpoints/.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tla_edge import fileio

from tla_edge.runtime import preprocess
from tla_edge.errors import UserError, missing_extra
from tla_edge.runtime.interpreter import sigmoid
from tla_edge.progress import format_duration

NORMALIZATION = "mobilenet_v2"
# Rates when nothing is transferred (the paper's 1e-4 is for a pretrained base).
SCRATCH_LR = {"mobilenetv2": 1e-3, "resnet34": 1e-2}
# Extra augmented passes over the training set when caching phase-1 features.
FEATURE_AUGMENTED_COPIES = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``train`` flags."""
    parser.add_argument("crops", type=Path, metavar="CROPS", help="folder written by tla-edge prepare")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="output model folder")
    parser.add_argument("--arch", type=str, choices=("mobilenetv2", "resnet34"), default="mobilenetv2",
                        help="architecture")
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier")
    parser.add_argument("--input-size", type=int, default=None,
                        help="model input side in pixels (default: the crops' size; else crops are resized)")
    parser.add_argument("--weights", type=str, default="imagenet",
                        help="'imagenet', 'none' (train from scratch), 'default' (fine-tune the bundled model: "
                        "its architecture, width, input size and crop scale, and a short recipe) or a .weights.h5 file")
    parser.add_argument("--scale", type=float, default=None,
                        help="crop scale to train on (needed when CROPS holds several)")
    parser.add_argument("--sessions", type=str, default=None,
                        help="use only these comma-separated sessions (e.g. train on one, test on another)")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-session", type=str, default=None,
                     help="hold out this session for validation (default: the last of >= 2 sessions)")
    val.add_argument("--val-subjects", type=str, default=None,
                     help="hold out these comma-separated subjects for validation")
    val.add_argument("--val-random", type=float, default=None, metavar="FRACTION",
                     help="random frame split with this validation fraction (leaks; debugging only)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="phase-1 epochs (head on cached features), or all epochs with --weights none "
                        "(None: 10; 2 with --weights default)")
    parser.add_argument("--fine-tune-epochs", type=int, default=None,
                        help="phase-2 epochs, 0 skips phase 2 (None: 10; 3 with --weights default)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--lr", type=float, default=None,
                        help="phase-1 learning rate (default 1e-4; from scratch 1e-3 RMSprop / 1e-2 SGD)")
    parser.add_argument("--fine-tune-lr", type=float, default=1e-5, help="phase-2 learning rate")
    parser.add_argument("--fine-tune-at", type=int, default=100, help="first base layer trained in phase 2")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    parser.add_argument("--monitor", type=str, choices=("val_loss", "val_auc"), default="val_loss",
                        help="validation figure for early stopping and the kept (best) epoch")
    parser.add_argument("--target-apcer", type=float, default=0.05,
                        help="APCER of the second operating point kept in the metadata")
    parser.add_argument("--strategy", type=str, choices=("default", "mirrored"), default="default",
                        help="tf.distribute strategy")
    parser.add_argument("--mixed-precision", type=str, choices=("auto", "on", "off"), default="auto",
                        help="mixed_float16 (auto: on a GPU only)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                        help="targets 1 - EPS/2 and EPS/2 instead of 1 and 0: bounded, less over-confident scores "
                        "whose validation threshold carries better to a new session")
    parser.add_argument("--force", action="store_true", help="overwrite an existing MODEL_DIR")


# --- pure helpers ---------------------------------------------------------------


def _same_id(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


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
        is_val = np.array([_same_id(s, val_session) for s in sessions])
        if not is_val.any():
            raise UserError(f"--val-session {val_session!r} is not in the crops; sessions are {all_sessions}")
        desc = f"session {val_session}"
    elif val_subjects is not None:
        wanted = [s for s in (val_subjects.split(",") if isinstance(val_subjects, str) else val_subjects) if s.strip()]
        is_val = np.array([any(_same_id(s, w) for w in wanted) for s in subjects])
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


# --- TensorFlow parts -------------------------------------------------------------


def _tensorflow() -> tuple[Any, Any]:
    try:
        import keras
        import tensorflow as tf
    except ImportError as err:
        raise missing_extra("tensorflow", "train") from err
    return tf, keras


def tf_normalize(tf: Any, images: Any, normalization: str = NORMALIZATION) -> Any:
    """:func:`tla_edge.runtime.preprocess.normalize` in TensorFlow ops (same constants, same float32 maths)."""
    if normalization not in preprocess.NORMALIZATIONS:
        preprocess.normalize(np.zeros((1, 1, 3), np.uint8), normalization)  # raises the contract's error
    mul, off = preprocess.NORMALIZATIONS[normalization]
    return tf.cast(images, tf.float32) * np.float32(mul) + np.float32(off)


def make_dataset(
    tf: Any,
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
) -> Any:
    """uint8 crops -> (optionally shuffled, augmented) normalised float batches."""
    from tla_edge.train.augment import augment as augment_one

    ds = tf.data.Dataset.from_tensor_slices(images)
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(labels.astype(np.float32))))
    else:
        ds = ds.map(lambda x: (x,))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_one(xy[0], s),) + tuple(xy[1:]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size).map(
        lambda x, *y: (tf_normalize(tf, x),) + tuple(y), num_parallel_calls=tf.data.AUTOTUNE
    )
    if labels is None:
        ds = ds.map(lambda x: x)
    return ds.prefetch(tf.data.AUTOTUNE)


def _optimizer(keras: Any, arch: str, lr: float) -> Any:
    if arch == "resnet34":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=lr)


def _compile(keras: Any, model: Any, arch: str, lr: float, label_smoothing: float = 0.0) -> None:
    model.compile(
        optimizer=_optimizer(keras, arch, lr),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
            keras.metrics.AUC(name="auc", from_logits=True),
        ],
    )


def _callbacks(keras: Any, out: Path, phase: str, patience: int, checkpoint: bool, monitor: str = "val_loss") -> list:
    """Early stopping (restores the best epoch; always first in the list) and a best-epoch checkpoint."""
    mode = "min" if monitor == "val_loss" else "max"
    cbs = [keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True)]
    if checkpoint:
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                str(out / "checkpoints" / f"{phase}-best.weights.h5"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
            )
        )
    return cbs


def _best_epoch(early_stopping: Any) -> int | None:
    """1-based epoch whose weights were kept, None when no epoch ran."""
    best = getattr(early_stopping, "best_epoch", None)
    return None if best is None else int(best) + 1


def _history_rows(history: Any, phase: str, start_epoch: int) -> list[dict]:
    h = history.history
    n = len(h.get("loss", []))
    return [
        {"phase": phase, "epoch": start_epoch + i + 1, **{k: float(v[i]) for k, v in h.items()}}
        for i in range(n)
    ]


def _history_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _plot_curves(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = list(range(1, len(rows) + 1))
    for ax, key in zip(axes, ("loss", "auc")):
        ax.plot(x, [r.get(key, np.nan) for r in rows], "o-", label=f"train {key}")
        ax.plot(x, [r.get(f"val_{key}", np.nan) for r in rows], "o-", label=f"val {key}")
        for i in range(1, len(rows)):
            if rows[i]["phase"] != rows[i - 1]["phase"]:
                ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch (all phases)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _save_keras(model: Any, path: Path) -> None:
    """model.save through a temporary name (Keras wants the .keras suffix)."""
    with fileio.atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(named)
            os.replace(named, tmp)
        finally:
            if named.exists():
                named.unlink()


# Epochs when none are given: the full recipe, and the short fine-tune of the
# bundled model (its head and base already fit liveness; a few epochs at the
# transfer rates, 1e-4 then 1e-5, adapt it without forgetting).
EPOCHS = {"epochs": 10, "fine_tune_epochs": 10}
DEFAULT_WEIGHTS_EPOCHS = {"epochs": 2, "fine_tune_epochs": 3}


def resolve_default_weights(args: argparse.Namespace) -> None:
    """Fills unset epochs; turns ``--weights default`` into the bundled file and its model's settings.

    Raises:
      UserError: the weights are not installed, or ``--arch`` contradicts them.
    """
    default = args.weights.strip().lower() == "default"
    for name, value in (DEFAULT_WEIGHTS_EPOCHS if default else EPOCHS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not default:
        return
    from tla_edge.runtime.assets import default_liveness_weights

    path, meta = default_liveness_weights()
    if args.arch != meta.architecture:
        raise UserError(
            f"--weights default is a {meta.architecture} model; --arch {args.arch} cannot start from it"
        )
    args.weights = str(path)
    args.alpha = float(meta.extra.get("alpha", args.alpha))
    args.input_size = int(meta.input_size[0])
    if args.scale is None:
        args.scale = float(meta.crop_scale)
    from tla_edge.data import datasets

    if datasets.is_crops_dir(args.crops):
        scales = sorted({float(r["scale"]) for r in datasets.read_manifest(args.crops)})
        if all(abs(s - args.scale) > 1e-6 for s in scales):
            raise UserError(
                f"crops folder '{args.crops}' holds scales {', '.join(f'{s:g}' for s in scales)}; --weights "
                f"default fine-tunes a model of crop scale {args.scale:g}: prepare them with --scales {args.scale:g}"
            )
    print(
        f"tla-edge train: --weights default: {meta.architecture} alpha {args.alpha:g}, input "
        f"{args.input_size}, crop scale {args.scale:g}, {args.epochs} + {args.fine_tune_epochs} epochs",
        file=sys.stderr,
    )


def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 <= args.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing {args.label_smoothing:g} is not in [0, 1)")
    for name in ("epochs", "fine_tune_epochs", "patience", "fine_tune_at"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)} is negative; expected >= 0")
    from_scratch = str(args.weights).lower() in ("none", "")
    if args.epochs == 0 and (from_scratch or args.fine_tune_epochs == 0):
        raise UserError(
            "--epochs 0" + ("" if from_scratch else " with --fine-tune-epochs 0")
            + " trains nothing; expected at least one epoch"
        )
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is not >= 1")
    for name in ("lr", "fine_tune_lr"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise UserError(f"--{name.replace('_', '-')} {v} is not > 0")
    if not 0.0 <= args.target_apcer <= 1.0:
        raise UserError(f"--target-apcer {args.target_apcer} is not in [0, 1]")
    if not args.crops.is_dir():
        raise FileNotFoundError(f"crops folder '{args.crops}' not found; expected a folder written by tla-edge prepare")


def run(args: argparse.Namespace) -> int:
    """Trains, validates and writes MODEL_DIR; returns 0."""
    from tla_edge import metrics
    from tla_edge.data import datasets
    from tla_edge.train import models
    from tla_edge.runtime.metadata import ModelMetadata

    resolve_default_weights(args)
    _check_args(args)
    out = fileio.check_writable(args.out, args.force)
    weights: str | None = None if args.weights.lower() in ("none", "") else args.weights
    transfer = weights is not None
    if args.arch == "resnet34" and weights == "imagenet":
        # Same message as the builder, before minutes of data loading.
        models.build_resnet34(32, "imagenet")
    if transfer and weights != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' not found; expected 'imagenet', 'none' or a .weights.h5 file")
    t_start = time.perf_counter()

    crops = datasets.load_crops(args.crops, scale=args.scale, sessions=args.sessions)
    check_classes(crops.labels, f"crops folder '{args.crops}' at scale {crops.scale:g}")
    train_idx, val_idx, val_desc = split_validation(
        crops.sessions, crops.subjects, args.val_session, args.val_subjects, args.val_random, args.seed
    )
    labels = crops.labels.astype(np.int64)
    check_classes(labels[train_idx], f"the training part (all but {val_desc})")
    check_classes(labels[val_idx], f"the validation part ({val_desc})")
    if args.val_random is not None:
        print(
            "tla-edge train: warning: --val-random splits frames at random; neighbouring frames leak "
            "into validation and its figures are optimistic",
            file=sys.stderr,
        )
    input_size = int(args.input_size or crops.images.shape[1])
    images = preprocess.resize_crops(crops.images, input_size)
    x_train, y_train = images[train_idx], labels[train_idx]
    x_val, y_val = images[val_idx], labels[val_idx]
    pick = lambda xs, idx: [xs[i] for i in idx]  # noqa: E731
    summary_data = {
        "crops_dir": str(args.crops),
        "scale": crops.scale,
        "crop_size": int(crops.images.shape[1]),
        "validation": val_desc,
        "train": data_summary(y_train, pick(crops.sessions, train_idx), pick(crops.subjects, train_idx)),
        "val": data_summary(y_val, pick(crops.sessions, val_idx), pick(crops.subjects, val_idx)),
    }
    t_data = time.perf_counter() - t_start

    tf, keras = _tensorflow()
    keras.utils.set_random_seed(args.seed)
    gpus = tf.config.list_physical_devices("GPU")
    mixed = args.mixed_precision == "on" or (args.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if args.strategy == "mirrored" else tf.distribute.get_strategy()
    cw = class_weights(y_train)
    lr = args.lr if args.lr is not None else (1e-4 if transfer else SCRATCH_LR[args.arch])
    augment = not args.no_augment
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)

    with strategy.scope():
        model = models.build_model(args.arch, input_size, args.alpha, weights)
    rows: list[dict] = []
    phases: dict[str, dict] = {}
    train_ds = make_dataset(tf, x_train, y_train, args.batch_size, augment, shuffle=True, seed=args.seed)
    val_ds = make_dataset(tf, x_val, y_val, args.batch_size)

    if transfer:
        # Phase 1: the frozen base's pooled features, computed once; the head trains on them.
        t0 = time.perf_counter()
        extractor = models.feature_extractor(model)
        plain = make_dataset(tf, x_train, None, args.batch_size)
        feats = [extractor.predict(plain, verbose=0)]
        feat_labels = [y_train]
        for copy in range(FEATURE_AUGMENTED_COPIES if augment else 0):
            aug = make_dataset(tf, x_train, None, args.batch_size, augment=True, seed=args.seed + 1 + copy)
            feats.append(extractor.predict(aug, verbose=0))
            feat_labels.append(y_train)
        f_val = extractor.predict(make_dataset(tf, x_val, None, args.batch_size), verbose=0)
        t_feat = time.perf_counter() - t0
        n_feat = sum(len(f) for f in feats) + len(f_val)
        f_train, f_labels = np.concatenate(feats), np.concatenate(feat_labels).astype(np.float32)
        t0 = time.perf_counter()
        with strategy.scope():
            models.freeze_base(model)
            head = models.head_model(model)
            _compile(keras, head, args.arch, lr, args.label_smoothing)
        cb1 = _callbacks(keras, out, "phase1", args.patience, checkpoint=False, monitor=args.monitor)
        hist = head.fit(
            f_train, f_labels, batch_size=args.batch_size, epochs=args.epochs,
            validation_data=(f_val, y_val.astype(np.float32)), class_weight=cw, shuffle=True,
            callbacks=cb1, verbose=2,
        ) if args.epochs > 0 else None
        t_head = time.perf_counter() - t0
        if hist is not None:
            rows += _history_rows(hist, "phase1_head", 0)
        epochs1 = len(hist.history["loss"]) if hist is not None else 0
        phases["phase1_features"] = {
            "images": int(n_feat), "wall_s": round(t_feat, 2), "img_per_s": round(n_feat / max(t_feat, 1e-9), 1),
            "augmented_copies": FEATURE_AUGMENTED_COPIES if augment else 0,
        }
        phases["phase1_head"] = {
            "epochs_run": epochs1, "epochs_max": args.epochs, "best_epoch": _best_epoch(cb1[0]),
            "lr": lr, "wall_s": round(t_head, 2),
            "img_per_s": round(epochs1 * len(f_train) / max(t_head, 1e-9), 1),
        }
        if args.fine_tune_epochs > 0:
            t0 = time.perf_counter()
            with strategy.scope():
                n_trainable = models.set_fine_tune(model, args.fine_tune_at)
                _compile(keras, model, args.arch, args.fine_tune_lr, args.label_smoothing)
            cb2 = _callbacks(keras, out, "phase2", args.patience, checkpoint=True, monitor=args.monitor)
            hist = model.fit(
                train_ds, epochs=args.fine_tune_epochs, validation_data=val_ds, class_weight=cw,
                callbacks=cb2, verbose=2,
            )
            t2 = time.perf_counter() - t0
            rows += _history_rows(hist, "phase2_fine_tune", len(rows))
            e2 = len(hist.history["loss"])
            phases["phase2_fine_tune"] = {
                "epochs_run": e2, "epochs_max": args.fine_tune_epochs, "best_epoch": _best_epoch(cb2[0]),
                "lr": args.fine_tune_lr,
                "fine_tune_at": args.fine_tune_at, "trainable_base_tensors": n_trainable,
                "wall_s": round(t2, 2), "img_per_s": round(e2 * len(x_train) / max(t2, 1e-9), 1),
            }
    else:
        t0 = time.perf_counter()
        with strategy.scope():
            _compile(keras, model, args.arch, lr, args.label_smoothing)
        cbs = _callbacks(keras, out, "scratch", args.patience, checkpoint=True, monitor=args.monitor)
        hist = model.fit(
            train_ds, epochs=args.epochs, validation_data=val_ds, class_weight=cw, callbacks=cbs, verbose=2,
        )
        t1 = time.perf_counter() - t0
        rows += _history_rows(hist, "scratch", 0)
        e1 = len(hist.history["loss"])
        phases["scratch"] = {
            "epochs_run": e1, "epochs_max": args.epochs, "best_epoch": _best_epoch(cbs[0]), "lr": lr,
            "optimizer": "SGD(momentum=0.9)" if args.arch == "resnet34" else "RMSprop",
            "wall_s": round(t1, 2), "img_per_s": round(e1 * len(x_train) / max(t1, 1e-9), 1),
        }

    t0 = time.perf_counter()
    logits = model.predict(make_dataset(tf, x_val, None, args.batch_size), verbose=0).reshape(-1)
    scores = sigmoid(logits)
    val_species = [s if y == 0 else "" for s, y in zip(pick(crops.species, val_idx), y_val)]
    thr_eer = float(metrics.eer(scores, y_val)[1])
    thr_apcer = metrics.threshold_at_apcer(scores, y_val, val_species, args.target_apcer)
    at_eer = metrics.compute_metrics(scores, y_val, val_species, thr_eer)
    at_apcer = metrics.compute_metrics(scores, y_val, val_species, thr_apcer)
    t_eval = time.perf_counter() - t0
    phases["validation"] = {"images": int(len(x_val)), "wall_s": round(t_eval, 2),
                            "img_per_s": round(len(x_val) / max(t_eval, 1e-9), 1)}

    meta = ModelMetadata(
        input_size=(input_size, input_size),
        crop_scale=float(crops.scale),
        normalization=NORMALIZATION,
        output="logit",
        live_index=0,
        threshold=thr_eer,
        architecture=args.arch,
        extra={
            "thresholds": {"eer": thr_eer, f"apcer_{args.target_apcer:g}": thr_apcer},
            "target_apcer": args.target_apcer,
            "validation": {"split": val_desc, "at_eer_threshold": _jsonable(at_eer),
                           "at_target_apcer": _jsonable(at_apcer)},
            "data": summary_data,
            "phases": phases,
            "wall_s_total": round(time.perf_counter() - t_start, 2),
            "wall_s_data": round(t_data, 2),
            "seed": args.seed,
            "early_stopping": {"monitor": args.monitor, "patience": args.patience, "restore_best": True},
            "weights": weights or "none",
            "recipe": "two-phase transfer" if transfer else "from scratch, one phase, all layers",
            "alpha": args.alpha if args.arch == "mobilenetv2" else None,
            "batch_size": args.batch_size,
            "label_smoothing": args.label_smoothing,
            "augment": augment,
            "class_weight": cw,
            "mixed_precision": mixed,
            "strategy": args.strategy,
            "devices": [d.name for d in tf.config.list_logical_devices()],
        },
    )
    _save_keras(model, out / "model.keras")
    fileio.write_json_atomic(out / "metadata.json", meta.to_dict())
    fileio.write_text_atomic(out / "history.csv", _history_csv(rows))
    score_rows = [{"source": s, "session": se, "subject": su, "label": int(y), "score": float(p)}
                  for s, se, su, y, p in zip(pick(crops.sources, val_idx), pick(crops.sessions, val_idx),
                                             pick(crops.subjects, val_idx), y_val, scores)]
    fileio.write_text_atomic(out / "validation_scores.csv", _history_csv(score_rows) if score_rows else "")
    if rows:
        _plot_curves(rows, out / "learning_curves.png", f"{args.arch} scale {crops.scale:g} ({val_desc})")
    _print_summary(args, meta, at_eer, at_apcer, phases, out)
    return 0


def _jsonable(m: Any) -> Any:
    if hasattr(m, "_asdict"):
        m = m._asdict()
    elif hasattr(m, "to_dict"):
        m = m.to_dict()
    elif hasattr(m, "__dataclass_fields__"):
        import dataclasses

        m = dataclasses.asdict(m)
    if isinstance(m, dict):
        return {str(k): _jsonable(v) for k, v in m.items()}
    if isinstance(m, (list, tuple)):
        return [_jsonable(v) for v in m]
    if isinstance(m, (np.floating, float)):
        return None if not math.isfinite(float(m)) else float(m)
    if isinstance(m, np.integer):
        return int(m)
    return m


def _get(m: Any, key: str) -> float:
    d = _jsonable(m)
    v = d.get(key) if isinstance(d, dict) else None
    return float("nan") if v is None else float(v)


def _print_summary(args: argparse.Namespace, meta: Any, at_eer: Any, at_apcer: Any, phases: dict, out: Path) -> None:
    e = meta.extra
    data = e["data"]
    lines = [
        "",
        f"tla-edge train: {args.arch} input {meta.input_size[0]} scale {meta.crop_scale:g} "
        f"weights {e['weights']} ({e['recipe']})",
        f"  data      train {data['train']['real']} real / {data['train']['attack']} attack; "
        f"val {data['val']['real']} real / {data['val']['attack']} attack ({data['validation']})",
    ]
    for name, p in phases.items():
        ep = f"{p['epochs_run']}/{p['epochs_max']} epochs (kept {p['best_epoch']}), " if "epochs_run" in p else ""
        lines.append(f"  {name:<17} {ep}{format_duration(p['wall_s'])}, {p['img_per_s']:.1f} img/s")
    lines += [
        f"  at EER threshold {meta.threshold:.4f}: ACER {_get(at_eer, 'acer'):.4f}  EER "
        f"{_get(at_eer, 'eer'):.4f}  AUC {_get(at_eer, 'auc'):.4f}  APCER {_get(at_eer, 'apcer'):.4f}  "
        f"BPCER {_get(at_eer, 'bpcer'):.4f}",
        f"  at APCER <= {args.target_apcer:g} threshold {list(e['thresholds'].values())[1]:.4f}: "
        f"APCER {_get(at_apcer, 'apcer'):.4f}  BPCER {_get(at_apcer, 'bpcer'):.4f}",
        f"  wrote {out}/model.keras, metadata.json, history.csv, learning_curves.png, validation_scores.csv "
        f"(total {format_duration(e['wall_s_total'])})",
    ]
    print("\n".join(lines))
