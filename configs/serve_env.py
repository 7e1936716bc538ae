"""The process environment Ray Serve is started with (configs/ray-serve.env), for the Python
callers: the integration tests' stack and the benchmark. Shell callers source the file."""

from __future__ import annotations

import re
from pathlib import Path

SERVE_ENV_FILE = Path(__file__).resolve().parent / "ray-serve.env"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=([A-Za-z0-9_.,:/-]*)$")


def load_serve_env(path: Path = SERVE_ENV_FILE) -> dict[str, str]:
    """{name: value} of the file's KEY=VALUE lines; comments and blank lines skipped. Anything
    else is refused, so that `set -a; . file` in bash and this parser cannot disagree."""
    env = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected NAME=value (letters, digits, "
                             f"'_.,:/-' only), got {raw!r}")
        env[match.group(1)] = match.group(2)
    return env
