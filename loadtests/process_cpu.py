"""CPU seconds per process role on this machine, read from /proc, for the benchmark's profile.

The roles are the parts of a request's path (Serve proxy or HAProxy, ingress replica, model
replica, vLLM engine core, `vllm serve`'s API server) and Ray's own processes (raylet, GCS,
dashboard, controller). A snapshot before and after a load level gives each role's share of a core
during the level: the question on a 2-core machine is what runs beside the engine's compute thread.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from common.procfs import live_processes

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
    ("plain uvicorn", ("loadtests.plain_ingress", "loadtests.fast_engine:plain_app")),
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


def snapshot(exclude_pid: int | None = None) -> Snapshot:
    """CPU seconds of every process with a known role (the benchmark's own process excluded)."""
    found = {}
    for process in live_processes():
        if process.pid == exclude_pid:
            continue
        try:
            cmdline = open(f"/proc/{process.pid}/cmdline", "rb").read()
        except OSError:
            continue  # gone in between
        role = role_of(process.name, cmdline.replace(b"\0", b" ").decode(errors="replace"))
        if role is not None:
            found[process.pid] = (role, process.cpu_s)
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
