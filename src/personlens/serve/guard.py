"""``GuardMiddleware``: what every request of the HTTP API goes through first (a plain ASGI
middleware), and the errors the routes answer with.

* draining (after SIGTERM): 503 + ``Retry-After`` + ``Connection: close`` for new requests;
* overload: more than ``limit_concurrency`` requests at once -> 503 + ``Retry-After`` (JSON, as
  every refusal; ``/healthz`` is always answered so that probes see a live server);
* auth: ``Authorization: Bearer TOKEN`` on everything but ``/healthz``, ``/``, ``/docs``,
  ``/redoc`` and ``/static/`` (the pages hold no data and ask for the token; ``/openapi.json``
  needs it). For GET requests the ``personlens_token``
  cookie works too (set by opening ``/?token=TOKEN``; SameSite=Strict, HttpOnly), so the
  page's ``<img>`` thumbnails load; writes always need the header;
* body limit: a ``Content-Length`` over ``max_body_bytes`` is refused at once (413), and a
  body that streams past it is cut off (413);
* body timeout: the body must arrive within ``body_timeout_s`` of the head (408, closed);
* an error answered before the body was read (by a route too) reads and drops the body first,
  so the client sees the answer instead of a reset connection;
* a client that hangs up mid-request (``ClientDisconnect``) is a client error: counted as
  ``client_disconnect`` and status 499, no traceback;
* metrics: in-flight gauge, latency histogram and request counter by route template.
"""
from __future__ import annotations

import asyncio
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from .auth import COOKIE, bearer, token_matches
from .service import PersonService

OPEN_PATHS = ("/healthz", "/", "/favicon.ico", "/docs", "/redoc")
OPEN_PREFIXES = ("/static/",)


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    """The request body did not arrive within ``body_timeout_s`` of the request's start."""


class ApiError(HTTPException):
    """An HTTPException that also counts itself in personlens_errors_total{kind}."""

    def __init__(self, status: int, kind: str, detail, headers: dict | None = None):
        super().__init__(status, detail, headers)
        self.kind = kind


def json_error(status: int, detail, headers=None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class GuardMiddleware:
    def __init__(self, app, service: PersonService, token: str | None):
        self.app = app
        self.service = service
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        svc, m = self.service, self.service.metrics
        path, method = scope["path"], scope["method"]
        t0 = time.monotonic()
        scope.setdefault("state", {})["t0"] = t0
        status = {"code": 500, "started": False}
        limit = svc.config.max_body_bytes
        drain_cap = 2 * limit + (1 << 20)
        # body bytes seen; whether more is to come (nothing read yet: True); client gone
        seen = {"n": 0, "more": True, "gone": False}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                if message["status"] >= 400 and seen["more"] and not seen["gone"]:
                    # a route refused the request before reading its body: read (and drop)
                    # the rest first, as for the refusals below
                    seen["more"] = False
                    if not await _drain(receive, drain_cap):
                        message = {**message, "headers": [*message.get("headers", []),
                                                          (b"connection", b"close")]}
            await send(message)

        svc.inflight += 1
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            resp = self._refuse(scope, path, method, headers)
            if resp is not None:
                # read (and drop) what the client is still sending before answering: a server
                # that closes with unread data makes the kernel reset the connection, and the
                # client never sees the answer (there is no lingering close in uvicorn)
                seen["more"] = False
                if not await _drain(receive, drain_cap):
                    resp.headers["Connection"] = "close"
                return await resp(scope, receive, send_wrapped)
            body_deadline = t0 + svc.config.body_timeout_s

            async def receive_limited():
                if seen["more"]:       # the body must arrive within body_timeout_s (slow clients)
                    try:
                        message = await asyncio.wait_for(receive(), body_deadline - time.monotonic())
                    except asyncio.TimeoutError:
                        raise BodyTimeout() from None
                else:
                    message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    seen["more"] = message.get("more_body", False)
                    if seen["n"] > limit:
                        raise BodyTooLarge()
                elif message["type"] == "http.disconnect":
                    seen["gone"] = True
                return message

            try:
                await self.app(scope, receive_limited, send_wrapped)
            except BodyTooLarge:
                m.error("too_large")
                resp = json_error(413, f"request body over {limit} bytes")
                more, seen["more"] = seen["more"], False
                if more and not await _drain(receive, drain_cap):
                    resp.headers["Connection"] = "close"
                await resp(scope, receive, send_wrapped)
            except BodyTimeout:
                m.error("request_timeout")
                seen["more"] = False
                if not status["started"]:
                    await json_error(408, f"the request body did not arrive within "
                                          f"{svc.config.body_timeout_s:g} s",
                                     {"Connection": "close"})(scope, receive, send_wrapped)
            except ClientDisconnect:
                # the client hung up mid-request (a client error, not ours): no answer to send
                m.error("client_disconnect")
                status["code"] = 499
        finally:
            svc.inflight -= 1
            route = scope.get("route")
            label = getattr(route, "path", None) or ("static" if path.startswith("/static/") else "other")
            m.latency.labels(method, label).observe(time.monotonic() - t0)
            m.requests.labels(method, label, str(status["code"])).inc()

    def _refuse(self, scope, path, method, headers):
        svc, m = self.service, self.service.metrics
        if svc.draining and path != "/healthz":
            m.error("draining")
            return json_error(503, "the server is shutting down",
                         {"Retry-After": str(svc.config.retry_after_s), "Connection": "close"})
        if svc.inflight > svc.config.limit_concurrency and path != "/healthz":   # this one counted
            m.error("overloaded")
            return json_error(503, f"more than {svc.config.limit_concurrency} requests at once; "
                                   "retry shortly", {"Retry-After": str(svc.config.retry_after_s)})
        if self.token is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            given = bearer(headers.get("authorization"))
            if given is None and method in ("GET", "HEAD"):
                given = _cookie(headers.get("cookie", ""), COOKIE)
            if not token_matches(given, self.token):
                m.error("unauthorized")
                return json_error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        cl = headers.get("content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                m.error("bad_request")
                return json_error(400, "bad Content-Length")
            if n > svc.config.max_body_bytes:
                m.error("too_large")
                return json_error(413, f"request body over {svc.config.max_body_bytes} bytes")
        return None


async def _drain(receive, cap_bytes: int, cap_s: float = 10.0) -> bool:
    """Read and drop the rest of the request body; False when it ran past ``cap_bytes`` or
    ``cap_s`` (then the connection is closed after the answer)."""
    n, end = 0, time.monotonic() + cap_s
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return False
        if message["type"] != "http.request":
            return False  # the client went away
        n += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if n > cap_bytes:
            return False


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None

