"""loadtests/replica_logs.py: which text replica took each request, from the Serve log lines
on each node (workers' stderr files and Serve's replica files)."""

from __future__ import annotations

from pathlib import Path

from loadtests.replica_logs import accepting_replicas, log_files

HEAD_STDERR = """\
:actor_name:ServeReplica:default:TextModel
Loading safetensors checkpoint shards: 100% Completed | 1/1
INFO 2026-12-07 10:00:01,100 default_TextModel ab12cd34 -- Started initializing replica.
INFO 2026-12-07 10:00:05,200 default_TextModel ab12cd34 lt-1 -- request lt-1 accepted
INFO 2026-12-07 10:00:06,300 default_TextModel ab12cd34 lt-1 -- CALL chat OK 1100.0ms
INFO 2026-12-07 10:00:07,000 default_TextModel ab12cd34 lt-2 -- request lt-2 accepted
INFO 2026-12-07 10:00:05,000 default_VisionModel vv11vv11 lt-9 -- request lt-9 accepted
INFO 2026-12-07 10:00:05,000 default_Ingress ii22ii22 lt-1 -- request lt-1 key=k1 shop=- route=text
"""
# Killed mid-write: the last line has no line end.
WORKER_STDERR = ("INFO 2026-12-07 10:00:07,200 default_TextModel zz98yx76 lt-2 -- request lt-2 "
                 "accepted\nINFO 2026-12-07 10:00:08,000 default_TextModel zz98yx76 lt-3 -- "
                 "request lt-3 accepted")


def node_logs(tmp_path: Path) -> list[Path]:
    head, worker = tmp_path / "head" / "logs", tmp_path / "w1" / "logs"
    for logs in (head, worker):
        (logs / "serve").mkdir(parents=True)
    (head / "worker-aa-01000000-19194.err").write_text(HEAD_STDERR)
    (worker / "worker-bb-01000000-20001.err").write_text(WORKER_STDERR)
    # The same lines in Serve's replica file (also read: either place may have them), and a
    # rotated backup of it with an older request.
    (head / "serve" / "replica_default_TextModel_ab12cd34.log").write_text(HEAD_STDERR)
    (head / "serve" / "replica_default_TextModel_ab12cd34.log.1").write_text(
        "INFO 2026-12-07 09:59:00,000 default_TextModel ab12cd34 lt-0 -- request lt-0 accepted\n")
    # Not a replica's Serve line: no prefix, or another file.
    (head / "worker-cc-01000000-19000.err").write_text("request lt-5 accepted\n")
    (head / "serve" / "controller_1234.log").write_text(
        "INFO 2026-12-07 10:00:05,000 controller 1234 -- request lt-4 accepted\n")
    (head / "raylet.out").write_text(
        "INFO 2026-12-07 10:00:05,000 default_TextModel ab12cd34 lt-6 -- request lt-6 accepted\n")
    return [head, worker, tmp_path / "w2" / "logs"]  # w2: not started yet


def test_each_request_maps_to_every_text_replica_that_took_it(tmp_path):
    taken_by = accepting_replicas(node_logs(tmp_path), "TextModel")
    # lt-2 was lost on the head replica before output and sent again to the worker's.
    assert taken_by == {"lt-0": {"ab12cd34"}, "lt-1": {"ab12cd34"},
                        "lt-2": {"ab12cd34", "zz98yx76"}, "lt-3": {"zz98yx76"}}
    assert accepting_replicas(node_logs(tmp_path / "again"), "VisionModel") == {
        "lt-9": {"vv11vv11"}}


def test_only_workers_stderr_and_the_deployments_serve_files_are_read(tmp_path):
    names = [path.name for path in log_files(node_logs(tmp_path), "TextModel")]
    assert names == ["worker-aa-01000000-19194.err", "worker-cc-01000000-19000.err",
                     "replica_default_TextModel_ab12cd34.log",
                     "replica_default_TextModel_ab12cd34.log.1", "worker-bb-01000000-20001.err"]
