"""Processes as /proc/<pid>/stat describes them (Linux), read in one place for the CPU placement
of engines, the benchmark's CPU profile and the test harness's clean-up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    name: str  # at most 15 characters (the kernel's comm)
    state: str  # "R", "S", ..., "Z" for a zombie
    ppid: int
    session: int
    cpu_s: float  # user + system CPU seconds so far


def read_stat(pid: int) -> ProcStat | None:
    """`pid`'s stat line, None when it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces; the fields after it start with state.
    fields = stat[stat.rindex(")") + 2:].split()
    return ProcStat(pid, stat[stat.index("(") + 1:stat.rindex(")")], fields[0],
                    int(fields[1]), int(fields[3]),
                    (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)


def live_processes() -> Iterator[ProcStat]:
    """Every process on the machine except zombies."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None and stat.state != "Z":
                yield stat
