"""Convert a Keras liveness model to TFLite: float32, fp16, dynamic range, full-integer int8, QAT.

Every converted model is checked against the Keras model on the same
validation crops (score correlation, decision agreement, change in ACER and
EER); its threshold is re-derived on its own scores and written into its
metadata (embedded and as a <model>.tflite.json sidecar). A collapsed model
fails the command (exit 1) unless --allow-degraded. The Edge TPU readiness of
each file is printed; --edgetpu also runs edgetpu_compiler when it is installed.

examples:
  tla-edge convert models/default --int8 --calib crops/
  tla-edge convert models/default/model.keras --all --qat --calib crops/ --val-session 02 --edgetpu
  tla-edge convert models/default --int8 --io uint8 --calib crops/ --out model_uint8.tflite
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple


from tla_edge import fileio


from tla_edge.cli import argtypes
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.converters import edgetpu as edgetpu_lib
from tla_edge.converters import parity as parity_lib
from tla_edge.converters import tflite as tflite_lib
from tla_edge.train import models as models_lib
from tla_edge.errors import UserError, missing_extra

PROG = "tla-edge convert"
ALL_MODES = ("float32", "fp16", "dynamic", "int8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``convert`` flags."""
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="MODEL.keras, or a model folder holding model.keras and metadata.json")
    modes = parser.add_argument_group("what to write (one is required)")
    pick = modes.add_mutually_exclusive_group()
    pick.add_argument("--int8", dest="mode", action="store_const", const="int8",
                      help="full-integer int8 (post-training quantization; needs --calib)")
    pick.add_argument("--fp16", dest="mode", action="store_const", const="fp16",
                      help="float16 weights, float compute")
    pick.add_argument("--dynamic", dest="mode", action="store_const", const="dynamic",
                      help="dynamic-range: int8 weights, float activations")
    pick.add_argument("--float32", dest="mode", action="store_const", const="float32",
                      help="plain float32")
    pick.add_argument("--all", dest="mode", action="store_const", const="all",
                      help="all four: float32, fp16, dynamic, int8")
    modes.add_argument("--qat", action="store_true",
                       help="also quantization-aware training: fine-tune a QAT copy on the --calib "
                            "crops and write it as int8 (MobileNetV2 only; needs tensorflow-model-optimization)")
    data = parser.add_argument_group("data")
    data.add_argument("--calib", type=Path, default=None, metavar="CROPS",
                      help="crops folder (tla-edge prepare) to calibrate int8 and fine-tune QAT on "
                           "(None: the crops the model was trained on, from its metadata)")
    data.add_argument("--calib-samples", type=argtypes.positive_int, default=tflite_lib.DEFAULT_CALIBRATION_SAMPLES,
                      metavar="N", help="calibration crops, stratified by class and attack species")
    data.add_argument("--val", type=Path, default=None, metavar="CROPS",
                      help="crops folder for the parity check (None: --calib's)")
    held = data.add_mutually_exclusive_group()
    held.add_argument("--val-session", type=str, default=None, metavar="SESSION",
                      help="validate on this session only, and calibrate / fine-tune on the others "
                           "(None: the sessions or subjects the model was validated on, from its "
                           "metadata, else all crops)")
    held.add_argument("--val-subjects", type=str, default=None, metavar="S1,S2",
                      help="validate on these subjects only, and calibrate / fine-tune on the others "
                           "(None: see --val-session)")
    data.add_argument("--resize-crops", action="store_true",
                      help="resize crops of another size to the model's input, as tla-edge train "
                           "--input-size does (unset: refuse them)")
    data.add_argument("--seed", type=int, default=0, help="seed of the calibration draw and QAT shuffling")
    out = parser.add_argument_group("output")
    out.add_argument("--io", type=str, default="int8", choices=tflite_lib.IO_TYPES,
                     help="input/output type of int8 models: int8, uint8 (pycoral / Edge TPU "
                          "convention) or float (quantize/dequantize inside the model)")
    out.add_argument("--edgetpu", action="store_true",
                     help="run edgetpu_compiler on the int8 models (x86-64 Linux) and write *_edgetpu.tflite")
    where = out.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, metavar="FILE.tflite",
                       help="output file when one model is written (None: see --out-dir)")
    where.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                       help="output folder, files named <model>_<mode>.tflite (None: the model's folder)")
    out.add_argument("--report", type=Path, default=None, metavar="FILE.json",
                     help="also write the run's figures (sizes, parity, Edge TPU) as JSON (None: no JSON)")
    out.add_argument("--force", action="store_true", help="overwrite existing outputs")
    checks = parser.add_argument_group("parity checks")
    checks.add_argument("--min-agreement", type=argtypes.probability, default=parity_lib.DEFAULT_MIN_AGREEMENT,
                        help="a converted model deciding like the float one on fewer crops is degraded")
    checks.add_argument("--min-score-std", type=float, default=parity_lib.DEFAULT_MIN_SCORE_STD,
                        help="a converted model whose scores vary less is collapsed")
    checks.add_argument("--allow-degraded", action="store_true",
                        help="write degraded models anyway and exit 0")
    qat = parser.add_argument_group("quantization-aware training (--qat)")
    qat.add_argument("--qat-epochs", type=argtypes.non_negative_int, default=2, help="fine-tuning epochs")
    qat.add_argument("--qat-lr", type=float, default=1e-5, help="Adam learning rate")
    qat.add_argument("--qat-batch-size", type=argtypes.positive_int, default=32, help="crops per step")
    qat.add_argument("--qat-target", type=str, default="teacher", choices=("labels", "teacher"),
                     help="what fine-tuning learns: the float model's scores on the training crops "
                          "(distillation: the QAT model learns to reproduce the float model under int8 "
                          "rounding), or the crops' labels (refits them; on cross-session data it drifts "
                          "from the float model)")


