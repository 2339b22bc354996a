"""The face detector backend ``"auto"`` means, and whether MediaPipe can run here.

``auto`` is LiteRT everywhere: the bundled BlazeFace through LiteRT
(:mod:`tla_edge.runtime.blazeface`) detects in half MediaPipe's time at two
threads, with less memory, and gives the same boxes. MediaPipe Tasks is an
opt-in extra (``pip install 'tla-edge[runtime,mediapipe]'``), used only when
asked for. mediapipe 1.x's arm64 library stops with SIGILL on ARMv8.0 cores
(the Pi 4's Cortex-A72, the A53 of a Pi 3 or Zero 2 W): asking for it there
ends in one line, judged from ``/proc/cpuinfo`` without importing it.
"""

from __future__ import annotations

import importlib.util
import numbers
import platform
from pathlib import Path

from tla_edge.errors import UserError

MAX_THREADS = 64
"""Most interpreter threads accepted: LiteRT crashes (SIGSEGV) on tens of thousands, and no device here has more cores."""


def check_num_threads(num_threads: object, what: str = "num_threads") -> None:
    """Refuses a thread count that is not None or an integer in [1, MAX_THREADS].

    Raises:
      ValueError: ``num_threads 30000 is not an integer in [1, 64] or None``.
    """
    if num_threads is None:
        return
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) \
            or not 1 <= num_threads <= MAX_THREADS:
        raise ValueError(f"{what} {num_threads!r} is not an integer in [1, {MAX_THREADS}] or None")


BACKENDS = ("auto", "mediapipe", "litert")
"""Detector backends: ``auto`` is ``litert``; ``mediapipe`` only when asked for."""
MEDIAPIPE_INSTALL = "pip install 'tla-edge[runtime,mediapipe]'"
"""The command that installs the opt-in MediaPipe backend."""
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
      (then MediaPipe is tried when asked for).
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


def mediapipe_missing() -> UserError:
    """The one-line error for the mediapipe backend asked for where mediapipe is not installed."""
    return UserError(f"detector backend 'mediapipe' needs the mediapipe extra: {MEDIAPIPE_INSTALL} "
                     "(or use --detector-backend litert, the default)")


def mediapipe_unavailable() -> str | None:
    """Why the mediapipe backend cannot run here (not installed, or a CPU it stops on), or None."""
    if importlib.util.find_spec("mediapipe") is None:
        return str(mediapipe_missing())
    verdict, cpu = this_cpu_verdict()
    if verdict is False:
        return (f"mediapipe 1.x cannot run on this {cpu} (it stops with SIGILL); "
                "use --detector-backend litert (or auto)")
    return None


def auto_backend() -> tuple[str, str]:
    """The backend ``"auto"`` means on this machine, and why: always ``"litert"``.

    The same BlazeFace through LiteRT runs on every board the runtime installs
    on (ai_edge_litert, or the tflite_runtime fallback) and is faster there than
    MediaPipe Tasks, which has no thread setting; MediaPipe runs only when asked for.
    """
    return "litert", "the default: BlazeFace through LiteRT; --detector-backend mediapipe asks for MediaPipe"


def resolve_backend(backend: str = "auto") -> str:
    """Turns ``"auto"``, ``"mediapipe"`` or ``"litert"`` into the backend to use.

    Raises:
      ValueError: an unknown backend name.
      UserError: ``"mediapipe"`` asked for where it is not installed, or on a CPU it cannot run on.
    """
    if backend not in BACKENDS:
        raise ValueError(f"detector backend {backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if backend == "auto":
        return auto_backend()[0]
    if backend == "mediapipe":
        why = mediapipe_unavailable()
        if why is not None:
            raise UserError(why)
    return backend
