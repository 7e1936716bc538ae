"""ServerProcess: readiness, a server that dies during start-up, and stopping a process group."""

from __future__ import annotations

import sys

import pytest

from loadtests.server_process import ServerProcess, ServerStartError, free_port, url_answers


def test_waits_for_the_server_and_stops_it(tmp_path):
    port = free_port()
    server = ServerProcess("http.server", [sys.executable, "-m", "http.server", str(port),
                                           "--bind", "127.0.0.1"], tmp_path / "log", tmp_path)
    try:
        seconds = server.wait_until_ready(url_answers(f"http://127.0.0.1:{port}/"), 30, poll_s=0.1)
        assert 0 < seconds < 30
    finally:
        server.stop(timeout_s=10)
    assert server.process.returncode is not None
    assert not url_answers(f"http://127.0.0.1:{port}/")()


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    # The log's folder need not exist yet (.run/ in a fresh clone).
    server = ServerProcess("broken", [sys.executable, "-c", "raise SystemExit(3)"],
                           tmp_path / "run" / "broken.log", tmp_path)
    with pytest.raises(ServerStartError, match=r"broken exited with 3; see .*broken\.log"):
        server.wait_until_ready(lambda: False, 30, poll_s=0.1)
    server.stop()


def test_a_server_that_never_answers_times_out(tmp_path):
    server = ServerProcess("silent", [sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "silent.log", tmp_path)
    try:
        with pytest.raises(ServerStartError, match="not ready after 1s"):
            server.wait_until_ready(lambda: False, 1, poll_s=0.1)
    finally:
        server.stop(timeout_s=5)
    assert server.process.returncode is not None


def test_stop_also_ends_what_the_server_started_in_another_process_group(tmp_path):
    """Like Ray's HAProxy: a grandchild in a process group of its own outlives the server's
    group; stop() must still end it (it would hold the server's ports)."""
    import os
    import time

    pid_file = tmp_path / "grandchild.pid"
    # `set -m`: the background job gets its own process group, in the same session.
    script = f"set -m; sleep 300 & echo $! > {pid_file}; wait"
    server = ServerProcess("shell", ["bash", "-c", script], tmp_path / "log", tmp_path)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert os.getpgid(grandchild) != server.process.pid  # not reachable by killpg
    server.stop(timeout_s=5)
    deadline = time.monotonic() + 5
    while grandchild in _live_pids():
        assert time.monotonic() < deadline, "the grandchild outlived stop()"
        time.sleep(0.05)


def _live_pids() -> set[int]:
    from common.procfs import live_processes

    return {p.pid for p in live_processes()}
