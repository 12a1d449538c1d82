"""Request metrics as Prometheus reads them: counts by status, latency buckets (cumulative,
upper bounds inclusive) and their sum."""

from __future__ import annotations

from prometheus_client import REGISTRY
from taskflow_kit.metrics import RequestMetrics


class _Route:
    path = "/things/{id}"


def test_counts_and_cumulative_latency_buckets() -> None:
    metrics = RequestMetrics("metrics-test")
    for seconds in (0.005, 0.2, 20.0):
        metrics.record("GET", _Route(), 200, seconds)
    metrics.record("GET", None, 404, 0.001)

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"service": "metrics-test", **labels})

    assert (
        sample("taskflow_http_requests_total", method="GET", route="/things/{id}", status="200")
        == 3
    )
    assert sample("taskflow_http_requests_total", method="GET", route="unmatched", status="404")
    series = {"method": "GET", "route": "/things/{id}"}
    bucket = "taskflow_http_request_duration_seconds_bucket"
    assert sample(bucket, le="0.005", **series) == 1  # the bound itself counts
    assert sample(bucket, le="0.25", **series) == 2
    assert sample(bucket, le="10.0", **series) == 2
    assert sample(bucket, le="+Inf", **series) == 3
    assert sample("taskflow_http_request_duration_seconds_count", **series) == 3
    assert sample("taskflow_http_request_duration_seconds_sum", **series) == 20.205
