"""Prometheus metrics of one server (its own registry, so several apps never mix counts), and
the endpoint label each request is counted under."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute

try:  # FastAPI 0.137.2 on keeps an included router as one node of `app.routes`; this opens it
    from fastapi.routing import iter_route_contexts as _each_route
except ImportError:  # before, `app.routes` held every route itself
    _each_route = iter

RATE_WINDOW_S = 10.0  # tokens/s is measured over the last ten seconds
UNROUTED = "other"  # the label of a path no route serves

__all__ = ["CONTENT_TYPE_LATEST", "EndpointLabels", "ServerMetrics"]


class EndpointLabels:
    """A request's endpoint label: the path of the route that serves it (a mount's prefix),
    read off the app's routes once, so a new route is counted under its own name without a
    list to keep in step."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.patterns = [(route.path_regex, route.path) for route in _each_route(list(routes))
                         if getattr(route, "path_regex", None) is not None]

    def __call__(self, path: str) -> str:
        return next((label for pattern, label in self.patterns if pattern.match(path)), UNROUTED)


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
