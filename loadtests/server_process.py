"""A server started as a child process for a benchmark or a test: start it in its own process
group with its output in a log file, wait until it answers, stop it (SIGINT, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from common.procfs import live_processes


def free_port() -> int:
    """A TCP port on the loopback interface that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message names its log."""


def url_answers(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 200."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


class ServerProcess:
    def __init__(self, name: str, command: list[str], log_path: Path, cwd: Path,
                 env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)  # .run/ does not exist in a fresh clone
        self._log = open(log_path, "w")
        # Own process group: stopping it also stops what the server spawned (Ray, engines).
        self.process = subprocess.Popen(
            command, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
        self.started = time.monotonic()

    def wait_until_ready(self, ready: Callable[[], bool], timeout_s: float,
                         poll_s: float = 2.0) -> float:
        """Seconds from start until `ready()` held; ServerStartError if it exits or times out."""
        while not ready():
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() - self.started > timeout_s:
                raise ServerStartError(
                    f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}")
            time.sleep(poll_s)
        return time.monotonic() - self.started

    def stop(self, timeout_s: float = 60) -> None:
        """SIGINT the process group (lets `serve run` shut Ray down cleanly), SIGKILL if it
        does not exit within `timeout_s`; then SIGKILL whatever it started that outlived it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Ray's HAProxy outlives `serve run` and `ray stop --force` (orphaned, holding the
        # Serve port and 8404/9101, so the next stack's HAProxy cannot bind). It stays in the
        # session the server was started in, so the session tells what is left.
        for pid in session_processes(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def session_processes(session_id: int) -> list[int]:
    """Live processes of session `session_id`."""
    return [p.pid for p in live_processes() if p.session == session_id]
