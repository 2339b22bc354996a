"""Facts about the machine a measurement ran on: CPU, OS, package versions, memory.

One copy for ``tla-edge bench``, ``benchmarks/soak.py`` and the scripts that
record where they ran. Standard library and NumPy only.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

OPENCV_DISTRIBUTIONS = ("opencv-contrib-python", "opencv-python", "opencv-python-headless")
"""The pip names one ``cv2`` can come from, in the order they are looked up."""


def package_version(dist: str) -> str | None:
    """The installed version of a distribution (``"mediapipe"``), or None when it is absent."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """``{dist: version}`` of the distributions that are installed; absent ones are left out."""
    found = {dist: package_version(dist) for dist in dists}
    return {dist: version for dist, version in found.items() if version is not None}


def opencv_version() -> str | None:
    """The version of whichever OpenCV distribution is installed (see :data:`OPENCV_DISTRIBUTIONS`)."""
    for dist in OPENCV_DISTRIBUTIONS:
        version = package_version(dist)
        if version:
            return version
    return None


def cpu_model() -> str:
    """The CPU's name from ``/proc/cpuinfo`` (``model name``, ``Hardware``), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def scheduler() -> str | None:
    """This process's scheduling policy, e.g. ``SCHED_OTHER`` or ``SCHED_FIFO 1`` (Linux)."""
    try:
        policy = os.sched_getscheduler(0)
        priority = os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):
        return None
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")
             if hasattr(os, n)}
    name = names.get(policy, str(policy))
    return f"{name} {priority}" if priority else name


def cpus_available() -> int | None:
    """CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded to 0.01; None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def host_info(runtime_name: str) -> dict[str, Any]:
    """Where a benchmark ran: OS, CPU, Python and library versions, scheduling, load.

    Args:
      runtime_name: the distribution of the TFLite runtime in use (``ai-edge-litert``, ...).
    """
    import numpy as np

    from tla_edge import __version__

    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available(),
        "python": platform.python_version(),
        "runtime": {"name": runtime_name, "version": package_version(runtime_name)},
        "mediapipe": package_version("mediapipe"),
        "numpy": np.__version__,
        "opencv": opencv_version(),
        "tla_edge": __version__,
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "scheduler": scheduler(),
        "load_avg_start": load_average(),
    }


def host_kind() -> str:
    """``rpi4-aarch64`` on a Raspberry Pi 4, ``linux-x86_64`` on a PC, and so on."""
    machine = platform.machine().lower() or "unknown"
    try:
        model = Path("/proc/device-tree/model").read_text(errors="ignore").strip("\x00 \n")
    except OSError:
        model = ""
    if model.startswith("Raspberry Pi"):
        parts = model.split()
        number = parts[2] if len(parts) > 2 and parts[2][0].isdigit() else ""
        return f"rpi{number}-{machine}"
    if "coral" in model.lower():
        return f"coral-{machine}"
    return f"{platform.system().lower()}-{machine}"


# --- memory -------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory in MiB: since the last :func:`reset_peak_rss`, else of the process.

    Read from ``VmHWM`` in ``/proc/self/status``; where /proc is absent, from
    ``ru_maxrss`` (KiB on Linux, bytes on macOS). The kernel updates the mark
    lazily, so it can trail the current RSS by a fraction of a MiB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def current_rss_mb() -> float:
    """Resident set size now, in MiB (``/proc/self/statm``; the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


class IdleCpus:
    """How many of this process's CPUs sat idle lately, from ``/proc/stat`` (Linux); unknown elsewhere.

    :meth:`spare` answers from the CPU time counters of the CPUs this process
    may run on (its affinity), read at most every ``every_s`` seconds: idle
    CPUs = the idle (and I/O wait) share of their time since the last read,
    times their count. Another program's busy loop shows as a CPU that is not
    idle, whatever the core count says. One read costs a file read (tens of
    microseconds), so a frame loop pays it ten times a second at most; a window of 0.1 s
    is 10 clock ticks per CPU at 100 Hz, enough to tell a busy CPU from an idle one.

    Args:
      every_s: the shortest time between two reads (and the window measured).
      path: the counters' file (tests give their own).
      cpus: the CPU numbers to count (None: this process's affinity; all where it has none).
      clock: seconds, monotonic (tests give their own).
    """

    def __init__(self, every_s: float = 0.1, path: str | Path = "/proc/stat", cpus: Iterable[int] | None = None,
                 clock: Any = None) -> None:
        import time

        self.every_s = float(every_s)
        self._path = Path(path)
        if cpus is None:
            try:
                cpus = os.sched_getaffinity(0)
            except (AttributeError, OSError):
                cpus = None
        self._cpus = None if cpus is None else frozenset(int(c) for c in cpus)
        self._clock = clock or time.monotonic
        self.idle: float | None = None
        """Idle CPUs over the last window (e.g. 0.93 of 2); None before a window has been measured."""
        self._last = self._read()
        self._t = self._clock()

    def _read(self) -> tuple[int, int, int] | None:
        """``(idle ticks, all ticks, CPUs counted)`` summed over the counted CPUs; None when unreadable."""
        idle = total = n = 0
        try:
            with open(self._path) as f:
                for line in f:
                    if not line.startswith("cpu"):
                        break
                    name, *fields = line.split()
                    if name == "cpu" or (self._cpus is not None and int(name[3:]) not in self._cpus):
                        continue
                    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                    idle += ticks[3] + ticks[4]
                    total += sum(ticks)
                    n += 1
        except (OSError, ValueError, IndexError):
            return None
        return (idle, total, n) if n else None

    def spare(self, need: float = 0.5) -> bool | None:
        """Whether at least ``need`` CPUs sat idle over the last window; None while unknown (no window yet, no counters)."""
        now = self._clock()
        if self._last is not None and now - self._t >= self.every_s:
            cur = self._read()
            if cur is not None and cur[1] > self._last[1]:
                self.idle = cur[2] * (cur[0] - self._last[0]) / (cur[1] - self._last[1])
            self._last, self._t = cur, now
        return None if self.idle is None else self.idle >= need
