"""The TLA two-phase training recipe, step by step; TensorFlow is imported inside the functions.

With weights to transfer (``imagenet`` or a file), phase 1 trains the head on
the frozen base's pooled features, computed once (seconds), and phase 2
fine-tunes the base from layer ``fine_tune_at`` on with BatchNorm frozen, at
a lower rate, with augmentation. With ``weights="none"`` every layer trains
from the start in one phase. The decision threshold written to the metadata
is the validation EER threshold; the threshold at ``target_apcer`` is kept in
``extra.thresholds``.

The settings are a :class:`~tla_edge.train.options.Recipe`. The steps:
:func:`~tla_edge.train.split.load_train_data` (data, split),
:func:`setup` (TensorFlow, precision, strategy), :func:`build` (model,
datasets), :func:`phase1_head`, :func:`phase2_fine_tune` (or
:func:`train_from_scratch`), :func:`validate` (thresholds),
:func:`write_model` (files); :func:`train` runs them in order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from tla_edge import fileio, metrics
from tla_edge.errors import import_tensorflow
from tla_edge.runtime import preprocess
from tla_edge.runtime.quant import sigmoid
from tla_edge.runtime.metadata import ModelMetadata, portable_path
from tla_edge.train import distill, history
from tla_edge.train.options import Recipe, check_recipe, check_weights
from tla_edge.train.split import TrainData, class_weights, load_train_data

NORMALIZATION = "mobilenet_v2"
# Rates when nothing is transferred (the paper's 1e-4 is for a pretrained base).
SCRATCH_LR = {"mobilenetv2": 1e-3, "resnet34": 1e-2}
# Extra augmented passes over the training set when caching phase-1 features.
FEATURE_AUGMENTED_COPIES = 1
# --- TensorFlow parts -------------------------------------------------------------


def tf_normalize(tf: Any, images: Any, normalization: str = NORMALIZATION) -> Any:
    """:func:`tla_edge.runtime.preprocess.normalize` in TensorFlow ops (same constants, same float32 maths)."""
    if normalization not in preprocess.NORMALIZATIONS or normalization in preprocess.STANDARDISED:
        raise ValueError(f"training normalizes per pixel, not with {normalization!r} (--colour greynorm: in the model)")
    mul, off = preprocess.NORMALIZATIONS[normalization]
    return tf.cast(images, tf.float32) * np.float32(mul) + np.float32(off)


def make_dataset(tf: Any, images: np.ndarray, labels: np.ndarray | None, batch_size: int, augment: bool = False,
                 shuffle: bool = False, seed: int = 0, camera: bool = False, zoom_in: float = 0.0) -> Any:
    """uint8 crops -> (optionally shuffled, augmented) normalised float batches (strengths: ``augment_config``)."""
    from tla_edge.train.augment import augment as augment_one
    from tla_edge.train.augment import augment_config

    config = augment_config(camera, zoom_in)

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
            lambda xy, s: (augment_one(xy[0], s, config),) + tuple(xy[1:]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size).map(
        lambda x, *y: (tf_normalize(tf, x),) + tuple(y), num_parallel_calls=tf.data.AUTOTUNE
    )
    if labels is None:
        ds = ds.map(lambda x: x)
    return ds.prefetch(tf.data.AUTOTUNE)


def compile_model(keras: Any, model: Any, arch: str, lr: float, label_smoothing: float = 0.0,
                  soft_targets: bool = False) -> None:
    """Compiles with the architecture's optimiser (ResNet34: SGD + momentum, else RMSprop) and a logit loss.

    ``soft_targets``: the training targets are distillation's blends, so the
    metrics read the hard labels they stand for (:func:`tla_edge.train.distill.training_metrics`).
    """
    optimizer = (keras.optimizers.SGD(learning_rate=lr, momentum=0.9) if arch == "resnet34"
                 else keras.optimizers.RMSprop(learning_rate=lr))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=distill.training_metrics(keras, soft_targets),
    )


def callbacks(keras: Any, out: Path, phase: str, patience: int, checkpoint: bool, monitor: str = "val_loss") -> list:
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


def best_epoch(early_stopping: Any) -> int | None:
    """1-based epoch whose weights were kept, None when no epoch ran."""
    best = getattr(early_stopping, "best_epoch", None)
    return None if best is None else int(best) + 1


class Session(NamedTuple):
    """TensorFlow set up for one run."""

    tf: Any
    keras: Any
    strategy: Any
    mixed: bool
    """Whether mixed_float16 is on."""


def setup(recipe: Recipe) -> Session:
    """Imports TensorFlow, seeds it, picks the precision policy and the distribution strategy."""
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(recipe.seed)
    gpus = tf.config.list_physical_devices("GPU")
    mixed = recipe.mixed_precision == "on" or (recipe.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if recipe.strategy == "mirrored" else tf.distribute.get_strategy()
    return Session(tf, keras, strategy, mixed)


@dataclasses.dataclass
class Run:
    """What the phases share: the model, its datasets, and what they record."""

    session: Session
    recipe: Recipe
    data: TrainData
    out: Path
    model: Any
    train_ds: Any
    val_ds: Any
    lr: float
    class_weight: dict[int, float]
    targets: np.ndarray | None = None
    """What the training crops are fitted to: the labels, or soft targets when distilling."""
    rows: list[dict] = dataclasses.field(default_factory=list)
    """``history.csv`` rows, every phase."""
    phases: dict[str, dict] = dataclasses.field(default_factory=dict)
    """Per phase: epochs, kept epoch, rate, time, speed."""

    @property
    def soft_targets(self) -> bool:
        """The training targets are distillation's blends (:func:`tla_edge.train.distill.soft`)."""
        return distill.soft(self.targets)


