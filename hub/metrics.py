"""Prometheus metrics, one registry per application (no module-level singletons)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["STAGES", "Metrics"]

# The stages of an inbound message, webhook to app (``hub_inbound_stage_seconds``):
# accept: the webhook handler up to storing (signature, parse); group_commit: waiting for and
# committing the delivery; processing: stored to applied (contact, conversation, message, events
# committed); fanout: published to written on an app's WebSocket (the oldest frame of each write).
STAGES = ("accept", "group_commit", "processing", "fanout")
_STAGE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0
)  # fmt: skip


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

        self.stage_seconds = Histogram(
            "hub_inbound_stage_seconds",
            "Time an inbound message spends in each stage, webhook to app (see hub.metrics.STAGES)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )

        # Children by label, looked up once: ``labels()`` ran several times per webhook (profiled).
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def stage(self, name: str, seconds: float) -> None:
        self._child(self.stage_seconds, name).observe(seconds)

    def request(self, route: str, seconds: float) -> None:
        """Time an HTTP request by route pattern (``hub_http_request_seconds``)."""
        self._child(self.request_seconds, route).observe(seconds)

    def webhook(self, channel_type: str, outcome: str) -> None:
        """Count a webhook request by outcome (``hub_webhooks_total``)."""
        self._child(self.webhooks, channel_type, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
