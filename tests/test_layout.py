"""The house: README re-exports, the weight of importing the runtime, and the floors.

Floors, from the ground up: shared helpers (errors, fileio, metrics, thresholds,
host, progress) -> runtime/ -> data/ -> train/, converters/ -> cli/. A floor
imports only its own floor and the floors below it, inside functions too
(train/ may import runtime/, data/ and the helpers); TensorFlow and onnxruntime
are never imported at module level; no module imports another's
private ``_name``. The checks read the source (``ast``), so they see imports
that a test run would never execute.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "tla_edge"
CONVERTERS = REPO / "converters"  # installed as tla_edge.converters (setup.cfg package_dir)
HELPERS = {"tla_edge", "tla_edge.errors", "tla_edge.fileio", "tla_edge.metrics", "tla_edge.thresholds",
           "tla_edge.host", "tla_edge.progress"}
# The README's entry points: short re-exports of runtime/, nothing else.
REEXPORTS = {"tla_edge.pipeline", "tla_edge.sources"}
FLOOR = {"helpers": 0, "runtime": 1, "data": 2, "train": 3, "converters": 3, "cli": 4}
# (importer, imported) edges allowed against the floors, with why. Keep it empty if you can.
ALLOWED_EDGES: dict[tuple[str, str], str] = {}
# Never imported at module level (the runtime must stay light; onnxruntime runs the
# Silent-Face teacher on the workstation only, the 'teacher' extra).
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "onnxruntime")


# --- reading the tree -------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (converters/ as tla_edge.converters)."""
    out = {}
    for root, prefix in ((PACKAGE, "tla_edge"), (CONVERTERS, "tla_edge.converters")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([prefix, *parts])] = path
    return out


MODULES = module_files()


def floor_of(module: str) -> str:
    """``helpers``, ``runtime``, ``data``, ``train``, ``converters``, ``cli`` or ``reexport``."""
    if module in REEXPORTS:
        return "reexport"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOOR:
        return parts[1]
    return "helpers"


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """Every import in ``module``, in functions too: (imported module, imported name or None, line)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # `from tla_edge.runtime import faces` imports the module tla_edge.runtime.faces
                out.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def internal(name: str) -> str | None:
    """The tla_edge module ``name`` belongs to (the longest known prefix), or None for third-party."""
    if name.split(".")[0] == "converters":  # the source folder's name, should anyone import it so
        name = "tla_edge." + name
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def module_level_nodes(tree: ast.AST):
    """The nodes that run at import time: everything outside function bodies and ``if TYPE_CHECKING:``."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack += node.orelse
            continue
        yield node
        stack += ast.iter_child_nodes(node)


# --- (a) the README's re-exports ------------------------------------------------------


def test_readme_reexports_are_the_runtime_objects():
    import tla_edge.pipeline
    import tla_edge.runtime.pipeline
    import tla_edge.runtime.sources
    import tla_edge.sources

    assert tla_edge.pipeline.Pipeline is tla_edge.runtime.pipeline.Pipeline
    assert tla_edge.sources.open_source is tla_edge.runtime.sources.open_source
    for short, full in ((tla_edge.pipeline, tla_edge.runtime.pipeline), (tla_edge.sources, tla_edge.runtime.sources)):
        public = {n for n in vars(short) if not n.startswith("_") and not isinstance(getattr(short, n), type(sys))}
        public.discard("annotations")
        assert sorted(short.__all__) == sorted(public), f"{short.__name__}.__all__ does not list what it exports"
        for name in short.__all__:
            assert getattr(short, name) is getattr(full, name), f"{short.__name__}.{name} is a copy"


def test_reexports_import_only_the_runtime():
    for module in REEXPORTS:
        for target, _, line in imports(module):
            owner = internal(target)
            assert owner is None or floor_of(owner) in ("runtime", "helpers"), f"{module}:{line} imports {target}"


# --- (b) the weight of the runtime ---------------------------------------------------------


RUN_BUNDLED = """
import sys
import tla_edge.runtime
from tla_edge.pipeline import Pipeline
from tla_edge.runtime import assets
import cv2
frame = sorted(p for p in assets.sample_frames_dir().iterdir() if p.suffix == ".jpg")[0]
rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
with Pipeline() as pipe:
    result = pipe.process(rgb)
print("DECISION", result.decision)
print("HEAVY", ",".join(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules))
"""


