"""loadtests/replica_logs.py: which text replica took each request, from Serve's log files."""

from __future__ import annotations

from pathlib import Path

from loadtests.replica_logs import accepting_replicas, replica_log_files

HEAD_LINES = """\
INFO 2026-12-07 10:00:01,100 default_TextModel ab12cd34 -- Started initializing replica.
INFO 2026-12-07 10:00:05,200 default_TextModel ab12cd34 lt-1 -- request lt-1 accepted
INFO 2026-12-07 10:00:06,300 default_TextModel ab12cd34 lt-1 -- CALL chat OK 1100.0ms
INFO 2026-12-07 10:00:07,000 default_TextModel ab12cd34 lt-2 -- request lt-2 accepted
"""
# Killed mid-write: the last line has no line end.
WORKER_LINES = ("INFO 2026-12-07 10:00:07,200 default_TextModel zz98yx76 lt-2 -- request lt-2 "
                "accepted\nINFO 2026-12-07 10:00:08,000 default_TextModel zz98yx76 lt-3 -- "
                "request lt-3 accepted")


def serve_logs(tmp_path: Path) -> list[Path]:
    head = tmp_path / "head" / "logs" / "serve"
    worker = tmp_path / "w1" / "logs" / "serve"
    for directory in (head, worker):
        directory.mkdir(parents=True)
    (head / "replica_default_TextModel_ab12cd34.log").write_text(HEAD_LINES)
    (worker / "replica_default_TextModel_zz98yx76.log").write_text(WORKER_LINES)
    # A rotated backup of the head replica's file.
    (head / "replica_default_TextModel_ab12cd34.log.1").write_text(
        "INFO 2026-12-07 09:59:00,000 default_TextModel ab12cd34 lt-0 -- request lt-0 accepted\n")
    # Lines that are not a text replica taking a request.
    (head / "replica_default_VisionModel_vv11vv11.log").write_text(
        "INFO 2026-12-07 10:00:05,000 default_VisionModel vv11vv11 lt-9 -- request lt-9 "
        "accepted\n")
    (head / "replica_default_Ingress_ii22ii22.log").write_text(
        "INFO 2026-12-07 10:00:05,000 default_Ingress ii22ii22 lt-1 -- request lt-1 key=k1 "
        "shop=- route=text\n")
    (head / "controller_1234.log").write_text("request lt-4 accepted\n")
    return [head, worker, tmp_path / "w2" / "logs" / "serve"]  # w2: not started yet


def test_each_request_maps_to_every_text_replica_that_took_it(tmp_path):
    taken_by = accepting_replicas(serve_logs(tmp_path), "TextModel")
    # lt-2 was lost on the head replica before output and sent again to the worker's.
    assert taken_by == {"lt-0": {"ab12cd34"}, "lt-1": {"ab12cd34"},
                        "lt-2": {"ab12cd34", "zz98yx76"}, "lt-3": {"zz98yx76"}}


def test_only_the_deployments_replica_files_are_read(tmp_path):
    files = replica_log_files(serve_logs(tmp_path), "TextModel")
    assert sorted((path.name, replica) for path, replica in files.items()) == [
        ("replica_default_TextModel_ab12cd34.log", "ab12cd34"),
        ("replica_default_TextModel_ab12cd34.log.1", "ab12cd34"),
        ("replica_default_TextModel_zz98yx76.log", "zz98yx76"),
    ]
    assert accepting_replicas(serve_logs(tmp_path / "again"), "VisionModel") == {
        "lt-9": {"vv11vv11"}}
