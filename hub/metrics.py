"""Prometheus metrics, one registry per application (no module-level singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "hub_webhooks_total",
            "Webhook requests by outcome",
            ["channel_type", "outcome"],
            registry=self.registry,
        )
        self.inbound_processed = Counter(
            "hub_inbound_processed_total", "Raw deliveries processed", registry=self.registry
        )
        self.sends = Counter(
            "hub_sends_total",
            "Outbound send attempts by result",
            ["channel_type", "result"],
            registry=self.registry,
        )
        self.stream_clients = Gauge(
            "hub_stream_clients", "Connected WebSocket clients", registry=self.registry
        )
        self.last_seq = Gauge("hub_event_last_seq", "Last event sequence number seen", registry=self.registry)
        self.request_seconds = Histogram(
            "hub_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
