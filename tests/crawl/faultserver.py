"""A loopback HTTP server with the faults of the real web, counting every request it sees.

Like img2dataset's ``tests/http_server.py``, but each route is a fault the crawler must turn into a
documented status: 404/410, 429 with Retry-After, 5xx then success, a reset connection, a body slower
than the read timeout, truncated and non-image bodies, redirect chains and loops, oversized bodies with
and without a Content-Length, a gzip bomb, a decompression bomb and X-Robots-Tag opt-outs.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from PIL import Image

HOLD_S = 0.3  # how long /hold keeps a request open (per-host concurrency test)
SLOW_BODY_S = 3.0  # /slow-body stalls this long mid-body, well past the tests' read timeout


@lru_cache(maxsize=None)
def photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A real JPEG with structure (gradients and shapes), generated, not fetched."""
    img = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    img.paste((200, 30, 30), (width // 4, height // 4, width // 2, height // 2))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=None)
def gzip_bomb(size: int = 64 << 20) -> bytes:
    """A gzip body that inflates to ``size`` bytes of a JPEG-looking stream (Content-Encoding: gzip)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\x00" * (1 << 20)
    parts = [packer.compress(b"\xff\xd8\xff")] + [packer.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + packer.flush()


@lru_cache(maxsize=None)
def bomb_png(side: int = 20_000) -> bytes:
    """A real 1-bit PNG of side x side zero pixels: ~50 KiB on the wire, ~400 MB if decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer, block = zlib.compressobj(9), row * 1000
    parts = [packer.compress(block) for _ in range(side // 1000)]
    parts += [packer.compress(row * (side % 1000)), packer.flush()]
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops SYNs under a burst: spurious connect timeouts


class FaultServer:
    """Serves the fault routes on 127.0.0.1; ``hits[path]`` counts requests, ``max_holding`` the peak number
    of /hold requests in flight at once."""

    def __init__(self) -> None:
        bomb_png(), gzip_bomb(), photo_jpeg()  # built now: building them in a handler would stall every other request
        self.hits: Counter[str] = Counter()
        self.holding = self.max_holding = 0
        self.bytes_sent: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # clients hang up on purpose here
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def total(self) -> int:
        return sum(self.hits.values())

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.bytes_sent.clear()
            self.max_holding = 0

    def enter(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    def hold(self) -> None:
        with self._lock:
            self.holding += 1
            self.max_holding = max(self.max_holding, self.holding)
        time.sleep(HOLD_S)
        with self._lock:
            self.holding -= 1


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urlsplit(self.path).path
            nth = server.enter(path)
            try:
                route(self, server, path, nth)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up, as it should on an oversized body

        def log_message(self, *args) -> None:
            pass

    return Handler


def send(h: BaseHTTPRequestHandler, code: int, body: bytes = b"", ctype: str = "image/jpeg",
         headers: dict[str, str] | None = None) -> None:
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body)


def redirect(h: BaseHTTPRequestHandler, location: str) -> None:
    send(h, 302, b"", "text/plain", {"Location": location})


def reset(h: BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN: what a crashing server or middlebox does."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.close_connection = True


def stream(h: BaseHTTPRequestHandler, server: FaultServer, path: str, total: int, declare: bool) -> None:
    """``total`` bytes in 1 MiB writes, with or without a Content-Length; counts what went out."""
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    if declare:
        h.send_header("Content-Length", str(total))
    else:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    chunk = b"\xff\xd8\xff" + b"\x00" * ((1 << 20) - 3)
    for _ in range(total >> 20):
        h.wfile.write(chunk)
        server.bytes_sent[path] += len(chunk)


def route(h: BaseHTTPRequestHandler, server: FaultServer, path: str, nth: int) -> None:
    jpeg = photo_jpeg()
    if path.startswith("/ok") or path.startswith("/hold"):
        if path.startswith("/hold"):
            server.hold()
        send(h, 200, jpeg)
    elif path in ("/404", "/410", "/403", "/503"):
        send(h, int(path[1:]), b"gone", "text/plain")
    elif path == "/429-then-ok":
        send(h, 429, b"slow down", "text/plain", {"Retry-After": "2"}) if nth == 1 else send(h, 200, jpeg)
    elif path == "/429-date-then-ok":
        later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
        send(h, 429, b"slow down", "text/plain", {"Retry-After": later}) if nth == 1 else send(h, 200, jpeg)
    elif path == "/429-long":
        send(h, 429, b"come back tomorrow", "text/plain", {"Retry-After": "86400"})
    elif path in ("/500-then-ok", "/408-then-ok"):
        send(h, int(path[1:4]), b"oops", "text/plain") if nth == 1 else send(h, 200, jpeg)
    elif path == "/reset":
        reset(h)
    elif path == "/reset-mid-body":
        h.send_response(200)
        h.send_header("Content-Length", str(len(jpeg)))
        h.end_headers()
        h.wfile.write(jpeg[: len(jpeg) // 2])
        h.wfile.flush()
        reset(h)
    elif path == "/slow-body":
        h.send_response(200)
        h.send_header("Content-Length", str(len(jpeg)))
        h.end_headers()
        h.wfile.write(jpeg[:100])
        h.wfile.flush()
        time.sleep(SLOW_BODY_S)
        h.close_connection = True
    elif path == "/truncated.jpg":
        send(h, 200, jpeg[: len(jpeg) // 3])
    elif path.startswith("/redirect/"):
        hops = int(path.rsplit("/", 1)[1])
        redirect(h, f"/redirect/{hops - 1}" if hops > 1 else "/ok-after-redirect.jpg")
    elif path in ("/loop-a", "/loop-b"):
        redirect(h, "/loop-b" if path == "/loop-a" else "/loop-a")
    elif path == "/to":
        redirect(h, h.path.split("target=", 1)[1])
    elif path == "/page.html":
        send(h, 200, b"<!doctype html><html><body>not an image</body></html>")
    elif path == "/empty.jpg":
        send(h, 200, b"")
    elif path in ("/huge-declared", "/huge-chunked"):
        stream(h, server, path, 256 << 20, declare=path == "/huge-declared")
    elif path == "/gzip-bomb.jpg":
        send(h, 200, gzip_bomb(), headers={"Content-Encoding": "gzip"})
    elif path == "/bomb.png":
        send(h, 200, bomb_png(), "image/png")
    elif path in ("/noai.jpg", "/ours-noimageai.jpg", "/other-noai.jpg", "/noindex-nofollow.jpg"):
        tag = {"/noai.jpg": "noai", "/ours-noimageai.jpg": "thresher: noimageai",
               "/other-noai.jpg": "otherbot: noai", "/noindex-nofollow.jpg": "noindex, nofollow"}[path]
        send(h, 200, jpeg, headers={"X-Robots-Tag": tag})
    else:
        send(h, 404, b"no such route", "text/plain")
