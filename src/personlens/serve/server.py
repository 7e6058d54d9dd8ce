"""Running the app under uvicorn with a graceful drain on SIGTERM / SIGINT.

First signal: the service starts draining (new requests get 503 + Retry-After, ``/healthz``
says 503 so a load balancer stops sending), the requests in flight and the queued crops are
finished, then uvicorn closes the listener and the app shuts down (indexes saved, store
closed); the process exits with status 0. The drain is bounded by ``drain_timeout_s``. A second
signal exits at once.

Slow or idle clients cannot hold connections: a request head must arrive within
``header_timeout_s`` of the connection (or of its first byte on a kept-alive one; 408 and
closed, before any authentication), its body within ``body_timeout_s`` (the guard middleware),
an idle kept-alive connection is closed after ``timeout_keep_alive_s``, heads are capped at
``max_header_bytes``; beyond ``limit_concurrency`` requests at once new ones get 503 + Retry-After
(the guard), and beyond 4x as many open connections uvicorn refuses new ones.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .auth import load_or_create_token
from .config import ServeConfig
from .service import PersonService

log = logging.getLogger("personlens.serve")


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head (uvicorn has none: a client
    that connects and sends nothing, or a head one byte at a time, held the connection for
    ever). The deadline runs from the connection, and on a kept-alive connection from the
    first byte of the next request (before that, uvicorn's keep-alive timeout applies);
    when it passes the client gets 408 and the connection is closed."""

    header_timeout_s: float = 10.0
    on_timeout = None                  # called (no arguments) for each connection cut
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._disarm_head_timer()
        elif not self.transport.is_closing():
            self._arm_head_timer()       # a new head started: it has header_timeout_s

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_head_timer()        # idle now: the keep-alive timeout applies

    def connection_lost(self, exc) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_request() or self.transport.is_closing():
            return
        msg = b"request head not received in time"
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(msg), msg))
        self.transport.close()
        if self.on_timeout is not None:
            self.on_timeout()


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


CONNECTIONS_PER_REQUEST_SLOT = 4   # keep-alive connections may idle; requests are what cost


def make_server(app, service: PersonService, config: ServeConfig, sock: socket.socket | None = None,
                log_level: str = "info") -> DrainingServer:
    protocol = type("PersonlensH11Protocol", (HeadTimeoutH11Protocol,), {
        "header_timeout_s": config.header_timeout_s,
        "on_timeout": staticmethod(lambda: service.metrics.error("header_timeout"))})
    ucfg = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                          timeout_graceful_shutdown=config.drain_timeout_s, access_log=False,
                          lifespan="on", http=protocol, timeout_keep_alive=config.timeout_keep_alive_s,
                          # the guard answers requests over the limit (503 + Retry-After, JSON);
                          # uvicorn's own plain 503 is only the backstop for idle connections
                          limit_concurrency=config.limit_concurrency * CONNECTIONS_PER_REQUEST_SLOT,
                          h11_max_incomplete_event_size=config.max_header_bytes)
    return DrainingServer(ucfg, service, config.drain_timeout_s)


def run(config: ServeConfig, *, pipeline=None, backend_factory=None, sock: socket.socket | None = None,
        log_level: str = "info") -> None:
    app, service, _ = build(config, pipeline=pipeline, backend_factory=backend_factory)
    server = make_server(app, service, config, log_level=log_level)
    server.run(sockets=[sock] if sock is not None else None)
