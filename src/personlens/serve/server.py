"""Running the app under uvicorn with a graceful drain on SIGTERM / SIGINT.

First signal: the service starts draining (new requests get 503 + Retry-After, ``/healthz``
says 503 so a load balancer stops sending), the requests in flight and the queued crops are
finished, then uvicorn closes the listener and the app shuts down (indexes saved, store
closed); the process exits with status 0. The drain is bounded by ``drain_timeout_s``. A second
signal exits at once.
"""
from __future__ import annotations

import logging
import signal
import socket
import time

import uvicorn

from .app import create_app
from .auth import load_or_create_token
from .config import ServeConfig
from .service import PersonService

log = logging.getLogger("personlens.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: PersonService, drain_timeout_s: float):
        super().__init__(config)
        self.service = service
        self.drain_timeout_s = drain_timeout_s
        self.drain_started: float | None = None

    def handle_exit(self, sig, frame) -> None:
        # Not recorded in _captured_signals: a drained server exits 0 instead of re-raising.
        if self.drain_started is None and not self.should_exit:
            self.drain_started = time.monotonic()
            self.service.begin_drain()
            return
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def begin_drain(self) -> None:
        """The same as receiving SIGTERM (for embedding and tests)."""
        self.handle_exit(signal.SIGTERM, None)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            if self.service.idle or time.monotonic() - self.drain_started > self.drain_timeout_s:
                self.should_exit = True
        return await super().on_tick(counter)


def build(config: ServeConfig, *, pipeline=None, backend_factory=None, announce=print):
    """(app, service, token) for ``config``; prints the token when it was just generated."""
    token = None
    if config.auth:
        token, source = load_or_create_token(config.db, config.token)
        if source == "generated":
            announce(f"personlens serve: generated an API token (kept in {config.db / 'serve-token'}):\n"
                     f"    {token}\n"
                     f"  page: http://{config.host}:{config.port}/?token={token}")
        elif source == "file":
            announce(f"personlens serve: API token read from {config.db / 'serve-token'}")
    service = PersonService(config, pipeline=pipeline, backend_factory=backend_factory)
    return create_app(service, token), service, token


def make_server(app, service: PersonService, config: ServeConfig, sock: socket.socket | None = None,
                log_level: str = "info") -> DrainingServer:
    ucfg = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                          timeout_graceful_shutdown=config.drain_timeout_s, access_log=False,
                          lifespan="on")
    return DrainingServer(ucfg, service, config.drain_timeout_s)


def run(config: ServeConfig, *, pipeline=None, backend_factory=None, sock: socket.socket | None = None,
        log_level: str = "info") -> None:
    app, service, _ = build(config, pipeline=pipeline, backend_factory=backend_factory)
    server = make_server(app, service, config, log_level=log_level)
    server.run(sockets=[sock] if sock is not None else None)
