"""A shop CDN on loopback for the remote-image tests: real HTTP, with the misbehaviours a fetcher
must survive (slow answers, endless bodies, lying content types, redirects).

Paths:
  /shirt.png                a real PNG
  /shirt.jpg                a real JPEG
  /page.html                text/html
  /fake.png                 says image/png, sends HTML
  /missing.png              404
  /slow-headers             waits `SLOW_S` before answering
  /drip                     image/png headers, then one byte per second, forever
  /endless                  image/png headers, then bytes as fast as possible, forever
  /redirect?to=URL          302 to URL
  /redirect-nowhere         302 without a Location
  /hops/N                   302 to /hops/N-1, and /hops/0 is the PNG
Every request's Host header is recorded in `requests_seen` (path, host).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.conftest import image_bytes

SLOW_S = 30.0
PNG = image_bytes(64, 48, "PNG")
JPEG = image_bytes(64, 48, "JPEG")


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        self.server.requests_seen.append((parts.path, self.headers.get("Host")))
        path = parts.path
        try:
            if path == "/shirt.png":
                self._send(200, "image/png", PNG)
            elif path == "/shirt.jpg":
                self._send(200, "image/jpeg", JPEG)
            elif path == "/page.html":
                self._send(200, "text/html", b"<html>not an image</html>")
            elif path == "/fake.png":
                self._send(200, "image/png", b"<html>not an image</html>" * 10)
            elif path == "/slow-headers":
                time.sleep(SLOW_S)
                self._send(200, "image/png", PNG)
            elif path in ("/drip", "/endless"):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(PNG[:16])
                while True:
                    self.wfile.write(b"x" * (1 if path == "/drip" else 65536))
                    self.wfile.flush()
                    if path == "/drip":
                        time.sleep(1.0)
            elif path == "/redirect-nowhere":
                self._send(302, "text/plain", b"")
            elif path == "/redirect":
                self._redirect(parse_qs(parts.query)["to"][0])
            elif path.startswith("/hops/"):
                hops = int(path.rsplit("/", 1)[1])
                if hops == 0:
                    self._send(200, "image/png", PNG)
                else:
                    self._redirect(f"/hops/{hops - 1}")
            else:
                self._send(404, "text/plain", b"no such image")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up, as it should

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__((host, 0), _Handler)
        self.requests_seen: list[tuple[str, str | None]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
