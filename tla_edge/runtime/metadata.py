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
from typing import Any, Mapping, Sequence

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


def fusion_names_ok(names: Any) -> bool:
    """True for a fusion record's ``models``: a list of plain ``.tflite`` file names (no folder, no ``..``)."""
    return isinstance(names, list) and bool(names) and all(
        isinstance(n, str) and n not in (".", "..") and Path(n).name == n and "\\" not in n
        and not Path(n).is_absolute() and n.lower().endswith(".tflite") for n in names)


def metadata_sha256(meta: "ModelMetadata") -> str:
    """SHA-256 of a model's canonical metadata JSON (sorted keys, no spaces) without its fusion record.

    A fusion record names it per partner, so a sidecar whose threshold or
    preprocessing was edited after the fusion no longer matches the record.
    """
    d = meta.to_dict()
    d["extra"] = {k: v for k, v in (d.get("extra") or {}).items() if k != "fusion"}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def fusion_record(model_paths: Sequence[str | Path], threshold: float) -> dict[str, Any]:
    """The ``extra.fusion`` record of models fused by averaging: partner hashes and the fused threshold.

    ``partners`` are the flatbuffers' SHA-256 (sorted); ``metadata_sha256``
    maps each of them to its model's :func:`metadata_sha256`, so the record
    covers what each model's metadata says too (threshold, crop, preprocessing).

    Raises:
      ValueError: fewer than two models, a model without tla-edge metadata, two
        that are one file or one flatbuffer or share a file name, or a threshold outside (0, 1).
    """
    paths = [Path(p) for p in model_paths]
    if len(paths) < 2:
        raise ValueError(f"fusion needs at least two models; got {len(paths)}")
    names = [p.name for p in paths]
    hashes = [model_sha256(p) for p in paths]
    for i in range(len(paths)):
        for j in range(i):
            if names[i] == names[j] or hashes[i] == hashes[j]:
                raise ValueError(f"models '{paths[j]}' and '{paths[i]}' are the same model or share a file name; "
                                 "expected two or more different models with different file names")
    if not fusion_names_ok(names):
        raise ValueError(f"fused model names {names!r} are not all .tflite file names")
    metas = [load(p) for p in paths]
    bare = [str(p) for p, m in zip(paths, metas) if m is None]
    if bare:
        raise ValueError(f"model '{bare[0]}' has no tla-edge metadata to store a fusion threshold in")
    return {
        "models": names,  # file names, the first the primary (as given)
        "partners": sorted(hashes),
        "metadata_sha256": {h: metadata_sha256(m) for h, m in sorted(zip(hashes, metas))},
        "threshold": check_threshold(threshold, "fused threshold"),
    }