class Job(NamedTuple):
    """One model to write."""

    key: str
    """``float32``, ``fp16``, ``dynamic``, ``int8`` or ``int8_qat``."""
    mode: str
    """Conversion mode passed to :func:`tla_edge.converters.tflite.convert`."""
    path: Path
    """Output file."""


# --- inputs -----------------------------------------------------------------------


def resolve_model(path: Path) -> Path:
    """The ``.keras`` file named by MODEL (a file, or a folder holding ``model.keras``).

    Raises:
      FileNotFoundError: nothing there, or a folder without ``model.keras``.
      ValueError: the file is not a Keras zip archive.
    """
    path = metadata_lib.model_file(path)
    if not path.exists():
        raise FileNotFoundError(f"model '{path}' not found; expected MODEL.keras or a model folder")
    ok = path.suffix == ".keras" and zipfile.is_zipfile(path)
    if ok:
        with zipfile.ZipFile(path) as zf:
            ok = "config.json" in zf.namelist()
    if not ok:
        raise ValueError(
            f"model '{path}' is not a Keras model; expected a .keras file (zip with config.json) "
            "written by tla-edge train or keras.Model.save"
        )
    return path


def _outputs(args: argparse.Namespace, model_path: Path, keys: list[str]) -> list[Path]:
    if args.out is not None:
        if len(keys) != 1:
            raise UserError(
                f"--out names one file but this run writes {len(keys)} models ({', '.join(keys)}); "
                "use --out-dir DIR"
            )
        if args.out.suffix != ".tflite":
            raise ValueError(f"--out '{args.out}' does not end in .tflite")
        return [args.out]
    folder = args.out_dir if args.out_dir is not None else model_path.parent
    return [folder / f"{model_path.stem}_{k}.tflite" for k in keys]


def edgetpu_path(path: Path) -> Path:
    """``x_int8.tflite`` -> ``x_int8_edgetpu.tflite`` (the compiler's own naming)."""
    return path.with_name(f"{path.stem}_edgetpu.tflite")


def check_output(path: Path, force: bool) -> Path:
    """Checks that a file may be written: absent (or ``force``) and its folder writable.

    Goes beyond ``os.access`` (which says yes to root anywhere) by creating
    and removing a temporary file in the folder.

    Raises:
      UserError: it exists without ``force``, or its folder cannot be written.
    """
    path = fileio.check_writable(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tla_edge_probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"output directory '{parent}' is not writable: {err.strerror or err}") from err
    return path


