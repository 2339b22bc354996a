"""CPU features and the face detector backend that ``"auto"`` means on this machine.

mediapipe 1.x's arm64 library stops with SIGILL on ARMv8.0 cores (the Pi 4's
Cortex-A72, the A53 of a Pi 3 or Zero 2 W). :func:`auto_backend` judges the CPU
from ``/proc/cpuinfo`` without importing MediaPipe, tries it in a child process
where the features do not tell, and otherwise picks LiteRT.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

from tla_edge.errors import UserError

BACKENDS = ("auto", "mediapipe", "litert")
"""Detector backends: ``auto`` picks ``mediapipe`` where it runs, else ``litert``."""
# The CPU features (/proc/cpuinfo names) mediapipe 1.x's arm64 library checks
# for when it loads: ARMv8.2 with crypto (aes, sha2, crc, lse, dotprod, fp16,
# rdm, rcpc). The Pi 5's Cortex-A76 has them all; ARMv8.0 cores (the Pi 4's
# Cortex-A72, the A53 of a Pi 3 or Zero 2 W) lack most, and it stops there
# with SIGILL.
ARMV82_FEATURES = frozenset(
    {"aes", "sha2", "crc32", "atomics", "asimddp", "fphp", "asimdhp", "asimdrdm", "lrcpc"}
)


def cpu_features(cpuinfo: str) -> frozenset[str]:
    """The feature flags in a Linux ``/proc/cpuinfo`` text (``Features`` on ARM, ``flags`` on x86)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("features", "flags"):
            return frozenset(value.split())
    return frozenset()


def mediapipe_cpu_verdict(system: str, machine: str, features: frozenset[str]) -> bool | None:
    """Whether mediapipe 1.x can run on a CPU, judged from its features without importing it.

    Args:
      system: ``platform.system()``.
      machine: ``platform.machine()``.
      features: :func:`cpu_features` of ``/proc/cpuinfo`` (empty where unknown).

    Returns:
      False for a 64-bit ARM core without the ARMv8.2 features mediapipe 1.x
      needs (Cortex-A72, A53: SIGILL); True for one with them, for Apple
      silicon and for x86-64 with AVX2; None where the features do not tell
      (then :func:`auto_backend` tries MediaPipe in a child process).
    """
    machine = machine.lower()
    if machine in ("aarch64", "arm64"):
        if system == "Darwin":
            return True
        if "asimd" not in features:
            # Not an ARM feature list: unreadable, or the host's x86 one seen
            # through an older qemu-user.
            return None
        return ARMV82_FEATURES <= features
    if machine in ("x86_64", "amd64"):
        if not features or "avx2" in features:
            return True
        return None
    return None


def this_cpu_verdict() -> tuple[bool | None, str]:
    """:func:`mediapipe_cpu_verdict` for this machine, and its name for messages."""
    system, machine = platform.system(), platform.machine()
    features: frozenset[str] = frozenset()
    if system == "Linux":
        try:
            features = cpu_features(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            pass
    verdict = mediapipe_cpu_verdict(system, machine, features)
    if verdict is False:
        missing = ", ".join(sorted(ARMV82_FEATURES - features))
        return False, f"{machine} CPU without {missing}"
    return verdict, f"{machine} CPU"


# A detection on a blank frame in a child process: mediapipe's SIGILL ends the
# child, never the caller.
_PROBE = (
    "import numpy as np; from tla_edge.runtime.faces import FaceDetector; "
    "d = FaceDetector('short', backend='mediapipe'); d.detect(np.zeros((64, 64, 3), np.uint8)); d.close()"
)


def probe_mediapipe_in_subprocess(timeout_s: float = 120.0) -> tuple[bool, str]:
    """Runs MediaPipe's detector once in a child process; ``(ran, why not)``."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"the mediapipe test run failed ({err})"
    if proc.returncode == 0:
        return True, ""
    if proc.returncode < 0:
        return False, f"the mediapipe test run was killed by signal {-proc.returncode}"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return False, f"the mediapipe test run exited {proc.returncode} {tail[0]}".rstrip()


@functools.lru_cache(maxsize=1)
def auto_backend() -> tuple[str, str]:
    """The backend ``"auto"`` means on this machine, decided once per process.

    MediaPipe when it is installed, this CPU can run it, and it imports;
    where the CPU's features do not tell, one detection in a child process
    decides (an illegal instruction ends the child, not this process).
    Otherwise LiteRT.

    Returns:
      ``(backend, reason)``: ``"mediapipe"`` or ``"litert"``, and why.
    """
    from tla_edge.runtime import mediapipe_backend

    if importlib.util.find_spec("mediapipe") is None:
        return "litert", "mediapipe is not installed"
    verdict, cpu = this_cpu_verdict()
    if verdict is False:
        return "litert", f"mediapipe 1.x cannot run on this {cpu}"
    if verdict is None:
        ran, why = probe_mediapipe_in_subprocess()
        if not ran:
            return "litert", why
    try:
        mediapipe_backend.import_mediapipe()
    except Exception as err:  # noqa: BLE001 - any import failure means: use LiteRT
        return "litert", f"mediapipe does not import ({type(err).__name__}: {err})"
    return "mediapipe", f"mediapipe runs on this {cpu}"


def resolve_backend(backend: str = "auto") -> str:
    """Turns ``"auto"``, ``"mediapipe"`` or ``"litert"`` into the backend to use.

    Raises:
      ValueError: an unknown backend name.
      UserError: ``"mediapipe"`` asked for on a CPU it cannot run on.
    """
    if backend not in BACKENDS:
        raise ValueError(f"detector backend {backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if backend == "auto":
        return auto_backend()[0]
    if backend == "mediapipe":
        verdict, cpu = this_cpu_verdict()
        if verdict is False:
            raise UserError(
                f"mediapipe 1.x cannot run on this {cpu} (it stops with SIGILL); "
                "use --detector-backend litert (or auto)"
            )
    return backend
