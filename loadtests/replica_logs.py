"""Which model replica took each request, read from Serve's replica log files.

A model replica logs `request <id> accepted` as it takes a call off Serve's queue, before any
output (model_server/replica.py). Serve writes the line to that replica's own file,
`logs/serve/replica_<app>_<deployment>_<replica id>.log` in its node's session directory, as it
happens (RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE=1 in configs/ray-serve.env), so it is on disk even
when the replica or its node is killed a moment later. Serve's own line for a call (its access
log) is written only when the call ends, which a killed replica's calls never do.

The id is the ingress's request id: the x-request-id header (a client's own, or the one Serve
gives it), which the ingress passes to the replica in `EngineRequest.request_id`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# The message as Serve's text format writes it: "... <serve request id> -- <message>".
_ACCEPTED = re.compile(r" -- request (?P<request_id>\S+) accepted$")


def replica_log_files(log_dirs: Iterable[Path], deployment: str) -> dict[Path, str]:
    """{log file: replica id} of `deployment`'s replicas in Serve's log directories (rotated
    backups, `.log.1` and on, included)."""
    name = re.compile(rf"^replica_.+_{re.escape(deployment)}_(?P<replica>[^_.]+)\.log(\.\d+)?$")
    files = {}
    for log_dir in log_dirs:
        for path in sorted(Path(log_dir).glob(f"replica_*_{deployment}_*.log*")):
            match = name.match(path.name)
            if match:
                files[path] = match["replica"]
    return files


def accepting_replicas(log_dirs: Iterable[Path], deployment: str) -> dict[str, set[str]]:
    """{request id: ids of the `deployment` replicas that logged accepting it}. A request lost
    before any output is sent once more, so it can have two."""
    accepted: dict[str, set[str]] = {}
    for path, replica in replica_log_files(log_dirs, deployment).items():
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                match = _ACCEPTED.search(line.rstrip("\n"))
                if match:
                    accepted.setdefault(match["request_id"], set()).add(replica)
    return accepted