class Holdout(NamedTuple):
    """Which crops validate (parity) and which calibrate and fine-tune."""

    kind: str | None
    """``"sessions"``, ``"subjects"`` or None (validate on all crops)."""
    values: list[str]
    """The held-out sessions or subjects."""
    source: str
    """Where the choice came from: ``--val-session``, ``--val-subjects`` or ``metadata``."""

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
            from tla_edge.data import datasets

            column = self.kind[:-1]  # manifest columns are "session" and "subject"
            present = sorted({r.get(column, "") for r in datasets.read_manifest(crops_dir)})
            values = [v for v in present if not any(_same_id(v, h) for h in self.values)]
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


def _same_id(a: str, b: str) -> bool:
    """``"2"`` and ``"02"`` name the same session."""
    a, b = a.strip(), b.strip()
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def _with_progress(gen_fn: Any, total: int, desc: str) -> Any:
    """A representative-dataset function that draws a progress bar as the converter pulls crops."""
    from tla_edge.progress import Progress

    def gen() -> Any:
        with Progress(total, desc, unit="img") as bar:
            for item in gen_fn():
                yield item
                bar.update()

    return gen


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


# --- the command ---------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Converts, checks parity, writes files and prints the summary; returns the exit code."""
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    if args.mode is None:
        raise UserError("choose what to write: --int8, --fp16, --dynamic, --float32 or --all")
    model_path = resolve_model(args.model)
    meta = metadata_lib.load(model_path)
    modes = list(ALL_MODES) if args.mode == "all" else [args.mode]
    keys = list(modes)
    if args.qat:
        if "int8" not in keys:
            keys.append("int8")  # QAT is reported against the PTQ int8 model
        keys.append("int8_qat")
    paths = _outputs(args, model_path, keys)
    jobs = [Job(k, "int8" if k == "int8_qat" else k, p) for k, p in zip(keys, paths)]
    to_check = []
    for job in jobs:
        to_check += [job.path, metadata_lib.sidecar_path(job.path)]
        if args.edgetpu and job.mode == "int8":
            to_check += [edgetpu_path(job.path), metadata_lib.sidecar_path(edgetpu_path(job.path))]
    if args.report is not None:
        to_check.append(args.report)
    if len({p.resolve() for p in to_check}) != len(to_check):
        raise UserError(f"two outputs would share a name: {', '.join(str(p) for p in to_check)}")
    for p in to_check:
        check_output(p, args.force)

    needs_int8 = any(j.mode == "int8" for j in jobs)
    data_hint = ((meta.extra if meta else {}) or {}).get("data", {}).get("crops_dir")
    calib_dir = args.calib
    if calib_dir is None and data_hint and Path(data_hint).is_dir():
        calib_dir = Path(data_hint)
        _log(f"{PROG}: using the crops the model was trained on: {calib_dir}")
    if needs_int8 and calib_dir is None:
        raise UserError(
            "int8 needs calibration crops: pass --calib CROPS (a folder written by tla-edge prepare)"
        )
    val_dir = args.val or calib_dir
    if val_dir is None:
        raise UserError(
            "the parity check needs validation crops: pass --val CROPS or --calib CROPS "
            "(a folder written by tla-edge prepare)"
        )
    if args.qat:
        from tla_edge.converters import qat as qat_lib

        qat_lib.check_architecture(meta)
        qat_lib.import_tfmot()

    try:
        import keras
        import tensorflow as tf
    except ImportError as err:
        raise missing_extra("tensorflow", "train") from err
    try:
        model = keras.saving.load_model(str(model_path), compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise ValueError(
            f"model '{model_path}' could not be loaded as a Keras model: {' '.join(str(err).split())[:300]}"
        ) from err
    if tflite_lib.dtype_policies(model) - {"float32"}:
        _log(f"{PROG}: the model computes in {sorted(tflite_lib.dtype_policies(model) - {'float32'})}; "
             "converting a float32 copy")
        model = tflite_lib.as_float32(model)
    h, w, _ = tflite_lib.input_shape(model)
    tflite_lib.output_values(model)
    if meta is None:
        meta = metadata_lib.ModelMetadata(input_size=(h, w))
        _log(f"{PROG}: warning: no metadata.json beside '{model_path}'; using defaults "
             f"(normalization {meta.normalization}, crop scale {meta.crop_scale:g}, threshold 0.5)")
    elif tuple(meta.input_size) != (h, w):
        raise ValueError(
            f"model '{model_path}' input is {h}x{w} but its metadata says "
            f"{meta.input_size[0]}x{meta.input_size[1]}"
        )
    if args.qat:
        qat_lib.check_architecture(meta)

    # Validation crops: the held-out part when one is known; calibration and
    # QAT use the rest of the same folder.
    holdout = held_out(meta, args.val_session, args.val_subjects, Path(val_dir))
    val = tflite_lib.load_crop_set(
        val_dir, meta.crop_scale, (h, w), what="validation", resize=args.resize_crops,
        **holdout.filters(held_out=True),
    )
    val_desc = f"'{val_dir}' {holdout.describe()}" + (
        " (held out in training)" if holdout.source == "metadata" else "")
    _log(f"{PROG}: parity on {len(val.labels)} crops of {val_desc}")
    train_filters: dict[str, list[str] | None] = {"sessions": None, "subjects": None}
    if calib_dir is not None and holdout.kind and Path(calib_dir).resolve() == Path(val_dir).resolve():
        train_filters = holdout.filters(held_out=False, crops_dir=Path(calib_dir))
    train_desc = next((f"{k} {','.join(v)}" for k, v in train_filters.items() if v), "all crops")
    calib = None
    if needs_int8:
        calib = tflite_lib.calibration_set(
            calib_dir, args.calib_samples, args.seed, meta.crop_scale, (h, w),
            resize=args.resize_crops, **train_filters,
        )
        _log(f"{PROG}: calibrating on {len(calib.labels)} of {calib.available} crops of '{calib_dir}' "
             f"{train_desc} "
             f"({', '.join(f'{k} {v}' for k, v in calib.counts.items())})")
    float_scores = models_lib.keras_scores(model, val.images, meta, desc="float model")
    source_sha = tflite_lib.sha256_file(model_path)

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    qat_info = None
    for job in jobs:
        t0 = time.perf_counter()
        _log(f"{PROG}: converting {job.key} ...")
        if job.key == "int8_qat":
            train = tflite_lib.load_crop_set(
                calib_dir, meta.crop_scale, (h, w), what="QAT training",
                resize=args.resize_crops, **train_filters,
            )
            qmodel, qat_info = qat_lib.qat_model(
                model, meta, train.images, train.labels, args.qat_epochs,
                args.qat_batch_size, args.qat_lr, args.seed, target=args.qat_target,
            )
            source = qmodel
        else:
            source = model
        rep = None
        if job.mode == "int8":
            rep = _with_progress(tflite_lib.representative_dataset(calib.images, meta.normalization),
                                 len(calib.labels), f"calibrating {job.key}")
        io = args.io if job.mode == "int8" else "float"
        data = tflite_lib.convert(source, job.mode, rep, io=io)
        t_convert = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="tla_edge_convert_") as tmp:
            tmp_path = Path(tmp) / job.path.name
            tmp_path.write_bytes(data)
            conv_scores = parity_lib.tflite_scores(tmp_path, val.images, meta, desc=f"{job.key} model")
            summary = tflite_lib.tensor_summary(tmp_path)
        report = parity_lib.compare(
            float_scores, conv_scores, val.labels, val.species, meta,
            args.min_agreement, args.min_score_std,
        )
        # int8 moves scores: its thresholds are re-derived on its own scores. The
        # float modes keep the thresholds training chose (their scores match).
        rederive = job.mode == "int8"
        extra: dict[str, Any] = {
            "thresholds": report.thresholds if rederive else dict((meta.extra or {}).get("thresholds") or {}),
            "quantization": job.key,
            "io": io,
            "source_model": {"file": model_path.name, "sha256": source_sha,
                             "threshold": meta.threshold},
            "calibration": None if calib is None else {
                "crops": int(len(calib.labels)), "per_stratum": calib.counts,
                "crops_dir": metadata_lib.portable_path(calib_dir), "part": train_desc, "seed": args.seed,
            },
            "parity": report.to_dict(),
            "validation": {"crops_dir": metadata_lib.portable_path(val_dir), "part": holdout.describe(),
                           "source": holdout.source},
            "converter": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        for key in ("alpha", "target_apcer"):
            if key in (meta.extra or {}):
                extra[key] = meta.extra[key]
        if job.key == "int8_qat":
            extra["qat"] = qat_info
        if report.degraded:
            extra["degraded"] = report.degraded
        threshold = report.converted_threshold if rederive else float(meta.threshold)
        out_meta = meta.replace(threshold=threshold, extra=extra)
        row: dict[str, Any] = {
            "model": job.key, "file": str(job.path), "io": io,
            "input": summary.input_dtype, "output": summary.output_dtype,
            "float_tensors": summary.float_tensors, "convert_s": round(t_convert, 2),
            "parity": report.to_dict(), "threshold": threshold,
            "threshold_source": "re-derived" if rederive else "source model",
        }
        if report.degraded:
            msg = f"{job.key} model is degraded: {report.degraded}"
            if not args.allow_degraded:
                _log(f"{PROG}: error: {msg}; not written (check the calibration crops, or pass --allow-degraded)")
                failed.append(job.key)
                row.update(written=False, bytes=len(data))
                results.append(row)
                continue
            _log(f"{PROG}: warning: {msg}; written anyway (--allow-degraded)")
        final = metadata_lib.embed(data, out_meta)
        fileio.write_bytes_atomic(job.path, final)
        fileio.write_json_atomic(metadata_lib.sidecar_path(job.path), out_meta.to_dict())
        print(f"wrote {job.path} ({_mb(len(final))}) + {metadata_lib.sidecar_path(job.path).name}")
        ready, lines = edgetpu_lib.readiness_lines(job.path)
        for line in lines:
            print(line)
        row.update(written=True, bytes=len(final), edgetpu_ready=ready)
        results.append(row)

    edgetpu_rows = []
    if args.edgetpu:
        edgetpu_rows = _compile_edgetpu(args, results, meta)
        if any(r.get("error") for r in edgetpu_rows):
            failed.append("edgetpu")
    wall = time.perf_counter() - t_start
    _print_summary(model_path, val_desc, len(val.labels), calib, results, edgetpu_rows, qat_info, wall)
    if args.report is not None:
        fileio.write_json_atomic(args.report, {
            "source": {"file": metadata_lib.portable_path(model_path), "sha256": source_sha,
                       "bytes": model_path.stat().st_size,
                       "threshold": meta.threshold, "crop_scale": meta.crop_scale,
                       "input_size": list(meta.input_size), "architecture": meta.architecture},
            "validation": {"crops_dir": metadata_lib.portable_path(val_dir), "part": holdout.describe(),
                           "source": holdout.source, "crops": int(len(val.labels))},
            "calibration": None if calib is None else {"crops": int(len(calib.labels)), "per_stratum": calib.counts},
            "models": results, "edgetpu": edgetpu_rows, "qat": qat_info, "wall_s": round(wall, 1),
        })
        print(f"wrote {args.report}")
    if failed:
        _log(f"{PROG}: error: failed: {', '.join(failed)}")
        return 1
    return 0


def _compile_edgetpu(args: argparse.Namespace, results: list[dict], meta: Any) -> list[dict]:
    compiler = edgetpu_lib.find_compiler()
    rows = []
    int8 = [r for r in results if r.get("written") and r["model"].startswith("int8")]
    if compiler is None:
        _log(f"{PROG}: warning: {edgetpu_lib.missing_compiler_message()}; "
             "kept the CPU int8 model(s)")
        return [{"model": r["model"], "compiled": False, "reason": "edgetpu_compiler not installed"} for r in int8]
    for r in int8:
        src = Path(r["file"])
        try:
            data, report, _ = edgetpu_lib.compile_model(src.read_bytes(), src.name, compiler)
        except UserError as err:
            _log(f"{PROG}: error: {err}")
            rows.append({"model": r["model"], "compiled": False, "error": str(err)})
            continue
        src_meta = metadata_lib.load(src) or meta
        out_meta = src_meta.replace(extra={**src_meta.extra, "edgetpu": report.to_dict()})
        dst = edgetpu_path(src)
        final = metadata_lib.embed(data, out_meta)
        fileio.write_bytes_atomic(dst, final)
        fileio.write_json_atomic(metadata_lib.sidecar_path(dst), out_meta.to_dict())
        print(f"wrote {dst} ({_mb(len(final))}); Edge TPU ops {report.ops_tpu}/{report.ops_total}, "
              f"CPU {report.ops_cpu}, subgraphs {report.subgraphs}")
        rows.append({"model": r["model"], "compiled": True, "file": str(dst), "bytes": len(final),
                     **report.to_dict()})
    return rows


def _print_summary(model_path: Path, val_desc: str, n_val: int, calib: Any, results: list[dict],
                   edgetpu_rows: list[dict], qat_info: dict | None, wall: float) -> None:
    print()
    print(f"convert summary: {model_path}  ({wall:.0f} s)")
    print(f"  parity on {n_val} crops of {val_desc}"
          + ("" if calib is None else f"; calibration {len(calib.labels)} crops"))
    head = f"  {'model':<9} {'size':>9} {'io':>6} {'float':>5} {'pearson':>8} {'agree%':>7} " \
           f"{'ACER%':>13} {'EER%':>13} {'maxdiff':>8} {'thr':>6} {'EdgeTPU':>8}"
    print(head)
    for r in results:
        p = r["parity"]
        own = r["threshold_source"] == "re-derived"
        f, c = p["float"] or {}, p["converted_own_threshold" if own else "converted"] or {}
        ce = p["converted"] or {}
        acer = f"{_pct(f.get('acer'))}->{_pct(c.get('acer'))}" if f else "-"
        eer = f"{_pct(f.get('eer'))}->{_pct(ce.get('eer'))}" if f else "-"
        pear = "-" if p["pearson"] is None else f"{p['pearson']:.4f}"
        tpu = "-" if not r.get("written") else ("ready" if r.get("edgetpu_ready") else "no")
        size = _mb(r["bytes"]) if r.get("written") else "NOT SAVED"
        print(f"  {r['model']:<9} {size:>9} {r['io']:>6} {r['float_tensors']:>5} {pear:>8} "
              f"{100 * p['agreement']:>7.2f} {acer:>13} {eer:>13} {p['max_abs_diff']:>8.4f} "
              f"{r['threshold']:>6.3f} {tpu:>8}")
    for r in results:
        if r["parity"]["degraded"]:
            print(f"  {r['model']}: DEGRADED: {r['parity']['degraded']}")
    for e in edgetpu_rows:
        if e.get("compiled"):
            print(f"  {e['model']} Edge TPU: {e['ops_tpu']}/{e['ops_total']} ops on the TPU -> {e['file']}")
        else:
            print(f"  {e['model']} Edge TPU: not compiled ({e.get('reason') or e.get('error')})")
    if qat_info:
        hist = qat_info.get("history") or {}
        loss = hist.get("loss") or []
        print(f"  QAT: {qat_info['crops']} crops, {qat_info['epochs']} epochs, lr {qat_info['lr']:g}, "
              f"target {qat_info['target']}, "
              f"{qat_info['wall_s']:.0f} s" + (f", loss {loss[0]:.4f} -> {loss[-1]:.4f}" if loss else ""))
    print("  (float = float tensors in the file; ACER at the threshold written into each file: "
          "int8 re-derived on its own scores, others the source's; agree% at the source threshold)")
