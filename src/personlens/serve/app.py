"""The HTTP API (FastAPI): ingest, search, records, thumbnails, health, metrics, the search page.

Every request first goes through ``guard.GuardMiddleware`` (draining, auth, body limit,
metrics); uploads are read by ``uploads.read_uploads``.
"""
from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import (FileResponse, JSONResponse, RedirectResponse, Response,
                               StreamingResponse)
from starlette.staticfiles import StaticFiles

from ..data.images import ImageLoadError
from ..library.query import ConflictingWhereError, UnknownAttributeError, parse_where
from ..library.results import export_lines, iso_time, parse_time
from . import docs, uploads
from . import video_uploads
from .auth import COOKIE, token_matches
from .batcher import DeadlineExceeded, QueueFull, ShuttingDown
from .guard import OPEN_PATHS, ApiError, GuardMiddleware, json_error
from .redisq import QueueUnavailable
from .search_image import SEARCH_IMAGE_DOC, read_search_image, top_k_of
from .service import PersonService, decode_crop, record_json
from .videos import JobQueueFull

STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------- request helpers
def _where(items: list[str]) -> dict:
    """Parsed ``where`` filters (names are checked by the backend, on the store thread): 400
    for a malformed one, 422 for contradictory ones (``A=yes`` and ``A=no``)."""
    try:
        return parse_where(items)
    except ConflictingWhereError as e:
        raise ApiError(422, "bad_request", f"where: {e}") from None
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


def _time(value, name: str) -> float | None:
    """``after`` / ``before``: ISO 8601 (no zone: UTC) or epoch seconds; 422 otherwise."""
    try:
        return parse_time(value, name)
    except ValueError as e:
        raise ApiError(422, "bad_request", str(e)) from None


def _filters(camera: list[str], after, before) -> dict:
    """Camera / time filters of a query (``cameras``: any of them; unknown names match nobody)."""
    return {"cameras": [c for c in camera if c], "after": _time(after, "after"),
            "before": _time(before, "before")}


_CAMERA = Query([], description="only these cameras (repeatable: any of them)")
_AFTER = Query(None, description="only people seen at or after this time: ISO 8601 (no zone: UTC) "
                                 "or epoch seconds; records without a time are left out")
