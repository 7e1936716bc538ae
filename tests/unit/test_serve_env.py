"""configs/ray-serve.env: one file sets Ray Serve's request path for every way the stack starts,
and bash and Python read it the same way."""

from __future__ import annotations

import subprocess

import pytest

from configs.serve_env import SERVE_ENV_FILE, load_serve_env
from tests.conftest import PROJECT_ROOT


def test_bash_sourcing_and_the_python_parser_read_the_same_values():
    script = f"set -a; . {SERVE_ENV_FILE}; set +a; env"
    shell = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin"}).stdout.splitlines() if "=" in line)
    parsed = load_serve_env()
    assert parsed and {k: shell[k] for k in parsed} == parsed


def test_the_shipped_request_path_is_haproxy_with_logs_as_they_happen():
    env = load_serve_env()
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # Per-request log lines are not held back 1000 at a time (throughput mode's default).
    assert env["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] == "1"


@pytest.mark.parametrize("line", ['A="quoted"', "A=$HOME", "export A=1", "A = 1", "a=1"])
def test_lines_bash_and_python_could_read_differently_are_refused(tmp_path, line):
    path = tmp_path / "env"
    path.write_text(f"# comment\n\nOK=1\n{line}\n")
    with pytest.raises(ValueError, match=":4: expected NAME=value"):
        load_serve_env(path)


def test_every_way_of_starting_the_stack_uses_the_file():
    assert "set -a; . configs/ray-serve.env; set +a" in (
        PROJECT_ROOT / "scripts" / "run-local.sh").read_text()
    assert "load_serve_env()" in (PROJECT_ROOT / "tests" / "integration" / "conftest.py").read_text()
    from loadtests.benchmark import VARIANTS

    assert VARIANTS["shipped"].env == load_serve_env()