def test_running_the_bundled_pipeline_loads_no_tensorflow():
    pytest.importorskip("cv2", reason="the bundled pipeline needs the 'runtime' extra")
    if not any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime")):
        pytest.skip("no LiteRT runtime installed (the 'runtime' extra)")
    out = subprocess.run([sys.executable, "-c", RUN_BUNDLED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.stdout.splitlines())
    assert "DECISION" in lines, out.stdout
    assert lines.get("HEAVY", "") == "", f"running the bundled pipeline loaded {lines['HEAVY']}"


# --- (c) the floors ------------------------------------------------------------------------


def test_every_module_sits_on_a_floor():
    # a new top-level module is a helper only if it is listed; anything else belongs in a floor
    stray = [m for m in MODULES if floor_of(m) == "helpers" and m not in HELPERS]
    assert not stray, f"top-level modules that are not a listed shared helper: {stray}"


def test_floors_import_only_floors_below():
    wrong = []
    for module in MODULES:
        mine = floor_of(module)
        if mine == "reexport":
            continue
        for target, _, line in imports(module):
            owner = internal(target)
            if owner is None or (module, owner) in ALLOWED_EDGES:
                continue
            theirs = floor_of(owner)
            if theirs == "reexport" or FLOOR[theirs] > FLOOR[mine]:
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line} ({mine}) imports {owner} ({theirs})")
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_names_across_modules():
    wrong = []
    for module in MODULES:
        where = MODULES[module].relative_to(REPO)
        package = module if is_package(module) else module.rpartition(".")[0]
        aliases = {}  # local name -> the tla_edge module it is bound to
        for target, name, line in imports(module):
            owner = internal(target)
            if owner is None or owner == module:
                continue
            if name is not None and is_private(name):
                wrong.append(f"{where}:{line} imports {name} from {owner}")
            # a private module is its package's own business
            if is_private(owner.rpartition(".")[2]) and owner.rpartition(".")[0] != package:
                wrong.append(f"{where}:{line} imports the private module {owner}")
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(module, node)
                aliases.update((a.asname or a.name, f"{target}.{a.name}") for a in node.names
                               if f"{target}.{a.name}" in MODULES)
            elif isinstance(node, ast.Import):
                aliases.update((a.asname, a.name) for a in node.names if a.asname and a.name in MODULES)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and is_private(node.attr)
                    and aliases.get(node.value.id, module) != module):
                wrong.append(f"{where}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


def test_the_raspberry_pi_example_imports_only_the_device_side():
    # a Pi installs the runtime extra: its scripts use tla_edge.runtime and the shared helpers
    wrong = []
    for path in sorted((REPO / "examples" / "raspberry_pi").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                owner = internal(name)
                if owner is not None and floor_of(owner) not in ("helpers", "runtime", "reexport"):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert not wrong, "\n".join(wrong)


# --- (d) TensorFlow and onnxruntime only inside functions -------------------------------------


def test_no_tensorflow_at_module_level():
    wrong = []
    for module, path in MODULES.items():
        for node in module_level_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            heavy = [n for n in names if n.split(".")[0] in HEAVY]
            if heavy:
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} imports {', '.join(heavy)} at module level")
    assert not wrong, "\n".join(wrong)


def test_the_teacher_sits_on_the_train_floor():
    # the Silent-Face teacher is workstation-only: train/, importing onnxruntime inside functions
    module = "tla_edge.train.teacher"
    assert floor_of(module) == "train"
    found = {target.split(".")[0] for target, _, _ in imports(module)}
    assert "onnxruntime" in found, "the teacher no longer imports onnxruntime (inside a function)"
    # training side only: nothing a device runs imports it, not even inside a function
    device = [f"{m}:{line}" for m in MODULES if floor_of(m) in ("helpers", "runtime", "reexport")
              for target, _, line in imports(m) if target.split(".")[0] == "onnxruntime"]
    assert not device, f"device-side modules import onnxruntime: {device}"


# --- the checks themselves -----------------------------------------------------------------------


def test_the_static_checks_see_imports_inside_functions():
    # guards the walker: the runtime's lazy imports (mediapipe inside a function) are found
    found = {target for module in MODULES if floor_of(module) == "runtime" for target, _, _ in imports(module)}
    assert "mediapipe" in {t.split(".")[0] for t in found}
    assert internal("tla_edge.runtime.pipeline.Pipeline") == "tla_edge.runtime.pipeline"
    assert internal("numpy") is None
