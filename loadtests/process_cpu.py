"""CPU seconds per process role on this machine, read from /proc, for the benchmark's profile.

The roles are the parts of a request's path (Serve proxy or HAProxy, ingress replica, model
replica, vLLM engine core, `vllm serve`'s API server) and Ray's own processes (raylet, GCS,
dashboard, controller). A snapshot before and after a load level gives each role's share of a core
during the level: the question on a 2-core machine is what runs beside the engine's compute thread.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# (role, test on the process's name and command line), first match wins; the order matters:
# the engine core is a child of the model replica and has the replica's command line.
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # vLLM's processes name themselves (setproctitle); /proc's name field keeps 15 characters.
    ("vLLM worker (model compute)", ("VLLM::Worker",)),
    ("vLLM engine core (scheduler)", ("EngineCor",)),
    ("model replica", ("ServeReplica:cs-assistant:TextModel", "ServeReplica:cs-assistant:VisionModel")),
    ("ingress replica", ("ServeReplica:cs-assistant:Ingress",)),
    ("Serve proxy", ("ProxyActor",)),
    ("HAProxy and its manager", ("haproxy -f", "haproxy-serve", "HAProxyManager")),
    ("Serve controller", ("ServeController",)),
    ("vllm serve API server", ("vllm.entrypoints.openai.api_server",)),
    ("plain uvicorn", ("loadtests.plain_ingress",)),
    ("raylet", ("raylet",)),
    ("GCS", ("gcs_server",)),
    ("Ray dashboard and agents", ("dashboard", "DashboardAgent", "RuntimeEnvAgent",
                                  "log_monitor", "monitor.py")),
    ("spawned helper processes", ("multiprocessing.spawn", "multiprocessing.forkserver")),
)


def role_of(name: str, cmdline: str) -> str | None:
    text = f"{name} {cmdline}"
    for role, needles in ROLES:
        if any(needle in text for needle in needles):
            return role
    return None


@dataclass(frozen=True)
class Snapshot:
    seconds: dict[int, tuple[str, float]]  # pid -> (role, CPU seconds so far)


def _read(pid: str) -> tuple[str, str, float] | None:
    base = Path("/proc") / pid
    try:
        stat = (base / "stat").read_text()
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None  # gone in between
    # The name is in parentheses and may hold spaces; utime and stime are fields 14 and 15.
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return name, cmdline, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def snapshot(exclude_pid: int | None = None) -> Snapshot:
    """CPU seconds of every process with a known role (the benchmark's own process excluded)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude_pid:
            continue
        read = _read(entry)
        if read is None:
            continue
        name, cmdline, seconds = read
        role = role_of(name, cmdline)
        if role is not None:
            found[int(entry)] = (role, seconds)
    return Snapshot(found)


def cores_by_role(before: Snapshot, after: Snapshot, wall_s: float) -> dict[str, float]:
    """Each role's average share of one core between two snapshots (1.0 = one full core).
    Processes that started in between count from zero; ones that ended are not seen."""
    used: dict[str, float] = defaultdict(float)
    for pid, (role, seconds) in after.seconds.items():
        earlier = before.seconds.get(pid)
        used[role] += seconds - (earlier[1] if earlier and earlier[0] == role else 0.0)
    return {role: round(seconds / wall_s, 3) for role, seconds in
            sorted(used.items(), key=lambda item: -item[1]) if seconds > 0}
