"""The Prometheus HTTP client used by the metrics tests and the load test's reconciliation: a slow
answer is retried, a refused query is an error at once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtests.prometheus_api import PrometheusAPI, PromQLError


class _SlowThenFast(BaseHTTPRequestHandler):
    slow_answers = 1      # how many requests are held past the client's timeout
    served = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        cls = type(self)
        cls.served += 1
        if cls.served <= cls.slow_answers:
            time.sleep(0.6)
        if "bad" in self.path:
            status, body = 400, {"status": "error", "errorType": "bad_data", "error": "parse error"}
        else:
            status, body = 200, {"status": "success",
                                 "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [0, "7"]}]}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except BrokenPipeError:  # the client gave up on the slow answer
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_SlowThenFast,), {"served": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def test_a_query_that_times_out_once_is_retried(server):
    httpd, handler = server
    api = PrometheusAPI(f"http://127.0.0.1:{httpd.server_port}", timeout_s=0.2)
    assert api.value("up") == 7.0
    assert handler.served == 2


def test_a_query_that_always_times_out_fails_after_the_attempts(server):
    httpd, handler = server
    handler.slow_answers = 10
    api = PrometheusAPI(f"http://127.0.0.1:{httpd.server_port}", timeout_s=0.2, attempts=2)
    with pytest.raises(TimeoutError, match="2 x 0.2 s"):
        api.value("up")
    assert handler.served == 2


def test_a_refused_query_is_an_error_without_retries(server):
    httpd, handler = server
    handler.slow_answers = 0
    api = PrometheusAPI(f"http://127.0.0.1:{httpd.server_port}", timeout_s=0.2)
    with pytest.raises(PromQLError, match="parse error"):
        api.value("bad(")
    assert handler.served == 1
