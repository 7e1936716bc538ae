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
