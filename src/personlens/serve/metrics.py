"""Prometheus metrics of one service (its own registry, so several apps can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Error kinds counted by personlens_errors_total{kind=...}
ERROR_KINDS = ("unauthorized", "unsupported_media_type", "too_large", "bad_image", "bad_request",
               "not_found", "queue_full", "queue_unavailable", "deadline", "draining", "internal",
               "client_disconnect", "request_timeout", "header_timeout", "busy")


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("personlens_queue_depth", "Crops waiting for a worker", registry=r)
        self.running = Gauge("personlens_running_items", "Crops in batches on a worker now", registry=r)
        self.inflight = Gauge("personlens_inflight_requests", "HTTP requests being answered", registry=r)
        self.batch_size = Histogram("personlens_batch_size", "Crops per pipeline forward",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("personlens_batch_seconds",
                                       "Time to run one batch (forward + store)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("personlens_queue_wait_seconds",
                                    "Time from validation to the answer of an ingest request",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("personlens_request_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("personlens_requests_total", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.errors = Counter("personlens_errors_total", "Errors by kind", ["kind"], registry=r)
        self.crops = Counter("personlens_crops_total", "Crops received, by outcome", ["outcome"],
                             registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)  # exported as 0 from the start

    def error(self, kind: str, n: int = 1) -> None:
        self.errors.labels(kind).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
