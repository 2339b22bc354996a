"""What a convert run writes: output names, checks before anything runs, model + sidecar writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

from tla_edge import fileio
from tla_edge.converters import tflite as tflite_lib
from tla_edge.errors import UserError
from tla_edge.runtime import metadata as metadata_lib


class OutputOptions(NamedTuple):
    """What is written, and where."""

    io: str = "int8"
    """Interface type of int8 models, one of :data:`tla_edge.converters.tflite.IO_TYPES`."""
    edgetpu: bool = False
    """Also run ``edgetpu_compiler`` on the int8 models."""
    out: Path | None = None
    """Output file when one model is written (None: see ``out_dir``)."""
    out_dir: Path | None = None
    """Output folder, files named ``<model>_<mode>.tflite`` (None: the model's folder)."""
    report: Path | None = None
    """Where :func:`tla_edge.converters.export.write_report` writes the run's figures as JSON (None: nowhere)."""
    force: bool = False
    """Overwrite existing outputs."""


class Job(NamedTuple):
    """One model to write."""

    key: str
    """``float32``, ``fp16``, ``dynamic``, ``int8`` or ``int8_qat``."""
    mode: str
    """Conversion mode passed to :func:`tla_edge.converters.tflite.convert`."""
    path: Path
    """Output file."""


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


def job_keys(modes: Sequence[str], qat: bool) -> list[str]:
    """The models a run writes: the modes, plus ``int8`` and ``int8_qat`` with QAT.

    Raises:
      ValueError: no mode, or one that is not in :data:`tla_edge.converters.tflite.MODES`.
    """
    if not modes or any(m not in tflite_lib.MODES for m in modes):
        raise ValueError(f"conversion modes {list(modes)} are not a non-empty list of {list(tflite_lib.MODES)}")
    keys = list(modes)
    if qat:
        if "int8" not in keys:
            keys.append("int8")  # QAT is reported against the PTQ int8 model
        keys.append("int8_qat")
    return keys


def output_paths(model_path: Path, keys: Sequence[str], out: Path | None, out_dir: Path | None) -> list[Path]:
    """One output file per model: ``out``, or ``<out_dir>/<model>_<key>.tflite``.

    Raises:
      UserError: ``out`` given for several models.
      ValueError: ``out`` does not end in ``.tflite``.
    """
    if out is not None:
        if len(keys) != 1:
            raise UserError(
                f"--out names one file but this run writes {len(keys)} models ({', '.join(keys)}); "
                "use --out-dir DIR"
            )
        if out.suffix != ".tflite":
            raise ValueError(f"--out '{out}' does not end in .tflite")
        return [out]
    folder = out_dir if out_dir is not None else model_path.parent
    return [folder / f"{model_path.stem}_{k}.tflite" for k in keys]


def plan_jobs(model_path: Path, keys: Sequence[str], output: OutputOptions) -> list[Job]:
    """The jobs of a run, after checking that every file it may write can be written.

    Raises:
      UserError: two outputs share a name, one exists without ``force``, or a folder is not writable.
    """
    paths = output_paths(model_path, keys, output.out, output.out_dir)
    jobs = [Job(k, "int8" if k == "int8_qat" else k, p) for k, p in zip(keys, paths)]
    to_check = []
    for job in jobs:
        to_check += [job.path, metadata_lib.sidecar_path(job.path)]
        if output.edgetpu and job.mode == "int8":
            to_check += [edgetpu_path(job.path), metadata_lib.sidecar_path(edgetpu_path(job.path))]
    if output.report is not None:
        to_check.append(output.report)
    if len({p.resolve() for p in to_check}) != len(to_check):
        raise UserError(f"two outputs would share a name: {', '.join(str(p) for p in to_check)}")
    for p in to_check:
        check_output(p, output.force)
    return jobs


def write_model(path: Path, data: bytes, meta: metadata_lib.ModelMetadata) -> bytes:
    """Writes a model with its metadata embedded, then its ``.json`` sidecar; returns the bytes written.

    Each file goes to a temporary name first and is renamed, so neither is
    ever half-written.
    """
    final = metadata_lib.embed(data, meta)
    fileio.write_bytes_atomic(path, final)
    fileio.write_json_atomic(metadata_lib.sidecar_path(path), meta.to_dict())
    return final


def mb(n: int) -> str:
    """``1234567`` -> ``"1.23 MB"``."""
    return f"{n / 1e6:.2f} MB"
