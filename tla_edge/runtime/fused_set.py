"""A fused set: several liveness models averaged, and the one threshold of their mean score.

Every member carries the same ``extra.fusion`` record in its metadata: the
members' file names (the primary first), their flatbuffers' hashes, each
member's metadata hash and the fused threshold. Here: the record
(:func:`fusion_record`), copies of the members carrying it
(:func:`fused_copies`), the check that loads its threshold
(:func:`fused_threshold`), and the folder that holds a set (:func:`set_files`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from tla_edge.runtime.metadata import (ModelMetadata, check_threshold, embed, load, model_sha256, read_embedded,
                                       sidecar_path)


def fusion_names_ok(names: Any) -> bool:
    """True for a fusion record's ``models``: a list of plain ``.tflite`` file names (no folder, no ``..``)."""
    return isinstance(names, list) and bool(names) and all(
        isinstance(n, str) and n not in (".", "..") and Path(n).name == n and "\\" not in n
        and not Path(n).is_absolute() and n.lower().endswith(".tflite") for n in names)


def metadata_sha256(meta: ModelMetadata) -> str:
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


def fused_threshold(models: Sequence[tuple[str | Path, ModelMetadata]]) -> float:
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
