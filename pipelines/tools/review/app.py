"""``thresher review RUN``: the review app's HTTP side (aiohttp), token-protected, read-only but for labels.

Every request needs the token printed at start: ``?token=`` (the printed URL; it sets an HttpOnly,
SameSite=Strict cookie and redirects to a URL without it), the cookie, or an ``X-Thresher-Token``
header. None given: 401; a wrong one: 403. The page is three fixed files served from memory (no path
from a request ever reaches the file system); images are asked for by row index. A Content-Security-
Policy allows only this origin's script, style, images and fetches, so a hostile caption rendered by
mistake still could not run or load anything.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pipelines.tools.review.images import OutsideRun
from pipelines.tools.review.rows import Query
from pipelines.tools.review.service import Review

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("index.html", "text/html"), "/static/review.js": ("review.js", "text/javascript"),
         "/static/review.css": ("review.css", "text/css")}
COOKIE = "thresher_review"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
REVIEW, TOKEN = web.AppKey("review", Review), web.AppKey("token", str)


def _presented(request: web.Request) -> str | None:
    return (request.query.get("token") or request.headers.get("X-Thresher-Token")
            or request.cookies.get(COOKIE))


@web.middleware
async def guard(request: web.Request, handler):
    token = _presented(request)
    if token is None:
        raise web.HTTPUnauthorized(text="a token is needed: open the URL thresher review printed")
    if not hmac.compare_digest(token.encode(), request.app[TOKEN].encode()):
        raise web.HTTPForbidden(text="wrong token")
    if "token" in request.query and request.method == "GET" and request.path == "/":
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        raise response
    try:
        response = await handler(request)
    except OutsideRun as exc:
        response = web.json_response({"error": str(exc)}, status=403)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        response = web.json_response({"error": str(exc)}, status=400)
    response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
    return response


async def page(request: web.Request) -> web.Response:
    name, kind = PAGES[request.path]
    return web.Response(body=(STATIC / name).read_bytes(), content_type=kind, charset="utf-8")


async def _body(request: web.Request) -> dict:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    setting = body.get("setting", {})
    if not isinstance(setting, dict):
        raise ValueError("setting must be an object of threshold -> value")
    return body


def _call(name: str):
    """A POST handler running ``Review.<name>(**body)`` in a thread (decisions take a while at 10M rows)."""
    async def handler(request: web.Request) -> web.Response:
        body = await _body(request)
        result = await asyncio.to_thread(getattr(request.app[REVIEW], name), **body)
        return web.json_response(result)
    return handler


async def meta(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[REVIEW].meta))


async def browse(request: web.Request) -> web.Response:
    body = await _body(request)
    q = body.get("query", {})
    ranges = {str(k): (v[0], v[1]) for k, v in (q.get("ranges") or {}).items()}
    query = Query(status=q.get("status") or None, reason=q.get("reason") or None, kept=q.get("kept"),
                  caption=q.get("caption") or None, ranges=ranges, page=int(q.get("page") or 0))
    result = await asyncio.to_thread(request.app[REVIEW].browse, query, body.get("setting", {}))
    return web.json_response(result)


async def thumb(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(request.app[REVIEW].thumb, int(request.match_info["row"]))
    if data is None:
        raise web.HTTPNotFound(text="no staged image for this row")
    return web.Response(body=data, content_type="image/jpeg")


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def labels(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[REVIEW].labels))


def build_app(review: Review, token: str) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[REVIEW], app[TOKEN] = review, token
    app.router.add_get("/", page)
    app.router.add_get("/static/review.js", page)
    app.router.add_get("/static/review.css", page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/api/meta", meta)
    app.router.add_get("/api/thumb/{row:\\d+}", thumb)
    app.router.add_get("/api/labels", labels)
    app.router.add_post("/api/browse", browse)
    for name in ("counts", "export", "sample", "flips", "nearest", "queue", "label", "estimates"):
        app.router.add_post(f"/api/{name}", _call(name))
    app.on_cleanup.append(lambda app: asyncio.to_thread(app[REVIEW].close))
    return app


@dataclass
class Served:
    url: str  # with the token
    base: str
    token: str
    stop: threading.Event
    thread: threading.Thread

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


async def _serve(app: web.Application, host: str, port: int, ready, stop: threading.Event) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    ready(runner.addresses[0][1])
    try:
        while not stop.is_set():
            await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()


def start(review: Review, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> Served:
    """Serve ``review`` from a background thread; ``Served.url`` is what to open."""
    token = token or secrets.token_urlsafe(24)
    stop, bound = threading.Event(), threading.Event()
    found: list[int] = []

    def ready(p: int) -> None:
        found.append(p)
        bound.set()

    app = build_app(review, token)
    thread = threading.Thread(target=lambda: asyncio.run(_serve(app, host, port, ready, stop)), daemon=True)
    thread.start()
    if not bound.wait(60):
        raise RuntimeError("the review app did not start")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"http://{shown}:{found[0]}"
    return Served(f"{base}/?token={token}", base, token, stop, thread)


def serve_forever(run: Path, host: str, port: int, who: str) -> None:
    review = Review(run, who)
    served = start(review, host, port)
    print(f"thresher review: {len(review.live.before):,} rows of {run}")
    print(f"  open {served.url}")
    print("  (the token in the URL protects the app; Ctrl-C stops it)", flush=True)
    try:
        served.thread.join()
    except KeyboardInterrupt:
        served.close()

