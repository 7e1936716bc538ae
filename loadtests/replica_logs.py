"""Which model replica took each request, read from the Serve log lines on each node.

A model replica logs `request <id> accepted` as it takes a call off Serve's queue, before any
output (model_server/replica.py). Serve's handlers write the line as it happens, prefixed with
the replica's deployment and id and the request id of the call, e.g.

    INFO 2026-12-07 10:00:05,200 cs-assistant_TextModel ab12cd34 lt-1 -- request lt-1 accepted

to the replica's stderr (RAY_SERVE_LOG_TO_STDERR=1, configs/ray-serve.env), which Ray keeps in
the node's `logs/worker-*.err`, and to its own file `logs/serve/replica_<app>_<deployment>_<id>.log`
(RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE=1: no buffering). Both are on disk even when the replica
is killed a moment later. Serve's own line for a call (its access log) is written only when the
call ends, which a killed replica's calls never do. Both places are read because a model
replica's Serve file has been seen to stop after its first line (a library reconfiguring
logging while the engine starts), while stderr kept every line.

The id is the ingress's request id: the x-request-id header (a client's own, or the one Serve
gives it), passed to the replica in `EngineRequest.request_id` and, by Serve, in the call's
request context (the prefix's id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Serve's text format: "<LEVEL> <date> <time> <app>_<deployment> <replica id> [<request id>]
# -- <message>".
_ACCEPTED = re.compile(r"^[A-Z]+ \S+ \S+ (?P<component>\S+) (?P<replica>\S+) (?:\S+ )?"
                       r"-- request (?P<request_id>\S+) accepted$")


def log_files(node_log_dirs: Iterable[Path], deployment: str) -> list[Path]:
    """Where a node's Serve lines of `deployment`'s replicas are: its workers' stderr files and
    the replicas' Serve files (rotated backups, `.log.1` and on, included)."""
    files = []
    for logs in node_log_dirs:
        logs = Path(logs)
        files += sorted(logs.glob("worker-*.err"))
        files += sorted((logs / "serve").glob(f"replica_*_{deployment}_*.log*"))
    return files


def accepting_replicas(node_log_dirs: Iterable[Path], deployment: str) -> dict[str, set[str]]:
    """{request id: ids of the `deployment` replicas that logged accepting it}, from the log
    directories (`<session>/logs`) of the cluster's nodes. A request lost before any output is
    sent once more, so it can have two."""
    accepted: dict[str, set[str]] = {}
    suffix = f"_{deployment}"
    for path in log_files(node_log_dirs, deployment):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if " accepted" not in line:
                    continue
                match = _ACCEPTED.match(line.rstrip("\n"))
                if match and match["component"].endswith(suffix):
                    accepted.setdefault(match["request_id"], set()).add(match["replica"])
    return accepted
