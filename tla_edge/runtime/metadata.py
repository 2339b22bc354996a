"""Model metadata: what the runtime must know and never guess.

Every model tla-edge writes carries a :class:`ModelMetadata`: ``metadata.json``
beside a ``model.keras``; for a ``.tflite`` it is embedded (a small zip
appended to the flatbuffer, which TFLite runtimes ignore, the same way
TFLite Support packs associated files) *and* written as a sidecar
``<model>.tflite.json``, since tools such as ``edgetpu_compiler`` drop
trailing bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import numbers
import zipfile
from pathlib import Path
from typing import Any, Sequence

from tla_edge.fileio import sha256_file
from tla_edge.runtime import preprocess

FORMAT = "tla-edge/1"
EMBEDDED_NAME = "tla_edge_metadata.json"


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What a liveness model expects and what its output means."""

    input_size: tuple[int, int] = (preprocess.DEFAULT_INPUT_SIZE, preprocess.DEFAULT_INPUT_SIZE)
    """Model input ``(height, width)`` in pixels."""
    crop_scale: float = preprocess.DEFAULT_SCALE
    """Crop window side over the face box's longer side."""
    normalization: str = "mobilenet_v2"
    """Key of :data:`tla_edge.runtime.preprocess.NORMALIZATIONS`."""
    output: str = "logit"
    """``"logit"`` (apply a sigmoid) or ``"probability"`` (already in [0, 1])."""
    live_index: int = 0
    """Index of the output that scores *live*; higher means more live."""
    threshold: float = 0.5
    """Decision threshold on the live probability: live iff score >= threshold."""
    architecture: str = "unknown"
    """E.g. ``mobilenetv2``, ``resnet34``."""
    classes: tuple[str, str] = ("spoof", "live")
    """Class names for score < threshold and score >= threshold."""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Anything else: thresholds at other operating points, data summary,
    quantization mode, source hash, validation figures."""

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-ready form, with the format tag."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["classes"] = list(self.classes)
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMetadata":
        """Builds metadata from :meth:`to_dict` output; unknown keys go to ``extra``.

        Raises:
          ValueError: a field has the wrong form.
        """
        d = dict(d)
        d.pop("format", None)
        names = {f.name for f in dataclasses.fields(cls)}
        extra = dict(d.pop("extra", {}) or {})
        for key in [k for k in d if k not in names]:
            extra[key] = d.pop(key)
        if "input_size" in d:
            size = d["input_size"]
            if isinstance(size, int):
                size = (size, size)
            if len(size) != 2:
                raise ValueError(f"metadata input_size {size!r} is not [height, width]")
            d["input_size"] = (int(size[0]), int(size[1]))
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        meta = cls(**d, extra=extra)
        if meta.normalization not in preprocess.NORMALIZATIONS:
            raise ValueError(
                f"metadata normalization {meta.normalization!r} is not one of "
                f"{sorted(preprocess.NORMALIZATIONS)}"
            )
        if meta.output not in ("logit", "probability"):
            raise ValueError(f"metadata output {meta.output!r} is not 'logit' or 'probability'")
        check_metadata_values(meta)
        return meta

    def replace(self, **changes: Any) -> "ModelMetadata":
        """Returns a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


MAX_CROP_SCALE = 10.0
"""Largest crop scale a model may declare (a crop 10x the face box is a whole scene)."""


