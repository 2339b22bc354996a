"""Edge TPU: readiness report and ``edgetpu_compiler``.

The readiness check is :func:`tla_edge.runtime.edgetpu_check.edgetpu_readiness` (the
same one ``tla-edge info`` prints); this module formats it, runs the compiler
when it is installed and reads from its log how many operations it mapped.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from tla_edge.errors import UserError

COMPILER = "edgetpu_compiler"
INSTALL_HINT = (
    "install the Edge TPU compiler on an x86-64 Linux host: add the Coral apt repository "
    "(https://coral.ai/docs/edgetpu/compiler/), then 'sudo apt-get install edgetpu-compiler'"
)
DEFAULT_TIMEOUT_S = 300


def readiness_lines(model_path: str | Path, max_lines: int = 4) -> tuple[bool, list[str]]:
    """The Edge TPU readiness verdict of a ``.tflite`` file, as report lines.

    Args:
      model_path: the converted model.
      max_lines: reasons and notes shown; the rest are counted (``tla-edge
        info`` lists them all).

    Returns:
      ``(ready, lines)``: the verdict, then one line per reason or note.
    """
    from tla_edge.runtime.edgetpu_check import edgetpu_readiness
    from tla_edge.runtime.modelinfo import inspect_model

    verdict = edgetpu_readiness(inspect_model(model_path))
    lines = [f"Edge TPU: {'ready' if verdict.ready else 'NOT ready'} ({Path(model_path).name})"]
    details = [f"  - {r}" for r in verdict.reasons] + [f"  note: {n}" for n in verdict.notes]
    lines += details[:max_lines]
    if len(details) > max_lines:
        lines.append(f"  ... and {len(details) - max_lines} more: tla-edge info {model_path}")
    return verdict.ready, lines


class CompileReport(NamedTuple):
    """What ``edgetpu_compiler`` said about one model."""

    ops_total: int | None
    """Operations in the model (None when the log does not say)."""
    ops_tpu: int | None
    """Operations mapped to the Edge TPU."""
    ops_cpu: int | None
    """Operations left on the CPU."""
    subgraphs: int | None
    """Edge TPU subgraphs (1 is best)."""
    version: str
    """Compiler version, e.g. ``16.0.384591198``."""
    unmapped: dict[str, int]
    """Operator -> count of the operations that stay on the CPU."""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return self._asdict()


_INT = r"\s*:\s*(\d+)"


def parse_compiler_log(text: str) -> CompileReport:
    """Reads the operation counts from ``edgetpu_compiler`` output and its ``.log``.

    The compiler prints ``Total number of operations``, ``Number of
    operations that will run on Edge TPU`` / ``on CPU`` (when some stay on the
    CPU) and, with ``-s`` or in the ``.log`` file, a table of operator, count
    and status. Counts missing from the summary lines are summed from the table.

    Args:
      text: the compiler's stdout, and the ``.log`` file's text, concatenated.

    Returns:
      The :class:`CompileReport`; fields the text does not give are None.
    """

    def first_int(pattern: str) -> int | None:
        m = re.search(pattern, text, re.IGNORECASE)
        return int(m.group(1)) if m else None

    total = first_int(r"Total number of operations" + _INT)
    tpu = first_int(r"Number of operations that will run on Edge TPU" + _INT)
    cpu = first_int(r"Number of operations that will run on CPU" + _INT)
    subgraphs = first_int(r"Number of Edge TPU subgraphs" + _INT)
    m = re.search(r"Edge TPU Compiler version\s+(\S+)", text)
    version = m.group(1) if m else ""
    mapped_table = 0
    unmapped: dict[str, int] = {}
    seen_rows = set()
    for row in re.finditer(r"^[ \t]*([A-Z][A-Z0-9_]+)[ \t]+(\d+)[ \t]+(\S.*?)[ \t]*$", text, re.MULTILINE):
        op, count, status = row.group(1), int(row.group(2)), row.group(3)
        if (op, count, status) in seen_rows:  # the table can appear in stdout and in the .log
            continue
        seen_rows.add((op, count, status))
        if status.lower().startswith("mapped to edge tpu"):
            mapped_table += count
        else:
            unmapped[op] = unmapped.get(op, 0) + count
    if tpu is None and seen_rows:
        tpu = mapped_table
    if cpu is None and seen_rows:
        cpu = sum(unmapped.values())
    if tpu is None and total is not None and cpu is not None:
        tpu = total - cpu
    if cpu is None and total is not None and tpu is not None:
        cpu = total - tpu
    if total is None and tpu is not None and cpu is not None:
        total = tpu + cpu
    return CompileReport(total, tpu, cpu, subgraphs, version, unmapped)


def find_compiler() -> str | None:
    """Path of ``edgetpu_compiler`` on PATH, or None."""
    return shutil.which(COMPILER)


def missing_compiler_message() -> str:
    """What to install, and where it runs, when the compiler is absent."""
    host = f"{platform.system()} {platform.machine()}"
    where = "" if (platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")) else (
        f" (this host is {host}; the compiler runs on x86-64 Linux only)"
    )
    return f"{COMPILER} not found on PATH{where}; {INSTALL_HINT}"


def compile_model(
    tflite: bytes, name: str = "model.tflite", compiler: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[bytes, CompileReport, str]:
    """Runs ``edgetpu_compiler`` on a model in a temporary folder.

    Args:
      tflite: the int8 model's bytes (metadata appended by tla-edge is stripped first).
      name: file name to give it (the compiler names its outputs after it).
      compiler: the compiler's path (None: found on PATH).
      timeout_s: the compiler's time limit.

    Returns:
      ``(compiled bytes, report, log text)``.

    Raises:
      UserError: the compiler is missing, fails, times out or writes no model.
    """
    from tla_edge.runtime.metadata import strip_embedded

    compiler = compiler or find_compiler()
    if compiler is None:
        raise UserError(missing_compiler_message())
    with tempfile.TemporaryDirectory(prefix="tla_edge_edgetpu_") as tmp:
        src = Path(tmp) / name
        src.write_bytes(strip_embedded(tflite))
        cmd = [compiler, "-s", "-o", tmp, str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            raise UserError(f"{COMPILER} did not finish within {timeout_s:g} s on '{name}'") from err
        except OSError as err:
            raise UserError(f"{COMPILER} at '{compiler}' could not be run: {err}") from err
        out = Path(tmp) / f"{src.stem}_edgetpu.tflite"
        log_file = Path(tmp) / f"{src.stem}_edgetpu.log"
        log = (proc.stdout or "") + "\n" + (proc.stderr or "")
        if log_file.is_file():
            log += "\n" + log_file.read_text(errors="replace")
        if proc.returncode != 0 or not out.is_file():
            last = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-1:]) or "no output"
            raise UserError(
                f"{COMPILER} failed on '{name}' (exit {proc.returncode}): {last}"
            )
        return out.read_bytes(), parse_compiler_log(log), log
