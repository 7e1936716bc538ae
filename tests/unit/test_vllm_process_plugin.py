"""The per-process vLLM plugin: an engine child dies with its parent; AMX request is harmless."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from model_server.vllm.process_plugin import request_amx_permission, setup_vllm_process


def _grandchild(ready) -> None:
    setup_vllm_process()  # a multiprocessing child, like vLLM's engine core
    ready.set()
    time.sleep(60)


def _middle(pid_queue, ready) -> None:
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_grandchild, args=(ready,))
    child.start()
    pid_queue.put(child.pid)
    time.sleep(60)  # stands in for the replica; the test SIGKILLs it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_engine_child_dies_when_its_parent_is_killed():
    ctx = multiprocessing.get_context("spawn")
    pids, ready = ctx.Queue(), ctx.Event()
    middle = ctx.Process(target=_middle, args=(pids, ready))
    middle.start()
    child_pid = pids.get(timeout=60)
    assert ready.wait(timeout=60)
    assert _alive(child_pid)
    os.kill(middle.pid, signal.SIGKILL)
    middle.join()
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child_pid), "engine child outlived its parent"


def test_amx_permission_is_granted_exactly_where_the_cpu_has_amx():
    with open("/proc/cpuinfo") as f:
        has_amx = "amx_tile" in f.read().split()
    assert request_amx_permission() is has_amx
