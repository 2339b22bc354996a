"""Shared fixtures: where the real NUAA frames are, and small generated models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
