"""HTTP for the sample app: Starlette on uvicorn, and the checks that keep the app the owner's.

Every request:
- ``Host`` must be this server's own ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page
  sends its own name: 421);
- every POST must come from the served origin (``Origin`` exactly ``http://127.0.0.1:PORT`` or
  ``http://localhost:PORT``) and carry the tab's session secret in ``X-CSRF-Token`` (403 otherwise);
  the secret is in the page's ``<meta name="csrf-token">``, the session id in an HttpOnly,
  SameSite=Strict cookie. Each tab that loads the page without a session cookie gets a new session;
- bodies are read with a size cap (``MAX_FRAME_BYTES``, ``MAX_ENROLL_BYTES``: 413, whatever
  ``Content-Length`` says) and a deadline (``UPLOAD_TIMEOUT_S``: 408 and the connection closed), so a
  stalled upload holds nothing for long.

The socket is bound here with a backlog of ``BACKLOG``; uvicorn closes idle keep-alive connections
after ``KEEP_ALIVE_S``. Device work runs on one worker thread (``UnlockApp`` is not thread-safe).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import html
import json
import secrets
import socket
import sys
import time
import traceback
from collections import OrderedDict
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Callable

from starlette.applications import Starlette
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperverify.runtime.errors import HyperverifyError, ImageError
from hyperverify.sample_app.server import MAX_ENROLL_IMAGES, AppError, Session, UnlockApp

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
                "/static/style.css": ("style.css", "text/css; charset=utf-8")}
BACKLOG = 128
KEEP_ALIVE_S = 5
UPLOAD_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 8 * 2**20
MAX_ENROLL_BYTES = 32 * 2**20
MAX_SESSIONS = 64
COOKIE = "hv_session"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
                               "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Refused(Exception):
    """A request refused before it reaches the app: HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sessions:
    """Browser-tab sessions in memory (a restart locks every tab), least recently used dropped first."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str | None) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is not None:
            self._by_id.move_to_end(session_id)
        return session

    def new(self) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = Session(secrets.token_urlsafe(32))
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session_id, self._by_id[session_id]


class HostAndOriginGuard:
    """ASGI middleware: refuse a foreign ``Host`` on every request and a foreign or missing
    ``Origin`` on every request that changes state (anything but GET and HEAD)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("host", "").lower() not in self.hosts:
            refusal = (HTTPStatus.MISDIRECTED_REQUEST, "This app answers only at " + " or ".join(sorted(self.origins)) + ".")
        elif scope["method"] not in ("GET", "HEAD") and headers.get("origin", "") not in self.origins:
            refusal = (HTTPStatus.FORBIDDEN, "Refused: this request did not come from the app's own page.")
        else:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"error": refusal[1]}, refusal[0], headers={**SECURITY_HEADERS, "Connection": "close"})
        await response(scope, receive, send)