def fused_copies(model_paths: Sequence[str | Path], threshold: float,
                 how: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Copies of the models with the fused threshold in their metadata (``extra.fusion``); writes nothing.

    A ``.tflite`` with embedded metadata gets it re-embedded (the flatbuffer,
    hence its hash, is unchanged) and a sidecar; one with only a sidecar gets
    its bytes unchanged and a new sidecar. ``how``, when given, is stored in
    the record as ``how`` (e.g. ``tla-edge calibrate``'s summary of how the
    threshold was chosen); every copy carries the same record.

    Returns:
      ``(record, {file name: bytes})``: each model's file name and its
      ``<name>.json`` sidecar, for the caller to write into one folder.

    Raises:
      ValueError: see :func:`fusion_record`.
    """
    record = fusion_record(model_paths, threshold)
    if how is not None:
        record["how"] = dict(how)
    files: dict[str, bytes] = {}
    for path in map(Path, model_paths):
        meta = load(path)
        meta = meta.replace(extra={**meta.extra, "fusion": record})
        data = path.read_bytes()
        files[path.name] = embed(data, meta) if read_embedded(path) is not None else data
        files[sidecar_path(path).name] = (json.dumps(meta.to_dict(), indent=2) + "\n").encode("utf-8")
    return record, files


def fused_threshold(models: Sequence[tuple[str | Path, "ModelMetadata"]]) -> float:
    """The stored threshold of several models fused by averaging their scores.

    The threshold of a fusion is derived on the fused score, so it is never
    the mean of the models' own thresholds: every model must carry the same
    ``extra.fusion`` record (see :func:`fusion_record`) whose partners are
    exactly these models' hashes and, when the record has ``metadata_sha256``,
    whose metadata hashes are these models' metadata. A record without them
    (written before they existed, e.g. the bundled pair) is trusted only where
    every model's metadata is embedded in its file: a sidecar alone is too easy to edit.

    Args:
      models: ``(model file, its metadata)`` per fused model.

    Returns:
      The fused threshold.

    Raises:
      ValueError: a model without metadata, or no matching fusion record; pass an explicit threshold instead.
    """
    bare = [str(p) for p, meta in models if meta is None]
    if bare:
        raise ValueError(f"model '{bare[0]}' has no tla-edge metadata, so no fusion threshold; "
                         "pass an explicit threshold (--threshold, API threshold=)")
    names = " + ".join(f"'{p}'" for p, _ in models)
    records = [(meta.extra or {}).get("fusion") for _, meta in models]
    hashes = [model_sha256(p) for p, _ in models]
    ok = all(isinstance(r, dict) and r == records[0] for r in records) and records[0].get("partners") == sorted(hashes)
    if not ok:
        raise ValueError(
            f"models {names} carry no common fusion threshold (extra.fusion naming exactly these "
            "models); the mean of their own thresholds is not a threshold of the fused score: "
            "pass an explicit threshold (--threshold, API threshold=)"
        )
    stored = records[0].get("metadata_sha256")
    if stored is None:
        sidecar_only = [str(p) for p, _ in models if read_embedded(p) is None]
        if sidecar_only:
            raise ValueError(f"the fusion record of {names} does not cover the metadata, and '{sidecar_only[0]}' "
                             "has only a sidecar; expected a record written by tla-edge evaluate --store-fusion, "
                             "or pass an explicit threshold (--threshold, API threshold=)")
    elif stored != {h: metadata_sha256(meta) for h, (_, meta) in zip(hashes, models)}:
        changed = [str(p) for h, (p, meta) in zip(hashes, models)
                   if not isinstance(stored, dict) or stored.get(h) != metadata_sha256(meta)]
        raise ValueError(f"the metadata of '{changed[0] if changed else names}' changed after the fusion threshold "
                         "was stored (threshold, crop or preprocessing differ from the fusion record); "
                         "expected the metadata the record was written with: run tla-edge evaluate --store-fusion "
                         "again, or pass an explicit threshold")
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


def set_files(path: str | Path) -> list[Path]:
    """The ``.tflite`` file(s) a liveness ``--model`` names: the file itself, or a folder's model or fused set.

    A folder (``tla-edge calibrate --out DIR``, ``evaluate --store-fusion DIR``, or one model copied into
    a folder of its own) is read, not searched (a ``tla-edge train`` folder, with ``model.keras`` and no
    ``.tflite``, is returned as it is): its ``.tflite`` files are one model, or exactly the
    models of one fused set (every file carries the same ``extra.fusion`` record, whose ``models`` are
    the folder's file names), returned in the record's order (the primary first). Whether the record
    still matches the files is :func:`fused_threshold`'s to check, when the set is loaded.

    Raises:
      ValueError: a folder without a ``.tflite`` file, or whose files are not one model or one set
        (the message names what it holds).
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".tflite" and p.is_file())
    if not files and (path / "model.keras").is_file():
        return [path]  # a tla-edge train folder: a Keras model, for the commands that take one (model_file)
    if not files:
        raise ValueError(f"model folder '{path}' holds no .tflite file; expected a model file, or a folder "
                         "written by tla-edge calibrate --out DIR or evaluate --store-fusion DIR")
    if len(files) == 1:
        return files
    records = []
    for f in files:
        meta = load(f)
        records.append(((meta.extra or {}).get("fusion") if meta is not None else None))
    names = sorted(f.name for f in files)
    first = records[0]
    if (isinstance(first, dict) and all(r == first for r in records) and fusion_names_ok(first.get("models"))
            and sorted(first["models"]) == names):
        return [path / name for name in first["models"]]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise ValueError(f"model folder '{path}' holds {len(files)} .tflite files ({shown}) that are not one fused "
                     "set; expected one model, or the copies of one set written by tla-edge calibrate --out DIR "
                     "or evaluate --store-fusion DIR: pass each model as its own --model")


def expand_models(values: Sequence[str | Path] | None) -> list[Path]:
    """Every ``--model`` value as model files, a folder replaced by its model or set (:func:`set_files`)."""
    return [f for v in values or () for f in set_files(v)]


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
