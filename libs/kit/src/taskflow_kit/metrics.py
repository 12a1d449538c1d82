"""Prometheus metrics: request count and latency by route template, plus `/metrics`.

Recorded per request into plain dictionaries (the event loop's thread is the only writer) and
turned into Prometheus samples when scraped, by a collector in the default registry: a
`prometheus_client` Counter and Histogram take a lock and walk their buckets on every
observation, which cost ~3% of the gateway's CPU per proxied request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# (service, method, route, status) -> requests
_counts: dict[tuple[str, str, str, str], int] = {}
# (service, method, route) -> observations per bucket (the last one: above every bound), then
# the sum of the durations
_latencies: dict[tuple[str, str, str], list[float]] = {}


class _RequestCollector(Collector):
    """`taskflow_http_requests_total` and `taskflow_http_request_duration_seconds`, from what
    `RequestMetrics` recorded."""

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "taskflow_http_requests",
            "HTTP requests handled",
            labels=["service", "method", "route", "status"],
        )
        for labels, count in list(_counts.items()):
            requests.add_metric(labels, count)
        yield requests
        latency = HistogramMetricFamily(
            "taskflow_http_request_duration_seconds",
            "HTTP request latency",
            labels=["service", "method", "route"],
        )
        for series, observed in list(_latencies.items()):
            cumulative = 0.0
            buckets = []
            for bound, observations in zip((*BUCKETS, float("inf")), observed, strict=False):
                cumulative += observations
                buckets.append((_bound(bound), cumulative))
            latency.add_metric(series, buckets, observed[-1])
        yield latency


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


REGISTRY.register(_RequestCollector())


class RequestMetrics:
    """Records requests of one service under their route template (never the raw path: bounded
    labels)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def record(self, method: str, route: object, status: int, seconds: float) -> None:
        """One request; `route` is the matched Starlette route (its `path` is the template)."""
        template = getattr(route, "path", None) or "unmatched"
        key = (self.service, method, template, str(status))
        _counts[key] = _counts.get(key, 0) + 1
        series = (self.service, method, template)
        observed = _latencies.get(series)
        if observed is None:
            observed = _latencies[series] = [0.0] * (len(BUCKETS) + 2)
        observed[bisect_left(BUCKETS, seconds)] += 1
        observed[-1] += seconds