_BEFORE = Query(None, description="only people seen before this time (as `after`)")


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
                  summary="People in camera footage: attributes, text search and re-ID over person crops.",
                  docs_url=None, redoc_url=None)   # served offline by docs.install
    app.state.service = service
    app.add_middleware(GuardMiddleware, service=service, token=token)
    docs.install(app, token)        # /docs, /redoc and /static/docs/ (before /static)
    if token is not None:
        docs.add_bearer_scheme(app, OPEN_PATHS)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        service.metrics.error(exc.kind)
        return json_error(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):  # pragma: no cover - logged, counted, 500
        service.metrics.error("internal")
        return json_error(500, f"internal error: {type(exc).__name__}")

    # -------------------------------------------------------------- open
    @app.head("/healthz", include_in_schema=False)      # load balancers' probes
    @app.get("/healthz", tags=["service"])
    async def healthz():
        """Readiness (no auth): 200 when serving; 503 while draining or when the store or queue
        server (PostgreSQL, Redis) does not answer, with the failing check in ``checks``."""
        if service.draining:
            return json_error(503, "draining", {"Retry-After": str(cfg.retry_after_s)})
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
                return json_error(401, "wrong token")
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, tok, httponly=True, samesite="strict", max_age=30 * 86400)
            return resp
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # -------------------------------------------------------------- ingest
    @app.post("/v1/persons", tags=["persons"], openapi_extra=uploads.UPLOAD_DOC)
    async def add_persons(request: Request):
        """Add person crops: attributes, search and re-ID embeddings, stored.

        Multipart field ``files`` (one or more crops) or JSON with base64 images; optional
        ``camera``, ``timestamp`` and ``track_id`` (once for all, or once per crop). Crops are
        keyed by the SHA-256 of their bytes: one already stored is returned as it is
        (``created: false``). Header ``X-Timeout-Ms`` shortens the request's deadline.
        """
        deadline = uploads.deadline(request, cfg)
        items = await uploads.read_uploads(request, cfg)
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
        return {"records": [{**record_json(r, root=cfg.db), "created": created} for r, created in results],
                "created": sum(1 for _, c in results if c)}

    # -------------------------------------------------------------- query
    @app.get("/v1/search", tags=["persons"])
    async def search(q: str | None = Query(None, max_length=500, description="a sentence"),
                     where: list[str] = Query([], description="ATTR=yes or ATTR=no (repeatable)"),
                     top_k: int = Query(20, ge=1, le=500),
                     camera: list[str] = _CAMERA, after: str | None = _AFTER,
                     before: str | None = _BEFORE,
                     offset: int = Query(0, ge=0, le=100_000, description="skip this many (paging)")):
        """People matching a sentence, best first; with no ``q``, the filtered people, newest
        first. ``total``: how many people pass the filters (the length of the whole list)."""
        cond = _where(where)
        filters = _filters(camera, after, before)
        if q is not None and q.strip():
            try:
                hits = await service.search(q, top_k, cond, offset=offset, **filters)
            except (ValueError, UnknownAttributeError) as e:
                raise ApiError(400, "bad_request", str(e)) from None
            results = [record_json(r, s, offset + n + 1, root=cfg.db) for n, (s, r) in enumerate(hits)]
        else:
            recs = await _call(service, lambda: service.backend.browse(cond, top_k, offset=offset, **filters))
            results = [record_json(r, root=cfg.db) for r in recs]
        total = await _call(service, lambda: service.backend.count_matching(cond, **filters))
        return {"query": q, "where": cond, "total": total, "results": results}

    @app.get("/v1/persons/{id}", tags=["persons"])
    async def get_person(id: str):
        rec = await service.call(service.backend.get, _check_id(id))
        if rec is None:
            raise ApiError(404, "not_found", "no such person")
        return record_json(rec, root=cfg.db)

    @app.delete("/v1/persons/{id}", tags=["persons"], status_code=204,
                responses={204: {"description": "deleted"}, 404: {"description": "no such person"}})
    async def delete_person(id: str):
        """Delete a person: the record, its index entries and the files the service keeps for
        it (the upload copy; a video track's crops and track file)."""
        n = await service.call(service.backend.delete, [_check_id(id)])
        if not n:
            raise ApiError(404, "not_found", "no such person")
        return Response(status_code=204)

    @app.get("/v1/persons/{id}/similar", tags=["persons"])
    async def similar(id: str, top_k: int = Query(20, ge=1, le=500), where: list[str] = Query([]),
                      camera_centring: bool = Query(False, description=(
                          "Subtract each camera's mean embedding first (records need a camera)")),
                      camera: list[str] = _CAMERA, after: str | None = _AFTER,
                      before: str | None = _BEFORE,
                      other_cameras: bool = Query(False, description=(
                          "Leave out the person's own camera (find them on the others)"))):
        """People who look like this one (re-ID embedding), best first, itself left out."""
        cond = _where(where)
        filters = _filters(camera, after, before)
        pid = _check_id(id)
        try:
            hits = await _call(service, lambda: service.backend.similar(
                pid, top_k, cond, camera_centring, other_cameras=other_cameras, **filters))
        except ValueError as e:
            raise ApiError(409, "bad_request", str(e)) from None
        if hits is None:
            raise ApiError(404, "not_found", "no such person")
        return {"id": id, "results": [record_json(r, s, n + 1, root=cfg.db)
                                      for n, (s, r) in enumerate(hits)]}

    @app.post("/v1/search/image", tags=["persons"], openapi_extra=SEARCH_IMAGE_DOC)
    async def search_image(request: Request):
        """People who look like the person in an uploaded crop (re-ID embedding), best first.

        Multipart field ``file``; ``top_k``, ``where`` (repeatable), ``camera`` (repeatable),
        ``after``, ``before``, ``exclude_camera`` (repeatable) as form fields or in the query
        string. A crop already stored is itself left out (as ``personlens similar``).
        """
        data, filename, fields = await read_search_image(request, cfg)
        top_k = top_k_of(fields["top_k"])
        cond = _where(fields["where"])
        filters = _filters(fields["camera"], (fields["after"] or [None])[0],
                           (fields["before"] or [None])[0])
        filters["exclude_cameras"] = [c for c in fields["exclude_camera"] if c]
        try:
            crop = await asyncio.to_thread(decode_crop, data, filename, cfg.max_pixels)
        except ImageLoadError as e:
            raise ApiError(422, "bad_image", {"message": "the file is not a usable image", "errors": [
                {"index": 0, "filename": filename, "error": e.reason}]}) from None
        try:
            hits = await service.search_image(crop, top_k, cond, **filters)
        except UnknownAttributeError as e:
            raise ApiError(400, "bad_request", f"where: {e}") from None
        return {"results": [record_json(r, s, n + 1, root=cfg.db) for n, (s, r) in enumerate(hits)]}

    @app.get("/v1/cameras", tags=["persons"])
    async def cameras():
        """Every camera with its number of people and the earliest / latest time seen."""
        cams = await service.call(service.backend.cameras)
        return {"cameras": [{**c, "first_iso": iso_time(c["first"]), "last_iso": iso_time(c["last"])}
                            for c in cams]}

    @app.get("/v1/export", tags=["persons"],
             responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
    async def export(format: str = Query("csv", pattern="^(csv|jsonl)$", description="csv or jsonl"),
                     where: list[str] = Query([], description="ATTR=yes or ATTR=no (repeatable)"),
                     camera: list[str] = _CAMERA, after: str | None = _AFTER,
                     before: str | None = _BEFORE):
        """The people passing the filters, in the order they were stored, as a download: CSV
        (id, path, camera, timestamp_iso, track_id, present, description, then one column per
        attribute probability) or JSON lines (one result per line). Streamed."""
        cond = _where(where)
        filters = _filters(camera, after, before)
        ids = await _call(service, lambda: service.backend.matching_ids(cond, **filters))
        names = await service.call(service.backend.attribute_names)
        fmt = format

        def chunk_text(chunk: list[str], header: bool) -> str:     # on the store thread
            return "".join(export_lines(service.backend.get_many(chunk), fmt, names, root=cfg.db,
                                        header=header, to_json=lambda r: record_json(r, root=cfg.db)))

        async def body():
            if fmt == "csv" and not ids:
                yield await service.call(chunk_text, [], True)
            for i in range(0, len(ids), 500):
                yield await service.call(chunk_text, ids[i:i + 500], i == 0)

        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(body(), media_type=media, headers={
            "Content-Disposition": f'attachment; filename="personlens-export.{fmt}"'})

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

    # -------------------------------------------------------------- video jobs
    @app.post("/v1/videos", tags=["videos"], status_code=202, openapi_extra=video_uploads.VIDEO_DOC)
    async def add_video(request: Request):
        """Index a video as a job: people detected, tracked, one record per track.

        Multipart: field ``file`` (the video, up to the body limit). JSON: ``{"path": ...}``, a
        file under a folder the server was started with (``--video-dir``). Optional ``camera``,
        ``start`` (ISO 8601 time of the first frame) and ``every`` (process every N-th frame).
        Answers 202 with the job; poll ``GET /v1/videos/{job_id}``. The same video submitted
        again adds no track twice.
        """
        if service.draining:
            raise ApiError(503, "draining", "the server is shutting down",
                           {"Retry-After": str(cfg.retry_after_s)})
        spec = await video_uploads.read_video_request(request, cfg)
        try:
            job = service.videos.submit(spec.path, spec.camera, spec.start, spec.every)
        except JobQueueFull as e:
            if spec.uploaded and not service.videos.uses(spec.path):
                spec.path.unlink(missing_ok=True)     # refused: keep nothing of it
            raise ApiError(503, "queue_full", str(e), {"Retry-After": str(max(cfg.retry_after_s, 5))}) from None
        return JSONResponse({"job": job.to_dict()}, status_code=202,
                            headers={"Location": f"/v1/videos/{job.id}"})

    @app.get("/v1/videos/{job_id}", tags=["videos"])
    async def video_job(job_id: str):
        """A video job: ``state`` (queued, running, done, failed, interrupted), ``progress``
        (0-1, frames), and when done its ``summary`` (tracks added, speed)."""
        job = service.videos.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None:
            raise ApiError(404, "not_found", "no such video job")
        return {"job": job.to_dict()}

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
