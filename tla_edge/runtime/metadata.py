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
from typing import Any

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
    crop_rule: str = preprocess.DEFAULT_CROP_RULE
    """How the crop window meets the frame's edges: ``"pad"`` (centred, padded)
    or ``"shift"`` (shrunk and moved inside the frame); see
    :func:`tla_edge.runtime.preprocess.crop_region`. Absent from a file: ``"pad"``."""
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
        """Returns the JSON-ready form, with the format tag.

        ``crop_rule`` is written only when it is not ``"pad"``: a file without
        it means ``"pad"``, so a padded model's metadata (and the bytes of its
        file) stay what they were before crop rules existed.
        """
        d = dataclasses.asdict(self)
        if self.crop_rule == preprocess.DEFAULT_CROP_RULE:
            del d["crop_rule"]
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
    """Checks the values the runtime acts on: threshold, crop scale and rule, live index, input size.

    Raises:
      ValueError: one line naming the field, the value received and what was expected.
    """
    check_threshold(meta.threshold, f"{where} threshold")
    scale = meta.crop_scale
    if (isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale))
            or not 0.0 < float(scale) <= MAX_CROP_SCALE):
        raise ValueError(f"{where} crop_scale {scale!r} is not a number in (0, {MAX_CROP_SCALE:g}]")
    preprocess.check_crop_rule(meta.crop_rule, f"{where} crop_rule")
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


def read_sidecar(side: str | Path) -> ModelMetadata:
    """Reads a metadata sidecar (``<model>.tflite.json`` or ``metadata.json``).

    Raises:
      ValueError: the file is not valid metadata JSON.
    """
    try:
        return ModelMetadata.from_dict(json.loads(Path(side).read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"metadata file '{side}' is not valid tla-edge metadata: {err}") from err


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def disagreement(embedded: ModelMetadata, sidecar: ModelMetadata) -> str | None:
    """Where two copies of a model's metadata differ (``threshold: embedded 0.957, sidecar 0.999``); None if nowhere."""
    if embedded == sidecar:
        return None
    a, b = _flat(embedded.to_dict()), _flat(sidecar.to_dict())
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    shown = "; ".join(f"{k}: embedded {a.get(k, '<absent>')!r}, sidecar {b.get(k, '<absent>')!r}" for k in keys[:3])
    return shown + (f"; and {len(keys) - 3} more" if len(keys) > 3 else "")


def load(model_path: str | Path) -> ModelMetadata | None:
    """Finds a model's metadata: embedded, else the sidecar; None when absent.

    The one rule where both exist: they must agree. tla-edge writes them
    together, so a difference means one was edited, and neither silently wins
    (an edited sidecar threshold that is ignored, or one that lowers the
    threshold of a model whose file says otherwise).

    Raises:
      ValueError: the sidecar is not valid metadata JSON, or it disagrees with
        the embedded metadata (the message names the fields and both values).
    """
    model_path = Path(model_path)
    side = sidecar_path(model_path)
    if model_path.suffix.lower() == ".tflite":
        meta = read_embedded(model_path)
        if meta is not None:
            diff = disagreement(meta, read_sidecar(side)) if side.is_file() else None
            if diff is not None:
                raise ValueError(
                    f"metadata of '{model_path}' disagrees with its sidecar '{side}': {diff}; expected the same "
                    "metadata in both: delete or rewrite the sidecar (to change the threshold, tla-edge calibrate "
                    "writes a new model with both)")
            return meta
    if not side.is_file():
        return None
    return read_sidecar(side)
