"""Shared fixtures: where the real NUAA frames are, and the tiny committed models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def nuaa_folder(nuaa_dir: Path, tmp: Path, kind: str, subject: str, session: str, n: int) -> Path:
    """A folder of links to ``n`` NUAA frames of one subject, session and class (a stand-in camera)."""
    from tla_edge.data.nuaa import parse_nuaa_name

    src = nuaa_dir / ("ClientRaw" if kind == "real" else "ImposterRaw") / subject
    picked = sorted(p for p in src.iterdir() if parse_nuaa_name(p.name) == (subject, session))[:n]
    folder = tmp / f"src_{kind}_{subject}_{session}"
    folder.mkdir(parents=True)
    for p in picked:
        (folder / p.name).symlink_to(p)
    return folder


def find_nuaa_dir() -> Path | None:
    """The NUAA training sessions: $TLA_EDGE_DATA/nuaa-train, else ../shared/data/nuaa-train."""
    candidates = []
    if os.environ.get("TLA_EDGE_DATA"):
        candidates.append(Path(os.environ["TLA_EDGE_DATA"]) / "nuaa-train")
    candidates.append(REPO.parent / "shared" / "data" / "nuaa-train")
    for c in candidates:
        if (c / "ClientRaw").is_dir() and (c / "ImposterRaw").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def nuaa_dir() -> Path:
    """Path of the NUAA training sessions; skips the test where the data is absent."""
    found = find_nuaa_dir()
    if found is None:
        pytest.skip(
            "NUAA frames not found: set TLA_EDGE_DATA to the folder holding nuaa-train/ "
            "(expected ../shared/data/nuaa-train next to the repository)"
        )
    return found


FIXTURES = REPO / "tests" / "fixtures"
TINY_MODELS = {"float": "tiny_float.tflite", "int8": "tiny_int8.tflite", "uint8": "tiny_uint8.tflite",
               "keras": "tiny.keras"}


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> dict[str, Path]:
    """Paths of a tiny model: ``float``, ``int8``, ``uint8`` (.tflite) and ``keras``.

    Input 32x32x3, one logit, seeded random weights, metadata sidecars (crop_scale
    2.0, threshold 0.5). The files are committed in tests/fixtures/ (written by
    scripts/make_test_fixtures.py), so only the tests that load ``keras`` need
    TensorFlow; they are copied into a temporary folder because tests write
    next to them.
    """
    out = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for kind, name in TINY_MODELS.items():
        paths[kind] = Path(shutil.copy2(FIXTURES / name, out / name))
        sidecar = FIXTURES / f"{name}.json"
        if sidecar.exists():
            shutil.copy2(sidecar, out / sidecar.name)
    return paths


@pytest.fixture(scope="session")
def two_crop_set(tmp_path_factory) -> Path:
    """A folder holding a fused set of the bundled members whose crops differ: the primary at 2.7x.

    Crop overlap (a worker cutting the later members' crops) exists only for a
    set whose members need different crops. Whatever crops the bundled set
    takes, this one takes two: the bundled members' own flatbuffers, the
    primary's metadata (embedded and sidecar) saying crop scale 2.7, both
    carrying a fusion record at the bundled set's threshold. Needs LiteRT only
    where it is loaded.
    """
    from tla_edge.runtime import assets, fused_set, metadata

    bundled = assets.default_liveness_models()
    if len(bundled) != 2:
        pytest.skip(f"the bundled default is {len(bundled)} model(s), not a pair")
    src = tmp_path_factory.mktemp("two_crop_src")
    paths = []
    for i, path in enumerate(bundled):
        meta = metadata.load(path)
        if i == 0:
            meta = meta.replace(crop_scale=2.7)
        out = src / path.name  # metadata embedded only: fused_copies writes the set's sidecars
        out.write_bytes(metadata.embed(path.read_bytes(), meta))
        paths.append(out)
    threshold = fused_set.fused_threshold([(p, metadata.load(p)) for p in bundled])
    _, files = fused_set.fused_copies(paths, threshold)
    folder = tmp_path_factory.mktemp("two_crop_set")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder
