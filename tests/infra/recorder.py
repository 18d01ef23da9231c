"""A loopback HTTP endpoint that records every request, optionally forwarding it.

Security tests point a WorkPool's ``spec.api.url`` at it to see what the operator would
send to a URL it does not trust: with ``upstream`` it is a transparent recording proxy in
front of the real Prefect server, so a pool behind it can still become Ready.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """``with Recorder() as rec:`` … ``rec.requests``; ``rec.url`` is http://127.0.0.1:<port>."""

    upstream: str | None = None
    host: str = "127.0.0.1"
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.requests.append(Seen(self.command, self.path, headers))
                status, content, ctype = 404, b'{"detail": "recorder"}', "application/json"
                if recorder.upstream is not None:
                    forward = {
                        k: v for k, v in headers.items() if k not in ("host", "content-length")
                    }
                    r = httpx.request(
                        self.command,
                        recorder.upstream.rstrip("/") + self.path,
                        headers=forward,
                        content=body,
                        timeout=30,
                    )
                    status, content = r.status_code, r.content
                    ctype = r.headers.get("content-type", ctype)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def authorizations(self) -> list[str]:
        return [s.headers["authorization"] for s in self.requests if "authorization" in s.headers]

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
