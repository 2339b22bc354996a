"""No machine-specific absolute path in the package, its bundled metadata, script defaults, docs or committed results."""

from __future__ import annotations

import re
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.<>])/(?:work|tmp|home|root|Users)/")
# (file, text on the line) allowed, with why.
ALLOWED = {
    ("tla_edge/runtime/metadata.py", "/home/alice"): "portable_path's docstring names the layouts it avoids",
}


def _files() -> list[Path]:
    out = []
    for pattern in ("tla_edge/**/*.py", "tla_edge/runtime/assets/*.json", "tla_edge/runtime/assets/*.md", "converters/*.py",
                    "scripts/*.py", "docs/**/*.md", "*.md", "benchmarks/*.md", "benchmarks/*.py",
                    "benchmarks/results/**/*.json", "examples/raspberry_pi/*.py", "examples/raspberry_pi/*.md",
                    "tests/fixtures/*.json"):
        out += sorted(REPO.glob(pattern))
    return out


def test_no_machine_specific_paths():
    found = []
    for path in _files():
        rel = path.relative_to(REPO).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line) and not any(f == rel and text in line for f, text in ALLOWED):
                found.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_bundled_model_metadata_has_no_machine_path():
    import json

    from tla_edge.runtime import metadata
    from tla_edge.runtime.assets import default_liveness_models

    for path in default_liveness_models():
        assert not MACHINE_PATH.search(metadata.sidecar_path(path).read_text()), path
        embedded = metadata.read_embedded(path)
        assert embedded is not None, f"{path} has no embedded metadata"
        assert not MACHINE_PATH.search(json.dumps(embedded.to_dict())), path