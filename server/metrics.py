"""Prometheus metrics, one registry per app so several apps can live in one test process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("pairly_connections", "Open Socket.IO connections", ["namespace"], registry=r)
        self.connects_refused = Counter(
            "pairly_connects_refused_total", "Refused namespace connects", ["namespace", "code"], registry=r
        )
        self.events = Counter("pairly_events_total", "Client events handled", ["event"], registry=r)
        self.events_failed = Counter(
            "pairly_events_failed_total", "Client events answered with an error", ["event", "code"], registry=r
        )
        self.handler_latency = Histogram(
            "pairly_handler_seconds", "Socket handler latency", ["event"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.store_latency = Histogram(
            "pairly_store_seconds", "MongoDB command latency", ["command"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.http_requests = Counter(
            "pairly_http_requests_total", "REST requests", ["method", "route", "status"], registry=r
        )
        self.call_tick_drift = Histogram(
            "pairly_call_tick_drift_seconds", "Lateness of call minute ticks against their boundary",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
