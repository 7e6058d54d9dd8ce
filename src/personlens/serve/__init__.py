"""``personlens serve``: the HTTP API, dynamic batching, worker pool, queue, store and search page.

* ``app.create_app``: the FastAPI app and its routes; ``guard``: auth, body limits, error
  bodies and request metrics (a middleware); ``uploads``: multipart crop parsing; ``docs``:
  ``/docs`` and ``/redoc`` served offline, the bearer scheme in the OpenAPI;
* ``service.PersonService``: ingest (validate -> queue -> one pipeline forward per batch ->
  store) and queries, independent of HTTP;
* ``batcher.DynamicBatcher``: bounded queue + max-batch / max-wait batching + worker pool;
* ``server.run``: uvicorn with a graceful drain on SIGTERM;
* ``redisq``: the scale-out mode (Redis Streams queue, ``personlens worker``).
"""
from .config import ServeConfig

__all__ = ["ServeConfig"]
