"""Reading a ``POST /v1/videos`` request: an uploaded video or a path on the server.

An upload is streamed to ``DB/uploads/videos/<sha256>.<ext>`` (content-addressed, so the
same video uploaded twice is one file and one set of tracks). A path must lie under one of
the folders the server was started with (``--video-dir``): the API never reads arbitrary
server files. Either way the video is opened and checked before the job is queued, so a
missing, corrupt or unsupported file is a 422 with the reason, not a failed job later.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..data.video import VIDEO_SUFFIXES, VideoError, VideoSource
from ..fileperms import make_private_dirs, private_opener
from .guard import ApiError, BodyTooLarge
from .uploads import _opt_str, _parse_timestamp, read_json

UPLOADS = Path("uploads") / "videos"
MAX_EVERY = 100

VIDEO_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video (.mp4, .avi, .mkv, ...)"},
        "camera": {"type": "string"}, "start": {"type": "string", "description": "ISO 8601 or epoch seconds"},
        "every": {"type": "integer", "minimum": 1, "maximum": MAX_EVERY}}}},
    "application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
        "path": {"type": "string", "description": "a video file under one of the server's --video-dir folders"},
        "camera": {"type": "string"}, "start": {"type": "string"},
        "every": {"type": "integer", "minimum": 1, "maximum": MAX_EVERY}}}}}}}


@dataclass
class VideoSpec:
    path: Path
    camera: str | None
    start: float | None
    every: int
    uploaded: bool = False       # the file was uploaded with this request (kept under DB/uploads)


def _every(v) -> int:
    if v is None or v == "":
        return 1
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("every must be a whole number") from None
    if isinstance(v, bool) or (isinstance(v, float) and v != n) or not 1 <= n <= MAX_EVERY:
        raise ValueError(f"every must be between 1 and {MAX_EVERY}")
    return n


def _fields(get) -> tuple[str | None, float | None, int]:
    try:
        return _opt_str(get("camera"), "camera"), _parse_timestamp(get("start")), _every(get("every"))
    except ValueError as e:
        raise ApiError(422, "bad_request", str(e)) from None


async def _save_upload(f: UploadFile, db: Path, limit: int) -> Path:
    suffix = Path(f.filename or "").suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ApiError(422, "bad_video", f"{f.filename!r}: not a video file name (expected one of "
                                         f"{', '.join(sorted(VIDEO_SUFFIXES))})")
    folder = make_private_dirs(db / UPLOADS)
    tmp = folder / f".upload-{os.getpid()}-{id(f)}{suffix}"
    h, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb", opener=private_opener) as out:
            while chunk := await f.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"video over {limit} bytes")
                h.update(chunk)
                out.write(chunk)
        final = folder / f"{h.hexdigest()}{suffix}"
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _allowed_path(raw, roots: tuple[Path, ...]) -> Path:
    if not isinstance(raw, str) or not raw or len(raw) > 4096:
        raise ApiError(422, "bad_request", "path must be a non-empty string")
    if not roots:
        raise ApiError(403, "forbidden", "this server takes no video paths (start it with --video-dir DIR); "
                                         "upload the file instead")
    p = Path(raw).expanduser().resolve()     # resolves .. and symbolic links before the check
    if not any(p.is_relative_to(r) for r in roots):
        raise ApiError(403, "forbidden", "the path is outside the server's --video-dir folders")
    return p


async def read_video_request(request: Request, cfg) -> VideoSpec:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploaded = ctype == "multipart/form-data"
    if uploaded:
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
        except BodyTooLarge:
            raise
        except HTTPException as e:      # starlette's multipart limits
            too_many = "Too many" in str(e.detail)
            raise ApiError(413 if too_many else 400, "too_large" if too_many else "bad_request",
                           e.detail) from None
        try:
            f = form.get("file")
            if not isinstance(f, UploadFile):
                raise ApiError(422, "bad_request", "no video: send it in the multipart field 'file'")
            camera, start, every = _fields(lambda k: form.get(k) if isinstance(form.get(k), str) else None)
            path = await _save_upload(f, Path(cfg.db), cfg.max_body_bytes)
        finally:
            await form.close()
    elif ctype == "application/json":
        doc = await read_json(request, cfg)      # depth / size limits, a body slot when large
        if not isinstance(doc, dict):
            raise ApiError(422, "bad_request", 'expected {"path": ..., "camera": ..., "start": ..., "every": ...}')
        camera, start, every = _fields(doc.get)
        path = _allowed_path(doc.get("path"), cfg.video_dirs)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (field 'file') or JSON ('path')")
    try:
        await asyncio.to_thread(VideoSource, path)     # opens and checks it; decodes one frame
    except VideoError as e:
        if uploaded:
            path.unlink(missing_ok=True)     # keep nothing of a video that cannot be indexed
        raise ApiError(422, "bad_video", e.reason) from None
    return VideoSpec(path, camera, start, every, uploaded)
