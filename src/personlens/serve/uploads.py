"""Reading an upload request (``POST /v1/persons``): multipart or JSON crops with their
``camera``/``timestamp``/``track_id``, the request's deadline, and the OpenAPI body schema."""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import re
import time
from datetime import datetime

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .guard import ApiError, BodyTooLarge

TIMEOUT_HEADER = "x-timeout-ms"
LARGE_BODY = 1 << 20        # bodies over this (or of unknown length) take a body slot

# JSON tokens that matter for its shape: a whole string (skipped), brackets, braces, commas
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.S)


class JsonLimitError(ValueError):
    """A JSON body refused for its shape (``status`` 400: nesting, 413: size)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_json_shape(body: bytes, max_depth: int, max_items: int, max_tokens: int | None = None) -> None:
    """Refuse a JSON body before ``json.loads`` builds anything from it: nested deeper than
    ``max_depth`` (400; deep nesting also overflows the parser's recursion), an array or
    object of more than ``max_items`` items, or more than ``max_tokens`` strings, brackets and
    commas in all (413: ``[],`` x 10 M is 30 MB on the wire and ~1 GB of Python lists).
    One pass over the bytes (a regular expression; strings are skipped whole, never copied);
    a malformed body is left for the parser to report."""
    max_tokens = max_tokens or 64 * max_items
    items: list[int] = []       # items so far in each open array / object
    for n, m in enumerate(_JSON_TOKEN.finditer(body), 1):
        if n > max_tokens:
            raise JsonLimitError(413, f"the JSON body has more than {max_tokens} values")
        c = body[m.start()]
        if c == 0x22:                       # a string
            continue
        if c in (0x5B, 0x7B):               # [ {
            if len(items) >= max_depth:
                raise JsonLimitError(400, f"the JSON body is nested deeper than {max_depth} levels")
            items.append(1)
        elif c in (0x5D, 0x7D):             # ] }
            if items:
                items.pop()
        elif items:                         # ,
            items[-1] += 1
            if items[-1] > max_items:
                raise JsonLimitError(413, f"a JSON array or object has more than {max_items} items")


def parse_json(body: bytes, max_depth: int, max_items: int):
    """``json.loads`` after ``check_json_shape``."""
    check_json_shape(body, max_depth, max_items)
    return json.loads(body)


async def _acquire(sem: asyncio.Semaphore, timeout: float) -> bool:
    task = asyncio.ensure_future(sem.acquire())
    try:
        await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()      # Semaphore.acquire gives a slot it was woken for to the next
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return not task.cancelled()


@contextlib.asynccontextmanager
async def body_slot(request: Request, cfg):
    """Large bodies (over ``LARGE_BODY``, or of unknown length) are read and parsed at most
    ``cfg.max_parallel_bodies`` at a time (``service.body_slots``), so memory stays bounded
    however many arrive together; one that waits over ``cfg.body_slot_wait_s`` gets 503 +
    Retry-After (its body is read and dropped by the guard before the answer)."""
    cl = request.headers.get("content-length")
    large = cl is None or not cl.isdigit() or int(cl) > LARGE_BODY
    service = getattr(request.app.state, "service", None)
    slots = getattr(service, "body_slots", None)
    if not large or slots is None:
        yield
        return
    if not await _acquire(slots, cfg.body_slot_wait_s):
        raise ApiError(503, "busy", "too many large request bodies at once; try again",
                       {"Retry-After": str(cfg.retry_after_s)})
    try:
        yield
    finally:
        slots.release()


async def read_json(request: Request, cfg):
    """The request's JSON body, read in a body slot and parsed with limits (``parse_json``,
    off the event loop): 400 for malformed or too deeply nested JSON, 413 for too many items.
    The body is not kept on the request (``request.stream()``, not ``request.body()``)."""
    async with body_slot(request, cfg):
        chunks = [chunk async for chunk in request.stream()]
        body = b"".join(chunks)
        del chunks
        try:
            return await asyncio.to_thread(parse_json, body, cfg.max_json_depth, cfg.max_json_items)
        except JsonLimitError as e:
            raise ApiError(e.status, "too_large" if e.status == 413 else "bad_request", str(e)) from None
        except (ValueError, RecursionError):       # UnicodeDecodeError is a ValueError
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None


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


def deadline(request: Request, cfg) -> float:
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


async def read_uploads(request: Request, cfg) -> list[dict]:
    """[{data, filename, camera, timestamp, track_id}] from a multipart or JSON body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        async with body_slot(request, cfg):
            return _with_meta(*await _read_multipart(request, cfg))
    elif ctype == "application/json":
        doc = await read_json(request, cfg)
        return _with_meta(*_json_items(doc, cfg))
    raise ApiError(415, "unsupported_media_type",
                   "send multipart/form-data (field 'files') or application/json (base64 images)")


async def _read_multipart(request: Request, cfg) -> tuple[list[dict], dict]:
    try:
        form = await request.form(max_files=cfg.max_files + 1, max_fields=100,
                                  max_part_size=64 * 1024)
    except BodyTooLarge:
        raise
    except HTTPException as e:  # starlette's multipart limits (fastapi's HTTPException is a subclass)
        too_many = "Too many" in str(e.detail)
        raise ApiError(413 if too_many else 400, "too_large" if too_many else "bad_request",
                       e.detail) from None
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
    return items, meta


def _json_items(doc, cfg) -> tuple[list[dict], dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not doc["images"]:
        raise ApiError(422, "bad_request",
                       'expected {"images": [{"data": BASE64, ...}, ...]} with at least one image')
    if len(doc["images"]) > cfg.max_files:
        raise ApiError(413, "too_large", f"more than {cfg.max_files} images in one request")
    items, meta = [], {k: [] for k in ("camera", "timestamp", "track_id")}
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
        for k in meta:
            meta[k].append(im.get(k, doc.get(k)))
    return items, meta


def _with_meta(items: list[dict], meta: dict) -> list[dict]:
    """Each item with its camera / timestamp / track_id (given once, or once per item)."""
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


# The request body of ``POST /v1/persons`` for the OpenAPI schema (the route reads it itself).
UPLOAD_DOC = {"requestBody": {"required": True, "content": {
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
