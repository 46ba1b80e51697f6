"""Prometheus metrics of one server (its own registry, so several apps never mix counts)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

RATE_WINDOW_S = 10.0  # tokens/s is measured over the last ten seconds

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lantern_requests", "HTTP requests answered",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("lantern_request_errors", "requests answered with an error status",
                              ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("lantern_prompt_tokens", "prompt tokens processed",
                                     ["model"], registry=r)
        self.completion_tokens = Counter("lantern_completion_tokens", "tokens generated",
                                         ["model"], registry=r)
        self.tokens_per_second = Gauge("lantern_tokens_per_second",
                                       f"tokens generated per second over the last {RATE_WINDOW_S:g} s",
                                       ["model"], registry=r)
        self.queue_length = Gauge("lantern_queue_length", "sequences waiting for a batch slot",
                                  ["model"], registry=r)
        self.active_rows = Gauge("lantern_active_rows", "sequences being decoded", ["model"],
                                 registry=r)
        self.latency = Histogram("lantern_request_seconds", "time from request to last token",
                                 ["endpoint"], registry=r)
        self._recent: dict[str, deque[tuple[float, int]]] = {}

    def generated(self, model: str, count: int) -> None:
        """Count `count` new tokens of `model` and refresh its tokens/s gauge."""
        if count <= 0:
            return
        now = time.monotonic()
        recent = self._recent.setdefault(model, deque())
        recent.append((now, count))
        self.completion_tokens.labels(model).inc(count)
        self._refresh_rate(model, now)

    def _refresh_rate(self, model: str, now: float) -> None:
        recent = self._recent.setdefault(model, deque())
        while recent and recent[0][0] < now - RATE_WINDOW_S:
            recent.popleft()
        self.tokens_per_second.labels(model).set(sum(c for _, c in recent) / RATE_WINDOW_S)

    def render(self) -> bytes:
        now = time.monotonic()
        for model in list(self._recent):
            self._refresh_rate(model, now)
        return generate_latest(self.registry)
