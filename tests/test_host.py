"""tla_edge.host.IdleCpus: idle CPUs from /proc/stat counters, as a fake file and clock give them."""

from __future__ import annotations

from tla_edge import host


def stat_text(*cpus: tuple[int, int]) -> str:
    """A /proc/stat whose cpuN lines have ``busy`` user ticks and ``idle`` idle ticks (all other fields 0)."""
    total = [sum(c[0] for c in cpus), sum(c[1] for c in cpus)]
    lines = [f"cpu  {total[0]} 0 0 {total[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate(cpus)]
    return "\n".join(lines + ["intr 12345 0 0", "ctxt 999"]) + "\n"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_one_busy_and_one_idle_cpu_is_one_idle_cpu(tmp_path):
    stat, clock = tmp_path / "stat", Clock()
    stat.write_text(stat_text((1000, 5000), (1000, 5000)))
    probe = host.IdleCpus(every_s=0.5, path=stat, cpus=None, clock=clock)
    assert probe.spare() is None and probe.idle is None  # no window yet
    clock.t += 0.2
    stat.write_text(stat_text((1020, 5000), (1000, 5020)))
    assert probe.spare() is None  # the window is not over: not read again
    clock.t += 0.4
    stat.write_text(stat_text((1050, 5000), (1010, 5040)))  # cpu0 busy 50 ticks; cpu1 40 idle of 50
    assert probe.spare() is True
    assert abs(probe.idle - 0.8) < 1e-9  # 40 idle of 100 ticks over 2 CPUs
    clock.t += 0.5
    stat.write_text(stat_text((1100, 5000), (1055, 5045)))  # both busy: 5 idle of 100 ticks
    assert probe.spare() is False and abs(probe.idle - 0.1) < 1e-9
    assert probe.spare(need=0.05) is True  # the same window, another need


def test_only_this_process_cpus_count_and_iowait_is_idle(tmp_path):
    stat, clock = tmp_path / "stat", Clock()
    stat.write_text(stat_text((0, 0), (0, 0), (0, 0)))
    probe = host.IdleCpus(path=stat, cpus=[1, 2], clock=clock)
    clock.t += 1
    # cpu0 (not ours) idle throughout; cpu1 busy; cpu2: 50 ticks of I/O wait (field 5)
    stat.write_text("cpu  0 0 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0\ncpu1 100 0 0 0 0 0 0 0\ncpu2 50 0 0 0 50 0 0 0\n")
    assert probe.spare() is True and abs(probe.idle - 0.5) < 1e-9  # 50 idle of 200 ticks over 2 CPUs
    assert probe.spare(need=0.6) is False


def test_no_counters_is_unknown_not_an_error(tmp_path):
    clock = Clock()
    probe = host.IdleCpus(path=tmp_path / "absent", clock=clock)
    clock.t += 1
    assert probe.spare() is None
    garbled = tmp_path / "garbled"
    garbled.write_text("cpu0 x y z\n")
    probe = host.IdleCpus(path=garbled, clock=clock)
    clock.t += 1
    assert probe.spare() is None


def test_the_real_counters_give_a_count_within_the_cpus():
    import os
    import sys
    import time

    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("/proc/stat is Linux's")
    probe = host.IdleCpus(every_s=0.05)
    time.sleep(0.1)
    assert probe.spare(need=0.0) is True
    assert 0.0 <= probe.idle <= len(os.sched_getaffinity(0)) + 1e-9
