"""A dead engine process gets its replica replaced by Serve, and the other model is unaffected.

Runs after the other integration tests (file order) because it restarts the text replica.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import image_message
from tests.integration.test_local_stack import SAMPLE, ask

pytestmark = pytest.mark.integration
RECOVERY_TIMEOUT_S = 300


def processes() -> list[tuple[int, int, str]]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        pid, ppid, args = line.strip().split(None, 2)
        rows.append((int(pid), int(ppid), args))
    return rows


def replica_pid(deployment: str) -> int:
    pids = [pid for pid, _, args in processes() if f"ServeReplica:cs-assistant:{deployment}" in args]
    assert len(pids) == 1, pids
    return pids[0]


def engine_core_pid(replica: int) -> int:
    children = [pid for pid, ppid, args in processes() if ppid == replica and "EngineCore" in args]
    assert len(children) == 1, f"engine core of replica {replica} not found"
    return children[0]


def test_killed_engine_process_gets_its_replica_restarted(stack):
    old_replica = replica_pid("TextModel")
    os.kill(engine_core_pid(old_replica), signal.SIGKILL)
    killed_at = time.monotonic()

    # The vision model keeps serving while the text replica is replaced.
    assert ask(stack, messages=[image_message()], **SAMPLE).status_code == 200

    recovered_s = None
    statuses = []
    while time.monotonic() - killed_at < RECOVERY_TIMEOUT_S:
        r = ask(stack, messages=[{"role": "user", "content": "still there?"}], **SAMPLE)
        statuses.append(r.status_code)
        if r.status_code == 200:
            recovered_s = time.monotonic() - killed_at
            break
        # Failures in the meantime must be clean errors in the OpenAI shape, never hangs.
        assert r.status_code in (500, 503), r.text
        assert "error" in r.json()
        time.sleep(2)
    assert recovered_s is not None, f"text model did not recover; statuses {statuses[-5:]}"
    assert replica_pid("TextModel") != old_replica
    print(f"\n[integration] text replica replaced {recovered_s:.0f}s after its engine was killed "
          f"({len(statuses) - 1} failed requests meanwhile)")


def test_killed_replica_takes_its_engine_with_it_and_is_replaced(stack):
    old_replica = replica_pid("VisionModel")
    engine = engine_core_pid(old_replica)
    os.kill(old_replica, signal.SIGKILL)
    killed_at = time.monotonic()

    # The engine process goes with its replica (no orphan holding memory and a core).
    while time.monotonic() - killed_at < 15 and any(pid == engine for pid, _, _ in processes()):
        time.sleep(0.2)
    assert not any(pid == engine for pid, _, _ in processes()), "engine core outlived its replica"

    # Text traffic is unaffected while the vision replica is replaced.
    assert ask(stack, messages=[{"role": "user", "content": "is grey M in stock?"}], **SAMPLE).status_code == 200

    recovered_s = None
    while time.monotonic() - killed_at < RECOVERY_TIMEOUT_S:
        r = ask(stack, messages=[image_message()], **SAMPLE)
        if r.status_code == 200:
            recovered_s = time.monotonic() - killed_at
            break
        assert r.status_code in (500, 503), r.text
        time.sleep(2)
    assert recovered_s is not None, "vision model did not recover"
    assert replica_pid("VisionModel") != old_replica
    print(f"\n[integration] vision replica replaced {recovered_s:.0f}s after it was killed")