class Web:
    """The routes; one worker thread runs every ``UnlockApp`` call."""

    def __init__(self, app: UnlockApp) -> None:
        self.app = app
        self.sessions = Sessions()
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")

    async def call(self, method: Callable, *args) -> dict:
        return await asyncio.get_running_loop().run_in_executor(self.worker, partial(method, *args))

    # -- sessions ---------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        """The request's session; for POST also its CSRF token, compared in constant time."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if request.method in ("GET", "HEAD"):
            return session or Session("")
        token = request.headers.get("x-csrf-token", "")
        if session is None or not token or not hmac.compare_digest(token.encode(), session.token.encode()):
            raise Refused(HTTPStatus.FORBIDDEN, "Refused: the session secret is missing or wrong. Reload the page.")
        return session

    async def index(self, request: Request) -> Response:
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id)
        if session is None:
            session_id, session = self.sessions.new()
        page = (STATIC / "index.html").read_text().replace("{{csrf_token}}", html.escape(session.token))
        response = Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/")
        return response

    async def static(self, request: Request) -> Response:
        name, content_type = STATIC_FILES[request.url.path]
        return Response((STATIC / name).read_bytes(), media_type=content_type, headers=SECURITY_HEADERS)

    # -- API --------------------------------------------------------------------------------------

    async def status(self, request: Request) -> dict:
        return await self.call(self.app.status, self._session(request))

    async def source(self, request: Request) -> Response:
        if self.app.source is None:
            raise AppError("This app was started without --source: the page uses the camera.", HTTPStatus.NOT_FOUND)
        index = request.path_params["index"]
        try:
            data = await self.call(self.app.source.jpeg, index)
        except ImageError as err:
            raise AppError(f"Source frame {index + 1} cannot be shown: {err}") from None
        return Response(data, media_type="image/jpeg", headers=SECURITY_HEADERS)

    async def verify(self, request: Request) -> dict:
        session = self._session(request)
        body = await read_body(request, MAX_FRAME_BYTES)
        return await self.call(self.app.verify, session, body, time.perf_counter())

    async def pin(self, request: Request) -> dict:
        session = self._session(request)
        return await self.call(self.app.unlock_with_pin, session, _json_field(await read_body(request, 4096), "pin"))

    async def enroll(self, request: Request) -> dict:
        session = self._session(request)
        body = await read_body(request, MAX_ENROLL_BYTES)
        images, fields = await parse_form(request.headers, body)
        return await self.call(self.app.enroll, session, images, fields.get("pin") or None)

    async def lock(self, request: Request) -> dict:
        return await self.call(self.app.lock, self._session(request))

    async def forget(self, request: Request) -> dict:
        session = self._session(request)
        pin = _json_field(await read_body(request, 4096), "pin", required=False)
        return await self.call(self.app.forget, session, pin)

    def _guarded(self, handler: Callable) -> Callable:
        """JSON for every outcome: the app's answer, a refusal, an app error with the current status,
        or an internal error (logged, the server keeps serving)."""

        async def endpoint(request: Request) -> Response:
            try:
                result = await handler(request)
                return result if isinstance(result, Response) else JSONResponse(result, headers=SECURITY_HEADERS)
            except Refused as err:
                return JSONResponse({"error": str(err)}, err.status, headers={**SECURITY_HEADERS, "Connection": "close"})
            except AppError as err:
                state = await self.call(self.app.status, self.sessions.get(request.cookies.get(COOKIE)) or Session(""))
                return JSONResponse({"error": str(err), **state}, err.status, headers=SECURITY_HEADERS)
            except HyperverifyError as err:
                return JSONResponse({"error": str(err)}, HTTPStatus.BAD_REQUEST, headers=SECURITY_HEADERS)
            except Exception as err:  # a bug: keep serving, tell the page, log the traceback
                traceback.print_exc(file=sys.stderr)
                return JSONResponse({"error": f"Internal error ({type(err).__name__}). The app keeps running."},
                                    HTTPStatus.INTERNAL_SERVER_ERROR, headers=SECURITY_HEADERS)

        return endpoint

    def asgi(self, port: int) -> ASGIApp:
        g = self._guarded
        routes = [
            Route("/", self.index, methods=["GET"]),
            *(Route(path, self.static, methods=["GET"]) for path in STATIC_FILES),
            Route("/api/status", g(self.status), methods=["GET"]),
            Route("/api/source/{index:int}.jpg", g(self.source), methods=["GET"]),
            Route("/api/verify", g(self.verify), methods=["POST"]),
            Route("/api/pin", g(self.pin), methods=["POST"]),
            Route("/api/enroll", g(self.enroll), methods=["POST"]),
            Route("/api/lock", g(self.lock), methods=["POST"]),
            Route("/api/forget", g(self.forget), methods=["POST"]),
        ]
        not_found = {404: _not_found, 405: _not_found}
        return HostAndOriginGuard(Starlette(routes=routes, exception_handlers=not_found), port)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"No such page or action: {request.method} {request.url.path}"},
                        HTTPStatus.NOT_FOUND, headers=SECURITY_HEADERS)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (whatever Content-Length claims) within
    ``UPLOAD_TIMEOUT_S``; 413 / 408 otherwise."""
    too_large = Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"The upload is larger than the limit of {limit / 2**20:.0f} MiB." if limit >= 2**20
                        else f"The request is larger than the limit of {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(UPLOAD_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(HTTPStatus.REQUEST_TIMEOUT,
                      f"The upload did not arrive within {UPLOAD_TIMEOUT_S:g} s.") from None
    return b"".join(chunks)


async def parse_form(headers: Headers, body: bytes) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """multipart/form-data: (file name, bytes) of each ``image`` file, and the text fields."""
    if not headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise AppError("Send the images as multipart/form-data (a form with file fields).")

    async def stream():
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=MAX_ENROLL_IMAGES + 1, max_fields=4,
                                     max_part_size=MAX_ENROLL_BYTES).parse()
    except MultiPartException as err:
        raise AppError(f"The upload could not be read as multipart/form-data ({err.message}).") from None
    images, fields = [], {}
    for index, (key, value) in enumerate(form.multi_items()):
        if isinstance(value, UploadFile):
            if key == "image":
                images.append((value.filename or f"image {index + 1}", await value.read()))
        else:
            fields[key] = value
    await form.close()
    return images, fields


def _json_field(body: bytes, key: str, required: bool = True) -> str | None:
    if not body and not required:
        return None
    try:
        value = json.loads(body).get(key)
    except (ValueError, AttributeError):
        raise AppError('Send JSON: {"' + key + '": "..."}.') from None
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise AppError(f"Send the {key} as a string of digits.")
    return value


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port), with a backlog of ``BACKLOG``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise HyperverifyError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port") from None
    sock.listen(BACKLOG)
    return sock


def run(app: UnlockApp, sock: socket.socket) -> None:
    """Serve on ``sock`` until SIGINT / SIGTERM."""
    import uvicorn

    web = Web(app)
    config = uvicorn.Config(web.asgi(sock.getsockname()[1]), backlog=BACKLOG, timeout_keep_alive=KEEP_ALIVE_S,
                            log_level="warning", access_log=False, lifespan="off", server_header=False,
                            date_header=False, timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        web.worker.shutdown(wait=False, cancel_futures=True)
        sock.close()
