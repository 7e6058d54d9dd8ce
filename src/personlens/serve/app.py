"""The HTTP API (FastAPI): ingest, search, records, thumbnails, health, metrics, the search page.

Every request first goes through ``GuardMiddleware`` (a plain ASGI middleware):

* draining (after SIGTERM): 503 + ``Retry-After`` + ``Connection: close`` for new requests;
* auth: ``Authorization: Bearer TOKEN`` on everything but ``/healthz``, ``/`` and ``/static/``
  (the page holds no data and asks for the token). For GET requests the ``personlens_token``
  cookie works too (set by opening ``/?token=TOKEN``; SameSite=Strict, HttpOnly), so the
  page's ``<img>`` thumbnails load; writes always need the header;
* body limit: a ``Content-Length`` over ``max_body_bytes`` is refused at once (413), and a
  body that streams past it is cut off (413);
* metrics: in-flight gauge, latency histogram and request counter by route template.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.staticfiles import StaticFiles

from ..data.images import ImageLoadError
from ..library import UnknownAttributeError, parse_where
from .auth import COOKIE, bearer, token_matches
from .batcher import DeadlineExceeded, QueueFull, ShuttingDown
from .redisq import QueueUnavailable
from .service import PersonService, decode_crop, record_json

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
_ID = re.compile(r"^[0-9a-f]{64}$")
TIMEOUT_HEADER = "x-timeout-ms"


class BodyTooLarge(Exception):
    pass


class ApiError(HTTPException):
    """An HTTPException that also counts itself in personlens_errors_total{kind}."""

    def __init__(self, status: int, kind: str, detail, headers: dict | None = None):
        super().__init__(status, detail, headers)
        self.kind = kind


def _json(status: int, detail, headers=None) -> JSONResponse:
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
        status = {"code": 500}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        svc.inflight += 1
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            resp = self._refuse(scope, path, method, headers)
            if resp is not None:
                # read (and drop) what the client is still sending before answering: a server
                # that closes with unread data makes the kernel reset the connection, and the
                # client never sees the answer (there is no lingering close in uvicorn)
                if not await _drain(receive, 2 * svc.config.max_body_bytes + (1 << 20)):
                    resp.headers["Connection"] = "close"
                return await resp(scope, receive, send_wrapped)
            limit = svc.config.max_body_bytes
            seen = {"n": 0, "more": True}

            async def receive_limited():
                message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    seen["more"] = message.get("more_body", False)
                    if seen["n"] > limit:
                        raise BodyTooLarge()
                return message

            try:
                await self.app(scope, receive_limited, send_wrapped)
            except BodyTooLarge:
                m.error("too_large")
                resp = _json(413, f"request body over {limit} bytes")
                if seen["more"] and not await _drain(receive, 2 * limit + (1 << 20)):
                    resp.headers["Connection"] = "close"
                await resp(scope, receive, send_wrapped)
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
            return _json(503, "the server is shutting down",
                         {"Retry-After": str(svc.config.retry_after_s), "Connection": "close"})
        if self.token is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            given = bearer(headers.get("authorization"))
            if given is None and method in ("GET", "HEAD"):
                given = _cookie(headers.get("cookie", ""), COOKIE)
            if not token_matches(given, self.token):
                m.error("unauthorized")
                return _json(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        cl = headers.get("content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                m.error("bad_request")
                return _json(400, "bad Content-Length")
            if n > svc.config.max_body_bytes:
                m.error("too_large")
                return _json(413, f"request body over {svc.config.max_body_bytes} bytes")
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


# ---------------------------------------------------------------------- request parsing
def _parse_timestamp(v) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        ts = float(v)
    else:
        s = str(v).strip()
        try:
            ts = float(s)
        except ValueError:
            try:
                ts = datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(f"timestamp {s!r}: expected seconds since the epoch or ISO 8601") from None
    if not math.isfinite(ts):
        raise ValueError("timestamp is not finite")
    return ts


def _opt_str(v, name: str, max_len: int = 200) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError(f"{name} must be a string")
    if len(v) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters")
    return v


def _per_file(values: list, n: int, name: str) -> list:
    """A form/JSON field given once (for all files) or once per file."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) == n:
        return values
    raise ValueError(f"{name}: give it once or once per file ({n}), not {len(values)} times")