def build(session: Session, recipe: Recipe, data: TrainData, out: Path) -> Run:
    """Builds the model in the strategy's scope and the training and validation datasets."""
    from tla_edge.train import models

    tf = session.tf
    lr = recipe.lr if recipe.lr is not None else (1e-4 if recipe.transfer_weights else SCRATCH_LR[recipe.arch])
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    with session.strategy.scope():
        model = models.build_model(recipe.arch, data.input_size, recipe.alpha, recipe.transfer_weights,
                                   colour=recipe.colour)
    targets = distill.fit_targets(recipe, data)
    train_ds = make_dataset(tf, data.x_train, targets, recipe.batch_size, recipe.augment, shuffle=True,
                            seed=recipe.seed, camera=recipe.camera_augment, zoom_in=recipe.zoom_in)
    val_ds = make_dataset(tf, data.x_val, data.y_val, recipe.batch_size)
    # class weights from the hard labels; soft targets stay on their label's side of 0.5 (distill < 0.5)
    return Run(session, recipe, data, out, model, train_ds, val_ds, lr, class_weights(data.y_train), targets)


def _features(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The frozen base's pooled features of the training part (plus augmented copies) and of validation."""
    from tla_edge.train import models

    tf, r, d = run.session.tf, run.recipe, run.data
    t0 = time.perf_counter()
    extractor = models.feature_extractor(run.model)
    feats = [extractor.predict(make_dataset(tf, d.x_train, None, r.batch_size), verbose=0)]
    feat_labels = [run.targets]
    copies = FEATURE_AUGMENTED_COPIES if r.augment else 0
    for copy in range(copies):
        aug = make_dataset(tf, d.x_train, None, r.batch_size, augment=True, seed=r.seed + 1 + copy,
                           camera=r.camera_augment, zoom_in=r.zoom_in)
        feats.append(extractor.predict(aug, verbose=0))
        feat_labels.append(run.targets)
    f_val = extractor.predict(make_dataset(tf, d.x_val, None, r.batch_size), verbose=0)
    t_feat = time.perf_counter() - t0
    n_feat = sum(len(f) for f in feats) + len(f_val)
    phase = {"images": int(n_feat), "wall_s": round(t_feat, 2), "img_per_s": round(n_feat / max(t_feat, 1e-9), 1),
             "augmented_copies": copies}
    return np.concatenate(feats), np.concatenate(feat_labels).astype(np.float32), f_val, phase


def phase1_head(run: Run) -> None:
    """Phase 1: the head trains on the frozen base's features, computed once."""
    from tla_edge.train import models

    keras, r = run.session.keras, run.recipe
    f_train, f_labels, f_val, run.phases["phase1_features"] = _features(run)
    t0 = time.perf_counter()
    with run.session.strategy.scope():
        models.freeze_base(run.model)
        head = models.head_model(run.model)
        compile_model(keras, head, r.arch, run.lr, r.label_smoothing, run.soft_targets)
    cb1 = callbacks(keras, run.out, "phase1", r.patience, checkpoint=False, monitor=r.monitor)
    hist = head.fit(
        f_train, f_labels, batch_size=r.batch_size, epochs=r.epochs,
        validation_data=(f_val, run.data.y_val.astype(np.float32)), class_weight=run.class_weight, shuffle=True,
        callbacks=cb1, verbose=2,
    ) if r.epochs > 0 else None
    t_head = time.perf_counter() - t0
    if hist is not None:
        run.rows += history.history_rows(hist, "phase1_head", 0)
    epochs1 = len(hist.history["loss"]) if hist is not None else 0
    run.phases["phase1_head"] = {
        "epochs_run": epochs1, "epochs_max": r.epochs, "best_epoch": best_epoch(cb1[0]),
        "lr": run.lr, "wall_s": round(t_head, 2),
        "img_per_s": round(epochs1 * len(f_train) / max(t_head, 1e-9), 1),
    }


def phase2_fine_tune(run: Run) -> None:
    """Phase 2: the base from ``fine_tune_at`` on trains (BatchNorm frozen) at the lower rate, augmented."""
    from tla_edge.train import models

    keras, r = run.session.keras, run.recipe
    t0 = time.perf_counter()
    with run.session.strategy.scope():
        n_trainable = models.set_fine_tune(run.model, r.fine_tune_at)
        compile_model(keras, run.model, r.arch, r.fine_tune_lr, r.label_smoothing, run.soft_targets)
    cb2 = callbacks(keras, run.out, "phase2", r.patience, checkpoint=True, monitor=r.monitor)
    hist = run.model.fit(
        run.train_ds, epochs=r.fine_tune_epochs, validation_data=run.val_ds, class_weight=run.class_weight,
        callbacks=cb2, verbose=2,
    )
    t2 = time.perf_counter() - t0
    run.rows += history.history_rows(hist, "phase2_fine_tune", len(run.rows))
    e2 = len(hist.history["loss"])
    run.phases["phase2_fine_tune"] = {
        "epochs_run": e2, "epochs_max": r.fine_tune_epochs, "best_epoch": best_epoch(cb2[0]),
        "lr": r.fine_tune_lr,
        "fine_tune_at": r.fine_tune_at, "trainable_base_tensors": n_trainable,
        "wall_s": round(t2, 2), "img_per_s": round(e2 * len(run.data.x_train) / max(t2, 1e-9), 1),
    }


def train_from_scratch(run: Run) -> None:
    """No weights to transfer: every layer trains from the start, one phase."""
    keras, r = run.session.keras, run.recipe
    t0 = time.perf_counter()
    with run.session.strategy.scope():
        compile_model(keras, run.model, r.arch, run.lr, r.label_smoothing, run.soft_targets)
    cbs = callbacks(keras, run.out, "scratch", r.patience, checkpoint=True, monitor=r.monitor)
    hist = run.model.fit(
        run.train_ds, epochs=r.epochs, validation_data=run.val_ds, class_weight=run.class_weight, callbacks=cbs,
        verbose=2,
    )
    t1 = time.perf_counter() - t0
    run.rows += history.history_rows(hist, "scratch", 0)
    e1 = len(hist.history["loss"])
    run.phases["scratch"] = {
        "epochs_run": e1, "epochs_max": r.epochs, "best_epoch": best_epoch(cbs[0]), "lr": run.lr,
        "optimizer": "SGD(momentum=0.9)" if r.arch == "resnet34" else "RMSprop",
        "wall_s": round(t1, 2), "img_per_s": round(e1 * len(run.data.x_train) / max(t1, 1e-9), 1),
    }


class Validation(NamedTuple):
    """The trained model on the validation part: scores and its two operating points."""

    scores: np.ndarray
    threshold_eer: float
    threshold_apcer: float
    at_eer: Any
    """Metrics at the EER threshold (the decision threshold)."""
    at_apcer: Any
    """Metrics at the threshold meeting ``target_apcer``."""


def validate(run: Run) -> Validation:
    """Scores the validation part; thresholds at its EER and at the target APCER."""
    d, r = run.data, run.recipe
    t0 = time.perf_counter()
    logits = run.model.predict(make_dataset(run.session.tf, d.x_val, None, r.batch_size), verbose=0).reshape(-1)
    scores = sigmoid(logits)
    val_species = [s if y == 0 else "" for s, y in zip(d.pick(d.crops.species, "val"), d.y_val)]
    thr_eer = float(metrics.eer(scores, d.y_val)[1])
    thr_apcer = metrics.threshold_at_apcer(scores, d.y_val, val_species, r.target_apcer)
    at_eer = metrics.compute_metrics(scores, d.y_val, val_species, thr_eer)
    at_apcer = metrics.compute_metrics(scores, d.y_val, val_species, thr_apcer)
    t_eval = time.perf_counter() - t0
    run.phases["validation"] = {"images": int(len(d.x_val)), "wall_s": round(t_eval, 2),
                                "img_per_s": round(len(d.x_val) / max(t_eval, 1e-9), 1)}
    return Validation(scores, thr_eer, thr_apcer, at_eer, at_apcer)


def model_metadata(run: Run, val: Validation, wall_s_total: float, wall_s_data: float) -> ModelMetadata:
    """The metadata written beside ``model.keras`` (paths portable)."""
    r, d, weights = run.recipe, run.data, run.recipe.transfer_weights
    return ModelMetadata(
        input_size=(d.input_size, d.input_size),
        crop_scale=float(d.crops.scale),
        crop_rule=d.crops.crop_rule,
        normalization=NORMALIZATION,
        output="logit",
        live_index=0,
        threshold=val.threshold_eer,
        architecture=r.arch,
        extra={
            "thresholds": {"eer": val.threshold_eer, f"apcer_{r.target_apcer:g}": val.threshold_apcer},
            "target_apcer": r.target_apcer,
            "validation": {"split": d.val_desc, "at_eer_threshold": history.jsonable(val.at_eer),
                           "at_target_apcer": history.jsonable(val.at_apcer)},
            "data": d.summary,
            "phases": run.phases,
            "wall_s_total": round(wall_s_total, 2),
            "wall_s_data": round(wall_s_data, 2),
            "seed": r.seed,
            "early_stopping": {"monitor": r.monitor, "patience": r.patience, "restore_best": True},
            "weights": portable_path(weights) if weights else "none",
            "recipe": "two-phase transfer" if weights else "from scratch, one phase, all layers",
            "alpha": r.alpha if r.arch == "mobilenetv2" else None,
            "batch_size": r.batch_size,
            "label_smoothing": r.label_smoothing,
            "augment": r.augment,
            "camera_augment": r.camera_augment,
            "zoom_in": r.zoom_in,
            "simulated_attacks": r.simulated_attacks,
            "colour": r.colour,
            "distill": distill.metadata_summary(r, d),
            "class_weight": run.class_weight,
            "mixed_precision": run.session.mixed,
            "strategy": r.strategy,
            "devices": [dev.name for dev in run.session.tf.config.list_logical_devices()],
        },
    )


def save_keras(model: Any, path: Path) -> None:
    """model.save through a temporary name (Keras wants the .keras suffix)."""
    with fileio.atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(named)
            os.replace(named, tmp)
        finally:
            if named.exists():
                named.unlink()


def write_model(run: Run, meta: ModelMetadata, val: Validation) -> None:
    """Writes model.keras, metadata.json, history.csv, validation_scores.csv and learning_curves.png."""
    from tla_edge.train import plots

    d, out = run.data, run.out
    if run.soft_targets:  # the plain metrics in the saved compile config: it loads without tla-edge's classes
        with run.session.strategy.scope():
            compile_model(run.session.keras, run.model, run.recipe.arch, run.recipe.fine_tune_lr,
                          run.recipe.label_smoothing)
    save_keras(run.model, out / "model.keras")
    fileio.write_json_atomic(out / "metadata.json", meta.to_dict())
    fileio.write_text_atomic(out / "history.csv", history.csv_text(run.rows))
    score_rows = [{"source": s, "session": se, "subject": su, "label": int(y), "score": float(p)}
                  for s, se, su, y, p in zip(d.pick(d.crops.sources, "val"), d.pick(d.crops.sessions, "val"),
                                             d.pick(d.crops.subjects, "val"), d.y_val, val.scores)]
    fileio.write_text_atomic(out / "validation_scores.csv", history.csv_text(score_rows) if score_rows else "")
    if run.rows:
        plots.plot_training_curves(run.rows, out / "learning_curves.png",
                                   f"{run.recipe.arch} scale {d.crops.scale:g} ({d.val_desc})")


class Trained(NamedTuple):
    """What :func:`train` wrote and measured."""

    out: Path
    meta: ModelMetadata
    validation: Validation
    phases: dict


def train(crops_dir: Path, out: Path, recipe: Recipe, force: bool = False,
          warn: Callable[[str], None] | None = None) -> Trained:
    """Trains, validates and writes a model folder.

    Args:
      crops_dir: a folder written by ``tla-edge prepare``.
      out: the model folder to write.
      recipe: the settings (after :func:`resolve_default_weights`).
      force: overwrite an existing ``out``.
      warn: called with a warning line (e.g. a random validation split).

    Raises:
      UserError: a setting or the data cannot be used (see the message).
      FileNotFoundError: the crops folder or the weights file is missing.
    """
    check_recipe(recipe, crops_dir)
    out = fileio.check_writable(out, force)
    check_weights(recipe)
    created = not out.exists()
    try:
        return _train(crops_dir, out, recipe, warn)
    except BaseException:
        # a failed or interrupted run leaves no half-written model folder (checkpoints/) that
        # would make the re-run refuse; a folder that existed before (--force) is the user's
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(crops_dir: Path, out: Path, recipe: Recipe, warn: Callable[[str], None] | None) -> Trained:
    t_start = time.perf_counter()
    data = load_train_data(crops_dir, recipe.scale, recipe.sessions, recipe.val_session, recipe.val_subjects,
                           recipe.val_random, recipe.seed, recipe.input_size, recipe.crop_rule)
    if recipe.val_random is not None and warn is not None:
        warn("tla-edge train: warning: --val-random splits frames at random; neighbouring frames leak "
             "into validation and its figures are optimistic")
    from tla_edge.train import simulate

    data = simulate.extend_training_part(data, recipe.simulated_attacks, recipe.seed)
    t_data = time.perf_counter() - t_start
    run = build(setup(recipe), recipe, data, out)
    if recipe.transfer_weights:
        phase1_head(run)
        if recipe.fine_tune_epochs > 0:
            phase2_fine_tune(run)
    else:
        train_from_scratch(run)
    val = validate(run)
    meta = model_metadata(run, val, time.perf_counter() - t_start, t_data)
    write_model(run, meta, val)
    return Trained(out, meta, val, run.phases)
