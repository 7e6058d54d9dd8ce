"""Reading an upload request (``POST /v1/persons``): multipart or JSON crops with their
``camera``/``timestamp``/``track_id``, the request's deadline, and the OpenAPI body schema."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
from datetime import datetime

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from .guard import ApiError, BodyTooLarge

TIMEOUT_HEADER = "x-timeout-ms"


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