def _deadline(request: Request, cfg) -> float:
    t0 = request.scope.get("state", {}).get("t0", time.monotonic())
    timeout = cfg.request_timeout_s
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw:
        try:
            ms = float(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{TIMEOUT_HEADER} must be a number of milliseconds") from None
        if not math.isfinite(ms) or ms <= 0:
            raise ApiError(400, "bad_request", f"{TIMEOUT_HEADER} must be > 0")
        timeout = min(timeout, ms / 1000.0)
    return t0 + timeout


async def _read_uploads(request: Request, cfg) -> list[dict]:
    """[{data, filename, camera, timestamp, track_id}] from a multipart or JSON body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=cfg.max_files + 1, max_fields=100,
                                      max_part_size=64 * 1024)
        except BodyTooLarge:
            raise
        except HTTPException as e:  # starlette's multipart limits
            raise ApiError(413 if "Too many" in str(e.detail) else 400,
                           "too_large" if "Too many" in str(e.detail) else "bad_request", e.detail)
        try:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if len(files) > cfg.max_files:
                raise ApiError(413, "too_large", f"more than {cfg.max_files} files in one request")
            if not files:
                raise ApiError(422, "bad_request", "no files: send the crops in the multipart field 'files'")
            items = []
            for f in files:
                data = await f.read(cfg.max_file_bytes + 1)
                if len(data) > cfg.max_file_bytes:
                    raise ApiError(413, "too_large", f"{f.filename}: over {cfg.max_file_bytes} bytes")
                items.append({"data": data, "filename": f.filename})
            meta = {k: [v for v in form.getlist(k) if isinstance(v, str)]
                    for k in ("camera", "timestamp", "track_id")}
        finally:
            await form.close()
    elif ctype == "application/json":
        body = await request.body()
        try:
            doc = await asyncio.to_thread(json.loads, body)   # up to max_body_bytes: off the loop
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not doc["images"]:
            raise ApiError(422, "bad_request",
                           'expected {"images": [{"data": BASE64, ...}, ...]} with at least one image')
        if len(doc["images"]) > cfg.max_files:
            raise ApiError(413, "too_large", f"more than {cfg.max_files} images in one request")
        items, meta = [], {k: [] for k in ("camera", "timestamp", "track_id")}
        per_item = {k: [] for k in meta}
        for i, im in enumerate(doc["images"]):
            im = {"data": im} if isinstance(im, str) else im
            if not isinstance(im, dict) or not isinstance(im.get("data"), str):
                raise ApiError(422, "bad_request", f"images[{i}]: expected a base64 string or {{\"data\": ...}}")
            try:
                data = base64.b64decode(im["data"], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(422, "bad_image", f"images[{i}]: data is not valid base64") from None
            if len(data) > cfg.max_file_bytes:
                raise ApiError(413, "too_large", f"images[{i}]: over {cfg.max_file_bytes} bytes")
            items.append({"data": data, "filename": im.get("filename") if isinstance(im.get("filename"), str) else None})
            for k in per_item:
                per_item[k].append(im.get(k, doc.get(k)))
        meta = per_item
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (field 'files') or application/json (base64 images)")
    n = len(items)
    try:
        cams = [_opt_str(v, "camera") for v in _per_file(meta["camera"], n, "camera")]
        tss = [_parse_timestamp(v) for v in _per_file(meta["timestamp"], n, "timestamp")]
        tracks = [_opt_str(v if not isinstance(v, int) else str(v), "track_id")
                  for v in _per_file(meta["track_id"], n, "track_id")]
    except ValueError as e:
        raise ApiError(422, "bad_request", str(e)) from None
    for it, c, t, k in zip(items, cams, tss, tracks):
        it.update(camera=c, timestamp=t, track_id=k)
    return items


def _where(items: list[str]) -> dict:
    """Parsed ``where`` filters (names are checked by the backend, on the store thread)."""
    try:
        return parse_where(items)
    except ValueError as e:
        raise ApiError(400, "bad_request", f"where: {e}") from None


async def _call(service, fn, *args):
    """A backend call on the store thread; bad filters and queries become 400."""
    try:
        return await service.call(fn, *args)
    except UnknownAttributeError as e:
        raise ApiError(400, "bad_request", f"where: {e}") from None


def _check_id(id: str) -> str:
    if not _ID.match(id):
        raise ApiError(404, "not_found", "no such person (ids are 64 lowercase hex characters)")
    return id


# ---------------------------------------------------------------------- the app
def create_app(service: PersonService, token: str | None) -> FastAPI:
    """The FastAPI app around ``service``; ``token=None`` turns auth off."""
    cfg = service.config

    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="personlens", version=_version(), lifespan=lifespan,
                  summary="People in camera footage: attributes, text search and re-ID over person crops.")
    app.state.service = service
    app.add_middleware(GuardMiddleware, service=service, token=token)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        service.metrics.error(exc.kind)
        return _json(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):  # pragma: no cover - logged, counted, 500
        service.metrics.error("internal")
        return _json(500, f"internal error: {type(exc).__name__}")

    # -------------------------------------------------------------- open
    @app.get("/healthz", tags=["service"])
    async def healthz():
        """Readiness (no auth): 200 when serving; 503 while draining or when the store or queue
        server (PostgreSQL, Redis) does not answer, with the failing check in ``checks``."""
        if service.draining:
            return _json(503, "draining", {"Retry-After": str(cfg.retry_after_s)})
        checks = await service.check_dependencies()
        if any(v != "ok" for v in checks.values()):
            return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503,
                                headers={"Retry-After": str(cfg.retry_after_s)})
        return {"status": "ok", "queue_depth": service.depth, "checks": checks}

    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        tok = request.query_params.get("token")
        if tok is not None and token is not None:
            if not token_matches(tok, token):
                return _json(401, "wrong token")
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, tok, httponly=True, samesite="strict", max_age=30 * 86400)
            return resp
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # -------------------------------------------------------------- ingest
    upload_doc = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "camera": {"type": "string"}, "timestamp": {"type": "string",
                                                        "description": "epoch seconds or ISO 8601"},
            "track_id": {"type": "string"}}}},
        "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "array", "items": {"type": "object", "required": ["data"], "properties": {
                "data": {"type": "string", "format": "byte"}, "filename": {"type": "string"},
                "camera": {"type": "string"}, "timestamp": {"type": "number"},
                "track_id": {"type": "string"}}}},
            "camera": {"type": "string"}, "timestamp": {"type": "number"},
            "track_id": {"type": "string"}}}}}}}

    @app.post("/v1/persons", tags=["persons"], openapi_extra=upload_doc)
    async def add_persons(request: Request):
        """Add person crops: attributes, search and re-ID embeddings, stored.

        Multipart field ``files`` (one or more crops) or JSON with base64 images; optional
        ``camera``, ``timestamp`` and ``track_id`` (once for all, or once per crop). Crops are
        keyed by the SHA-256 of their bytes: one already stored is returned as it is
        (``created: false``). Header ``X-Timeout-Ms`` shortens the request's deadline.
        """
        deadline = _deadline(request, cfg)
        items = await _read_uploads(request, cfg)
        crops, errors = [], []
        for i, it in enumerate(items):
            try:
                c = await asyncio.to_thread(decode_crop, it["data"], it["filename"], cfg.max_pixels)
            except ImageLoadError as e:
                errors.append({"index": i, "filename": it["filename"], "error": e.reason})
                continue
            c.camera, c.timestamp, c.track_id = it["camera"], it["timestamp"], it["track_id"]
            crops.append(c)
        if errors:
            service.metrics.crops.labels("rejected").inc(len(errors))
            raise ApiError(422, "bad_image", {"message": "some files are not usable images; nothing was added",
                                              "errors": errors})
        try:
            results = await service.ingest(crops, deadline)
        except QueueFull as e:
            raise ApiError(503, "queue_full", str(e), {"Retry-After": str(cfg.retry_after_s)}) from None
        except ShuttingDown as e:
            raise ApiError(503, "draining", str(e), {"Retry-After": str(cfg.retry_after_s)}) from None
        except QueueUnavailable as e:
            raise ApiError(503, "queue_unavailable", str(e), {"Retry-After": str(cfg.retry_after_s)}) from None
        except DeadlineExceeded as e:
            raise ApiError(504, "deadline", str(e)) from None
        service.metrics.queue_wait.observe(time.monotonic() - request.scope["state"]["t0"])
        return {"records": [{**record_json(r), "created": created} for r, created in results],
                "created": sum(1 for _, c in results if c)}

    # -------------------------------------------------------------- query
    @app.get("/v1/search", tags=["persons"])
    async def search(q: str | None = Query(None, max_length=500, description="a sentence"),
                     where: list[str] = Query([], description="ATTR=yes or ATTR=no (repeatable)"),
                     top_k: int = Query(20, ge=1, le=500)):
        """People matching a sentence, best first; with no ``q``, the filtered people, newest first."""
        cond = _where(where)
        if q is not None and q.strip():
            try:
                hits = await service.search(q, top_k, cond)
            except (ValueError, UnknownAttributeError) as e:
                raise ApiError(400, "bad_request", str(e)) from None
            results = [record_json(r, s, n + 1) for n, (s, r) in enumerate(hits)]
        else:
            recs = await _call(service, service.backend.browse, cond, top_k)
            results = [record_json(r) for r in recs]
        return {"query": q, "where": cond, "results": results}

    @app.get("/v1/persons/{id}", tags=["persons"])
    async def get_person(id: str):
        rec = await service.call(service.backend.get, _check_id(id))
        if rec is None:
            raise ApiError(404, "not_found", "no such person")
        return record_json(rec)

    @app.get("/v1/persons/{id}/similar", tags=["persons"])
    async def similar(id: str, top_k: int = Query(20, ge=1, le=500), where: list[str] = Query([]),
                      camera_centring: bool = Query(False, description=(
                          "Subtract each camera's mean embedding first (records need a camera)"))):
        """People who look like this one (re-ID embedding), best first, itself left out."""
        cond = _where(where)
        try:
            hits = await _call(service, service.backend.similar, _check_id(id), top_k, cond,
                               camera_centring)
        except ValueError as e:
            raise ApiError(409, "bad_request", str(e)) from None
        if hits is None:
            raise ApiError(404, "not_found", "no such person")
        return {"id": id, "results": [record_json(r, s, n + 1) for n, (s, r) in enumerate(hits)]}

    @app.get("/v1/persons/{id}/image", tags=["persons"],
             responses={200: {"content": {"image/jpeg": {}}}})
    async def person_image(id: str, size: int = Query(128, ge=16, le=512)):
        """A JPEG thumbnail of the crop (longest side about ``2 * size``)."""
        rec = await service.call(service.backend.get, _check_id(id))
        if rec is None:
            raise ApiError(404, "not_found", "no such person")
        data = await asyncio.to_thread(service.thumbnail, rec.path, size)
        if data is None:
            raise ApiError(404, "not_found", "the crop's image is not available")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})

    @app.get("/v1/attributes", tags=["service"])
    async def attributes():
        """The model's attributes (name, English phrase, group): the page's filter chips."""
        attrs = await service.call(service.backend.attributes)
        return {"model_version": service.backend.model_version, "attributes": attrs}

    @app.get("/v1/info", tags=["service"])
    async def info():
        n = await service.call(service.backend.count)
        if service.queue is not None:
            await service.queue.refresh()
        return {"version": _version(), "model_version": service.backend.model_version, "records": n,
                "queue_depth": service.depth, "mode": "redis" if cfg.queue_url else "local",
                "max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms, "queue_size": cfg.queue_size}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics():
        """Prometheus metrics (queue depth, batch sizes, latencies, errors by kind)."""
        if service.queue is not None:
            await service.queue.refresh()
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app


def _version() -> str:
    from .. import __version__

    return __version__
