"""Reading ``POST /v1/search/image``: one crop in the multipart field ``file``, and the query's
fields (``top_k``, ``where``, ``camera``, ``after``, ``before``, ``exclude_camera``) given as
form fields or in the query string."""
from __future__ import annotations

import contextlib

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from . import uploads
from .guard import ApiError, BodyTooLarge

FIELDS = ("top_k", "where", "camera", "after", "before", "exclude_camera")


async def read_search_image(request: Request, cfg) -> tuple[bytes, str | None, dict[str, list[str]]]:
    """(the crop's bytes, its file name, {field: [values]}: query-string values, then the
    form's). 415 for a body that is not multipart, 422 without a ``file``, 413 for a file over
    ``max_file_bytes``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data with the image in the field 'file'")
    fields = {k: list(request.query_params.getlist(k)) for k in FIELDS}
    slot = getattr(uploads, "body_slot", None)      # large bodies, a few at a time
    async with (slot(request, cfg) if slot is not None else contextlib.nullcontext()):
        try:
            form = await request.form(max_files=2, max_fields=100, max_part_size=64 * 1024)
        except BodyTooLarge:
            raise
        except HTTPException as e:  # starlette's multipart limits
            raise ApiError(413 if "Too many" in str(e.detail) else 400,
                           "too_large" if "Too many" in str(e.detail) else "bad_request", e.detail)
        try:
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if len(files) != 1:
                raise ApiError(422, "bad_request", "send one image in the multipart field 'file'")
            data = await files[0].read(cfg.max_file_bytes + 1)
            if len(data) > cfg.max_file_bytes:
                raise ApiError(413, "too_large", f"{files[0].filename}: over {cfg.max_file_bytes} bytes")
            for k in FIELDS:
                fields[k] += [v for v in form.getlist(k) if isinstance(v, str)]
            return data, files[0].filename, fields
        finally:
            await form.close()


def top_k_of(values: list[str], default: int = 20, maximum: int = 500) -> int:
    """``top_k`` from the request's fields (the first given): 422 unless 1..maximum."""
    if not values:
        return default
    try:
        k = int(values[0])
    except ValueError:
        k = 0
    if not 1 <= k <= maximum:
        raise ApiError(422, "bad_request", f"top_k must be a whole number from 1 to {maximum}")
    return k


# The request body of ``POST /v1/search/image`` for the OpenAPI schema (the route reads it).
SEARCH_IMAGE_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the person crop"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 500, "default": 20},
        "where": {"type": "array", "items": {"type": "string"}, "description": "ATTR=yes|no"},
        "camera": {"type": "array", "items": {"type": "string"}, "description": "any of these cameras"},
        "after": {"type": "string", "description": "ISO 8601 or epoch seconds (inclusive)"},
        "before": {"type": "string", "description": "ISO 8601 or epoch seconds (exclusive)"},
        "exclude_camera": {"type": "array", "items": {"type": "string"}}}}}}}}
