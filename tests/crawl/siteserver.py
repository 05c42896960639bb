"""A loopback origin with its own robots.txt and tdmrep.json: one server is one origin (RFC 9309's unit).

Each ``Site`` answers ``/robots.txt`` and ``/.well-known/tdmrep.json`` as told (a status, a body, a delay,
a redirect) and serves the generated photo under any ``/img/...`` path, with per-path extra headers.
It counts requests per path and remembers when each arrived, so tests can check that a site file is
fetched once per origin per worker and that Crawl-delay spaces the image requests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from faultserver import photo_jpeg, send


@dataclass
class Answer:
    """How the site answers one of its files."""

    status: int = 404
    body: bytes = b""
    delay_s: float = 0.0
    location: str | None = None  # a 301 to here instead


@dataclass
class SiteSpec:
    robots: Answer = field(default_factory=Answer)
    tdmrep: Answer = field(default_factory=Answer)
    image_headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> extra response headers
    images: dict[str, bytes] = field(default_factory=dict)  # path -> body (default: the generated photo)


class Site:
    def __init__(self, spec: SiteSpec) -> None:
        self.spec = spec
        self.hits: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def enter(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1
            self.arrivals.setdefault(path, []).append(time.monotonic())


def _answer(h: BaseHTTPRequestHandler, answer: Answer, ctype: str) -> None:
    time.sleep(answer.delay_s)
    if answer.location is not None:
        send(h, 301, b"", "text/plain", {"Location": answer.location})
    else:
        send(h, answer.status, answer.body, ctype)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urlsplit(self.path).path
            site.enter(path)
            spec = site.spec
            try:
                if path in ("/robots.txt", "/robots-moved.txt"):
                    _answer(self, spec.robots if path == "/robots.txt" else Answer(200, spec.robots.body), "text/plain")
                elif path == "/.well-known/tdmrep.json":
                    _answer(self, spec.tdmrep, "application/json")
                elif path.startswith("/img/"):
                    send(self, 200, spec.images.get(path, photo_jpeg()), headers=spec.image_headers.get(path))
                else:
                    send(self, 404, b"no such path", "text/plain")
            except (BrokenPipeError, ConnectionResetError):
                pass  # a client that timed out hung up

        def log_message(self, *args) -> None:
            pass

    return Handler
