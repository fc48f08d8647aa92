"""A local HTTP server that keeps every POST: a stand-in for PostHog and an OTLP collector.

The PostHog SDK (capture mode v0) posts `{"api_key", "batch": [event, ...]}` to
`<host>/batch/`, gzip-compressed when asked; other SDK versions post single
events to `/i/v0/e/` or batches to `/i/v1/analytics/events`. The OTLP/HTTP
exporter posts protobuf to `/v1/traces`. Bodies are stored decompressed.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CapturedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # http.server dispatches on this name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        request = CapturedRequest(
            path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=raw
        )
        with self.server.condition:
            self.server.captured.append(request)
            self.server.condition.notify_all()
        if self.path.startswith("/v1/"):
            body, content_type = b"", "application/x-protobuf"
        else:
            body, content_type = b'{"status": 1}', "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.captured: list[CapturedRequest] = []
        self.condition = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Handler)


class CaptureServer:
    """`with CaptureServer() as server:` then point a client at `server.url`."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[CapturedRequest]:
        with self._server.condition:
            return list(self._server.captured)

    def events(self) -> list[dict[str, Any]]:
        """Every PostHog event received, in order, whatever the endpoint."""
        events: list[dict[str, Any]] = []
        for request in self.requests:
            if request.path.startswith("/v1/"):
                continue
            body = request.json()
            if isinstance(body, list):
                events.extend(body)
            elif isinstance(body, dict) and isinstance(body.get("batch"), list):
                events.extend(body["batch"])
            elif isinstance(body, dict) and "event" in body:
                events.append(body)
        return events

    def wait_for_requests(self, count: int, timeout_seconds: float = 5.0) -> list[CapturedRequest]:
        """Block until at least `count` requests arrived (for exporters that send later)."""
        with self._server.condition:
            self._server.condition.wait_for(
                lambda: len(self._server.captured) >= count, timeout=timeout_seconds
            )
            return list(self._server.captured)

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