def check_threshold(value: Any, where: str = "threshold") -> float:
    """Returns ``value`` as a float when it is a number strictly between 0 and 1.

    A threshold of 0 (or below) makes every face live, one of 1 (or above)
    none; both are refused rather than used.

    Raises:
      ValueError: names ``where`` and the value received.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{where} {value!r} is not a number; expected a number strictly between 0 and 1")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{where} {value!r} is not strictly between 0 and 1")
    return float(value)


def check_metadata_values(meta: "ModelMetadata", where: str = "metadata") -> None:
    """Checks the values the runtime acts on: threshold, crop scale, live index, input size.

    Raises:
      ValueError: one line naming the field, the value received and what was expected.
    """
    check_threshold(meta.threshold, f"{where} threshold")
    scale = meta.crop_scale
    if (isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale))
            or not 0.0 < float(scale) <= MAX_CROP_SCALE):
        raise ValueError(f"{where} crop_scale {scale!r} is not a number in (0, {MAX_CROP_SCALE:g}]")
    if isinstance(meta.live_index, bool) or not isinstance(meta.live_index, int) or meta.live_index not in (0, 1):
        raise ValueError(f"{where} live_index {meta.live_index!r} is not 0 or 1")
    if any(v < 1 for v in meta.input_size):
        raise ValueError(f"{where} input_size {list(meta.input_size)} is not two positive integers")


def model_sha256(path: str | Path) -> str:
    """SHA-256 of a model file; for a ``.tflite`` of its flatbuffer without the embedded metadata.

    Leaving the metadata out keeps the hash stable when the metadata changes
    (a fusion record naming the model's own hash is stored inside it).
    """
    if Path(path).suffix.lower() != ".tflite":
        return sha256_file(path)
    return hashlib.sha256(strip_embedded(Path(path).read_bytes())).hexdigest()


def fusion_record(model_paths: Sequence[str | Path], threshold: float) -> dict[str, Any]:
    """The ``extra.fusion`` record of models fused by averaging: partner hashes and the fused threshold.

    Raises:
      ValueError: fewer than two models or a threshold outside (0, 1).
    """
    if len(model_paths) < 2:
        raise ValueError(f"fusion needs at least two models; got {len(model_paths)}")
    return {
        "models": [Path(p).name for p in model_paths],  # file names, the first the primary (as given)
        "partners": sorted(model_sha256(p) for p in model_paths),
        "threshold": check_threshold(threshold, "fused threshold"),
    }


def store_fusion(model_paths: Sequence[str | Path], threshold: float) -> dict[str, Any]:
    """Stores the fused threshold in every model's metadata (``extra.fusion``).

    A ``.tflite`` with embedded metadata gets it re-embedded (the flatbuffer,
    hence its hash, is unchanged) and its sidecar rewritten; one with only a
    sidecar gets the sidecar. Each file is written through a temporary name.

    Returns:
      The record stored.

    Raises:
      ValueError: a model without tla-edge metadata, fewer than two models, or
        a threshold outside (0, 1).
    """
    from tla_edge import fileio

    record = fusion_record(model_paths, threshold)
    updates = []
    for path in map(Path, model_paths):
        meta = load(path)
        if meta is None:
            raise ValueError(f"model '{path}' has no tla-edge metadata to store a fusion threshold in")
        updates.append((path, meta.replace(extra={**meta.extra, "fusion": record})))
    for path, meta in updates:
        if path.suffix.lower() == ".tflite" and read_embedded(path) is not None:
            fileio.write_bytes_atomic(path, embed(path.read_bytes(), meta))
        fileio.write_text_atomic(sidecar_path(path), json.dumps(meta.to_dict(), indent=2) + "\n")
    return record


def fused_threshold(models: Sequence[tuple[str | Path, "ModelMetadata"]]) -> float:
    """The stored threshold of several models fused by averaging their scores.

    The threshold of a fusion is derived on the fused score, so it is never
    the mean of the models' own thresholds: every model must carry the same
    ``extra.fusion`` record (see :func:`fusion_record`) whose partners are
    exactly these models' hashes.

    Args:
      models: ``(model file, its metadata)`` per fused model.

    Returns:
      The fused threshold.

    Raises:
      ValueError: no matching fusion record; pass an explicit threshold instead.
    """
    names = " + ".join(f"'{p}'" for p, _ in models)
    records = [(meta.extra or {}).get("fusion") for _, meta in models]
    hashes = sorted(model_sha256(p) for p, _ in models)
    ok = all(isinstance(r, dict) and r == records[0] for r in records) and records[0].get("partners") == hashes
    if not ok:
        raise ValueError(
            f"models {names} carry no common fusion threshold (extra.fusion naming exactly these "
            "models); the mean of their own thresholds is not a threshold of the fused score: "
            "pass an explicit threshold (--threshold, API threshold=)"
        )
    return check_threshold(records[0].get("threshold"), "fusion threshold")


def portable_path(path: str | Path, base: str | Path | None = None) -> str:
    """A path fit to store in a model or a committed report: never machine-specific.

    A relative path stays as given; an absolute one becomes relative to
    ``base`` (default: the current folder) when it lies inside it, else
    ``<DIR>/<its name>``, a placeholder that names the folder without the
    machine's layout (``/home/alice/...``, ``/tmp/...``).
    """
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    root = Path(base) if base is not None else Path.cwd()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return f"<DIR>/{p.name}"


def model_file(path: str | Path) -> Path:
    """A model path as given, or ``DIR/model.keras`` for a folder written by ``tla-edge train``.

    Raises:
      FileNotFoundError: a folder without ``model.keras``.
    """
    path = Path(path)
    if path.is_dir():
        inner = path / "model.keras"
        if not inner.is_file():
            raise FileNotFoundError(
                f"model folder '{path}' holds no model.keras; expected a folder written by tla-edge train"
            )
        return inner
    return path


def sidecar_path(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``; ``dir/model.keras`` -> ``dir/metadata.json``."""
    model_path = Path(model_path)
    if model_path.suffix == ".keras":
        return model_path.with_name("metadata.json")
    return model_path.with_name(model_path.name + ".json")


def embed(tflite_bytes: bytes, meta: ModelMetadata) -> bytes:
    """Appends the metadata to a TFLite flatbuffer as a small zip.

    Any previously embedded zip is dropped first, so embedding twice is safe.
    """
    body = strip_embedded(tflite_bytes)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        # a fixed date keeps the file's bytes (and sha256) reproducible
        info = zipfile.ZipInfo(EMBEDDED_NAME, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(meta.to_dict(), indent=2))
    return body + buf.getvalue()


def strip_embedded(tflite_bytes: bytes) -> bytes:
    """Returns the flatbuffer without an appended tla-edge metadata zip."""
    marker = EMBEDDED_NAME.encode()
    idx = tflite_bytes.rfind(b"PK\x03\x04")
    while idx != -1:
        if tflite_bytes[idx + 30 : idx + 30 + len(marker)] == marker:
            return tflite_bytes[:idx]
        idx = tflite_bytes.rfind(b"PK\x03\x04", 0, idx)
    return tflite_bytes


def read_embedded(model_path: str | Path) -> ModelMetadata | None:
    """Reads metadata embedded in a ``.tflite``, or None when there is none."""
    try:
        with zipfile.ZipFile(model_path) as zf:
            if EMBEDDED_NAME not in zf.namelist():
                return None
            text = zf.read(EMBEDDED_NAME)
    except (zipfile.BadZipFile, OSError):
        return None
    try:
        return ModelMetadata.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"metadata embedded in '{model_path}' is not valid tla-edge metadata: {err}") from err


def load(model_path: str | Path) -> ModelMetadata | None:
    """Finds a model's metadata: embedded first, then the sidecar; None when absent.

    Raises:
      ValueError: the sidecar exists but is not valid metadata JSON.
    """
    model_path = Path(model_path)
    if model_path.suffix == ".tflite":
        meta = read_embedded(model_path)
        if meta is not None:
            return meta
    side = sidecar_path(model_path)
    if not side.is_file():
        return None
    try:
        return ModelMetadata.from_dict(json.loads(side.read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"metadata file '{side}' is not valid tla-edge metadata: {err}") from err
