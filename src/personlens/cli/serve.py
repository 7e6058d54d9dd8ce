"""``personlens serve`` (HTTP API + search page) and ``personlens worker`` (scale-out workers).

Registered on the root group by :mod:`personlens.cli`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import DEFAULT_DB, _err, model_option, needs_extra, require_extra

_dir = click.Path(exists=True, file_okay=False, path_type=Path)


def _models(f):
    """``--weights``/``--model`` (attribute model), ``--search-head`` and ``--reid-head``."""
    for o in reversed([
        click.option("--weights", type=_dir, default=None,
                     help="Attribute model directory (default: the shipped one)."),
        model_option("attributes"),
        click.option("--search-head", type=_dir, default=None,
                     help="Search head directory (default: the shipped one)."),
        click.option("--reid-head", type=_dir, default=None,
                     help="Re-ID head directory (default: the shipped one)."),
    ]):
        f = o(f)
    return f


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DB,
              show_default=True, help="Library directory (records, indexes, uploads, token).")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1),
              help="Crops per pipeline forward.")
@click.option("--max-wait-ms", default=50.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a batch may wait to fill.")
@click.option("--queue-size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Crops that may wait for a worker; beyond it requests get 503 + Retry-After.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker threads taking batches (local mode).")
@click.option("--timeout", "timeout_s", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Per-request deadline in seconds (clients may ask for less with X-Timeout-Ms).")
@click.option("--max-body-mb", default=32.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest request body accepted, in MiB.")
@click.option("--no-auth", is_flag=True, help="No bearer token (local development only).")
@_models
@click.option("--queue", "queue_url", default=None, metavar="redis://HOST:PORT[/DB]",
              help="Scale-out: queue crops in a Redis stream for `personlens worker` processes.")
@click.option("--store", "store_url", default=None, metavar="postgresql://...",
              help="Scale-out: keep records in PostgreSQL instead of DB/personlens.sqlite.")
@click.option("--store-schema", default="public", show_default=True, help="PostgreSQL schema.")
@click.option("--stream", default="personlens:crops", show_default=True, help="Redis stream name.")
@click.option("--video-dir", "video_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="POST /v1/videos may name video files under this folder on the server (repeatable; "
                   "default: none, only uploads).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="Server log level.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds a client has to send a request's head (408 and closed after).")
@click.option("--body-timeout", default=15.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds a client has to send a request's whole body (408 and closed after).")
@click.option("--timeout-keep-alive", default=5.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds an idle keep-alive connection is kept open.")
@click.option("--limit-concurrency", default=64, show_default=True, type=click.IntRange(min=1),
              help="Requests answered at once; beyond it new ones get 503 + Retry-After "
                   "(open connections are capped at 4x this).")
@click.option("--max-parallel-bodies", default=2, show_default=True, type=click.IntRange(min=1),
              help="Large request bodies (over 1 MiB) read and parsed at once; others wait, then 503.")
def serve(host, port, db, max_batch, max_wait_ms, queue_size, workers, timeout_s, max_body_mb, no_auth,
          weights, search_head, reid_head, queue_url, store_url, store_schema, stream, video_dirs, log_level,
          header_timeout, body_timeout, timeout_keep_alive, limit_concurrency, max_parallel_bodies):
    """Serve the HTTP API (/docs) and the search page (/) over a library.

    Auth: a bearer token from $PERSONLENS_TOKEN, else DB/serve-token (generated and printed on
    first start). SIGTERM drains: new requests get 503, in-flight ones finish, then it exits.
    """
    if queue_url and not store_url:
        raise click.UsageError("--queue needs --store (workers and the API must share the store)")
    require_extra("serve")
    if queue_url:
        require_extra("scale", "redis")
    if store_url:
        require_extra("scale", "psycopg")
    from ..serve.config import ServeConfig
    from ..serve.server import run

    try:
        cfg = ServeConfig(db=db, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
                          queue_size=queue_size, workers=workers, request_timeout_s=timeout_s,
                          max_body_bytes=int(max_body_mb * 1024 * 1024), auth=not no_auth,
                          par_dir=weights, search_head=search_head, reid_head=reid_head,
                          queue_url=queue_url, store_url=store_url, store_schema=store_schema,
                          stream=stream, video_dirs=tuple(video_dirs),
                          header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                          timeout_keep_alive_s=timeout_keep_alive, limit_concurrency=limit_concurrency,
                          max_parallel_bodies=max_parallel_bodies)
        run(cfg, log_level=log_level)
    except (OSError, ValueError) as e:
        _err(str(e))
        sys.exit(2)


@click.command()
@click.option("--queue", "queue_url", required=True, metavar="redis://HOST:PORT[/DB]",
              help="Redis the API queues crops in.")
@click.option("--store", "store_url", required=True, metavar="postgresql://...",
              help="PostgreSQL the records are kept in.")
@click.option("--store-schema", default="public", show_default=True, help="PostgreSQL schema.")
@click.option("--stream", default="personlens:crops", show_default=True, help="Redis stream name.")
@click.option("--name", default=None, help="Consumer name (default: host-pid).")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1),
              help="Crops per pipeline forward.")
@click.option("--max-wait-ms", default=50.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a batch may wait to fill.")
@click.option("--claim-idle-s", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Reclaim entries another worker took but has not acknowledged for this long.")
@_models
@needs_extra("scale")
def worker(queue_url, store_url, store_schema, stream, name, max_batch, max_wait_ms, claim_idle_s, weights, search_head,
           reid_head):
    """Scale-out worker: read crops from the Redis stream, run the pipeline, store, acknowledge."""
    from ..inference.pipeline import PersonPipeline
    from ..serve.redisq import Worker

    pipe = PersonPipeline(weights, search_head, reid_head)
    w = Worker(queue_url, store_url, pipe, name=name, max_batch=max_batch, stream=stream,
               max_wait_s=max_wait_ms / 1000, claim_idle_s=claim_idle_s, store_schema=store_schema)
    w.run_forever()

