"""CPU time of processes and threads from ``/proc``, for the benchmarks that compare daemons' CPU.

``/proc/<pid>/stat``'s ``comm`` field may hold spaces and parentheses, so the fields are read after its
last ``)``; utime and stime are fields 14 and 15 of the whole line (11 and 12 after ``comm``), in clock
ticks.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path


def _stat_fields(stat_path: Path) -> list[str]:
    return stat_path.read_text().rsplit(")", 1)[1].split()


def _cpu_s(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a whole process (all its threads)."""
    return _cpu_s(_stat_fields(Path(f"/proc/{pid}/stat")))


def thread_cpu_s(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread of a process."""
    return _cpu_s(_stat_fields(Path(f"/proc/{pid}/task/{tid}/stat")))


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (e.g. a daemon's workers), from every thread's ``children``."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:  # the thread ended meanwhile
            continue
    return out


def children_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the live children of ``pid`` now (a child that exited meanwhile counts 0)."""
    total = 0.0
    for child in child_pids(pid):
        try:
            total += process_cpu_s(child)
        except OSError:
            continue
    return total


def own_and_children_cpu_s() -> float:
    """User + system CPU seconds of this process and of its children it has waited for (ffmpeg, ...)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_cpu(fn: Callable[[], object], repeats: int) -> float:
    """The least CPU time (this process and waited-for children) of ``repeats`` calls of ``fn``: on a
    shared machine the steadier figure, since it does not count the time others held the core."""
    best = float("inf")
    for _ in range(repeats):
        start = own_and_children_cpu_s()
        fn()
        best = min(best, own_and_children_cpu_s() - start)
    return best
