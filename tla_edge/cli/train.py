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
import sys

from tla_edge.cli import argtypes
from tla_edge.train import history
from tla_edge.train.colour import COLOURS
from tla_edge.train.options import Recipe, resolve_default_weights
from tla_edge.train.recipe import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``train`` flags."""
    parser.add_argument("crops", type=argtypes.path, metavar="CROPS", help="folder written by tla-edge prepare")
    parser.add_argument("--out", type=argtypes.path, required=True, metavar="MODEL_DIR", help="output model folder")
    parser.add_argument("--arch", type=str, choices=("mobilenetv2", "resnet34"), default="mobilenetv2",
                        help="architecture")
    parser.add_argument("--alpha", type=argtypes.number, default=None,
                        help="MobileNetV2 width multiplier (None: 1.0, or the bundled model's with --weights default)")
    parser.add_argument("--input-size", type=argtypes.integer, default=None,
                        help="model input side in pixels (default: the crops' size; else crops are resized)")
    parser.add_argument("--weights", type=str, default="imagenet",
                        help="'imagenet', 'none' (train from scratch), 'default' (fine-tune the bundled model: "
                        "its architecture, width, input size and crop scale, and a short recipe) or a .weights.h5 file")
    parser.add_argument("--scale", type=argtypes.number, default=None,
                        help="crop scale to train on (needed when CROPS holds several)")
    parser.add_argument("--crop-rule", type=str, choices=("pad", "shift"), default=None,
                        help="crop rule of the crops to train on (needed when CROPS holds both at that scale); "
                        "stored in the model, whose device crop then follows it")
    parser.add_argument("--sessions", type=str, default=None,
                        help="use only these comma-separated sessions (e.g. train on one, test on another)")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-session", type=str, default=None,
                     help="hold out this session for validation (default: the last of >= 2 sessions)")
    val.add_argument("--val-subjects", type=str, default=None,
                     help="hold out these comma-separated subjects for validation")
    val.add_argument("--val-random", type=argtypes.number, default=None, metavar="FRACTION",
                     help="random frame split with this validation fraction (leaks; debugging only)")
    parser.add_argument("--epochs", type=argtypes.integer, default=None,
                        help="phase-1 epochs (head on cached features), or all epochs with --weights none "
                        "(None: 10; 2 with --weights default)")
    parser.add_argument("--fine-tune-epochs", type=argtypes.integer, default=None,
                        help="phase-2 epochs, 0 skips phase 2 (None: 10; 3 with --weights default)")
    parser.add_argument("--batch-size", type=argtypes.integer, default=32, help="batch size")
    parser.add_argument("--lr", type=argtypes.number, default=None,
                        help="phase-1 learning rate (default 1e-4; from scratch 1e-3 RMSprop / 1e-2 SGD)")
    parser.add_argument("--fine-tune-lr", type=argtypes.number, default=1e-5, help="phase-2 learning rate")
    parser.add_argument("--fine-tune-at", type=argtypes.integer, default=100, help="first base layer trained in phase 2")
    parser.add_argument("--seed", type=argtypes.integer, default=0, help="random seed")
    parser.add_argument("--patience", type=argtypes.integer, default=5, help="early-stopping patience (epochs)")
    parser.add_argument("--monitor", type=str, choices=("val_loss", "val_auc"), default="val_loss",
                        help="validation figure for early stopping and the kept (best) epoch")
    parser.add_argument("--target-apcer", type=argtypes.number, default=0.05,
                        help="APCER of the second operating point kept in the metadata")
    parser.add_argument("--strategy", type=str, choices=("default", "mirrored"), default="default",
                        help="tf.distribute strategy")
    parser.add_argument("--mixed-precision", type=str, choices=("auto", "on", "off"), default="auto",
                        help="mixed_float16 (auto: on a GPU only)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--label-smoothing", type=argtypes.number, default=0.0, metavar="EPS",
                        help="targets 1 - EPS/2 and EPS/2 instead of 1 and 0: bounded, less over-confident scores "
                        "whose validation threshold carries better to a new session")
    parser.add_argument("--camera-augment", action="store_true",
                        help="add camera-domain augmentation (white balance, gamma, resolution, sensor noise, "
                             "sharpening, JPEG) so a threshold carries to another sensor")
    parser.add_argument("--zoom-in", type=argtypes.number, default=0.0, metavar="P",
                        help="show this share of the training crops zoomed in by up to 2x (a 2.7x crop as tight as "
                             "1.35x): the view a shift crop gets when the face fills the frame; 0: off")
    parser.add_argument("--simulated-attacks", type=argtypes.number, default=0.0, metavar="F",
                        help="give this share of the real training crops a simulated print or screen-replay twin, "
                             "labelled attack; 0: none")
    parser.add_argument("--colour", type=str, choices=COLOURS, default=None,
                        help="colour normalisation as the model's first layers: rgb (none; the default), grey "
                        "(chroma removed), greyworld (each channel minus its mean over the crop), greynorm (grey, then "
                        "the luminance standardised over the crop) or greyhp (an experiment: grey minus its local "
                        "mean, standardised; fine texture only); --weights "
                        "default takes the bundled model's")
    parser.add_argument("--teacher-targets", type=argtypes.path, action="append", default=None, metavar="CSV",
                        help="teacher P(live) per source image (scripts/teacher_targets.py); repeatable")
    parser.add_argument("--distill", type=argtypes.number, default=0.0, metavar="W",
                        help="teacher's share of each training target, 0 <= W < 0.5; 0: labels only")
    parser.add_argument("--force", action="store_true", help="overwrite an existing MODEL_DIR")


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The :class:`~tla_edge.train.options.Recipe` the flags ask for, ``--weights default`` resolved.

    Prints the line saying what ``--weights default`` chose.
    """
    d = resolve_default_weights(args.weights, args.arch, args.crops, alpha=args.alpha, input_size=args.input_size,
                                scale=args.scale, epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                                crop_rule=args.crop_rule, colour=args.colour)
    if d.note:
        print(d.note, file=sys.stderr)
    return Recipe(
        arch=args.arch, alpha=d.alpha, input_size=d.input_size, weights=d.weights, scale=d.scale,
        crop_rule=d.crop_rule, sessions=args.sessions, val_session=args.val_session, val_subjects=args.val_subjects,
        val_random=args.val_random, epochs=d.epochs, fine_tune_epochs=d.fine_tune_epochs,
        batch_size=args.batch_size, lr=args.lr, fine_tune_lr=args.fine_tune_lr, fine_tune_at=args.fine_tune_at,
        seed=args.seed, patience=args.patience, monitor=args.monitor, target_apcer=args.target_apcer,
        strategy=args.strategy, mixed_precision=args.mixed_precision, augment=not args.no_augment,
        label_smoothing=args.label_smoothing, camera_augment=args.camera_augment, zoom_in=args.zoom_in,
        teacher_targets=tuple(str(p) for p in args.teacher_targets or ()), distill=args.distill,
        simulated_attacks=args.simulated_attacks, colour=d.colour,
    )


def run(args: argparse.Namespace) -> int:
    """Trains, validates and writes MODEL_DIR; returns 0."""
    recipe = recipe_of(args)
    done = train(args.crops, args.out, recipe, force=args.force, warn=lambda line: print(line, file=sys.stderr))
    val = done.validation
    print(history.format_summary(done.meta, val.at_eer, val.at_apcer, done.phases, done.out, recipe.arch,
                                 recipe.target_apcer))
    return 0
